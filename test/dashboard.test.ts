/**
 * The admin dashboard (`GET /admin/`) in a real browser: Debian's Chromium driven
 * by playwright-core, against the real service process and a real origin on
 * 127.0.0.1. Skipped (never faked) where /usr/bin/chromium is not installed.
 * Screenshots land in test-output/dashboard/ (git-ignored).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { DASHBOARD_CSP, serveDashboard } from '../src/admin/index.js';
import { originalPathOf } from '../src/store/index.js';
import { browserScaffold } from './helpers/browser.js';
import { makeImage, startOrigin } from './helpers/origin.js';
import type { Origin } from './helpers/origin.js';
import { root, startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { connect } from './helpers/wsClient.js';
import type { Frame, TestClient } from './helpers/wsClient.js';
import type { NodesAnswer } from '../src/wire/adminStream.js';
import type { JobJson } from '../src/wire/jobs.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'dashboard-test-token-7f3a9c';
const OUTPUT = path.join(root, 'test-output', 'dashboard');
// We run as root (no sandbox); the rest keeps Chromium from calling out to the internet.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const AUTH = { authorization: `Bearer ${TOKEN}` };

/** A CSS attribute selector for a row of `list` about `url` (JSON quoting is valid CSS quoting here). */
const row = (list: string, url: string, extra = '') => `#${list} [data-url=${JSON.stringify(url)}]${extra}`;

/**
 * The little of the DOM the in-page predicates use: this project's TypeScript has
 * no DOM lib. (Predicates are functions, not strings: Playwright polls a string
 * with eval, which the page's Content-Security-Policy rightly refuses.)
 */
interface PageElement {
  textContent: string | null;
  complete?: boolean;
  naturalWidth?: number;
}
interface PageGlobals {
  document: {
    querySelector(selector: string): PageElement | null;
    querySelectorAll(selector: string): { length: number };
    createElement(tag: string): PageElement & object;
    addEventListener(type: string, listener: (event: { violatedDirective: string }) => void, options?: { once: boolean }): void;
    body: { append(node: object): void };
  };
  sessionStorage: { length: number };
}

/** Waits until the element's text (trimmed) is `text`. */
async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  await page.waitForFunction(([sel, want]) => (globalThis as unknown as PageGlobals).document.querySelector(sel)?.textContent?.trim() === want, [selector, text] as [string, string]);
}

/** Waits until the element's text matches `pattern`; returns the text. */
async function waitForMatch(page: Page, selector: string, pattern: RegExp, timeout = 30_000): Promise<string> {
  await page.waitForFunction(
    ([sel, source, flags]) => new RegExp(source, flags).test((globalThis as unknown as PageGlobals).document.querySelector(sel)?.textContent ?? ''),
    [selector, pattern.source, pattern.flags] as [string, string, string],
    { timeout },
  );
  return (await page.textContent(selector)) ?? '';
}

/** How many elements match, now. */
const countOf = (page: Page, selector: string) => page.evaluate((sel) => (globalThis as unknown as PageGlobals).document.querySelectorAll(sel).length, selector);

// Without a browser (this runs where Chromium is missing too): the files, the headers, the names.
test('the dashboard files: known names only, each under the CSP', async (t) => {
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://x').pathname;
    if (!serveDashboard(req, res, pathname)) res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const redirect = await fetch(`${base}/admin`, { redirect: 'manual' });
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.get('location'), 'admin/', 'relative, so a path prefix in front keeps working');
  assert.equal(redirect.headers.get('content-security-policy'), DASHBOARD_CSP);

  const files = { '/admin/': ['index.html', /^text\/html/], '/admin/dashboard.js': ['dashboard.js', /^text\/javascript/], '/admin/dashboard.css': ['dashboard.css', /^text\/css/] } as const;
  for (const [route, [file, type]] of Object.entries(files)) {
    const res = await fetch(`${base}${route}`);
    assert.equal(res.status, 200, route);
    assert.match(res.headers.get('content-type') ?? '', type, route);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.equal(csp, DASHBOARD_CSP);
    assert.match(csp, /(^|; )script-src 'self'(;|$)/);
    assert.match(csp, /(^|; )style-src 'self'(;|$)/);
    assert.match(csp, /(^|; )frame-ancestors 'none'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(await res.text(), readFileSync(path.join(root, 'src/admin/dashboard', file), 'utf8'), route);
  }
  const head = await fetch(`${base}/admin/dashboard.js`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), '');

  // The page names its script and style as files: nothing inline for the CSP to refuse.
  const html = readFileSync(path.join(root, 'src/admin/dashboard/index.html'), 'utf8');
  assert.match(html, /<script type="module" src="dashboard\.js"><\/script>/);
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'no inline <script>');
  assert.doesNotMatch(html, /\son[a-z]+\s*=/i, 'no on… handler attributes');
  assert.doesNotMatch(html, /\sstyle\s*=|<style/i, 'no inline style');
  assert.match(readFileSync(path.join(root, 'src/admin/dashboard/dashboard.js'), 'utf8'), /^\/\/ @ts-check\n/);

  // Anything else is not the dashboard's: no request path reaches the filesystem.
  for (const probe of ['/admin/index.html', '/admin/../package.json', '/admin/..%2Fdashboard.js', '/admin/dashboard.js/', '/admin/dashboard/dashboard.js', '/admin/Dashboard.js', '/admin//', '/dashboard.js']) {
    assert.equal((await fetch(`${base}${probe}`, { redirect: 'manual' })).status, 404, probe);
  }
});

test('the admin dashboard, in a real browser', { timeout: 240_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip("Chromium not installed (/usr/bin/chromium): the browser test needs Debian's chromium package");
    return;
  }

  const open: { origin?: Origin; service?: Service; browser?: Browser; clients: TestClient[] } = { clients: [] };
  const dir = await mkdtemp(path.join(os.tmpdir(), 'coverhelper-dashboard-'));
  // One hook, so the order is certain: browser, sockets, service, origin, files.
  t.after(async () => {
    await open.browser?.close();
    await Promise.all(open.clients.map((c) => c.close()));
    if (open.service) assert.equal(await open.service.stop(), 0, 'SIGTERM ends with exit code 0');
    await open.origin?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const origin = (open.origin = await startOrigin());
  const service = (open.service = await startService([
    '--admin-token', TOKEN,
    '--data-dir', path.join(dir, 'data'),
    '--covers-dir', path.join(dir, 'covers'),
    '--allow-private-network',
    '--allow-hosts', '127.0.0.1',
    '--retries', '0',
  ]));
  const client = await connect(service.wsUrl);
  open.clients.push(client);

  const browser = (open.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS }));
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems: string[] = [];
  const cspViolations: string[] = [];
  const deletes: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  page.on('request', (request) => {
    if (!request.url().startsWith(service.url) && !request.url().startsWith(service.wsUrl.replace('/ws', ''))) problems.push(`request outside the service: ${request.url()}`);
    if (request.method() === 'DELETE') deletes.push(request.url());
  });
  const shoot = async (name: string) => {
    const file = path.join(OUTPUT, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    assert.ok((await stat(file)).size > 0);
  };

  await mkdir(OUTPUT, { recursive: true });

  await t.test('serves the page under a CSP, connects with the token, buttons match the state', async () => {
    const response = await page.goto(`${service.url}/admin`);
    assert.equal(new URL(page.url()).pathname, '/admin/', '/admin redirects to /admin/, where the relative links resolve');
    assert.equal(response?.status(), 200);
    assert.match(response?.headers()['content-security-policy'] ?? '', /script-src 'self'/);
    // Nothing works before the stream is up.
    assert.equal(await page.isDisabled('#pause'), true);
    await page.fill('#token', TOKEN);
    await page.click('#connect');
    await waitForText(page, '#status', 'ready');
    await page.waitForSelector('#dashboard:not([hidden])');
    // Ready: pausing makes sense, resuming does not.
    await page.waitForSelector('#pause:enabled');
    assert.equal(await page.isDisabled('#resume'), true);
    // The test's blog client apart from the page's own admin stream.
    await waitForText(page, '[data-stat="clients"]', '1');
    await waitForText(page, '[data-stat="admins"]', '1');
    // The token is kept for the tab: a reload connects again by itself.
    await page.reload();
    await waitForText(page, '#status', 'ready');
    assert.equal(await page.isVisible('#login'), false);
    await waitForText(page, '[data-stat="admins"]', '1');
  });

  const halfUrl = `${origin.url}/half/dashboard.jpg`;
  await t.test('a held download shows progress, speed, elapsed time, its node and a stall hint, then finishes', async () => {
    const url = halfUrl;
    const checked = client.check('dash-1', [url]);
    // Headers and half the body are there: the download runs until release().
    await page.waitForSelector(row('running', url, ' progress[value]'));
    // The bytes have just moved: no stall hint yet.
    assert.equal(await page.textContent(row('running', url, ' .stall')), '', 'no stall hint while bytes are new');
    assert.match((await page.textContent(row('running', url))) ?? '', /\/half\/dashboard\.jpg/);
    assert.match(await waitForMatch(page, row('running', url, ' .amount'), /\d+(\.\d)? KB \/ \d+(\.\d)? KB · \d+%/), / · (4|5)\d%/);
    await waitForMatch(page, row('running', url, ' .speed'), /^\d+(\.\d)? (B|KB|MB)\/s$/);
    await waitForMatch(page, row('running', url, ' .elapsed'), /^[1-9]\d* s elapsed$/);
    await waitForMatch(page, row('running', url, ' .node'), /^on \S+ \(this node\)$/);
    // No byte for 5 s: the row says so, and the speed has fallen to nothing.
    await waitForMatch(page, row('running', url, ' .stall'), /^stalled: no bytes for \d+ s$/, 20_000);
    await waitForText(page, row('running', url, ' .speed'), '0 B/s');
    await shoot('running');
    origin.release();
    const { done } = await checked;
    assert.equal(done.ok, 1);
    await page.waitForSelector(row('finished', url, '[data-status="ok"]'));
    assert.equal((await page.textContent(row('finished', url, ' .badge')))?.trim(), 'ok');
    await waitForText(page, '[data-stat="ok"]', '1');
    await page.waitForSelector(row('running', url), { state: 'detached' });
    assert.ok(Number(await page.getAttribute('[data-stat="checks"]', 'data-value')) >= 1);
    // The stored totals come from the database, not from counters since start.
    await waitForText(page, '[data-total="ok"]', '1');
    await waitForText(page, '[data-total="covers"]', '1');
  });

  await t.test("a stored cover's detail shows the cover and the variants made of it: size, format, bytes", async () => {
    const { done } = await client.check('dash-v', [halfUrl]);
    const coverPath = (done.results as Frame[])[0]?.path as string;
    assert.ok(coverPath, 'the cover is stored');
    // Nothing made yet.
    await page.click(row('finished', halfUrl, ' button.url-button'));
    await page.waitForSelector('#detail[open] #detail-facts:not([hidden])');
    await waitForText(page, '#detail-variants', 'none made yet');
    await page.click('#detail-close');
    await page.waitForSelector('#detail', { state: 'hidden' });
    // Three variants, asked for as a page does: each one render of the original kept beside the cover.
    const coverHref = `${service.url}/covers/${coverPath.split('/').map(encodeURIComponent).join('/')}`;
    const bytes: number[] = [];
    for (const query of ['w=160&f=webp', 'w=320&h=320&f=avif', 'w=480&f=jpeg']) {
      const res = await fetch(`${coverHref}?${query}`);
      assert.equal(res.status, 200, query);
      bytes.push((await res.arrayBuffer()).byteLength);
    }
    const stored = await readFile(path.join(dir, 'covers', originalPathOf(coverPath)));
    const meta = await sharp(stored).metadata();
    const heightAt = (width: number) => Math.round((meta.height * width) / meta.width);
    await page.click(row('finished', halfUrl, ' button.url-button'));
    await page.waitForSelector('#detail[open] #detail-variants li');
    const items = await page.$$eval('#detail-variants li', (lis) => lis.map((li) => (li as unknown as PageElement).textContent ?? ''));
    const kb = (n: number) => (n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KB`);
    assert.deepEqual(items, [
      `480×${heightAt(480)} jpeg · ${kb(bytes[2]!)}`,
      `320×320 avif · ${kb(bytes[1]!)}`,
      `160×${heightAt(160)} webp · ${kb(bytes[0]!)}`,
    ]);
    // Each links to its file, which is served.
    const hrefs = await page.$$eval('#detail-variants li a', (links) => links.map((a) => (a as unknown as { href: string }).href));
    for (const [i, href] of hrefs.entries()) {
      const res = await fetch(href);
      assert.equal(res.status, 200, href);
      assert.equal(Number(res.headers.get('content-length')), bytes[2 - i], href);
    }
    // The cover itself is shown beside them.
    await page.waitForFunction((selector) => {
      const img = (globalThis as unknown as PageGlobals).document.querySelector(selector);
      return img !== null && img.complete === true && (img.naturalWidth ?? 0) > 0;
    }, '#detail-cover img');
    await shoot('detail-variants');
    await page.click('#detail-close');
    await page.waitForSelector('#detail', { state: 'hidden' });
  });

  const broken = `${origin.url}/status/404`;
  await t.test('lists failures, loads them again at connect, shows a task in detail, and retries one', async () => {
    const flaky = `${origin.url}/flaky/dashboard.jpg?fails=1`;
    const { done } = await client.check('dash-2', [broken, flaky]);
    assert.deepEqual((done.results as Frame[]).map((r) => r.status), ['error', 'error']);
    await page.waitForSelector(row('failures', flaky, ' button.retry'));
    await page.waitForSelector(row('failures', broken, ' button.retry'));
    // Failures come from GET /admin/api/tasks after a reload, not only from the live stream.
    await page.reload();
    await waitForText(page, '#status', 'ready');
    await page.waitForSelector(row('failures', broken));
    await page.waitForSelector(row('finished', halfUrl, '[data-status="ok"]'));
    assert.match((await page.textContent(row('failures', broken))) ?? '', /http_status/);

    // The detail view: tries, the error, the timeline of changes.
    await page.click(row('failures', broken, ' button.url-button'));
    await page.waitForSelector('#detail[open] #detail-facts:not([hidden])');
    assert.equal(await page.textContent('#detail-url'), broken);
    assert.equal(await page.textContent('#detail-status'), 'error');
    assert.equal(await page.textContent('#detail-attempts'), '1');
    assert.match((await page.textContent('#detail-error')) ?? '', /^http_status: .*404/);
    const timeline = await page.$$eval('#detail-timeline li', (items) => items.map((li) => (li as unknown as PageElement).textContent ?? ''));
    assert.ok(timeline.some((line) => /downloading/.test(line)), `a downloading change: ${timeline.join(' | ')}`);
    assert.match(timeline.at(-1) ?? '', /error · try 1 · http_status/, 'the failure last, with its try');
    // Buttons match the state: a failed task can be retried, not cancelled.
    assert.equal(await page.isEnabled('#detail-retry'), true);
    assert.equal(await page.isDisabled('#detail-cancel'), true);
    await shoot('detail');
    await page.click('#detail-close');
    await page.waitForSelector('#detail', { state: 'hidden' });

    // The flaky origin answers the second request: the retry ends ok and leaves the failures.
    await page.click(row('failures', flaky, ' button.retry'));
    await page.waitForSelector(row('finished', flaky, '[data-status="ok"]'));
    await page.waitForSelector(row('failures', flaky), { state: 'detached' });
    assert.equal(origin.hits.get('/flaky/dashboard.jpg'), 2);
  });

  await t.test('a custom cover replaces a failure, which leaves the list; removal asks first', async () => {
    const file = path.join(OUTPUT, 'custom-cover.png');
    await writeFile(file, await makeImage('custom-from-dashboard', 'png', 480, 300));
    await page.waitForSelector(row('failures', broken));
    await page.fill('#upload-url', broken);
    await page.setInputFiles('#upload-file', file);
    await page.click('#upload');
    await page.waitForSelector('#upload-result a');
    const href = await page.getAttribute('#upload-result a', 'href');
    assert.ok(href !== null && href.startsWith(`${service.url}/covers/`), `a cover URL: ${href}`);
    assert.equal(await page.getAttribute('#upload-result img', 'src'), href);
    await page.waitForFunction((selector) => {
      const img = (globalThis as unknown as PageGlobals).document.querySelector(selector);
      return img !== null && img.complete === true && (img.naturalWidth ?? 0) > 0;
    }, '#upload-result img');
    // The failure is replaced: it leaves the failures, and the finished list says ok.
    await page.waitForSelector(row('failures', broken), { state: 'detached' });
    await page.waitForSelector(row('finished', broken, '[data-status="ok"]'));
    const res = await fetch(href);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^image\//);
    const { done } = await client.check('dash-3', [broken]);
    const [result] = done.results as Frame[];
    assert.equal(result?.status, 'ok');
    assert.equal(result?.source, 'custom');
    assert.equal(result?.coverUrl, href);
    // It stays out after a reload too (the row in the database is ok now).
    await page.reload();
    await waitForText(page, '#status', 'ready');
    await page.waitForSelector(row('finished', broken, '[data-status="ok"]'));
    assert.equal(await countOf(page, row('failures', broken)), 0);
    // Its detail says what answers say: the original's size and its colour, with a swatch and the cover's box painted.
    await page.click(row('finished', broken, ' button.url-button'));
    await page.waitForSelector('#detail[open] #detail-facts:not([hidden])');
    assert.equal(await page.textContent('#detail-answer'), `${String(result?.color)} · 480×300 original`);
    assert.match(String(result?.color), /^#[0-9a-f]{6}$/);
    assert.equal(await page.$eval('#detail-answer .swatch', (el) => (el as unknown as { style: { backgroundColor: string } }).style.backgroundColor !== ''), true);
    assert.equal(await page.$eval('#detail-cover img', (el) => (el as unknown as { style: { backgroundColor: string } }).style.backgroundColor !== ''), true);
    await page.click('#detail-close');
    await page.waitForSelector('#detail', { state: 'hidden' });

    // Removal asks; "Cancel" removes nothing.
    await page.fill('#upload-url', broken);
    const dismissed = new Promise<string>((resolve) => page.once('dialog', (dialog) => {
      resolve(`${dialog.type()}: ${dialog.message()}`);
      void dialog.dismiss();
    }));
    await page.click('#delete-cover');
    assert.match(await dismissed, /^confirm: Remove the stored cover of\n.*\/status\/404/);
    await waitForText(page, '#upload-result', 'Nothing removed.');
    assert.deepEqual(deletes, [], 'no DELETE was sent');
    assert.equal((await fetch(href)).status, 200, 'the cover is still there');
    // "OK" removes it.
    const accepted = new Promise<void>((resolve) => page.once('dialog', (dialog) => {
      void dialog.accept().then(resolve);
    }));
    await page.click('#delete-cover');
    await accepted;
    await waitForMatch(page, '#upload-result', /will be removed/);
    assert.equal(deletes.length, 1);
    // The deletion runner removes the entry: its row leaves the lists.
    await page.waitForSelector(row('finished', broken), { state: 'detached' });
  });

  await t.test('retries every failed task at once', async () => {
    const a = `${origin.url}/flaky/all-a.jpg?fails=1`;
    const b = `${origin.url}/flaky/all-b.jpg?fails=1`;
    await client.check('dash-4', [a, b]);
    await page.waitForSelector(row('failures', a));
    await page.waitForSelector(row('failures', b));
    await page.waitForSelector('#retry-all:enabled');
    await page.click('#retry-all');
    await waitForText(page, '#retry-all-result', '2 failed tasks started again');
    await page.waitForSelector(row('finished', a, '[data-status="ok"]'));
    await page.waitForSelector(row('finished', b, '[data-status="ok"]'));
    await page.waitForSelector(row('failures', a), { state: 'detached' });
    await page.waitForSelector(row('failures', b), { state: 'detached' });
    await waitForText(page, '#failures-count', '0');
    // Nothing failed is left: the button says so.
    await page.waitForSelector('#retry-all:disabled');
  });

  await t.test('pause and resume: buttons follow the state, a held download is listed once', async () => {
    await page.click('#pause');
    await waitForText(page, '#status', 'paused');
    await page.waitForSelector('#resume:enabled');
    assert.equal(await page.isDisabled('#pause'), true);
    const held = `${origin.url}/img/held-while-paused.jpg`;
    const checked = client.check('dash-5', [held]);
    await page.waitForSelector(row('queue', held, '[data-status="waiting"]'));
    assert.equal((await page.textContent(row('queue', held, ' .badge')))?.trim(), 'held');
    await waitForText(page, '#waiting-count', '1');
    assert.equal(await page.textContent('#queued-count'), '0');
    assert.equal(await page.textContent('#queue-count'), '1');
    assert.equal(await countOf(page, `#running [data-url=${JSON.stringify(held)}], #queue [data-url=${JSON.stringify(held)}], #finished [data-url=${JSON.stringify(held)}]`), 1, 'in one list, once');
    await page.click('#resume');
    await waitForText(page, '#status', 'ready');
    await page.waitForSelector('#pause:enabled');
    assert.equal(await page.isDisabled('#resume'), true);
    const { done } = await checked;
    assert.equal(done.ok, 1);
    await page.waitForSelector(row('finished', held, '[data-status="ok"]'));
    await page.waitForSelector(row('queue', held), { state: 'detached' });
  });

  await t.test('cancels a running download', async () => {
    const hang = `${origin.url}/hang?dashboard=cancel`;
    const checked = client.check('dash-6', [hang]);
    await page.waitForSelector(row('running', hang, ' button.cancel:enabled'));
    await page.click(row('running', hang, ' button.cancel'));
    const { results } = await checked;
    assert.equal((results[0]?.error as Frame | undefined)?.code, 'cancelled');
    await page.waitForSelector(row('running', hang), { state: 'detached' });
    await waitForText(page, row('failures', hang, ' .badge'), 'cancelled');
  });

  await t.test('searches, filters by status and pages over the task list', async () => {
    const urls = Array.from({ length: 12 }, (_, i) => `${origin.url}/img/page-${String(i).padStart(2, '0')}.jpg`);
    const { done } = await client.check('dash-7', urls);
    assert.equal(done.ok, 12);
    await page.fill('#task-q', '/img/page-');
    await page.selectOption('#task-limit', '10');
    await page.click('#task-go');
    await waitForText(page, '#tasks-page', '1–10 of 12');
    assert.equal(await countOf(page, '#tasks tr'), 10);
    assert.equal(await page.isDisabled('#tasks-prev'), true);
    await page.click('#tasks-next');
    await waitForText(page, '#tasks-page', '11–12 of 12');
    assert.equal(await countOf(page, '#tasks tr'), 2);
    assert.equal(await page.isDisabled('#tasks-next'), true);
    assert.equal(await page.isEnabled('#tasks-prev'), true);
    await shoot('tasks');
    // Filters: none of these failed; all are ok.
    await page.selectOption('#task-status', 'error');
    await waitForText(page, '#tasks-page', 'no tasks');
    assert.equal(await page.isVisible('#tasks-empty'), true);
    await page.selectOption('#task-status', 'ok');
    await waitForText(page, '#tasks-page', '1–10 of 12');
    // The cancelled download is the one failure.
    await page.fill('#task-q', '');
    await page.selectOption('#task-status', 'error');
    await waitForText(page, '#tasks-page', '1–1 of 1');
    assert.match((await page.textContent('#tasks tr')) ?? '', /cancelled/);
    // A row opens the detail view too.
    await page.click('#tasks tr button.url-button');
    await page.waitForSelector('#detail[open] #detail-facts:not([hidden])');
    assert.match((await page.textContent('#detail-error')) ?? '', /^cancelled/);
    // Retry from the detail view: the task runs again, so the filtered page (error) empties by itself…
    await page.click('#detail-retry');
    await waitForText(page, '#detail-status', 'downloading');
    await waitForText(page, '#tasks-page', 'no tasks');
    // …and cancelling it again (now enabled, retry not) brings it back.
    assert.equal(await page.isDisabled('#detail-retry'), true);
    await page.click('#detail-cancel');
    await waitForText(page, '#detail-status', 'error');
    await waitForText(page, '#tasks-page', '1–1 of 1');
    await page.click('#detail-close');
  });

  await t.test('shows the nodes (one, on SQLite)', async () => {
    const nodes = (await (await fetch(`${service.url}/admin/api/nodes`, { headers: AUTH })).json()) as NodesAnswer;
    const selector = `#nodes tr[data-node=${JSON.stringify(nodes.self)}]`;
    await page.waitForSelector(selector);
    assert.equal(await page.textContent('#nodes-count'), '1');
    assert.match((await page.textContent(selector)) ?? '', /this node/);
    assert.equal((await page.textContent(`${selector} .badge`))?.trim(), 'ready');
    assert.match((await page.textContent('#nodes-hint')) ?? '', /^One node/);
    // Without a jobs field in the snapshot, the jobs panel says so.
    assert.equal(await page.isVisible('#jobs-empty'), true);
    assert.equal(await page.textContent('#jobs-empty'), 'no jobs');
  });

  await t.test('lists an archive job with its progress, and its archive link once ready', async () => {
    const urls = [`${origin.url}/img/job-a.jpg`, `${origin.url}/img/job-b.jpg`, `${origin.url}/status/404?job`];
    const res = await fetch(`${service.url}/api/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ urls, name: 'dashboard job' }) });
    assert.equal(res.status, 201);
    const job = (await res.json()) as JobJson;
    const row = `#jobs li[data-job=${JSON.stringify(job.id)}]`;
    await page.waitForSelector(row);
    assert.equal(await page.isVisible('#jobs-empty'), false);
    assert.equal(await page.textContent(`${row} .name`), 'dashboard job');
    await waitForText(page, `${row} .badge`, 'ready');
    assert.match((await page.textContent(`${row} .detail`)) ?? '', /^3 \/ 3 \(1 failed\)/);
    assert.deepEqual(await page.$eval(`${row} progress`, (bar) => [(bar as unknown as { value: number }).value, (bar as unknown as { max: number }).max]), [3, 3]);
    const href = await page.getAttribute(`${row} .link-cell a`, 'href');
    assert.ok(href?.endsWith(`/api/jobs/${job.id}/archive`), String(href));
    assert.equal((await fetch(href!)).headers.get('content-type'), 'application/x-tar');
    assert.equal(await page.textContent('#jobs-count'), '1');
    await shoot('jobs');
  });

  await t.test('refuses a wrong token', async () => {
    const other = await browser.newPage();
    try {
      await other.goto(`${service.url}/admin`);
      await other.fill('#token', 'not-the-token');
      await other.click('#connect');
      await waitForText(other, '#login-error', 'wrong token');
      assert.equal(await other.isVisible('#dashboard'), false);
      assert.equal(await other.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.length), 0, 'a refused token is not kept');
    } finally {
      await other.close();
    }
  });

  await t.test('no inline script: every file under the CSP, the page worked under it, and the CSP bites', async () => {
    for (const asset of ['/admin/', '/admin/dashboard.js', '/admin/dashboard.css']) {
      const res = await fetch(`${service.url}${asset}`);
      assert.equal(res.status, 200, asset);
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /script-src 'self'(;|$)/, asset);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, asset);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      const body = await res.text();
      if (asset === '/admin/') {
        assert.doesNotMatch(body, /<script(?![^>]*\bsrc=)[^>]*>/i, 'no inline <script>');
        assert.doesNotMatch(body, /\son[a-z]+\s*=/i, 'no on… handler attributes');
        assert.doesNotMatch(body, /\sstyle\s*=|<style/i, 'no inline style');
      }
    }
    // Only the known names: nothing else under /admin/ reaches the filesystem.
    for (const probe of ['/admin/index.html', '/admin/..%2Fdashboard.js', '/admin/dashboard.js/', '/admin/dashboard/dashboard.js']) {
      assert.equal((await fetch(`${service.url}${probe}`)).status, 404, probe);
    }
    assert.deepEqual(cspViolations, [], 'the page ran without a CSP violation');
    await shoot('dashboard');
    assert.deepEqual(problems, []);
    // And the policy is real: an inline script put into the page is refused.
    const probe = await browser.newPage();
    try {
      await probe.goto(`${service.url}/admin/`);
      const refused = await probe.evaluate(
        () =>
          new Promise<string>((resolve) => {
            const { document } = (globalThis as unknown as PageGlobals);
            document.addEventListener('securitypolicyviolation', (event) => resolve(event.violatedDirective), { once: true });
            const script = document.createElement('script');
            script.textContent = 'document.title = "inline ran"';
            document.body.append(script);
            setTimeout(() => resolve('nothing refused'), 3000);
          }),
      );
      assert.match(refused, /^script-src/);
    } finally {
      await probe.close();
    }
  });

  await t.test('a frozen service (a stream that sends nothing) is shown as disconnected; the page reconnects when it is back', async () => {
    await waitForText(page, '#status', 'ready');
    // SIGSTOP: the TCP connection stays open and nothing closes it, but no frame comes.
    service.child.kill('SIGSTOP');
    try {
      await waitForText(page, '#status', 'disconnected');
      assert.match((await page.textContent('#notice')) ?? '', /^Disconnected: no frame for 5 s/);
      assert.equal(await page.isDisabled('#pause'), true);
    } finally {
      service.child.kill('SIGCONT');
    }
    await waitForText(page, '#status', 'ready');
    await page.waitForSelector('body[data-link="live"]');
    await page.waitForSelector('#pause:enabled');
    assert.equal(await page.isVisible('#notice'), false);
  });

  await t.test('says "disconnected" when the service dies, and shows nothing as live', async () => {
    const hang = `${origin.url}/hang?dashboard=killed`;
    void client.check('dash-8', [hang]).catch(() => undefined);
    await page.waitForSelector(row('running', hang, ' button.cancel:enabled'));
    await page.waitForSelector('#pause:enabled');
    const killed = open.service;
    open.service = undefined;
    await killed?.kill();
    await waitForText(page, '#status', 'disconnected');
    await page.waitForSelector('body[data-link="down"]');
    await waitForText(page, row('running', hang, ' .speed'), 'speed unknown (disconnected)');
    assert.equal(await page.textContent(row('running', hang, ' .stall')), '');
    assert.equal(await page.isVisible('#h-running .stale-tag'), true, 'the panel says it is disconnected');
    assert.equal(await page.isVisible('#h-counters .stale-tag'), true);
    assert.equal(await page.isDisabled('#pause'), true);
    assert.equal(await page.isDisabled('#resume'), true);
    assert.equal(await page.isDisabled(row('running', hang, ' button.cancel')), true);
    assert.equal(await page.isDisabled('#upload'), true);
    assert.equal(await page.isDisabled('#delete-cover'), true);
    assert.equal(await page.isDisabled(row('failures', `${origin.url}/hang?dashboard=cancel`, ' button.retry')), true);
    assert.match((await page.textContent('#notice')) ?? '', /^Disconnected/);
    await shoot('disconnected');
    assert.deepEqual(cspViolations, []);
  });
});

test('the dashboard shows a banner per cooling upstream host, gone when it reopens (real browser)', { timeout: 120_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip("Chromium not installed (/usr/bin/chromium): the browser test needs Debian's chromium package");
    return;
  }
  // An origin on 127.0.0.1: /img/<name>.jpg, refused from the 3rd request for 1.5 s (429, Retry-After: 5);
  // the probe (the 4th) is answered when the test says, so the banner's last state is seen whatever the machine's speed.
  let hits = 0;
  let refusingSince: number | undefined;
  let answerProbe!: () => void;
  const probeAnswered = new Promise<void>((resolve) => (answerProbe = resolve));
  const server = http.createServer((req, res) => {
    const n = ++hits;
    const m = /^\/img\/([a-z0-9-]+)\.jpg$/.exec(new URL(req.url ?? '/', 'http://x').pathname);
    if (!m) return void res.writeHead(404).end();
    if (n > 2) {
      refusingSince ??= Date.now();
      if (Date.now() - refusingSince < 1500) return void res.writeHead(429, { 'retry-after': '5' }).end('slow down');
    }
    void (async () => {
      if (n === 4) await probeAnswered;
      const body = await makeImage(m[1]!, 'jpeg', 64, 40);
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length }).end(body);
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const originUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'coverhelper-dashboard-cooling-'));
  const open: { service?: Service; browser?: Browser; client?: TestClient } = {};
  t.after(async () => {
    answerProbe();
    await open.browser?.close();
    await open.client?.close();
    await open.service?.stop();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });
  const service = (open.service = await startService([
    '--admin-token', TOKEN,
    '--data-dir', path.join(dir, 'data'),
    '--covers-dir', path.join(dir, 'covers'),
    '--allow-private-network',
    '--allow-hosts', '127.0.0.1',
    '--retries', '0',
    '--host-limits', '127.0.0.1=100/s:100:1',
  ]));
  const browser = (open.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS }));
  const page: Page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  await page.goto(`${service.url}/admin/`);
  await page.fill('#token', TOKEN);
  await page.click('#connect');
  await waitForText(page, '#status', 'ready');
  assert.equal(await countOf(page, '#upstream .upstream-banner'), 0, 'no banner while no host cools');

  const client = (open.client = await connect(service.wsUrl));
  const urls = Array.from({ length: 6 }, (_, i) => `${originUrl}/img/banner-${i}.jpg`);
  const { done } = await client.check('cool', urls, 15_000);
  assert.equal(done.ok, 2);
  const limited = (done.results as Frame[]).filter((r) => r.status === 'error');
  assert.equal(limited.length, 4);
  const retryAt = Date.parse(String(limited[0]!.retryAt));
  const d = new Date(retryAt);
  const hhmmss = [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');

  // One banner for the host, with why, until when (the browser's local time, as here) and a countdown.
  const banner = '#upstream .upstream-banner[data-host="127.0.0.1"]';
  const text = await waitForMatch(page, banner, /is cooling/, 10_000);
  const escaped = hhmmss.replace(/:/g, '\\:');
  assert.match(text, new RegExp(`^127\\.0\\.0\\.1 is cooling \\(HTTP 429\\) — nothing is sent to it until ${escaped} \\(in [1-5] s\\); its URLs are answered upstream_limited and fetched after$`));
  assert.equal(await countOf(page, '#upstream .upstream-banner'), 1);
  await mkdir(OUTPUT, { recursive: true });
  await page.screenshot({ path: path.join(OUTPUT, 'upstream-cooling.png'), fullPage: true });
  // The countdown moves on, then the probe goes out (held by the origin): the host still cools.
  await waitForMatch(page, banner, /^127\.0\.0\.1 is cooling \(HTTP 429\) — reopening: one probe request is let through; its URLs are answered upstream_limited and fetched after$/, 15_000);
  assert.equal(hits, 4, 'nothing but the probe sent while cooling');
  // The probe is answered: the host reopens and the banner goes.
  answerProbe();
  await page.waitForSelector(banner, { state: 'detached', timeout: 15_000 });
  assert.equal(await countOf(page, '#upstream .upstream-banner'), 0);
  assert.deepEqual(problems, []);
});

test('the task list in a real browser: deep links to a task, filters by error code and host, sort by tries, fetch now, clear failed', { timeout: 180_000 }, async (t) => {
  const scaffold = await browserScaffold(t, 'dashboard-tasks');
  if (scaffold === undefined) return;
  const { open, dir, origin } = scaffold;
  const service = await startService([
    '--admin-token', TOKEN,
    '--data-dir', path.join(dir, 'data'),
    '--covers-dir', path.join(dir, 'covers'),
    '--allow-private-network',
    '--allow-hosts', '127.0.0.1',
    '--retries', '1',
  ]);
  open.services.push(service);
  const client = await connect(service.wsUrl);
  open.clients.push(client);
  const ok = `${origin.url}/img/tasks-ok.jpg`;
  const broken = `${origin.url}/status/404`;
  const notImage = `${origin.url}/fake.jpg`;
  const flaky = `${origin.url}/flaky/tasks-twice.jpg?fails=1`;
  const { done } = await client.check('tasks', [ok, broken, notImage, flaky]);
  assert.deepEqual([done.ok, done.failed], [2, 2]);

  const browser = (open.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS }));
  const page: Page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems: string[] = [];
  const posts: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('request', (request) => {
    if (request.method() === 'POST') posts.push(new URL(request.url()).pathname);
  });
  const detailOpen = () => page.evaluate(() => (globalThis as unknown as { document: { querySelector(s: string): { open: boolean } | null } }).document.querySelector('#detail')?.open === true);
  const closeDetail = async () => {
    await page.click('#detail-close');
    await page.waitForSelector('#detail', { state: 'hidden' });
    // The dialog's `close` event, which lets go of the link, comes a task after it is hidden:
    // waited for (up to 5 s), so a hash set next is never taken away by it.
    await page.waitForFunction(() => !(globalThis as unknown as { location: { hash: string } }).location.hash.startsWith('#task='), undefined, { timeout: 5000 }).catch(() => undefined);
  };

  // A link to a task opens its detail, once the token is given: the tries and errors from the database.
  await page.goto(`${service.url}/admin/#task=${encodeURIComponent(broken)}`);
  await page.fill('#token', TOKEN);
  await page.click('#connect');
  await waitForText(page, '#status', 'ready');
  await page.waitForSelector('#detail[open] #detail-facts:not([hidden])');
  assert.equal(await page.textContent('#detail-url'), broken);
  assert.equal(await page.getAttribute('#detail-link', 'href'), `#task=${encodeURIComponent(broken)}`);
  const brokenTimeline = await page.$$eval('#detail-timeline li', (items) => items.map((li) => (li as unknown as PageElement).textContent ?? ''));
  assert.match(brokenTimeline.at(-1) ?? '', /error · try 1 · http_status: .*404/);
  await closeDetail();
  assert.equal(new URL(page.url()).hash, '', 'a closed detail lets go of its link');

  // The hash is hostile input: nothing but an http(s) URL opens anything, and nothing breaks.
  for (const hostile of ['#task=javascript%3Aalert(1)', '#task=%E0%A4%A', '#task=', `#task=${'%41'.repeat(9000)}`, '#task=data%3Atext%2Fhtml%2C%3Cscript%3E']) {
    await page.evaluate((hash) => void ((globalThis as unknown as { location: { hash: string } }).location.hash = hash), hostile);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(await detailOpen(), false, hostile.slice(0, 40));
  }
  // A hash set on the page (hashchange) opens the detail.
  await page.evaluate((hash) => void ((globalThis as unknown as { location: { hash: string } }).location.hash = hash), `#task=${encodeURIComponent(flaky)}`);
  await page.waitForSelector('#detail[open] #detail-facts:not([hidden])');
  assert.equal(await page.textContent('#detail-url'), flaky);
  const flakyTimeline = await page.$$eval('#detail-timeline li', (items) => items.map((li) => (li as unknown as PageElement).textContent ?? ''));
  assert.ok(flakyTimeline.some((line) => /downloading · try 1 · http_status/.test(line)), `the failed first try: ${flakyTimeline.join(' | ')}`);
  assert.match(flakyTimeline.at(-1) ?? '', /ok · try 2/);
  await closeDetail();

  // Each row of the list links to its task.
  await waitForText(page, '#tasks-page', '1–4 of 4');
  const href = await page.getAttribute(row('tasks', notImage, ' a.task-link'), 'href');
  assert.equal(href, `#task=${encodeURIComponent(notImage)}`);
  await page.click(row('tasks', notImage, ' a.task-link'));
  await page.waitForSelector('#detail[open] #detail-facts:not([hidden])');
  assert.equal(await page.textContent('#detail-url'), notImage);
  assert.match((await page.textContent('#detail-error')) ?? '', /^not_image/);
  await closeDetail();

  // Filters: by error code, by host; sorted by tries.
  await page.selectOption('#task-code', 'http_status');
  await waitForText(page, '#tasks-page', '1–1 of 1');
  assert.equal(await countOf(page, row('tasks', broken)), 1);
  await page.selectOption('#task-code', '');
  await page.fill('#task-host', 'other.example');
  await page.click('#task-go');
  await waitForText(page, '#tasks-page', 'no tasks');
  await page.fill('#task-host', '127.0.0.1');
  await page.click('#task-go');
  await waitForText(page, '#tasks-page', '1–4 of 4');
  await page.fill('#task-host', 'not a host/');
  await page.click('#task-go');
  await waitForMatch(page, '#tasks-page', /^Could not load tasks: host "not a host\/" is not a host name/);
  await page.fill('#task-host', '');
  await page.selectOption('#task-sort', 'tries');
  await waitForText(page, '#tasks-page', '1–4 of 4');
  await page.waitForFunction((url) => (globalThis as unknown as { document: { querySelector(s: string): { getAttribute(n: string): string | null } | null } }).document.querySelector('#tasks tr')?.getAttribute('data-url') === url, flaky);
  assert.equal((await page.textContent(`${row('tasks', flaky)} .tries`))?.trim(), '2');
  await page.selectOption('#task-sort', 'changed');
  await shoot(page, 'tasks-filters');

  // Fetch now: a URL the service does not take is refused with its reason; one it takes is fetched.
  await page.fill('#fetch-url', 'ftp://127.0.0.1/x.jpg');
  await page.click('#fetch-go');
  await waitForText(page, '#task-tools-result', 'Enter the http(s) URL to fetch.');
  await page.fill('#fetch-url', 'https://evil.example/x.jpg');
  await page.click('#fetch-go');
  await waitForMatch(page, '#task-tools-result', /^Not fetched: this URL is not fetched: host evil\.example is not in --allow-hosts$/);
  const fresh = `${origin.url}/img/fetched-now.jpg`;
  await page.fill('#fetch-url', fresh);
  await page.click('#fetch-go');
  await waitForText(page, '#task-tools-result', 'Fetching now: its task.');
  assert.equal(await page.getAttribute('#task-tools-result a', 'href'), `#task=${encodeURIComponent(fresh)}`);
  await page.waitForSelector(row('tasks', fresh, '[data-status="ok"]'));
  assert.equal(origin.hits.get('/img/fetched-now.jpg'), 1);
  await page.click('#fetch-go');
  await waitForText(page, '#task-tools-result', 'Stored already: its task.');

  // Clear failed asks first: "Cancel" sends nothing, "OK" forgets both failures.
  const dismissed = new Promise<string>((resolve) => page.once('dialog', (dialog) => {
    resolve(`${dialog.type()}: ${dialog.message()}`);
    void dialog.dismiss();
  }));
  await page.click('#clear-failed');
  assert.match(await dismissed, /^confirm: Forget every failed task/);
  await waitForText(page, '#task-tools-result', 'Nothing cleared.');
  assert.ok(!posts.includes('/admin/api/clear-failed'), 'nothing sent');
  const accepted = new Promise<void>((resolve) => page.once('dialog', (dialog) => void dialog.accept().then(resolve)));
  await page.click('#clear-failed');
  await accepted;
  await waitForText(page, '#task-tools-result', '2 failed tasks forgotten.');
  await waitForText(page, '#tasks-page', '1–3 of 3');
  assert.equal(await countOf(page, row('tasks', broken)), 0);
  await page.selectOption('#task-status', 'error');
  await waitForText(page, '#tasks-page', 'no tasks');
  // A link to a forgotten task says so.
  await page.evaluate((hash) => void ((globalThis as unknown as { location: { hash: string } }).location.hash = hash), `#task=${encodeURIComponent(broken)}`);
  await waitForText(page, '#detail-loading', 'Nothing is known of this URL any more.');
  await shoot(page, 'tasks-cleared');
  // The refused host filter and fetch (400) and the forgotten task (404) are the only failed loads.
  assert.deepEqual(problems.filter((p) => !/status of (400|404)/.test(p)), []);
});

async function shoot(page: Page, name: string): Promise<void> {
  await mkdir(OUTPUT, { recursive: true });
  await page.screenshot({ path: path.join(OUTPUT, `${name}.png`), fullPage: true });
}

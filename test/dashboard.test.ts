/**
 * The admin dashboard (`GET /admin`) in a real browser: Debian's Chromium driven
 * by playwright-core, against the real service process and a real origin on
 * 127.0.0.1. Skipped (never faked) where /usr/bin/chromium is not installed.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { makeImage, startOrigin } from './helpers/origin.js';
import type { Origin } from './helpers/origin.js';
import { root, startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { connect } from './helpers/wsClient.js';
import type { Frame, TestClient } from './helpers/wsClient.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'dashboard-test-token-7f3a9c';
const OUTPUT = path.join(root, 'test-output', 'dashboard');
const CUSTOM_URL = 'https://i0.hdslb.com/bfs/archive/custom-from-dashboard.jpg';
// We run as root (no sandbox); the rest keeps Chromium from calling out to the internet.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A CSS attribute selector for a row of `list` about `url` (JSON quoting is valid CSS quoting here). */
const row = (list: string, url: string, extra = '') => `#${list} li[data-url=${JSON.stringify(url)}]${extra}`;

/**
 * The little of the DOM the in-page predicates use: this project's TypeScript has
 * no DOM lib. (Predicates are functions, not strings: Playwright polls a string
 * with eval, which the page's Content-Security-Policy rightly refuses.)
 */
interface PageGlobals {
  document: { querySelector(selector: string): { textContent: string | null; complete?: boolean; naturalWidth?: number } | null };
  sessionStorage: { length: number };
}

/** Waits until the element's text (trimmed) is `text`. */
async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  await page.waitForFunction(
    ([sel, want]) => (globalThis as unknown as PageGlobals).document.querySelector(sel)?.textContent?.trim() === want,
    [selector, text] as [string, string],
  );
}

test('the admin dashboard, in a real browser', { timeout: 60_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip('Chromium not installed (/usr/bin/chromium): the browser test needs Debian\'s chromium package');
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
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('request', (request) => {
    if (!request.url().startsWith(service.url) && !request.url().startsWith(service.wsUrl.replace('/ws', ''))) problems.push(`request outside the service: ${request.url()}`);
  });

  await mkdir(OUTPUT, { recursive: true });

  await t.test('connects with the admin token and shows the status', async () => {
    await page.goto(`${service.url}/admin`);
    await page.fill('#token', TOKEN);
    await page.click('#connect');
    await waitForText(page, '#status', 'ready');
    await page.waitForSelector('#dashboard:not([hidden])');
    // The token is kept for the tab: a reload connects again by itself.
    await page.reload();
    await waitForText(page, '#status', 'ready');
    assert.equal(await page.isVisible('#login'), false);
  });

  const halfUrl = `${origin.url}/half/dashboard.jpg`;
  await t.test('shows a download running with a progress bar, then finished', async () => {
    const url = halfUrl;
    const checked = client.check('dash-1', [url]);
    // Headers and half the body are there: the download runs until release().
    await page.waitForSelector(row('running', url, ' progress'));
    assert.match((await page.textContent(row('running', url))) ?? '', /\/half\/dashboard\.jpg/);
    origin.release();
    const { done } = await checked;
    assert.equal(done.ok, 1);
    await page.waitForSelector(row('finished', url, '[data-status="ok"]'));
    assert.equal((await page.textContent(row('finished', url, ' .badge')))?.trim(), 'ok');
    await waitForText(page, '[data-stat="ok"]', '1');
    await page.waitForSelector(row('running', url), { state: 'detached' });
    assert.ok(Number(await page.getAttribute('[data-stat="checks"]', 'data-value')) >= 1);
  });

  await t.test('lists failures and finished tasks, loads them again at connect, and retries one', async () => {
    const broken = `${origin.url}/status/404`;
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
    // The flaky origin answers the second request: the retry ends ok and leaves the failures.
    await page.click(row('failures', flaky, ' button.retry'));
    await page.waitForSelector(row('finished', flaky, '[data-status="ok"]'));
    await page.waitForSelector(row('failures', flaky), { state: 'detached' });
    assert.equal(origin.hits.get('/flaky/dashboard.jpg'), 2);
  });

  await t.test('uploads a custom cover', async () => {
    const file = path.join(OUTPUT, 'custom-cover.png');
    await writeFile(file, await makeImage('custom-from-dashboard', 'png', 480, 300));
    await page.fill('#upload-url', CUSTOM_URL);
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
    const res = await fetch(href);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^image\//);
    assert.ok((await res.arrayBuffer()).byteLength > 0);
    const { done } = await client.check('dash-3', [CUSTOM_URL]);
    const [result] = done.results as Frame[];
    assert.equal(result?.status, 'ok');
    assert.equal(result?.source, 'custom');
    assert.equal(result?.coverUrl, href);
  });

  await t.test('pauses and resumes', async () => {
    await page.click('#pause');
    await waitForText(page, '#status', 'paused');
    await page.click('#resume');
    await waitForText(page, '#status', 'ready');
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

  await t.test('saves a screenshot and logged no errors', async () => {
    const file = path.join(OUTPUT, 'dashboard.png');
    await page.screenshot({ path: file, fullPage: true });
    assert.ok((await stat(file)).size > 0);
    assert.deepEqual(problems, []);
  });
});

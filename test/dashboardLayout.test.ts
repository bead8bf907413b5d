/**
 * The admin dashboard's layout and its figures, in Debian's Chromium against the
 * real service process and a real origin on 127.0.0.1 (skipped, never faked,
 * where /usr/bin/chromium is missing):
 *
 * - at 1440×900 and at 390×844, with 300 tasks of 300-character URLs, running,
 *   held and failed downloads, an archive job and the detail view open, nothing
 *   is wider than the viewport, no two cells of a task row overlap, the detail's
 *   Close button stays in the viewport, and URLs are shortened in the middle
 *   (host …, file name) with the whole URL in the title and the detail;
 * - every figure the page shows twice comes from one source: the counters, the
 *   Downloading and Waiting panels and the Nodes rows agree at the same frame,
 *   through downloads, a pause and (on PostgreSQL, two nodes) a node killed,
 *   which shows no work once it is gone;
 * - paused and tardy are banners that say since when and why (tardy: the limit
 *   passed).
 *
 * The two-node parts run when COVERHELPER_TEST_PG is set. Screenshots land in
 * test-output/dashboard-layout/ (git-ignored).
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { nodeJson } from '../src/admin/adminApi.js';
import { browserScaffold, launchChromium, layoutProblems, openDashboard, rectOf, waitForMatch, waitForText } from './helpers/browser.js';
import type { PageGlobals } from './helpers/browser.js';
import { waitUntil } from './helpers/db.js';
import { root, startService } from './helpers/service.js';
import { freshPgDatabase, testPg } from './helpers/stores.js';
import { connect } from './helpers/wsClient.js';
import type { Frame, TestClient } from './helpers/wsClient.js';
import type { NodesAnswer } from '../src/wire/adminStream.js';

const TOKEN = 'dashboard-layout-token-4b1e';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const OUTPUT = path.join(root, 'test-output', 'dashboard-layout');
const VIEWPORTS = [
  { name: 'desktop', width: 1440, height: 900 },
  { name: 'phone', width: 390, height: 844 },
] as const;

/** A URL of exactly `length` characters under `base` whose end (the file name) tells it apart. */
function longUrl(base: string, kind: string, i: number, length = 300): string {
  const head = `${base}/${kind}/a-shared-and-rather-long-prefix/`;
  const tail = `/cover-${String(i).padStart(3, '0')}.jpg`;
  const room = length - head.length - tail.length;
  assert.ok(room > 0);
  const filler = Array.from({ length: Math.ceil(room / 20) }, (_, k) => `segment-${String(k).padStart(2, '0')}-abcdefghi/`).join('').slice(0, room);
  return head + filler.replace(/\/$/, 'x') + tail;
}

interface Figures {
  now: { downloading: number; queued: number; held: number };
  running: { count: number; rows: number };
  waiting: { count: number; queued: number; held: number; rows: number };
  nodes: { id: string; status: string; queued: number; downloading: number }[];
  unassigned: number;
  hint: string;
}

/** Every figure the page shows of the unfinished tasks, read in one go (one frame). */
function figures(page: Page): Promise<Figures> {
  return page.evaluate(() => {
    const g = globalThis as unknown as {
      document: { querySelector(s: string): { textContent: string | null } | null; querySelectorAll(s: string): ArrayLike<{ dataset: Record<string, string | undefined>; querySelector(s: string): { textContent: string | null } | null }> };
    };
    const n = (selector: string) => Number(g.document.querySelector(selector)?.textContent?.trim() ?? 'NaN');
    const hint = g.document.querySelector('#nodes-hint')?.textContent ?? '';
    return {
      now: { downloading: n('[data-now="downloading"]'), queued: n('[data-now="queued"]'), held: n('[data-now="held"]') },
      running: { count: n('#running-count'), rows: g.document.querySelectorAll('#running > li').length },
      waiting: { count: n('#queue-count'), queued: n('#queued-count'), held: n('#waiting-count'), rows: g.document.querySelectorAll('#queue > li').length },
      nodes: Array.from(g.document.querySelectorAll('#nodes > tr')).map((tr) => ({
        id: tr.dataset.node ?? '',
        status: tr.querySelector('.badge')?.textContent?.trim() ?? '',
        queued: Number(tr.querySelector('.queued')?.textContent ?? 'NaN'),
        downloading: Number(tr.querySelector('.downloading')?.textContent ?? 'NaN'),
      })),
      unassigned: Number(/(\d+) unfinished tasks? (is|are) held by no live node/.exec(hint)?.[1] ?? 0),
      hint,
    };
  });
}

/**
 * The figures agree with each other (the same frame: one source). `unassigned`
 * downloads are in the Downloading panel but held by no live node (a gone one's).
 */
function assertAgree(f: Figures, what: string, unassignedDownloads = 0): void {
  const say = `${what}: ${JSON.stringify(f)}`;
  assert.equal(f.now.downloading, f.running.count, `Downloading counter = Downloading panel (${say})`);
  assert.equal(f.running.rows, f.running.count, say);
  assert.equal(f.now.queued, f.waiting.queued, `Queued counter = the Waiting panel's queued (${say})`);
  assert.equal(f.now.held, f.waiting.held, `Held counter = the Waiting panel's held (${say})`);
  assert.equal(f.waiting.count, f.waiting.queued + f.waiting.held, say);
  assert.equal(f.nodes.reduce((sum, n) => sum + n.downloading, 0) + unassignedDownloads, f.now.downloading, `the Nodes rows' downloading add up to the counter (${say})`);
  assert.equal(
    f.nodes.reduce((sum, n) => sum + n.queued + n.downloading, 0) + f.unassigned,
    f.now.downloading + f.now.queued + f.now.held,
    `the Nodes rows (and the tasks no live node holds) add up to the counters (${say})`,
  );
  for (const n of f.nodes) if (n.status === 'gone' || n.status === 'stopped') assert.deepEqual([n.queued, n.downloading], [0, 0], `a ${n.status} node holds no work (${say})`);
}

test('nodeJson: a gone or stopped node holds no work; live figures for this node; paused holds every live node', () => {
  const row = { id: 'n1', startedAt: 1_000, lastSeen: 10_000, queued: 20, downloading: 10, status: 'ready' };
  assert.deepEqual(
    [nodeJson(row, 10_500, 2_000).queued, nodeJson(row, 10_500, 2_000).downloading, nodeJson(row, 10_500, 2_000).status],
    [20, 10, 'ready'],
    'alive: what it said at its last heartbeat',
  );
  const gone = nodeJson(row, 20_000, 2_000);
  assert.deepEqual([gone.status, gone.queued, gone.downloading], ['gone', 0, 0], 'a killed node keeps nothing');
  const stopped = nodeJson({ ...row, status: 'stopped' }, 10_500, 2_000);
  assert.deepEqual([stopped.status, stopped.queued, stopped.downloading], ['stopped', 0, 0]);
  const live = nodeJson(row, 10_500, 2_000, { status: 'paused', queued: 0, downloading: 1 });
  assert.deepEqual([live.status, live.queued, live.downloading], ['paused', 0, 1], "this node: its gate and counts now");
  assert.equal(nodeJson(row, 10_500, 2_000, undefined, true).status, 'paused', 'the stored pause holds every live node');
  assert.equal(nodeJson(row, 20_000, 2_000, undefined, true).status, 'gone');
});

test('the dashboard layout at 1440×900 and 390×844: 300 tasks of 300-character URLs, the detail open, two nodes and a job (real browser)', { timeout: 300_000 }, async (t) => {
  const scaffold = await browserScaffold(t, 'layout');
  if (scaffold === undefined) return;
  const { open, dir, origin } = scaffold;
  await mkdir(OUTPUT, { recursive: true });
  // Two nodes on one PostgreSQL database when there is one; else one node on SQLite.
  const db = testPg ? await freshPgDatabase(t) : undefined;
  const common = ['--admin-token', TOKEN, '--callback-secret', 'layout-callback-secret', '--covers-dir', path.join(dir, 'covers'), '--allow-private-network', '--allow-hosts', '127.0.0.1', '--retries', '0', '--workers', '4', ...(db ? ['--db', db, '--lease', '3'] : [])];
  const a = await startService([...common, '--data-dir', path.join(dir, 'a'), ...(db ? ['--node-id', 'node-a-with-a-rather-long-name'] : [])]);
  open.services.push(a);
  if (db) open.services.push(await startService([...common, '--data-dir', path.join(dir, 'b'), '--node-id', 'node-b-with-a-rather-long-name']));
  const client = await connect(a.wsUrl);
  open.clients.push(client);

  // 300 stored covers behind 300-character URLs that differ only at the end.
  const urls = Array.from({ length: 300 }, (_, i) => longUrl(origin.url, 'img', i));
  for (const u of urls) assert.equal(u.length, 300);
  for (let i = 0; i < urls.length; i += 100) {
    const { done } = await client.check(`layout-${i}`, urls.slice(i, i + 100), 120_000);
    assert.equal(done.ok, 100);
  }
  // Long URLs in every list: two downloads held mid-body, a failure, an archive job, held ones.
  const running = [0, 1].map((i) => longUrl(origin.url, 'half', i));
  const held = client.check('layout-running', running, 240_000);
  const failed = `${origin.url}/status/500?${'why-it-failed-'.repeat(20)}`.slice(0, 300);
  await client.check('layout-failed', [failed]);
  const job = await fetch(`${a.url}/api/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: `a job with a long name ${'x'.repeat(120)}`, urls: urls.slice(0, 3) }) });
  assert.equal(job.status, 201);

  const browser = (open.browser = await launchChromium());
  for (const viewport of VIEWPORTS) {
    await t.test(`${viewport.name} (${viewport.width}×${viewport.height})`, async () => {
      const context = await browser.newContext({ viewport: { width: viewport.width, height: viewport.height } });
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      try {
        await openDashboard(page, a.url, TOKEN);
        await page.waitForSelector('#running > li:nth-child(2)');
        await page.waitForSelector('#jobs > li');
        await page.waitForSelector('#failures > li');
        await waitUntil(() => countNodes(page, db ? 2 : 1), 'the nodes listed', 20_000);
        await page.selectOption('#task-limit', '100');
        await waitForMatch(page, '#tasks-page', /^1–100 of \d+$/);
        await page.waitForFunction(() => (globalThis as unknown as { document: { querySelectorAll(s: string): { length: number } } }).document.querySelectorAll('#tasks > tr').length === 100);

        assert.deepEqual(await layoutProblems(page), [], 'the page fits the viewport, no cells or rows overlap');
        const width = await page.evaluate(() => (globalThis as unknown as PageGlobals).document.documentElement.scrollWidth);
        assert.ok(width <= viewport.width, `scrollWidth ${width} <= ${viewport.width}`);

        // Every URL is shortened in the middle, the whole in its title, and no two rows look the same.
        const shown = await page.evaluate(() =>
          Array.from((globalThis as unknown as PageGlobals).document.querySelectorAll('#tasks button.url-button, #running button.url-button, #failures button.url-button')).map((b) => ({ text: b.textContent ?? '', title: b.title })),
        );
        assert.ok(shown.length >= 103, `${shown.length} URLs shown`);
        const host = new URL(origin.url).host;
        for (const { text, title } of shown) {
          assert.equal(title.length, 300, `the title holds the whole URL: ${title}`);
          assert.ok(text.length < 100, `shortened: ${text}`);
          assert.ok(text.startsWith(`${host}/…`), `host first, then …: ${text}`);
          const file = /\/(cover-\d{3}\.jpg)$/.exec(title)?.[1];
          if (file) assert.ok(text.endsWith(file), `ends with the file name ${file}: ${text}`);
        }
        const taskTexts = shown.filter((s) => /\/img\/.*cover-\d{3}\.jpg$/.test(s.title)).map((s) => s.text);
        assert.equal(new Set(taskTexts).size, taskTexts.length, 'URLs with the same beginning still look different');
        // On screen too: the file name of the first row is inside its cell, not cut off.
        const tail = await rectOf(page, '#tasks > tr:first-child .url-tail bdi');
        const cell = await rectOf(page, '#tasks > tr:first-child td.url-cell');
        assert.ok(tail && cell && tail.right <= cell.right + 0.5 && tail.left >= cell.left - 0.5, `the file name is in sight: ${JSON.stringify({ tail, cell })}`);
        await page.screenshot({ path: path.join(OUTPUT, `${viewport.name}.png`), fullPage: true });

        // The detail of a long URL: the whole URL, and Close in the viewport (also scrolled to its end).
        const target = urls[299]!;
        await page.click(`#tasks > tr[data-url=${JSON.stringify(target)}] button.url-button`);
        await page.waitForSelector('#detail[open] #detail-facts:not([hidden])');
        assert.equal((await page.textContent('#detail-url'))?.trim(), target);
        assert.match((await page.textContent('#detail-bytes')) ?? '', /^\d+(\.\d)? (B|KB) downloaded · stored \d+(\.\d)? (B|KB)$/);
        for (const end of ['top', 'bottom'] as const) {
          if (end === 'bottom') await page.evaluate(() => (globalThis as unknown as { document: { querySelector(s: string): { scrollTop: number; scrollHeight: number } } }).document.querySelector('#detail').scrollTop = 1e6);
          const close = await rectOf(page, '#detail-close');
          assert.ok(close, 'Close is shown');
          assert.ok(close.left >= 0 && close.top >= 0 && close.right <= viewport.width && close.bottom <= viewport.height, `Close inside the ${viewport.width}×${viewport.height} viewport (${end}): ${JSON.stringify(close)}`);
        }
        assert.deepEqual(await layoutProblems(page), [], 'with the detail open');
        await page.evaluate(() => (globalThis as unknown as { document: { querySelector(s: string): { scrollTop: number } } }).document.querySelector('#detail').scrollTop = 0);
        await page.screenshot({ path: path.join(OUTPUT, `${viewport.name}-detail.png`) });
        await page.click('#detail-close');
        await page.waitForSelector('#detail', { state: 'hidden' });
        assert.deepEqual(errors, []);
      } finally {
        await context.close();
      }
    });
  }
  origin.release();
  assert.equal((await held).done.ok, 2);
});

/** Whether the Nodes table lists `n` nodes. */
async function countNodes(page: Page, n: number): Promise<boolean> {
  return (await page.evaluate(() => (globalThis as unknown as PageGlobals).document.querySelectorAll('#nodes > tr').length)) === n;
}

test('one source for every figure shown twice: downloads, a pause, a node killed; paused and tardy banners say since when and why (real browser)', { timeout: 300_000 }, async (t) => {
  const scaffold = await browserScaffold(t, 'figures');
  if (scaffold === undefined) return;
  const { open, dir, origin } = scaffold;
  await mkdir(OUTPUT, { recursive: true });
  const db = testPg ? await freshPgDatabase(t) : undefined;
  const common = ['--admin-token', TOKEN, '--callback-secret', 'layout-callback-secret', '--covers-dir', path.join(dir, 'covers'), '--allow-private-network', '--allow-hosts', '127.0.0.1', '--retries', '0', '--workers', '2', '--time-limit', '600', ...(db ? ['--db', db, '--lease', '2'] : [])];
  const a = await startService([...common, '--data-dir', path.join(dir, 'a'), ...(db ? ['--node-id', 'node-a'] : [])]);
  open.services.push(a);
  const clientA = await connect(a.wsUrl);
  open.clients.push(clientA);
  const browser = (open.browser = await launchChromium());
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  await openDashboard(page, a.url, TOKEN);
  await waitUntil(() => countNodes(page, 1), 'this node listed', 20_000);

  await t.test('failure counters are not red at 0', async () => {
    await waitForText(page, '[data-total="error"]', '0');
    await waitForText(page, '[data-stat="error"]', '0');
    const colors = await page.evaluate(() => {
      const g = (globalThis as unknown as PageGlobals);
      const color = (s: string) => g.getComputedStyle(g.document.querySelector(s)!).color;
      return { failed: color('[data-total="error"]'), tle: color('[data-stat="tle"]'), plain: color('[data-total="covers"]') };
    });
    assert.equal(colors.failed, colors.plain);
    assert.equal(colors.tle, colors.plain);
  });

  // Downloads: two running (held by the origin mid-body), the rest queued for the two workers.
  const runningA = [0, 1].map((i) => `${origin.url}/half/figures-a-${i}.jpg`);
  const queuedA = [0, 1, 2].map((i) => `${origin.url}/img/figures-queued-${i}.jpg`);
  const checkedA = clientA.check('figures-a', [...runningA, ...queuedA], 240_000);
  const finishing: ReturnType<TestClient['check']>[] = [];

  await t.test('downloads: counters, panels and the Nodes row agree', async () => {
    await page.waitForSelector('#running > li:nth-child(2)');
    await waitForText(page, '#queued-count', '3');
    await waitForText(page, `#nodes > tr .downloading`, '2', 15_000);
    const f = await figures(page);
    assertAgree(f, 'downloads');
    assert.deepEqual(f.now, { downloading: 2, queued: 3, held: 0 });
    assert.deepEqual([f.nodes[0]?.status, f.nodes[0]?.downloading, f.nodes[0]?.queued], ['ready', 2, 3]);
  });

  await t.test('a pause: a banner with since when and why; held tasks counted once; the Nodes row says paused', async () => {
    const before = Date.now();
    await page.click('#pause');
    await waitForText(page, '#status', 'paused');
    const text = await waitForMatch(page, '#gate-banner', /^Downloads are paused since \d\d:\d\d:\d\d \(\d+ s ago\): paused by the administrator on node \S+\. New downloads wait \(held\) until Resume\.$/);
    assert.doesNotMatch(text, /tardy/);
    const nodes = (await (await fetch(`${a.url}/admin/api/nodes`, { headers: AUTH })).json()) as NodesAnswer;
    assert.match(text, new RegExp(`on node ${nodes.self.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.`));
    assert.equal(nodes.nodes.find((n) => n.id === nodes.self)?.status, 'paused', 'the API says paused at once, not at the next heartbeat');
    const heldUrls = [0, 1].map((i) => `${origin.url}/img/figures-held-${i}.jpg`);
    const heldCheck = clientA.check('figures-held', heldUrls, 240_000);
    await page.waitForFunction(() => Number((globalThis as unknown as PageGlobals).document.querySelector('#waiting-count')?.textContent) === 5, undefined, { timeout: 15_000 }).catch(async (error: unknown) => {
      throw new Error(`${String(error)}: ${JSON.stringify(await figures(page))}`);
    });
    await waitForText(page, '#held-label', 'held (paused)');
    await waitForText(page, `#nodes > tr .badge`, 'paused');
    const f = await figures(page);
    assertAgree(f, 'paused');
    // Paused, the queued ones are held too.
    assert.deepEqual(f.now, { downloading: 2, queued: 0, held: 5 });
    // The stream carries since (ISO) and why.
    const admin = await connect(`${a.wsUrl.replace(/\/ws$/, '/admin/ws')}?token=${TOKEN}`);
    open.clients.push(admin);
    const snapshot = await admin.next((frame) => frame.type === 'snapshot');
    assert.equal(snapshot.status, 'paused');
    assert.ok(Date.parse(String(snapshot.since)) >= before - 1000 && Date.parse(String(snapshot.since)) <= Date.now(), `since ${String(snapshot.since)}`);
    assert.match(String(snapshot.why), /^paused by the administrator on node /);
    const stats = await admin.next((frame) => frame.type === 'stats');
    assert.equal(stats.since, snapshot.since);
    await page.screenshot({ path: path.join(OUTPUT, 'paused.png'), fullPage: true });
    await page.click('#resume');
    await waitForText(page, '#status', 'ready');
    await page.waitForSelector('#gate-banner', { state: 'hidden' });
    await waitForText(page, '#waiting-count', '0');
    assertAgree(await figures(page), 'resumed');
    finishing.push(heldCheck);
  });

  await t.test('two nodes: a node killed shows no work once gone, and the figures still agree', { skip: db ? false : 'needs COVERHELPER_TEST_PG (two nodes on one PostgreSQL database)' }, async () => {
    const b = await startService([...common, '--data-dir', path.join(dir, 'b'), '--node-id', 'node-b']);
    open.services.push(b);
    const clientB = await connect(b.wsUrl);
    open.clients.push(clientB);
    const runningB = [0, 1].map((i) => `${origin.url}/half/figures-b-${i}.jpg`);
    const queuedB = [0, 1].map((i) => `${origin.url}/img/figures-b-queued-${i}.jpg`);
    void clientB.check('figures-b', [...runningB, ...queuedB], 240_000).catch(() => undefined);
    await waitUntil(() => countNodes(page, 2), 'both nodes listed', 20_000);
    await waitForText(page, '#nodes > tr[data-node="node-b"] .downloading', '2', 20_000);
    let f = await figures(page);
    assertAgree(f, 'two nodes');
    assert.equal(f.nodes.find((n) => n.id === 'node-b')?.downloading, 2);
    assert.match(f.hint, /^2 of 2 nodes alive/);

    await b.kill();
    await waitForText(page, '#nodes > tr[data-node="node-b"] .badge', 'gone', 30_000);
    f = await figures(page);
    const gone = f.nodes.find((n) => n.id === 'node-b');
    assert.deepEqual([gone?.queued, gone?.downloading], [0, 0], 'a killed node keeps no work');
    const goneDownloads = await page.evaluate(() =>
      Array.from((globalThis as unknown as PageGlobals).document.querySelectorAll('#running > li')).filter((li) => /on node-b/.test(li.querySelector('.node')?.textContent ?? '')).length,
    );
    assertAgree(f, 'node-b gone', goneDownloads);
    const api = (await (await fetch(`${a.url}/admin/api/nodes`, { headers: AUTH })).json()) as NodesAnswer;
    const row = api.nodes.find((n) => n.id === 'node-b');
    assert.deepEqual([row?.status, row?.queued, row?.downloading], ['gone', 0, 0]);
    await page.screenshot({ path: path.join(OUTPUT, 'node-gone.png'), fullPage: true });
  });

  // The held downloads finish, and so does everything queued behind them.
  origin.release();
  assert.equal((await checkedA).done.ok, 5);
  for (const check of finishing) assert.equal((await check).done.ok, 2);
  await page.close();

  await t.test('tardy: a banner with since when and why, naming the limit passed', async () => {
    const tardy = await startService(['--admin-token', TOKEN, '--data-dir', path.join(dir, 'tardy'), '--covers-dir', path.join(dir, 'tardy-covers'), '--mem-limit', '1']);
    open.services.push(tardy);
    const other = await browser.newPage({ viewport: { width: 390, height: 844 } });
    try {
      await openDashboard(other, tardy.url, TOKEN);
      await waitForText(other, '#status', 'tardy');
      // Memory is named; on a busy machine another limit (the load's) may be named beside it.
      const text = await waitForMatch(other, '#gate-banner', /^Downloads are held: the service is tardy since \d\d:\d\d:\d\d \(\d+ (s|min \d+ s) ago\), over a resource limit: (.+; )?memory [\d.]+% used > --mem-limit 1%(; .+)?\. New downloads wait \(held\) until it is back under its limits\.$/);
      assert.doesNotMatch(text, /paused/);
      assert.doesNotMatch((await other.textContent('#h-queue'))! + (await other.textContent('.queue-counts'))!, /held while paused/);
      await waitForText(other, '#held-label', 'held (tardy: over a resource limit)');
      assert.deepEqual(await layoutProblems(other), []);
      await other.screenshot({ path: path.join(OUTPUT, 'tardy-phone.png'), fullPage: true });
    } finally {
      await other.close();
    }
  });
});

export type { Frame };

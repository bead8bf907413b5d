/**
 * The proxy prefix (`/?url=`, `/proxy/`) against the real service process:
 * URLs built exactly as `<prefix><cover URL>` string concatenation builds them,
 * bytes with cache headers, one origin request for many askers, not an open
 * proxy, a clean box on failure, a per-address limit on the downloads started,
 * and the home page. The page test (an `<img>` and a CSS background in headless
 * Chromium) runs where /usr/bin/chromium is installed, and is skipped with a
 * message elsewhere (never faked).
 */
import { TestClock } from '../src/clock.js';
import { startInProcess } from './helpers/inProcess.js';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { startOrigin } from './helpers/origin.js';
import { relaxedLimits, runService, startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { ErrorBody } from '../src/wire/door.js';

type TestContext = Parameters<typeof tempDir>[0];
const CHROMIUM = '/usr/bin/chromium';

async function setup(t: TestContext, extra: string[] = []) {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const dir = await tempDir(t);
  const service = await startService([
    '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'),
    '--allow-private-network', '--allow-hosts', '127.0.0.1', '--bilibili-api', origin.url, '--retries', '0', ...relaxedLimits, ...extra,
  ]);
  t.after(async () => void (await service.stop()));
  const get = (url: string, init: RequestInit = {}) => fetch(url, { redirect: 'manual', ...init });
  return { origin, service, dir, get };
}

/**
 * The forms of one cover URL on an http origin that plugins write after a
 * prefix: as it is, encoded once, encoded twice. (`//host/…` and `host/…` are
 * taken as https, which a loopback origin does not serve: test/proxyUrl.test.ts
 * shows they become the same https URL.)
 */
function forms(cover: string): string[] {
  return [cover, encodeURIComponent(cover), encodeURIComponent(encodeURIComponent(cover))];
}

describe('the proxy prefix', () => {
  it('answers both shapes, encoded or not, with the image bytes, Content-Type, ETag, 304, Cache-Control and HEAD', async (t) => {
    const { origin, service, get } = await setup(t, ['--proxy-max-age', '1234']);
    const cover = `${origin.url}/img/proxy-a.jpg`;
    const direct = Buffer.from(await (await fetch(cover)).arrayBuffer());
    let etag = '';
    for (const prefix of [`${service.url}/?url=`, `${service.url}/proxy/`]) {
      for (const form of forms(cover)) {
        const response = await get(prefix + form);
        assert.equal(response.status, 200, `${prefix}${form}`);
        assert.equal(response.headers.get('content-type'), 'image/jpeg');
        assert.equal(response.headers.get('cache-control'), 'public, max-age=1234');
        assert.equal(response.headers.get('location'), null, 'bytes, not a redirect');
        const body = Buffer.from(await response.arrayBuffer());
        assert.ok(body.length > 0 && body[0] === 0xff && body[1] === 0xd8, 'a JPEG');
        etag = response.headers.get('etag') ?? '';
        assert.ok(etag.length > 2);
      }
    }
    // Every form is one stored cover: one origin request (and the test's own).
    assert.equal(origin.hits.get('/img/proxy-a.jpg'), 2);
    assert.ok(direct.length > 0);
    // A bilibili suffix that cannot be read is part of the URL: fetched as the CDN serves it, stored as its own cover.
    const suffixed = await get(`${service.url}/proxy/${cover}@220W_280H.webp`);
    assert.equal(suffixed.status, 200);
    assert.equal(origin.hits.get('/img/proxy-a.jpg@220W_280H.webp'), 1);
    // A raw cover with its own query after `url=` keeps it (a weserv name is the proxy's).
    const withQuery = await get(`${service.url}/?url=${origin.url}/img/proxy-q.jpg?size=big&w=10`);
    assert.equal(withQuery.status, 200);
    assert.equal(origin.requests.find((r) => r.path === '/img/proxy-q.jpg') !== undefined, true);
    const notModified = await get(`${service.url}/?url=${encodeURIComponent(cover)}`, { headers: { 'if-none-match': etag } });
    assert.equal(notModified.status, 304);
    const head = await get(`${service.url}/proxy/${cover}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-type'), 'image/jpeg');
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  });

  it('answers a bilibili video page URL with its cover, resolved as on /ws', async (t) => {
    const { origin, service, get } = await setup(t);
    origin.videos.set('BV1xx411c7mD', { code: 0, message: '0', data: { pic: `${origin.url}/img/proxy-video.jpg` } });
    const page = 'https://www.bilibili.com/video/BV1xx411c7mD/?spm_id_from=333.999';
    for (const prefix of [`${service.url}/?url=`, `${service.url}/proxy/`]) {
      const response = await get(prefix + (prefix.endsWith('=') ? encodeURIComponent(page) : page));
      assert.equal(response.status, 200, prefix);
      assert.equal(response.headers.get('content-type'), 'image/jpeg');
    }
    assert.equal(origin.hits.get('/img/proxy-video.jpg'), 1);
  });

  it('applies the weserv size and format parameters and names only the ones it does not apply (sizes checked in proxyVariants.test.ts)', async (t) => {
    const { origin, service, get } = await setup(t);
    const cover = `${origin.url}/img/proxy-params.jpg`;
    const response = await get(`${service.url}/?url=${encodeURIComponent(cover)}&w=200&h=100&output=webp&n=-1`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'image/webp');
    assert.equal(response.headers.get('x-coverhelper-ignored'), 'n');
    const plain = await get(`${service.url}/proxy/${cover}`);
    assert.equal(plain.headers.get('content-type'), 'image/jpeg');
    assert.equal(plain.headers.get('x-coverhelper-ignored'), null);
  });

  it('makes one origin request for 50 concurrent requests of a new cover', async (t) => {
    const { origin, service, get } = await setup(t);
    origin.delayMs = 300;
    const cover = `${origin.url}/img/proxy-herd.jpg`;
    const responses = await Promise.all(Array.from({ length: 50 }, (_, i) => get(i % 2 ? `${service.url}/proxy/${cover}` : `${service.url}/?url=${encodeURIComponent(cover)}`)));
    assert.deepEqual([...new Set(responses.map((r) => r.status))], [200]);
    for (const response of responses) assert.ok((await response.arrayBuffer()).byteLength > 0);
    assert.equal(origin.hits.get('/img/proxy-herd.jpg'), 1);
  });

  it('is not an open proxy: other hosts, private addresses and other schemes are 403 not_allowed with no connection made', async (t) => {
    const { origin, service, get } = await setup(t);
    for (const target of ['https://example.com/a.jpg', 'file:///etc/passwd', 'data:image/png;base64,AAAA', 'javascript:alert(1)', 'ftp://127.0.0.1/a.jpg']) {
      for (const prefix of [`${service.url}/?url=`, `${service.url}/proxy/`]) {
        const response = await get(prefix + encodeURIComponent(target));
        assert.equal(response.status, 403, `${prefix}${target}`);
        assert.equal(((await response.json()) as ErrorBody).code, 'not_allowed');
      }
    }
    assert.equal(origin.total(), 0, 'no connection made');
    // The paths shadow no other route.
    assert.equal((await get(`${service.url}/healthz`)).status, 200);
    assert.equal((await get(`${service.url}/covers/nothing.jpg`)).status, 404);
    assert.equal((await get(`${service.url}/proxyx`)).status, 404);
  });

  it('answers a cover that cannot be had with the placeholder, default= with a redirect, and --placeholder none with 502 JSON', async (t) => {
    const { origin, service, get } = await setup(t);
    const missing = `${origin.url}/status/404`;
    const boxed = await get(`${service.url}/?url=${encodeURIComponent(missing)}`);
    assert.equal(boxed.status, 200);
    assert.equal(boxed.headers.get('cache-control'), 'no-store');
    assert.equal(boxed.headers.get('x-coverhelper-error'), 'http_status');
    assert.match(boxed.headers.get('content-type') ?? '', /^image\//);
    assert.ok((await boxed.arrayBuffer()).byteLength > 0);
    // A remembered failure answers at once, with no second origin request.
    const again = await get(`${service.url}/proxy/${missing}`);
    assert.equal(again.headers.get('x-coverhelper-error'), 'http_status');
    assert.equal(origin.hits.get('/status/404'), 1);
    const fallback = `${origin.url}/img/fallback.jpg`;
    const redirected = await get(`${service.url}/?url=${encodeURIComponent(missing)}&default=${encodeURIComponent(fallback)}`);
    assert.equal(redirected.status, 302);
    assert.equal(redirected.headers.get('location'), fallback);
    // A default= that is not allowed is not followed: the placeholder instead.
    const refused = await get(`${service.url}/?url=${encodeURIComponent(missing)}&default=${encodeURIComponent('https://evil.example/x.jpg')}`);
    assert.equal(refused.status, 200);
    assert.equal(refused.headers.get('x-coverhelper-error'), 'http_status');

    const bare = await setup(t, ['--placeholder', 'none']);
    const json = await bare.get(`${bare.service.url}/?url=${encodeURIComponent(`${bare.origin.url}/status/404`)}`);
    assert.equal(json.status, 502);
    assert.equal(json.headers.get('cache-control'), 'no-store');
    assert.equal(((await json.json()) as ErrorBody).code, 'http_status');
  });

  it('lets one address start at most --proxy-rate downloads, then 429 with Retry-After; stored covers are never limited', async (t) => {
    const { origin, service, get } = await setup(t, ['--proxy-rate', '3']);
    const urls = Array.from({ length: 4 }, (_, i) => `${service.url}/?url=${encodeURIComponent(`${origin.url}/img/rate-${i}.jpg`)}`);
    for (const url of urls.slice(0, 3)) assert.equal((await get(url)).status, 200);
    const refused = await get(urls[3]!);
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers.get('retry-after')) > 0);
    assert.equal(origin.hits.get('/img/rate-3.jpg'), undefined, 'nothing was started for it');
    for (let i = 0; i < 20; i++) assert.equal((await get(urls[i % 3]!)).status, 200, 'stored covers are answered past the limit');
  });

  it('on the test clock (in process): the address refused past --proxy-rate starts again exactly at Retry-After, not a second before', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const clock = new TestClock();
    const { app } = await startInProcess(t, ['--proxy-rate', '3', '--retries', '0', '--bilibili-api', origin.url], clock);
    const url = (i: number) => `${app.url}/?url=${encodeURIComponent(`${origin.url}/img/clocked-rate-${i}.jpg`)}`;
    const get = async (i: number) => {
      const response = await fetch(url(i), { redirect: 'manual' });
      await response.arrayBuffer();
      return response;
    };
    for (let i = 0; i < 3; i++) {
      assert.equal((await get(i)).status, 200);
      await clock.advance(60_000);
    }
    const refused = await get(3);
    assert.equal(refused.status, 429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    assert.ok(retryAfter > 0 && retryAfter <= 600, `Retry-After ${retryAfter}`);
    await clock.advance(retryAfter * 1000 - 1000);
    assert.equal((await get(3)).status, 429, 'a second early');
    assert.equal(origin.hits.get('/img/clocked-rate-3.jpg'), undefined, 'nothing started for it');
    await clock.advance(1000);
    assert.equal((await get(3)).status, 200, 'allowed at Retry-After');
    assert.equal(origin.hits.get('/img/clocked-rate-3.jpg'), 1);
  });

  it('a flood of distinct uncached proxy URLs from one address leaves another client answered as soon as its download ends, and RSS bounded', async (t) => {
    const { origin, service, get } = await setup(t, ['--proxy-rate', '100', '--workers', '2']);
    origin.delayMs = 400;
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${service.child.pid}/status`, 'utf8'))![1]) * 1024;
    const before = rss();
    const statuses = new Map<number, number>();
    let next = 0;
    const flood = async () => {
      while (next < 3000) {
        const i = next++;
        const response = await get(`${service.url}/?url=${encodeURIComponent(`${origin.url}/img/flood-${i}.jpg`)}`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
        const status = response?.status ?? 0;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        await response?.arrayBuffer().catch(() => undefined);
      }
    };
    const flooding = Promise.all(Array.from({ length: 50 }, flood));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const client = await connect(service.wsUrl);
    const started = Date.now();
    const { done } = await client.check('beside-flood', [`${origin.url}/img/beside-flood.jpg`], 30_000);
    const ms = Date.now() - started;
    await client.close();
    await flooding;
    const after = rss();
    t.diagnostic(`statuses ${JSON.stringify([...statuses])}; fresh check ${ms} ms; RSS ${Math.round(before / 2 ** 20)} → ${Math.round(after / 2 ** 20)} MB; origin ${origin.total()}`);
    assert.equal(done.ok, 1);
    assert.ok(ms < 2 * 400 + 2000, `the other client's check took ${ms} ms beside the flood`);
    assert.ok((statuses.get(429) ?? 0) > 2000, 'the flood was refused past --proxy-rate');
    assert.ok(origin.total() <= 110, `${origin.total()} origin requests: at most --proxy-rate started`);
    assert.ok(after - before < 100 * 2 ** 20, `RSS grew by ${Math.round((after - before) / 2 ** 20)} MB`);
  });

  it('counts a client behind a --trust-proxy peer by X-Forwarded-For, and believes the header from no one else', async (t) => {
    const trusting = await setup(t, ['--proxy-rate', '1', '--trust-proxy', '127.0.0.1']);
    const ask = (env: typeof trusting, name: string, forwarded: string) =>
      env.get(`${env.service.url}/?url=${encodeURIComponent(`${env.origin.url}/img/${name}.jpg`)}`, { headers: { 'x-forwarded-for': forwarded } });
    assert.equal((await ask(trusting, 'xff-a1', '203.0.113.5')).status, 200);
    assert.equal((await ask(trusting, 'xff-a2', '203.0.113.5')).status, 429, 'the same client behind the proxy');
    assert.equal((await ask(trusting, 'xff-b1', '198.51.100.7')).status, 200, 'another client behind the proxy');
    // A peer that is not trusted: its X-Forwarded-For is ignored, and every request counts against the peer.
    const plain = await setup(t, ['--proxy-rate', '1']);
    assert.equal((await ask(plain, 'xff-c1', '203.0.113.5')).status, 200);
    assert.equal((await ask(plain, 'xff-c2', '198.51.100.7')).status, 429);
  });

  it('with --proxy off answers 404 on both paths; with --allow-hosts * it refuses to start unless --proxy open', async (t) => {
    const { origin, service, get } = await setup(t, ['--proxy', 'off']);
    const cover = encodeURIComponent(`${origin.url}/img/off.jpg`);
    assert.equal((await get(`${service.url}/?url=${cover}`)).status, 404);
    assert.equal((await get(`${service.url}/proxy/${cover}`)).status, 404);
    // Whatever follows: a URL that would be refused or is no URL is 404 too when the proxy is off.
    assert.equal((await get(`${service.url}/proxy/ftp://x/a.jpg`)).status, 404);
    assert.equal((await get(`${service.url}/?url=%zz`)).status, 404);
    assert.equal((await get(`${service.url}/`)).status, 200, 'the home page stays');
    assert.equal(origin.total(), 0);
    const dir = await tempDir(t);
    const open = await runService(['--port', '0', '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--allow-hosts', '*', '--print-config']);
    assert.equal(open.code, 2);
    assert.match(open.stderr, /--proxy open/);
  });

  it('GET / without url says what the service is and the ways in; the start log names the dashboard', async (t) => {
    const { service, get } = await setup(t);
    const home = await get(`${service.url}/`);
    assert.equal(home.status, 200);
    assert.match(home.headers.get('content-type') ?? '', /^text\/html/);
    const text = await home.text();
    assert.match(text, /coverhelper/);
    assert.match(text, /\/ws/);
    assert.match(text, /\?url=/);
    assert.match(text, /\/admin\//);
    assert.match(text, /--admin-token<\/code>, or, without one, the one generated at the first start into <code>admin-token<\/code> in the data folder/, 'where the token is');
    assert.ok(service.logs.some((line) => /dashboard/.test(line.message) && line.message.includes(`${service.url}/admin/`)));
  });

  it('loads through a page as an <img> and as a CSS background (headless Chromium)', async (t) => {
    if (!existsSync(CHROMIUM)) {
      t.skip(`${CHROMIUM} is not installed (Debian's chromium package); .ci/run installs it`);
      return;
    }
    const { origin, service } = await setup(t);
    const img = `${service.url}/?url=${encodeURIComponent(`${origin.url}/img/page-img.jpg`)}`;
    const background = `${service.url}/proxy/${origin.url}/img/page-bg.jpg`;
    const page = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(
        `<!doctype html><img id="cover" src="${img}"><div id="card" style="width:320px;height:200px;background-image:url('${background}')"></div>`,
      );
    });
    await new Promise<void>((resolve) => page.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => page.close(() => resolve())));
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    t.after(() => browser.close());
    const tab = await browser.newPage();
    const loaded: string[] = [];
    tab.on('response', (response) => {
      if (response.status() === 200 && (response.headers()['content-type'] ?? '').startsWith('image/')) loaded.push(response.url());
    });
    await tab.goto(`http://127.0.0.1:${(page.address() as AddressInfo).port}/`, { waitUntil: 'networkidle' });
    const width = await tab.evaluate(() => (globalThis as unknown as { document: { getElementById(id: string): { naturalWidth: number } } }).document.getElementById('cover').naturalWidth);
    assert.ok(width > 0, 'the <img> decoded');
    assert.ok(loaded.includes(background), `the CSS background was loaded: ${loaded.join(', ')}`);
  });
});

/**
 * The HTTP door against the real service process: signed cover URLs
 * (`GET /c/…`), `POST /api/check`, `npm run sign-url`, and an `<img src>` of a
 * signed URL in a page loaded by Chromium (skipped, never faked, where
 * /usr/bin/chromium is not installed).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { signCoverUrl } from '@coverhelper/client/sign';
import { parseServerFrame } from '@coverhelper/client/protocol';
import { waitUntil } from './helpers/db.js';
import { startOrigin } from './helpers/origin.js';
import { root, startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { ErrorBody, ResultError } from '../src/wire/door.js';

type TestContext = Parameters<typeof tempDir>[0];
const KEY = 'door-test-key-0123456789abcdef';
const TOKEN = 'door-client-token';
const CHROMIUM = '/usr/bin/chromium';

async function setup(t: TestContext, extra: string[] = []) {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const dir = await tempDir(t);
  const service = await startService([
    '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'),
    '--allow-private-network', '--allow-hosts', '127.0.0.1', '--retries', '0', '--fail-ttl', '300', ...extra,
  ]);
  t.after(async () => void (await service.stop()));
  /** GET without following redirects. */
  const get = (url: string) => fetch(url, { redirect: 'manual' });
  return { origin, service, dir, get };
}

async function checksTotal(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^coverhelper_checks_total (\S+)$/m.exec(text)?.[1]);
}

describe('signed cover URLs (GET /c/…)', () => {
  it('redirect to the cover, to the URL itself when skipped; 502 with the code when failed; 403 for a bad signature', async (t) => {
    const { origin, service, get } = await setup(t, ['--url-key', KEY]);
    const image = `${origin.url}/img/door-a.jpg`;
    const ok = await get(signCoverUrl(image, KEY, service.url));
    assert.equal(ok.status, 302);
    assert.match(ok.headers.get('location') ?? '', new RegExp(`^${service.url}/covers/127\\.0\\.0\\.1/door-a-`));
    assert.equal(ok.headers.get('cache-control'), 'public, max-age=3600');
    const cover = await fetch(ok.headers.get('location')!);
    assert.equal(cover.status, 200);
    assert.equal(cover.headers.get('content-type'), 'image/jpeg');

    const skipped = 'https://example.com/not-allowed.jpg';
    const redirect = await get(signCoverUrl(skipped, KEY, service.url));
    assert.deepEqual([redirect.status, redirect.headers.get('location')], [302, skipped]);

    const broken = `${origin.url}/status/404`;
    const failed = await get(signCoverUrl(broken, KEY, service.url));
    assert.equal(failed.status, 502);
    assert.equal(failed.headers.get('cache-control'), 'no-store');
    assert.deepEqual(await failed.json(), { code: 'http_status', message: 'HTTP 404', status: 404 } satisfies ResultError, 'the status as a field');
    const remembered = await get(signCoverUrl(broken, KEY, service.url));
    assert.equal(remembered.status, 502);
    const retryAfter = Number(remembered.headers.get('retry-after'));
    assert.ok(retryAfter > 290 && retryAfter <= 300, `Retry-After ${retryAfter} while the failure is remembered (--fail-ttl 300)`);
    assert.equal(origin.hits.get('/status/404'), 1);

    const signed = new URL(signCoverUrl(image, KEY, service.url));
    const [, , signature, encoded] = signed.pathname.split('/');
    const tampered = Buffer.from(`${origin.url}/img/other.jpg`).toString('base64url');
    for (const bad of [`/c/${signature}/${tampered}`, `/c/${'A'.repeat(43)}/${encoded}`, `/c/${signature}`, `/c/x/${encoded}`, `/c/${signature}/${encoded}/extra`]) {
      const refused = await get(`${service.url}${bad}`);
      assert.equal(refused.status, 403, bad);
      assert.equal(((await refused.json()) as ErrorBody).code, 'forbidden');
    }
    assert.equal(origin.hits.get('/img/other.jpg'), undefined, 'a forged URL makes no request');
  });

  it('is off (404) without --url-key', async (t) => {
    const { origin, service, get } = await setup(t);
    const res = await get(signCoverUrl(`${origin.url}/img/x.jpg`, KEY, service.url));
    assert.equal(res.status, 404);
    assert.match(((await res.json()) as ErrorBody).message, /--url-key/);
  });

  it('a herd of 200 requests for one new URL makes one origin request; they count in statistics and the admin stream', async (t) => {
    const { origin, service } = await setup(t, ['--url-key', KEY, '--admin-token', 'door-admin-token-0123']);
    origin.delayMs = 300;
    const url = `${origin.url}/img/door-herd.jpg`;
    const admin = await connect(`${service.url.replace('http:', 'ws:')}/admin/ws?token=door-admin-token-0123`);
    t.after(() => admin.close());
    await admin.next((f) => f.type === 'snapshot');
    const before = await checksTotal(service.url);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
    t.after(() => agent.destroy());
    const signed = new URL(signCoverUrl(url, KEY, service.url));
    const statuses = await Promise.all(
      Array.from(
        { length: 200 },
        () =>
          new Promise<number>((resolve, reject) => {
            http.get({ host: signed.hostname, port: signed.port, path: signed.pathname, agent }, (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            }).once('error', reject);
          }),
      ),
    );
    assert.deepEqual(new Set(statuses), new Set([302]));
    assert.equal(origin.hits.get('/img/door-herd.jpg'), 1);
    assert.equal((await checksTotal(service.url)) - before, 200, 'every request is a check');
    await admin.next((f) => f.type === 'task' && f.url === url && f.status === 'ok');
  });

  it('shows the cover in an <img src> of a page, in Chromium', { skip: !existsSync(CHROMIUM) && 'needs /usr/bin/chromium (Debian’s chromium package; .ci/run installs it)' }, async (t) => {
    const { origin, service } = await setup(t, ['--url-key', KEY]);
    const src = signCoverUrl(`${origin.url}/img/in-a-page.jpg`, KEY, service.url);
    const page = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><img id="cover" src="${src}">`));
    await new Promise<void>((resolve) => page.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => page.close(() => resolve())));
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    t.after(() => browser.close());
    const tab = await browser.newPage();
    await tab.goto(`http://127.0.0.1:${(page.address() as AddressInfo).port}/`);
    const size = await tab.waitForFunction(() => {
      const img = (globalThis as unknown as { document: { getElementById(id: string): { complete: boolean; naturalWidth: number; naturalHeight: number } | null } }).document.getElementById('cover');
      return img?.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight] : null;
    });
    assert.deepEqual(await size.jsonValue(), [320, 200], 'the stored cover, resized');
  });
});

describe('POST /api/check', () => {
  it('answers with the body of a done frame once every URL is answered', async (t) => {
    const { origin, service } = await setup(t);
    const urls = [`${origin.url}/img/api-1.jpg`, 'https://example.com/skip.jpg', `${origin.url}/status/500`];
    const res = await fetch(`${service.url}/api/check`, { method: 'POST', body: JSON.stringify({ urls }) });
    assert.equal(res.status, 200);
    const done = parseServerFrame(await res.text());
    assert.ok(done?.type === 'done');
    assert.deepEqual([done.ok, done.skipped, done.failed], [1, 1, 1]);
    assert.deepEqual(done.results.map((r) => r.url), urls);
    assert.equal(done.results[1]!.reason, 'host example.com is not in --allow-hosts');
  });

  it('refuses bad input with the codes of /ws, and needs the client token when one is set', async (t) => {
    const { service } = await setup(t, ['--max-batch', '2', '--client-token', TOKEN]);
    const post = (body: string, token: string | null = TOKEN) =>
      fetch(`${service.url}/api/check`, { method: 'POST', body, headers: token ? { authorization: `Bearer ${token}` } : {} });
    for (const [body, code] of [
      ['not json', 'bad_request'],
      ['[]', 'bad_request'],
      ['{}', 'bad_request'],
      ['{"urls":[1]}', 'bad_request'],
      ['{"urls":["a","b","c"]}', 'too_many_urls'],
      [`{"urls":["${'u'.repeat(8193)}"]}`, 'bad_request'],
    ] as const) {
      const res = await post(body);
      assert.equal(res.status, 400, body.slice(0, 30));
      assert.equal(((await res.json()) as ErrorBody).code, code, body.slice(0, 30));
    }
    assert.equal((await post('{"urls":[]}', null)).status, 401);
    assert.equal((await post('{"urls":[]}', 'wrong')).status, 401);
    assert.equal((await post('{"urls":[]}')).status, 200);
    const get = await fetch(`${service.url}/api/check`);
    assert.equal(get.status, 405);
  });
});

describe('the WebSocket routes over plain HTTP', () => {
  it('answer 426 to a GET without an upgrade', async (t) => {
    const { service } = await setup(t);
    for (const route of ['/ws', '/admin/ws']) {
      const res = await fetch(`${service.url}${route}`);
      assert.equal(res.status, 426, route);
      assert.equal(((await res.json()) as ErrorBody).code, 'upgrade_required');
    }
  });
});

describe('npm run sign-url', () => {
  it('prints a signed URL the service accepts, and refuses without a key', async (t) => {
    const { origin, service, get } = await setup(t, ['--url-key', KEY]);
    const url = `${origin.url}/img/signed-by-script.jpg`;
    const run = spawnSync('npm', ['run', '-s', 'sign-url', '--', url, '--base', service.url], { cwd: root, env: { ...process.env, COVERHELPER_URL_KEY: KEY }, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const signed = run.stdout.trim();
    assert.equal(signed, signCoverUrl(url, KEY, service.url));
    await waitUntil(async () => (await get(signed)).status === 302, 'the service redirects it');
    const { COVERHELPER_URL_KEY: _unset, ...env } = process.env;
    const refused = spawnSync('npm', ['run', '-s', 'sign-url', '--', url], { cwd: root, env, encoding: 'utf8' });
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /url-key/);
  });
});

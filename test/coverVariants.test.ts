/**
 * Variants on `/covers/<path>?w=&h=&fit=&f=&dpr=` (issue 24): a real origin on
 * 127.0.0.1, the real service process, a real SQLite file. Every answer is
 * decoded and its real width, height and format checked.
 */
import assert from 'node:assert/strict';
import { access, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { readTable, waitUntil } from './helpers/db.js';
import { makeImage, startOrigin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];
const TOKEN = 'variants-admin-token-0123456789';
const CHROME_ACCEPT = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';
const exists = (file: string) => access(file).then(() => true, () => false);

async function decode(data: Buffer): Promise<[number | undefined, number | undefined, string | undefined]> {
  const meta = await sharp(data).metadata();
  return [meta.width, meta.height, meta.format === 'heif' ? (meta.compression === 'av1' ? 'avif' : 'heif') : meta.format];
}

async function get(service: Service, route: string, headers: Record<string, string> = {}, method = 'GET') {
  const res = await fetch(`${service.url}${route}`, { method, headers });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body };
}

async function admin(service: Service, method: string, route: string, body?: Buffer) {
  const res = await fetch(`${service.url}${route}`, { method, headers: { authorization: `Bearer ${TOKEN}` }, ...(body ? { body } : {}) });
  await res.arrayBuffer();
  return res.status;
}

async function metric(service: Service, name: string): Promise<number> {
  const text = await (await fetch(`${service.url}/metrics`)).text();
  return Number(new RegExp(`^${name.replace(/[{}"+]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
}

async function setup(t: TestContext, extra: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const dir = await tempDir(t);
  const db = path.join(dir, 'data', 'coverhelper.sqlite');
  const coversDir = path.join(dir, 'covers');
  const args = ['--data-dir', path.join(dir, 'data'), '--covers-dir', coversDir, '--allow-private-network', '--allow-hosts', '127.0.0.1', '--admin-token', TOKEN, ...extra];
  const service = await startService(args, env);
  t.after(async () => void (await service.stop()));
  const ws = await connect(service.wsUrl);
  t.after(() => ws.close());
  /** Checks `url` and answers its stored path. */
  const store = async (url: string) => {
    const result = ((await ws.check(url, [url])).done.results as Frame[])[0]!;
    assert.equal(result.status, 'ok');
    return result.path as string;
  };
  return { origin, db, dir, coversDir, args, service, store };
}

describe('GET /covers/<path>?w=&h=&fit=&f=&dpr=', () => {
  it('answers each variant at its real size and format, with immutable caching, Vary: Accept when Accept chose, ETag/304 and HEAD', async (t) => {
    const { origin, service, store } = await setup(t);
    const cover = await store(`${origin.url}/img/big.jpg?size=1146x717`);
    for (const [query, accept, expected, vary] of [
      ['w=300', CHROME_ACCEPT, [320, 200, 'avif'], true],
      ['w=300', 'image/webp,*/*', [320, 200, 'webp'], true],
      ['w=300', '*/*', [320, 200, 'jpeg'], true],
      ['w=480&f=webp', CHROME_ACCEPT, [480, 300, 'webp'], false],
      ['w=160&dpr=2&f=jpeg', '', [320, 200, 'jpeg'], false],
      ['w=320&h=320&f=png', '', [320, 320, 'png'], false],
      ['w=300&h=100&fit=fill&f=webp', '', [320, 107, 'webp'], false],
      ['w=220&h=280&fit=inside&f=jpg', '', [240, 150, 'jpeg'], false],
      ['w=4000&f=webp', '', [1146, 717, 'webp'], false],
      ['h=100&f=avif', '', [160, 100, 'avif'], false],
    ] as const) {
      const res = await get(service, `/covers/${cover}?${query}`, accept ? { accept } : {});
      assert.equal(res.status, 200, `${query}: ${res.body.toString()}`);
      assert.deepEqual(await decode(res.body), expected, query);
      assert.equal(res.headers.get('content-type'), `image/${expected[2]}`, query);
      assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.equal(res.headers.get('vary'), vary ? 'Accept' : null, query);
      assert.equal(res.headers.get('content-length'), String(res.body.length));
    }
    const first = await get(service, `/covers/${cover}?w=480&f=webp`);
    const etag = first.headers.get('etag')!;
    assert.match(etag, /^"[0-9a-f]+-[0-9a-f]+"$/);
    const again = await get(service, `/covers/${cover}?w=480&f=webp`, { 'if-none-match': etag });
    assert.deepEqual([again.status, again.body.length], [304, 0]);
    const head = await get(service, `/covers/${cover}?w=640&f=webp`, {}, 'HEAD');
    assert.deepEqual([head.status, head.body.length, head.headers.get('content-type')], [200, 0, 'image/webp']);
    assert.ok(Number(head.headers.get('content-length')) > 0);
    assert.deepEqual(await decode((await get(service, `/covers/${cover}?w=640&f=webp`)).body), [640, 400, 'webp'], 'HEAD made it; GET serves it');

    // No query: the default variant as before, no Vary.
    const plain = await get(service, `/covers/${cover}`);
    assert.deepEqual([plain.status, plain.headers.get('vary'), plain.headers.get('content-type')], [200, null, 'image/jpeg']);
    assert.deepEqual(await decode(plain.body), [320, 200, 'jpeg']);
    // A query that asks for no variant is ignored (the plain file).
    assert.deepEqual(await decode((await get(service, `/covers/${cover}?v=2`)).body), [320, 200, 'jpeg']);
    // A variant file is servable as a plain path.
    const named = await get(service, `/covers/${cover}.variants/w480-h300-cover-webp.webp`);
    assert.equal(named.status, 404, 'not made: w=480 alone keeps the aspect (inside)');
    const byPath = await get(service, `/covers/${cover}.variants/w480-inside-webp.webp`);
    assert.deepEqual([byPath.status, ...(await decode(byPath.body))], [200, 480, 300, 'webp']);
  });

  it('never enlarges: a 64×40 cover stays 64×40 at any asked size', async (t) => {
    const { origin, service, store } = await setup(t);
    const cover = await store(`${origin.url}/img/small.jpg?size=64x40`);
    assert.deepEqual(await decode((await get(service, `/covers/${cover}?w=640&f=webp`)).body), [64, 40, 'webp']);
    assert.deepEqual(await decode((await get(service, `/covers/${cover}?w=320&h=320&f=png&dpr=3`)).body), [40, 40, 'png']);
  });

  it('answers 400 bad_request naming a bad value, 404 for a path that is no cover\'s', async (t) => {
    const { origin, service, store } = await setup(t);
    const cover = await store(`${origin.url}/img/bad.jpg?size=640x400`);
    for (const [query, message] of [
      ['w=0', /^w must be a whole number of pixels from 1 to 16384, not "0"$/],
      ['w=abc', /^w must be/],
      ['w=-1', /^w must be/],
      ['h=1.5', /^h must be/],
      ['fit=crop&w=10', /^fit must be one of cover, contain, inside, outside, fill, not "crop"$/],
      ['f=gif', /^f must be one of jpeg, png, webp, avif, not "gif"$/],
      ['dpr=5&w=10', /^dpr must be a number from 1 to 3/],
      ['q=0&w=10', /^q must be/],
      ['w=1&w=2', /^w is given 2 times; give it once$/],
    ] as const) {
      const res = await get(service, `/covers/${cover}?${query}`);
      assert.equal(res.status, 400, query);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      const body = JSON.parse(res.body.toString()) as { code: string; message: string };
      assert.equal(body.code, 'bad_request', query);
      assert.match(body.message, message, query);
    }
    for (const route of [
      '/covers/127.0.0.1/none.jpg?w=100',
      `/covers/${cover.replace(/\.jpg$/, '.orig.jpg')}?w=100`,
      `/covers/127.0.0.1/none.jpg.variants/w320-inside-webp.webp?w=100`,
      '/covers/..%2f..%2fetc/passwd?w=100',
      '/covers/.tmp/x?w=100',
    ]) {
      const res = await get(service, route);
      assert.equal(res.status, 404, route);
      assert.equal((JSON.parse(res.body.toString()) as { code: string }).code, 'not_found', route);
    }
  });

  it('200 concurrent requests for one missing variant make one render; all get the same image', async (t) => {
    const { origin, service, store, db } = await setup(t);
    const cover = await store(`${origin.url}/img/herd.jpg?size=1146x717`);
    const before = await metric(service, 'coverhelper_renders_total{outcome="rendered"}');
    assert.equal(before, 0);
    const answers = await Promise.all(Array.from({ length: 200 }, () => get(service, `/covers/${cover}?w=480&f=avif`)));
    assert.equal(await metric(service, 'coverhelper_renders_total{outcome="rendered"}'), 1, 'exactly one render');
    for (const answer of answers) {
      assert.equal(answer.status, 200);
      assert.ok(answer.body.equals(answers[0]!.body));
    }
    assert.deepEqual(await decode(answers[0]!.body), [480, 300, 'avif']);
    // Counted with the cover.
    const [row] = readTable<{ variant_bytes: number; bytes: number }>(db, 'SELECT variant_bytes, bytes FROM covers WHERE path = ?', cover);
    assert.equal(row?.variant_bytes, answers[0]!.body.length);
  });

  it('a custom upload replacing a cover: the old variants go, the new cover\'s variants are made from the new original', async (t) => {
    const { origin, service, store, coversDir, db } = await setup(t);
    const url = `${origin.url}/img/replaced.jpg?size=1146x717`;
    const old = await store(url);
    assert.deepEqual(await decode((await get(service, `/covers/${old}?w=480&f=webp`)).body), [480, 300, 'webp']);
    assert.equal(await exists(path.join(coversDir, `${old}.variants`)), true);

    assert.equal(await admin(service, 'PUT', `/admin/api/covers?url=${encodeURIComponent(url)}`, await makeImage('replacement', 'png', 800, 600)), 200);
    const [row] = readTable<{ path: string }>(db, 'SELECT path FROM covers WHERE url = ?', url);
    assert.notEqual(row!.path, old);
    await waitUntil(async () => !(await exists(path.join(coversDir, `${old}.variants`))), 'the old variants removed');
    const stale = await get(service, `/covers/${old}?w=480&f=webp`);
    assert.equal(stale.status, 404, 'the old cover\'s variant is not served');
    assert.deepEqual(await decode((await get(service, `/covers/${row!.path}?w=480&f=webp`)).body), [480, 360, 'webp'], 'made from the new 800×600 original');
  });

  it('variants go when their cover is deleted', async (t) => {
    const { origin, service, store, coversDir, db } = await setup(t);
    const url = `${origin.url}/img/deleted.jpg?size=1146x717`;
    const cover = await store(url);
    for (const query of ['w=320&f=webp', 'w=640&f=avif', 'w=160&f=jpeg']) assert.equal((await get(service, `/covers/${cover}?${query}`)).status, 200);
    assert.equal((await readdir(path.join(coversDir, `${cover}.variants`))).length, 3);
    assert.equal(await admin(service, 'DELETE', `/admin/api/covers?url=${encodeURIComponent(url)}`), 202);
    await waitUntil(async () => !(await exists(path.join(coversDir, cover))) && readTable(db, 'SELECT id FROM deletions').length === 0, 'the deletion carried out');
    assert.equal(await exists(path.join(coversDir, `${cover}.variants`)), false);
    assert.equal((await get(service, `/covers/${cover}?w=320&f=webp`)).status, 404);
  });

  it('variant bytes count in --max-cache-bytes', async (t) => {
    const { origin, service, store, db } = await setup(t, ['--max-cache-bytes', '10000000']);
    const cover = await store(`${origin.url}/img/counted.jpg?size=1146x717`);
    const sizes = [];
    for (const query of ['w=1920&f=png', 'w=960&f=png']) sizes.push((await get(service, `/covers/${cover}?${query}`)).body.length);
    const [row] = readTable<{ variant_bytes: number }>(db, 'SELECT variant_bytes FROM covers WHERE path = ?', cover);
    assert.equal(row?.variant_bytes, sizes[0]! + sizes[1]!);
    const res = await fetch(`${service.url}/admin/api/summary`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const stats = (await res.json()) as { covers: { downloadedBytes: number } };
    assert.ok(stats.covers.downloadedBytes >= sizes[0]! + sizes[1]!, 'the downloaded bytes include the variants');
  });
});

describe('a crash while a variant is written', () => {
  it('SIGKILL before the rename publishes nothing; the next start sweeps the temp file and renders it again', async (t) => {
    const { origin, args, coversDir, store, service } = await setup(t);
    const cover = await store(`${origin.url}/img/crash.jpg?size=1146x717`);
    await service.stop();
    const crashing = await startService(args, { COVERHELPER_CRASH_AT: 'render:temp-written' });
    await get(crashing, `/covers/${cover}?w=480&f=webp`).catch(() => undefined);
    assert.equal((await crashing.exit).signal, 'SIGKILL');
    assert.equal(await exists(path.join(coversDir, `${cover}.variants`, 'w480-inside-webp.webp')), false, 'no half file published');
    assert.equal((await readdir(path.join(coversDir, '.tmp'))).length, 1, 'the written temp file is left');

    const next = await startService(args);
    t.after(async () => void (await next.stop()));
    assert.deepEqual(await readdir(path.join(coversDir, '.tmp')), [], 'swept at start');
    assert.deepEqual(await decode((await get(next, `/covers/${cover}?w=480&f=webp`)).body), [480, 300, 'webp']);
  });

  it('SIGKILL after the rename leaves a whole file (uncounted until the next render), removed with its cover', async (t) => {
    const { origin, args, coversDir, db, store, service } = await setup(t);
    const url = `${origin.url}/img/crash2.jpg?size=1146x717`;
    const cover = await store(url);
    await service.stop();
    const crashing = await startService(args, { COVERHELPER_CRASH_AT: 'render:published' });
    await get(crashing, `/covers/${cover}?w=480&f=webp`).catch(() => undefined);
    assert.equal((await crashing.exit).signal, 'SIGKILL');
    const file = path.join(coversDir, `${cover}.variants`, 'w480-inside-webp.webp');
    assert.deepEqual(await decode(await readFile(file)), [480, 300, 'webp'], 'a complete file');
    assert.equal(readTable<{ variant_bytes: number }>(db, 'SELECT variant_bytes FROM covers WHERE path = ?', cover)[0]?.variant_bytes, 0);

    const next = await startService(args);
    t.after(async () => void (await next.stop()));
    assert.equal((await get(next, `/covers/${cover}?w=480&f=webp`)).status, 200, 'served from disk');
    assert.equal(await admin(next, 'DELETE', `/admin/api/covers?url=${encodeURIComponent(url)}`), 202);
    await waitUntil(async () => !(await exists(path.join(coversDir, `${cover}.variants`))), 'removed with the cover');
  });
});

describe('GET /covers/<path>?… limits and identity', () => {
  it('counts a render a request starts against --proxy-rate (429 with Retry-After past it); variants made and joins are not limited; a variant path takes sizes of its cover', async (t) => {
    const { origin, service, store } = await setup(t, ['--proxy-rate', '2']);
    const cover = await store(`${origin.url}/img/limited.jpg?size=1146x717`);
    assert.equal((await get(service, `/covers/${cover}?w=160&f=webp`)).status, 200);
    const made = await get(service, `/covers/${cover}?w=240&f=webp`);
    assert.equal(made.status, 200);
    const refused = await get(service, `/covers/${cover}?w=320&f=webp`);
    assert.equal(refused.status, 429);
    assert.equal((JSON.parse(refused.body.toString()) as { code: string }).code, 'too_many_requests');
    assert.ok(Number(refused.headers.get('retry-after')) >= 1, 'Retry-After');
    // Made already: answered however often, not counted, from the file: the same bytes and ETag as when just made.
    for (let i = 0; i < 3; i++) {
      const again = await get(service, `/covers/${cover}?w=240&f=webp`);
      assert.equal(again.status, 200);
      assert.deepEqual([again.headers.get('etag'), again.body], [made.headers.get('etag'), made.body]);
    }
    assert.equal((await get(service, `/covers/${cover}?w=240&f=webp`, { 'if-none-match': made.headers.get('etag')! })).status, 304);
    // A variant's own path with a size asks for that size of its cover (what a suffix answer's coverUrl allows).
    const variantPath = `${cover}.variants/w240-inside-webp.webp`;
    assert.equal((await get(service, `/covers/${variantPath}`)).status, 200, 'the variant file is served as it is');
    const fromVariant = await get(service, `/covers/${variantPath}?w=160&f=webp`);
    assert.equal(fromVariant.status, 200);
    assert.deepEqual(await decode(fromVariant.body), [160, 100, 'webp']);
  });
});

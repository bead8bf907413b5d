/**
 * Sizes and formats through the proxy prefix, in process against a counting
 * origin on 127.0.0.1 serving 1146×717 JPEGs (a bilibili cover's size): every
 * answer's bytes are decoded and their real width, height and format checked.
 *
 * - bilibili suffixes: a cover and its suffixed forms asked at once make one
 *   origin request and each the image the CDN would make;
 * - weserv's parameters: applied (rounded to --widths, dpr, fit, output, q,
 *   Accept with Vary), only what was not applied named as ignored; none: the
 *   stored cover itself;
 * - a render a request would start counts against --proxy-rate; a variant
 *   already made does not;
 * - a render that fails is answered like a cover that cannot be had.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import type { CheckResult } from '../src/checks/index.js';
import { countingOrigin } from './helpers/countingOrigin.js';
import { startInProcess } from './helpers/inProcess.js';
import { connect } from './helpers/wsClient.js';
import type { DoneFrame } from '../src/wire/door.js';

type TestContext = Parameters<typeof countingOrigin>[0];

const WIDTH = 1146;
const HEIGHT = 717;

async function setup(t: TestContext, args: string[] = [], origin?: Awaited<ReturnType<typeof countingOrigin>>) {
  const served = origin ?? (await countingOrigin(t, { size: { width: WIDTH, height: HEIGHT }, delayMs: 200 }));
  const { app, dir, config } = await startInProcess(t, ['--retries', '0', '--proxy-max-age', '4321', ...args]);
  return { origin: served, app, dir, config, base: app.url };
}

/** A proxy answer: status, headers, and the decoded image's real width, height and format. */
async function ask(url: string, init: RequestInit = {}) {
  const response = await fetch(url, { redirect: 'manual', ...init });
  const body = Buffer.from(await response.arrayBuffer());
  let image: { width: number; height: number; format: string } | undefined;
  if (response.status === 200 && body.length > 0 && (response.headers.get('content-type') ?? '').startsWith('image/')) {
    const meta = await sharp(body).metadata();
    image = { width: meta.width, height: meta.height, format: meta.format === 'heif' ? 'avif' : meta.format };
  }
  return { status: response.status, headers: response.headers, body, image };
}

const dims = (answer: Awaited<ReturnType<typeof ask>>) => answer.image && [answer.image.width, answer.image.height, answer.image.format];

describe('proxy: bilibili suffixes are variants of the URL without them', () => {
  it('abc.jpg, @220w_280h.webp, @336w_190h_1c.webp, @100w.avif and @.png asked at once: one origin request, each image exactly as the CDN makes it', async (t) => {
    const { origin, base } = await setup(t);
    const cover = `${origin.url}/img/abc.jpg`;
    const [plain, inside, cropped, avif, png, covers] = await Promise.all([
      ask(`${base}/proxy/${cover}`),
      ask(`${base}/proxy/${cover}@220w_280h.webp`),
      ask(`${base}/?url=${encodeURIComponent(`${cover}@336w_190h_1c.webp`)}`),
      ask(`${base}/proxy/${cover}@100w.avif`),
      ask(`${base}/proxy/${cover}@.png`),
      ask(`${base}/proxy/${cover}@4000w_4000h_1c.webp`),
    ]);
    assert.equal(origin.hits.length, 1, `one origin request: ${origin.hits.map((h) => h.path).join(', ')}`);
    assert.equal(origin.hits[0]!.path, '/img/abc.jpg', 'the URL without the suffix');
    for (const answer of [plain, inside, cropped, avif, png, covers]) {
      assert.equal(answer.status, 200);
      assert.equal(answer.headers.get('cache-control'), 'public, max-age=4321');
      assert.equal(answer.headers.get('x-coverhelper-error'), null);
      assert.equal(answer.headers.get('vary'), null, 'a suffix names its format: no Vary');
    }
    assert.deepEqual(dims(plain), [320, 200, 'jpeg'], 'no suffix: the stored cover (the default variant)');
    assert.deepEqual(dims(inside), [220, 138, 'webp'], 'w and h are maxima: the aspect kept inside');
    assert.equal(inside.headers.get('content-type'), 'image/webp');
    assert.deepEqual(dims(cropped), [336, 190, 'webp'], '1c: cropped to fill exactly');
    assert.deepEqual(dims(avif), [100, 63, 'avif']);
    assert.equal(avif.headers.get('content-type'), 'image/avif');
    assert.deepEqual(dims(png), [WIDTH, HEIGHT, 'png'], "@.png: the original's size in PNG");
    assert.deepEqual(dims(covers), [717, 717, 'webp'], 'a crop past the original: the largest box of its aspect inside it');

    // Asked again: the same bytes (held in memory), still one origin request.
    const again = await ask(`${base}/proxy/${cover}@220w_280h.webp`);
    assert.deepEqual(again.body, inside.body);
    assert.equal(origin.hits.length, 1);
    // 304 on its ETag.
    const etag = again.headers.get('etag');
    assert.ok(etag);
    assert.equal((await ask(`${base}/proxy/${cover}@220w_280h.webp`, { headers: { 'if-none-match': etag } })).status, 304);
  });

  it('a suffix that cannot be read is part of the URL: fetched as it is (here a 404 at the origin: the placeholder)', async (t) => {
    const { origin, base } = await setup(t);
    const answer = await ask(`${base}/proxy/${origin.url}/img/odd.jpg@672w_378h_1c_!web-search-common-cover.webp`);
    assert.deepEqual(
      origin.hits.map((h) => h.path),
      ['/img/odd.jpg@672w_378h_1c_!web-search-common-cover.webp'],
    );
    assert.equal(answer.headers.get('x-coverhelper-error'), 'http_status');
  });
});

describe('proxy: weserv parameters applied', () => {
  it('w rounded up to --widths, dpr, fit, output, q; the format by Accept with Vary; only what was not applied is named', async (t) => {
    const { origin, base } = await setup(t);
    const cover = encodeURIComponent(`${origin.url}/img/weserv.jpg`);
    const plain = await ask(`${base}/?url=${cover}`);
    assert.deepEqual(dims(plain), [320, 200, 'jpeg'], 'no parameters: the stored cover');
    assert.equal(plain.headers.get('vary'), null);
    assert.equal(plain.headers.get('x-coverhelper-ignored'), null);

    const w200 = await ask(`${base}/?url=${cover}&w=200`);
    assert.deepEqual(dims(w200), [240, 150, 'jpeg'], "w 200 → 240 (--widths); no Accept: the original's format");
    assert.equal(w200.headers.get('vary'), 'Accept');
    assert.equal(w200.headers.get('cache-control'), 'public, max-age=4321');
    assert.equal(w200.headers.get('x-coverhelper-ignored'), null, 'all applied');

    const avif = await ask(`${base}/?url=${cover}&w=200`, { headers: { accept: 'image/avif,image/webp,*/*' } });
    assert.deepEqual(dims(avif), [240, 150, 'avif'], 'Accept: the first of --formats it names');
    const webp = await ask(`${base}/?url=${cover}&w=200`, { headers: { accept: 'image/webp,*/*' } });
    assert.deepEqual(dims(webp), [240, 150, 'webp']);

    const boxed = await ask(`${base}/?url=${cover}&w=300&h=300&output=png&n=-1&blur=5`);
    assert.deepEqual(dims(boxed), [320, 200, 'png'], "w/h without fit: inside the box (weserv's default), w rounded to 320");
    assert.equal(boxed.headers.get('vary'), null, 'output names the format');
    assert.equal(boxed.headers.get('x-coverhelper-ignored'), 'n, blur');

    const cropped = await ask(`${base}/?url=${cover}&w=160&h=160&fit=cover&output=webp&q=40`);
    assert.deepEqual(dims(cropped), [160, 160, 'webp']);
    const better = await ask(`${base}/?url=${cover}&w=160&h=160&fit=cover&output=webp&q=95`);
    assert.ok(better.body.length > cropped.body.length, `q applied: ${cropped.body.length} B at 40, ${better.body.length} B at 95`);

    const dpr = await ask(`${base}/proxy/${cover}?w=200&dpr=2&output=jpg`);
    assert.deepEqual(dims(dpr), [480, 300, 'jpeg'], 'dpr 2: 400 → 480');
    const big = await ask(`${base}/?url=${cover}&w=5000&output=webp`);
    assert.deepEqual(dims(big), [WIDTH, HEIGHT, 'webp'], 'never past the original');

    const bad = await ask(`${base}/?url=${cover}&w=abc&output=gif`);
    assert.deepEqual(dims(bad), [320, 200, 'jpeg'], 'bad values only: the stored cover');
    assert.equal(bad.headers.get('x-coverhelper-ignored'), 'w, output');
    assert.equal(origin.hits.length, 1, 'one download for all of them');
  });
});

describe('proxy: renders count against --proxy-rate', () => {
  it('a download and a render each count; a variant already made does not', async (t) => {
    const { origin, base } = await setup(t, ['--proxy-rate', '3']);
    const cover = `${origin.url}/img/rated.jpg`;
    // A download and a render: 2 of 3.
    assert.deepEqual(dims(await ask(`${base}/proxy/${cover}@220w_280h.webp`)), [220, 138, 'webp']);
    // A render: 3 of 3.
    assert.deepEqual(dims(await ask(`${base}/proxy/${cover}@336w_190h_1c.webp`)), [336, 190, 'webp']);
    // A fourth start is refused, with Retry-After.
    const refused = await ask(`${base}/proxy/${cover}@100w.webp`);
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers.get('retry-after')) > 0);
    // What is made is never limited.
    for (let i = 0; i < 5; i++) {
      assert.equal((await ask(`${base}/proxy/${cover}@220w_280h.webp`)).status, 200);
      assert.equal((await ask(`${base}/proxy/${cover}`)).status, 200);
    }
    assert.equal(origin.hits.length, 1);
  });
});

describe('proxy: a variant that cannot be made', () => {
  it('is answered like a cover that cannot be had: the placeholder, default=, or 502 with --placeholder none', async (t) => {
    const { origin, base, config, app } = await setup(t);
    const cover = `${origin.url}/img/broken.jpg`;
    assert.equal((await ask(`${base}/proxy/${cover}`)).status, 200);
    // The original (and the cover) is gone from disk behind the index's back: nothing to render from.
    const row = (await app.store.covers.findMany([cover], { touch: false })).get(cover);
    assert.ok(row?.originalPath);
    await rm(path.join(config.coversDir, row.originalPath));
    if (row.originalPath !== row.path) await rm(path.join(config.coversDir, row.path));
    const failed = await ask(`${base}/proxy/${cover}@220w_280h.webp`);
    assert.equal(failed.status, 200);
    assert.equal(failed.headers.get('cache-control'), 'no-store');
    assert.ok(failed.headers.get('x-coverhelper-error'), 'names the failure');
    const redirected = await ask(`${base}/?url=${encodeURIComponent(cover)}&w=200&default=${encodeURIComponent(`${origin.url}/img/fallback.jpg`)}`);
    assert.equal(redirected.status, 302);
    assert.equal(redirected.headers.get('location'), `${origin.url}/img/fallback.jpg`);
  });

  it('with --placeholder none: 502 JSON', async (t) => {
    const { origin, base, config, app } = await setup(t, ['--placeholder', 'none']);
    const cover = `${origin.url}/img/broken-none.jpg`;
    assert.equal((await ask(`${base}/proxy/${cover}`)).status, 200);
    const row = (await app.store.covers.findMany([cover], { touch: false })).get(cover);
    assert.ok(row?.originalPath);
    await rm(path.join(config.coversDir, row.originalPath));
    if (row.originalPath !== row.path) await rm(path.join(config.coversDir, row.path));
    const failed = await ask(`${base}/proxy/${cover}@336w_190h_1c.webp`);
    assert.equal(failed.status, 502);
    assert.equal(failed.headers.get('cache-control'), 'no-store');
  });
});

describe('/ws and the door: a URL with a readable suffix', () => {
  it('is checked as its base URL (one download) and its ok answer names the rendered variant, servable as a plain /covers/ path', async (t) => {
    const { origin, base } = await setup(t);
    const cover = `${origin.url}/img/ws.jpg`;
    const urls = [cover, `${cover}@220w_280h.webp`, `${cover}@336w_190h_1c.webp`, `${cover}@220w_280h.webp`];
    const client = await connect(`${base.replace(/^http/, 'ws')}/ws`);
    t.after(() => client.close());
    const { done } = await client.check('suffixes', urls);
    const results = done.results as CheckResult[];
    assert.deepEqual(results.map((r) => r.status), ['ok', 'ok', 'ok', 'ok']);
    assert.deepEqual(results.map((r) => r.url), urls, 'each answer names the URL as asked');
    assert.equal(origin.hits.length, 1, 'one download for the cover and its suffixes');
    assert.equal(results[1]!.coverUrl, results[3]!.coverUrl);
    assert.match(results[1]!.path!, /\.variants\//);
    const expected = [[320, 200, 'jpeg'], [220, 138, 'webp'], [336, 190, 'webp']];
    for (let i = 0; i < 3; i++) {
      const answer = await ask(results[i]!.coverUrl!);
      assert.deepEqual(dims(answer), expected[i], urls[i]);
    }

    // The door: the same answers (the variant already made).
    const res = await fetch(`${base}/api/check`, { method: 'POST', body: JSON.stringify({ urls: [`${cover}@336w_190h_1c.webp`, `${cover}@100w.avif`] }) });
    const body = (await res.json()) as DoneFrame;
    assert.equal(body.results[0]!.coverUrl, results[2]!.coverUrl);
    assert.deepEqual(dims(await ask(body.results[1]!.coverUrl!)), [100, 63, 'avif']);
    assert.equal(origin.hits.length, 1);
  });

  it('an unreadable suffix is checked as it is; a failed base is a failed answer under the URL asked', async (t) => {
    const { origin, base } = await setup(t);
    const client = await connect(`${base.replace(/^http/, 'ws')}/ws`);
    t.after(() => client.close());
    const urls = [`${origin.url}/img/x.jpg@220w_!style.webp`, `${origin.url}/missing/y.jpg@220w.webp`];
    const { done } = await client.check('odd', urls);
    const results = done.results as CheckResult[];
    assert.deepEqual(results.map((r) => [r.url, r.status]), [[urls[0], 'error'], [urls[1], 'error']]);
    assert.deepEqual(origin.hits.map((h) => h.path).sort(), ['/img/x.jpg@220w_!style.webp', '/missing/y.jpg']);
  });

  it('a render a suffix starts counts against the client address\'s --proxy-rate, with the download: past it too_many_requests with retryAt; a variant made is not limited', async (t) => {
    const { origin, base } = await setup(t, ['--proxy-rate', '2']);
    const client = await connect(`${base.replace(/^http/, 'ws')}/ws`);
    t.after(() => client.close());
    const cover = `${origin.url}/img/rated.jpg`;
    // The download goes through the checks (not counted on /ws); two renders are within the rate.
    const first = (await client.check('r1', [`${cover}@220w.webp`, `${cover}@240w.webp`])).done.results as CheckResult[];
    assert.deepEqual(first.map((r) => r.status), ['ok', 'ok']);
    const refused = ((await client.check('r2', [`${cover}@260w.webp`])).done.results as CheckResult[])[0]!;
    assert.equal(refused.status, 'error');
    assert.equal(refused.error?.code, 'too_many_requests');
    assert.ok(refused.retryAt !== undefined && Date.parse(refused.retryAt) > Date.now(), 'retryAt ahead');
    const again = ((await client.check('r3', [`${cover}@220w.webp`])).done.results as CheckResult[])[0]!;
    assert.equal(again.status, 'ok', 'a variant already made is answered');
    assert.equal(origin.hits.length, 1);
  });
});

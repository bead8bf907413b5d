/**
 * Originals kept beside each cover (issue 24, step 1): a real origin on
 * 127.0.0.1, the real service process (or the app in-process where a pass must
 * be driven), a real SQLite file; every stored file is decoded and its real
 * width, height and format checked.
 */
import assert from 'node:assert/strict';
import { access, mkdir, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { processImage } from '../src/images/index.js';
import { originalPathOf, writeCover } from '../src/store/index.js';
import { readTable, waitUntil } from './helpers/db.js';
import { startInProcess } from './helpers/inProcess.js';
import { makeImage, startOrigin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];
const TOKEN = 'originals-admin-token-0123456789';
const exists = (file: string) => access(file).then(() => true, () => false);

interface CoverColumns {
  path: string;
  width: number;
  height: number;
  bytes: number;
  original_path: string | null;
  original_width: number | null;
  original_height: number | null;
  original_bytes: number | null;
}

async function decoded(file: string) {
  const data = await readFile(file);
  const meta = await sharp(data).metadata();
  return { format: meta.format, width: meta.width, height: meta.height, bytes: data.length };
}

async function api(service: Service, method: string, route: string, body?: Buffer) {
  const res = await fetch(`${service.url}${route}`, { method, headers: { authorization: `Bearer ${TOKEN}` }, ...(body ? { body } : {}) });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
}

async function setup(t: TestContext, extra: string[] = []) {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const dir = await tempDir(t);
  const db = path.join(dir, 'data', 'coverhelper.sqlite');
  const coversDir = path.join(dir, 'covers');
  const service = await startService(['--data-dir', path.join(dir, 'data'), '--covers-dir', coversDir, '--allow-private-network', '--allow-hosts', '127.0.0.1', '--admin-token', TOKEN, ...extra]);
  t.after(async () => void (await service.stop()));
  const ws = await connect(service.wsUrl);
  t.after(() => ws.close());
  const row = (url: string) => readTable<CoverColumns>(db, 'SELECT path, width, height, bytes, original_path, original_width, original_height, original_bytes FROM covers WHERE url = ?', url)[0];
  return { origin, db, coversDir, service, ws, row };
}

describe('originals kept beside the default variant', () => {
  it('a 1146×717 JPEG download stores the 320×200 variant and the 1146×717 original; the variant is served, the original is not; an admin delete removes both', async (t) => {
    const { origin, db, coversDir, service, ws, row } = await setup(t);
    const url = `${origin.url}/img/big.jpg?size=1146x717`;
    const result = ((await ws.check('big', [url])).done.results as Frame[])[0]!;
    assert.equal(result.status, 'ok');
    const stored = row(url)!;
    assert.equal(stored.path, result.path);
    assert.equal(stored.original_path, originalPathOf(stored.path));
    assert.match(stored.original_path, /\.orig\.jpg$/);
    const variant = await decoded(path.join(coversDir, stored.path));
    const original = await decoded(path.join(coversDir, stored.original_path));
    assert.deepEqual(variant, { format: 'jpeg', width: 320, height: 200, bytes: stored.bytes });
    assert.deepEqual(original, { format: 'jpeg', width: 1146, height: 717, bytes: stored.original_bytes });
    assert.deepEqual([stored.original_width, stored.original_height], [1146, 717]);

    // coverUrl names the default variant, as before; the original is not served.
    const served = await fetch(result.coverUrl as string);
    assert.deepEqual((await sharp(Buffer.from(await served.arrayBuffer())).metadata()).width, 320);
    const originalUrl = `${service.url}/covers/${stored.original_path}`;
    assert.equal((await fetch(originalUrl)).status, 404);
    assert.equal((await fetch(originalUrl.replace('.orig.', '%2Eorig.'))).status, 404);

    assert.equal((await api(service, 'DELETE', `/admin/api/covers?url=${encodeURIComponent(url)}`)).status, 202);
    await waitUntil(async () => !(await exists(path.join(coversDir, stored.path))) && readTable(db, 'SELECT id FROM deletions').length === 0, 'the deletion carried out');
    assert.equal(await exists(path.join(coversDir, stored.original_path)), false, 'the original went with its cover');
    assert.equal(row(url), undefined);
  });

  it('a 64×40 image is not enlarged: its default variant and its original are both 64×40', async (t) => {
    const { origin, coversDir, ws, row } = await setup(t);
    const url = `${origin.url}/img/small.jpg?size=64x40`;
    assert.equal(((await ws.check('small', [url])).done.results as Frame[])[0]!.status, 'ok');
    const stored = row(url)!;
    assert.deepEqual(await decoded(path.join(coversDir, stored.path)), { format: 'jpeg', width: 64, height: 40, bytes: stored.bytes });
    assert.deepEqual(await decoded(path.join(coversDir, stored.original_path!)), { format: 'jpeg', width: 64, height: 40, bytes: stored.original_bytes });
    assert.deepEqual([stored.width, stored.height, stored.original_width, stored.original_height], [64, 40, 64, 40]);
  });

  it('a custom upload keeps its original; replacing it removes the old cover and its original', async (t) => {
    const { coversDir, service, db, row } = await setup(t);
    const target = 'https://i0.hdslb.com/bfs/archive/custom-original.jpg';
    const route = `/admin/api/covers?url=${encodeURIComponent(target)}`;
    const first = await api(service, 'PUT', route, await makeImage('upload-one', 'png', 800, 600));
    assert.equal(first.status, 200);
    const one = row(target)!;
    assert.deepEqual(await decoded(path.join(coversDir, one.path)), { format: 'png', width: 320, height: 200, bytes: one.bytes });
    assert.deepEqual(await decoded(path.join(coversDir, one.original_path!)), { format: 'png', width: 800, height: 600, bytes: one.original_bytes });

    assert.equal((await api(service, 'PUT', route, await makeImage('upload-two', 'png', 700, 500))).status, 200);
    const two = row(target)!;
    assert.notEqual(two.path, one.path);
    assert.deepEqual(await decoded(path.join(coversDir, two.original_path!)), { format: 'png', width: 700, height: 500, bytes: two.original_bytes });
    await waitUntil(async () => !(await exists(path.join(coversDir, one.path))) && readTable(db, 'SELECT id FROM deletions').length === 0, 'the replaced file deleted');
    assert.equal(await exists(path.join(coversDir, one.original_path!)), false, 'the replaced original went too');
  });

  it('with --resize off the stored file is the original: no second copy', async (t) => {
    const { origin, coversDir, ws, row } = await setup(t, ['--resize', 'off']);
    const url = `${origin.url}/img/off.jpg?size=1146x717`;
    assert.equal(((await ws.check('off', [url])).done.results as Frame[])[0]!.status, 'ok');
    const stored = row(url)!;
    assert.equal(stored.original_path, stored.path);
    assert.deepEqual(await decoded(path.join(coversDir, stored.path)), { format: 'jpeg', width: 1146, height: 717, bytes: stored.bytes });
    const files = await readdir(path.dirname(path.join(coversDir, stored.path)));
    assert.deepEqual(files, [path.basename(stored.path)]);
  });
});

describe('originals in-process', () => {
  it('--original-max 800 scales a 1146×717 original down once, to 800 wide', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const { config, app, checks } = await startInProcess(t, ['--original-max', '800']);
    const url = `${origin.url}/img/capped.jpg?size=1146x717`;
    assert.equal((await checks.check([url]))[0]!.status, 'ok');
    const stored = (await app.store.covers.find(url))!;
    const original = await decoded(path.join(config.coversDir, stored.originalPath!));
    // 717 × 800 / 1146 = 500.5…, which sharp rounds to 501.
    assert.deepEqual(original, { format: 'jpeg', width: 800, height: Math.round((717 * 800) / 1146), bytes: stored.originalBytes });
    assert.deepEqual([stored.originalWidth, stored.originalHeight], [800, 501]);
    assert.deepEqual(await decoded(path.join(config.coversDir, stored.path)), { format: 'jpeg', width: 320, height: 200, bytes: stored.bytes });
  });

  it('originals count in --max-cache-bytes, and an eviction removes both files', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    // A cap every cover is over: the pass is driven by hand below.
    const { config, app, checks } = await startInProcess(t, ['--max-cache-bytes', '1']);
    await app.cacheLimits.stop();
    const urls = [0, 1, 2].map((i) => `${origin.url}/img/evict-${i}.jpg?size=1146x717`);
    const rows = [];
    for (const url of urls) {
      assert.equal((await checks.check([url]))[0]!.status, 'ok');
      rows.push((await app.store.covers.find(url))!);
    }
    const sizes = rows.map((row) => row.bytes + row.originalBytes!);
    assert.equal(await app.store.covers.downloadedBytes(), sizes.reduce((a, b) => a + b, 0), 'files and originals counted');
    await waitUntil(async () => {
      await app.cacheLimits.runOnce();
      return (await app.store.covers.count()) === 0;
    }, 'every cover over the cap evicted');
    await waitUntil(async () => (await app.store.deletions.pending()).length === 0, 'deletions carried out');
    for (const row of rows) {
      assert.equal(await exists(path.join(config.coversDir, row.path)), false, row.path);
      assert.equal(await exists(path.join(config.coversDir, row.originalPath!)), false, row.originalPath!);
    }
  });

  it('a failure writing the cover after its original leaves no original behind and no row pointing at either', async (t) => {
    const dir = await tempDir(t);
    const coversDir = path.join(dir, 'covers');
    const url = 'https://i0.hdslb.com/bfs/archive/fails.jpg';
    const image = await processImage(await makeImage('fails', 'jpeg', 1146, 717), { width: 320, height: 200 }, undefined, 800);
    // The cover's own path is taken by a folder: its rename fails, after the original was written.
    const probe = await writeCover(url, image, { coversDir: path.join(dir, 'probe'), source: 'download', now: 1 });
    await mkdir(path.join(coversDir, probe.path), { recursive: true });
    await assert.rejects(writeCover(url, image, { coversDir, source: 'download', now: 1 }));
    assert.equal(await exists(path.join(coversDir, probe.originalPath!)), false, 'the original written first is removed again');
    assert.deepEqual(await readdir(path.join(coversDir, '.tmp')), [], 'no temp file left');
  });
});

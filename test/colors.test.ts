/**
 * Answers say what a page needs before the image loads: `width` and `height`
 * of the original and `color`, its dominant colour. Solid-coloured images made
 * with sharp here are served by a real origin on 127.0.0.1 to the real service
 * process (a real SQLite file); the stored original is decoded to check the
 * sizes; the colour of a solid image must be that colour. Then covers stored
 * before colours were kept (an old-style SQLite file: no `color` column, a row
 * without an original) get theirs from the background pass.
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { parseServerFrame } from '@coverhelper/client/protocol';
import type { CheckResult } from '@coverhelper/client/protocol';
import { TestClock } from '../src/clock.js';
import { dominantColor, dominantOfPixels } from '../src/images/dominantColor.js';
import { processImage } from '../src/images/index.js';
import { createLogger } from '../src/logger.js';
import { ColorPass } from '../src/maintenance/index.js';
import { writeCover } from '../src/store/index.js';
import { readTable, waitUntil } from './helpers/db.js';
import { startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { openTestStore } from './helpers/stores.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];
const TOKEN = 'colours-admin-token-0123456789ab';

/** A solid image of one colour, made with sharp. */
function solid(hex: string, width: number, height: number, format: 'png' | 'jpeg'): Promise<Buffer> {
  const image = sharp({ create: { width, height, channels: 3, background: hex } });
  return (format === 'png' ? image.png() : image.jpeg({ quality: 90 })).toBuffer();
}

/** A real origin on 127.0.0.1 serving these bodies by path. */
async function imageOrigin(t: TestContext, images: Record<string, Buffer>): Promise<string> {
  const server = http.createServer((req, res) => {
    const body = images[new URL(req.url ?? '/', 'http://x').pathname];
    if (body === undefined) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': req.url?.endsWith('.png') ? 'image/png' : 'image/jpeg', 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The colour of every pixel of a solid image as it decodes (a JPEG's may be off its source by a step). */
async function decodedColor(data: Buffer): Promise<string> {
  const { channels } = await sharp(data).stats();
  return `#${channels.slice(0, 3).map((c) => Math.round(c.mean).toString(16).padStart(2, '0')).join('')}`;
}

async function decodedSize(file: string) {
  const meta = await sharp(await readFile(file)).metadata();
  return { width: meta.width, height: meta.height };
}

async function start(t: TestContext, dir: string, extra: string[] = []): Promise<Service> {
  const service = await startService(['--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--allow-private-network', '--allow-hosts', '127.0.0.1', '--admin-token', TOKEN, ...extra]);
  t.after(async () => void (await service.stop()));
  return service;
}

async function wsCheck(service: Service, urls: string[]): Promise<CheckResult[]> {
  const ws = await connect(service.wsUrl);
  try {
    return (await ws.check('c', urls)).done.results as CheckResult[];
  } finally {
    await ws.close();
  }
}

interface ColorRow {
  url: string;
  path: string;
  width: number;
  height: number;
  original_path: string | null;
  original_width: number | null;
  original_height: number | null;
  color: string | null;
}

describe('width, height and color on ok answers', () => {
  it('/ws and POST /api/check answer the original size and the dominant colour of solid images; the admin task detail and a custom upload say the same', async (t) => {
    const blue = await solid('#3366cc', 1146, 717, 'png');
    const amber = await solid('#e0a010', 640, 400, 'jpeg');
    const tall = await solid('#10c040', 300, 900, 'png');
    const origin = await imageOrigin(t, { '/blue.png': blue, '/amber.jpg': amber, '/tall.png': tall });
    const dir = await tempDir(t);
    const service = await start(t, dir);
    const urls = [`${origin}/blue.png`, `${origin}/amber.jpg`, `${origin}/tall.png`];
    const expected = [
      { width: 1146, height: 717, color: '#3366cc' },
      { width: 640, height: 400, color: await decodedColor(amber) },
      { width: 300, height: 900, color: '#10c040' },
    ];
    const off = [1, 3, 5].map((at, i) => Math.abs(parseInt(expected[1]!.color.slice(at, at + 2), 16) - [0xe0, 0xa0, 0x10][i]!));
    assert.ok(Math.max(...off) <= 2, `the JPEG decodes to its colour, or a step off: ${expected[1]!.color}`);

    const results = await wsCheck(service, urls);
    assert.deepEqual(results.map(({ status, source, width, height, color }) => ({ status, source, width, height, color })), expected.map((e) => ({ status: 'ok', source: 'download', ...e })));
    // The sizes are the stored original's, as it decodes (not the 320×200 default variant's).
    const db = path.join(dir, 'data', 'coverhelper.sqlite');
    for (const [i, url] of urls.entries()) {
      const row = readTable<ColorRow>(db, 'SELECT * FROM covers WHERE url = ?', url)[0]!;
      assert.equal(row.color, expected[i]!.color);
      assert.deepEqual(await decodedSize(path.join(dir, 'covers', row.original_path!)), { width: expected[i]!.width, height: expected[i]!.height });
      assert.notDeepEqual(await decodedSize(path.join(dir, 'covers', row.path)), { width: expected[i]!.width, height: expected[i]!.height }, 'the default variant is smaller');
    }

    // The HTTP door answers the same (from the cache now), and the client's parser keeps the fields.
    const res = await fetch(`${service.url}/api/check`, { method: 'POST', body: JSON.stringify({ urls }) });
    assert.equal(res.status, 200);
    const done = parseServerFrame(await res.text());
    assert.ok(done?.type === 'done');
    assert.deepEqual(done.results.map(({ source, width, height, color }) => ({ source, width, height, color })), expected.map((e) => ({ source: 'cache', ...e })));

    const auth = { authorization: `Bearer ${TOKEN}` };
    const detail = (await (await fetch(`${service.url}/admin/api/task?url=${encodeURIComponent(urls[0]!)}`, { headers: auth })).json()) as { cover: { answer: unknown; color: string } };
    assert.deepEqual(detail.cover.answer, expected[0]);
    assert.equal(detail.cover.color, '#3366cc');

    const upload = await fetch(`${service.url}/admin/api/covers?url=${encodeURIComponent('https://i0.hdslb.com/bfs/archive/custom-colour.png')}`, { method: 'PUT', headers: auth, body: await solid('#ff00ff', 500, 500, 'png') });
    assert.equal(upload.status, 200);
    const uploaded = (await upload.json()) as CheckResult;
    assert.deepEqual([uploaded.source, uploaded.width, uploaded.height, uploaded.color], ['custom', 500, 500, '#ff00ff']);
    const [asked] = await wsCheck(service, ['https://i0.hdslb.com/bfs/archive/custom-colour.png']);
    assert.deepEqual([asked!.source, asked!.width, asked!.height, asked!.color], ['custom', 500, 500, '#ff00ff']);
  });

  it('covers stored before colours were kept (an old-style SQLite file) get theirs from the background pass at start; a missing file is skipped', async (t) => {
    const blue = await solid('#3366cc', 1146, 717, 'png');
    const amber = await solid('#e0a010', 640, 400, 'jpeg');
    const origin = await imageOrigin(t, { '/old-blue.png': blue, '/old-amber.jpg': amber, '/old-gone.png': await solid('#000000', 64, 40, 'png') });
    const dir = await tempDir(t);
    const urls = [`${origin}/old-blue.png`, `${origin}/old-amber.jpg`, `${origin}/old-gone.png`];
    const first = await start(t, dir);
    assert.deepEqual((await wsCheck(first, urls)).map((r) => r.status), ['ok', 'ok', 'ok']);
    assert.equal(await first.stop(), 0);

    // Made old-style: no color column and its migration not run; the blue cover from before
    // originals were kept (no original row fields, no original file); the last one's file gone.
    const db = path.join(dir, 'data', 'coverhelper.sqlite');
    const rows = readTable<ColorRow>(db, 'SELECT * FROM covers ORDER BY url');
    const byUrl = new Map(rows.map((row) => [row.url, row]));
    const sqlite = new Database(db);
    try {
      sqlite.prepare('UPDATE covers SET original_path = NULL, original_width = NULL, original_height = NULL, original_bytes = NULL WHERE url = ?').run(urls[0]);
      sqlite.exec('ALTER TABLE covers DROP COLUMN color');
      assert.equal(sqlite.prepare("DELETE FROM migrations WHERE name LIKE 'AddCoverColor%'").run().changes, 1);
    } finally {
      sqlite.close();
    }
    await rm(path.join(dir, 'covers', byUrl.get(urls[0]!)!.original_path!));
    await rm(path.join(dir, 'covers', byUrl.get(urls[2]!)!.path));

    const second = await start(t, dir);
    const colors = await waitUntil(() => {
      const now = readTable<ColorRow>(db, 'SELECT url, color FROM covers ORDER BY url');
      return now.filter((row) => row.color !== null).length === 2 ? now : undefined;
    }, 'the pass gave the two covers with files their colour');
    const colorOf = new Map(colors.map((row) => [row.url, row.color]));
    assert.equal(colorOf.get(urls[0]!), '#3366cc');
    assert.equal(colorOf.get(urls[1]!), await decodedColor(amber));
    assert.equal(colorOf.get(urls[2]!), null, 'a cover whose file is gone is skipped');
    await second.waitForLog((line) => line.message === 'older covers given their colour' && line.colored === 2 && line.skipped === 1);
    assert.ok(second.logs.some((line) => line.level === 'warn' && String(line.message).startsWith('colour pass: the cover file is missing') && line.url === urls[2]), 'the skip is logged');

    const answers = await wsCheck(second, urls.slice(0, 2));
    // A cover without an original answers its stored file's size: the largest the service has of it.
    assert.deepEqual(answers.map(({ source, width, height, color }) => ({ source, width, height, color })), [
      { source: 'cache', width: 320, height: 200, color: '#3366cc' },
      { source: 'cache', width: 640, height: 400, color: await decodedColor(amber) },
    ]);
  });
});

describe('the colour pass', () => {
  const logger = createLogger({ logLevel: 'error', logFormat: 'json' });

  it('does one cover at a time, waits between covers on the clock, and stops on stop() with the rest left for the next start', async (t) => {
    const { store } = await openTestStore(t, 'sqlite');
    const coversDir = path.join(await tempDir(t), 'covers');
    const hexes = ['#ff0000', '#00ff00', '#0000ff'];
    const urls = hexes.map((_, i) => `https://i0.hdslb.com/bfs/archive/${i}.png`);
    for (const [i, hex] of hexes.entries()) {
      const image = await processImage(await solid(hex, 400, 250, 'png'), { width: 320, height: 200 });
      assert.equal(image.color, hex, 'processImage gives the colour');
      // Stored as a row from before colours were kept.
      await store.covers.save({ ...(await writeCover(urls[i]!, image, { coversDir, source: 'download', now: 1 })), color: null });
    }
    const clock = new TestClock();
    const pass = new ColorPass({ covers: store.covers, coversDir, logger, clock, pauseMs: 60_000 });
    const run = pass.start();
    assert.equal(pass.start(), run, 'started once');
    const colored = async () => (await Promise.all(urls.map((url) => store.covers.find(url)))).map((row) => row?.color ?? null);
    await waitUntil(async () => (await colored())[0] === '#ff0000', 'the first cover');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(await colored(), ['#ff0000', null, null], 'the next waits for the pause, on the clock');
    await clock.advance(60_000);
    await waitUntil(async () => (await colored())[1] === '#00ff00', 'the second cover after the pause');
    await pass.stop();
    assert.deepEqual(await run, { colored: 2, skipped: 0, stopped: true });
    assert.deepEqual(await colored(), ['#ff0000', '#00ff00', null], 'stopped: the third is left for the next pass');
    // The next start's pass finishes it.
    const next = new ColorPass({ covers: store.covers, coversDir, logger, clock, pauseMs: 0 });
    assert.deepEqual(await next.start(), { colored: 1, skipped: 0, stopped: false });
    assert.deepEqual(await colored(), hexes);
  });

  it('skips a file that is not an image, one too large, and one outside the covers folder, and goes on', async (t) => {
    const { store } = await openTestStore(t, 'sqlite');
    const dir = await tempDir(t);
    const coversDir = path.join(dir, 'covers');
    const image = await processImage(await solid('#123456', 400, 250, 'jpeg'), { width: 320, height: 200 });
    const good = await writeCover('https://a/good.jpg', image, { coversDir, source: 'download', now: 1 });
    await store.covers.save({ ...good, color: null });
    await writeFile(path.join(coversDir, 'text.jpg'), 'not an image at all');
    await store.covers.save({ ...good, url: 'https://a/text.jpg', path: 'text.jpg', color: null });
    await writeFile(path.join(coversDir, 'big.jpg'), Buffer.concat([image.data, Buffer.alloc(200)]));
    await store.covers.save({ ...good, url: 'https://a/big.jpg', path: 'big.jpg', color: null });
    await writeFile(path.join(dir, 'secret.jpg'), image.data);
    await store.covers.save({ ...good, url: 'https://a/outside.jpg', path: '../secret.jpg', color: null });
    const pass = new ColorPass({ covers: store.covers, coversDir, logger, pauseMs: 0, maxFileBytes: image.data.length + 100 });
    assert.deepEqual(await pass.start(), { colored: 1, skipped: 3, stopped: false });
    assert.equal((await store.covers.find('https://a/good.jpg'))?.color, await decodedColor(image.data));
    for (const url of ['https://a/text.jpg', 'https://a/big.jpg', 'https://a/outside.jpg']) assert.equal((await store.covers.find(url))?.color, null, url);
  });
});

describe('dominant colour', () => {
  it('is the mean of the fullest bin: exact for a solid image, the larger area of a two-colour one, the opaque pixels of a half-transparent one', async () => {
    assert.equal(await dominantColor(await solid('#ff0000', 50, 50, 'png'), 1e6), '#ff0000', "not sharp's bin centre (#f80808)");
    const twoTone = await sharp({ create: { width: 100, height: 100, channels: 3, background: '#204080' } })
      .composite([{ input: await solid('#f0e0d0', 100, 30, 'png'), top: 0, left: 0 }])
      .png()
      .toBuffer();
    assert.equal(await dominantColor(twoTone, 1e6), '#204080');
    const rgba = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 0, 0, 255, 255]);
    assert.equal(dominantOfPixels(rgba, 4), '#0000ff', 'transparent pixels are left out');
    assert.equal(dominantOfPixels(Buffer.from([255, 0, 0, 0]), 4), '#ff0000', 'unless there are no others');
    assert.equal(dominantOfPixels(Buffer.from([0x80, 0x81, 0x82, 0x10]), 1), '#818181', 'grey: the mean of the fullest bin');
    assert.equal(dominantOfPixels(Buffer.alloc(0), 3), '#000000');
    await assert.rejects(dominantColor(Buffer.from('not an image'), 1e6));
  });
});

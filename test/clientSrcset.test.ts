/**
 * The client package's `coverSrcset`: the `srcset` of an ok result's sizes,
 * never past the original's width, against results from the real service
 * (solid images from a real origin on 127.0.0.1) and hand-made ones for the
 * edges.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { CoverClient, coverSrcset } from '@coverhelper/client';
import type { CheckResult } from '@coverhelper/client';
import { startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';

const ok = (width?: number): CheckResult => ({ url: 'https://a/b.jpg', status: 'ok', coverUrl: 'http://cdn.test/covers/a/b-1.jpg', path: 'a/b-1.jpg', source: 'cache', ...(width === undefined ? {} : { width, height: 100 }) });
const base = 'http://cdn.test/covers/a/b-1.jpg';

describe('coverSrcset', () => {
  it('lists each width with its format, ascending, once', () => {
    assert.equal(
      coverSrcset(ok(1146), { widths: [480, 160, 320, 160], format: 'webp' }),
      `${base}?w=160&f=webp 160w, ${base}?w=320&f=webp 320w, ${base}?w=480&f=webp 480w`,
    );
    assert.equal(coverSrcset(ok(1146), { widths: [320] }), `${base}?w=320 320w`, 'no format: the service picks by Accept');
  });

  it('leaves out widths past the original and offers the original width once instead', () => {
    assert.equal(
      coverSrcset(ok(500), { widths: [160, 320, 480, 640, 960], format: 'avif' }),
      `${base}?w=160&f=avif 160w, ${base}?w=320&f=avif 320w, ${base}?w=480&f=avif 480w, ${base}?w=500&f=avif 500w`,
    );
    assert.equal(coverSrcset(ok(480), { widths: [160, 480, 960] }), `${base}?w=160 160w, ${base}?w=480 480w`, 'the original width already listed is not repeated');
    assert.equal(coverSrcset(ok(64), { widths: [160, 320] }), `${base}?w=64 64w`, 'a small original: only itself');
    assert.equal(coverSrcset(ok(640), { widths: [160, 640] }), `${base}?w=160 160w, ${base}?w=640 640w`, 'nothing skipped: nothing added');
    assert.equal(coverSrcset(ok(), { widths: [160, 4000] }), `${base}?w=160 160w, ${base}?w=4000 4000w`, 'original width unknown: every width');
  });

  it('gives no candidates for a result without a cover, and refuses bad widths and formats', () => {
    assert.equal(coverSrcset({ status: 'error' }, { widths: [160] }), '');
    assert.equal(coverSrcset({ status: 'skipped' }, { widths: [160] }), '');
    assert.equal(coverSrcset(ok(300), { widths: [] }), '');
    for (const width of [0, -160, 1.5, Number.NaN, Infinity]) assert.throws(() => coverSrcset(ok(300), { widths: [width] }), RangeError, String(width));
    assert.throws(() => coverSrcset(ok(300), { widths: [160], format: 'gif' as never }), RangeError);
    assert.equal(coverSrcset({ status: 'ok', coverUrl: 'http://x/covers/a b.jpg?sig=1', width: 200 }, { widths: [160] }), 'http://x/covers/a%20b.jpg?sig=1&w=160 160w', 'a URL with a query gets &, whitespace is escaped');
  });

  it('makes the srcset of answers from the real service: the original size of a 1146×717 and of a 300×900 cover (solid PNGs)', async (t) => {
    const images: Record<string, Buffer> = {
      '/wide.png': await sharp({ create: { width: 1146, height: 717, channels: 3, background: '#336699' } }).png().toBuffer(),
      '/tall.png': await sharp({ create: { width: 300, height: 900, channels: 3, background: '#996633' } }).png().toBuffer(),
    };
    const origin = http.createServer((req, res) => {
      const body = images[req.url ?? ''];
      if (body === undefined) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'image/png' }).end(body);
    });
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => origin.close(() => resolve())));
    const originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
    const dir = await tempDir(t);
    const service = await startService(['--data-dir', `${dir}/data`, '--covers-dir', `${dir}/covers`, '--allow-private-network', '--allow-hosts', '127.0.0.1']);
    t.after(async () => void (await service.stop()));
    const client = new CoverClient(service.wsUrl);
    t.after(() => client.close());
    const [wide, tall] = await client.check([`${originUrl}/wide.png`, `${originUrl}/tall.png`]);
    assert.deepEqual([wide!.width, wide!.height, wide!.color, tall!.width, tall!.height, tall!.color], [1146, 717, '#336699', 300, 900, '#996633']);
    const widths = [160, 320, 480, 640, 960, 1280];
    const list = (result: CheckResult) => coverSrcset(result, { widths, format: 'webp' }).split(', ').map((candidate) => candidate.split(' '));
    assert.deepEqual(list(wide!).map(([, w]) => w), ['160w', '320w', '480w', '640w', '960w', '1146w']);
    assert.deepEqual(list(tall!).map(([, w]) => w), ['160w', '300w']);
    for (const [url, w] of list(wide!)) assert.equal(url, `${wide!.coverUrl}?w=${w!.slice(0, -1)}&f=webp`);
  });
});

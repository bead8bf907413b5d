/**
 * bilibili's processing suffixes, read as variants of the URL without them:
 * the forms blog plugins and bilibili's own pages write, the exact sizes they
 * ask of an original (as bilibili's CDN makes them), and the suffixes that
 * cannot be read (kept whole, fetched as they are).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { renderVariant } from '../src/images/variants.js';
import { readBilibiliSuffix, suffixSpec } from '../src/proxy/bilibiliSuffix.js';
import type { SuffixRequest } from '../src/proxy/bilibiliSuffix.js';

const B = 'https://i0.hdslb.com/bfs/archive/4c1b6d0e0f3e9a2b8f2d1c0e9a8b7c6d5e4f3a2b.jpg';

/** [suffix, what it asks]. */
const readable: [string, SuffixRequest][] = [
  ['220w_280h.webp', { w: 220, h: 280, crop: false, cover: false, format: 'webp' }],
  ['336w_190h_1c.webp', { w: 336, h: 190, crop: true, cover: false, format: 'webp' }],
  ['100w.avif', { w: 100, crop: false, cover: false, format: 'avif' }],
  ['.webp', { crop: false, cover: false, format: 'webp' }],
  ['.avif', { crop: false, cover: false, format: 'avif' }],
  ['190h.png', { h: 190, crop: false, cover: false, format: 'png' }],
  ['672w_378h_1c', { w: 672, h: 378, crop: true, cover: false }],
  ['672w_378h_1c.jpg', { w: 672, h: 378, crop: true, cover: false, format: 'jpeg' }],
  ['672w_378h_1c.jpeg', { w: 672, h: 378, crop: true, cover: false, format: 'jpeg' }],
  ['1c_378h_672w.webp', { w: 672, h: 378, crop: true, cover: false, format: 'webp' }],
  ['96w_96h_1e_1c.webp', { w: 96, h: 96, crop: true, cover: false, format: 'webp' }],
  ['160w_100h_1e.webp', { w: 160, h: 100, crop: false, cover: true, format: 'webp' }],
  ['160w_100h_0e_0c.webp', { w: 160, h: 100, crop: false, cover: false, format: 'webp' }],
  ['320w_200h_1c_85q.webp', { w: 320, h: 200, crop: true, cover: false, quality: 85, format: 'webp' }],
  ['75q.webp', { crop: false, cover: false, quality: 75, format: 'webp' }],
  ['100w_1c.webp', { w: 100, crop: false, cover: false, format: 'webp' }],
  ['10000w', { w: 10000, crop: false, cover: false }],
];

/** Suffixes that are no variant: the URL is fetched whole. */
const unreadable = [
  '', // `abc.jpg@`
  '220w_280h_!web-dynamic.webp', // a named style
  '672w_378h_1c_!web-search-common-cover.webp',
  '96w_96h_1s.webp', // a part not known
  '220w_220w.webp', // a part twice
  '220w__280h.webp', // an empty part
  '_220w.webp',
  '220w_.webp',
  '0w.webp', // out of range
  '10001w.webp',
  '99999999w.webp',
  '0220w.webp', // a leading zero
  '2c_100w_100h.webp',
  '2e_100w_100h.webp',
  '0q.webp',
  '101q.webp',
  '220W_280H.webp', // bilibili writes them lowercase
  '220w_280h.gif',
  '220w_280h.webp.webp',
  '220w 280h.webp',
  '-220w.webp',
  '1.5w.webp',
  '220x280.webp',
  '220w_280h.WEBP',
];

describe('bilibili suffixes: readable forms', () => {
  for (const [suffix, request] of readable) {
    it(`abc.jpg@${suffix}`, () => {
      const read = readBilibiliSuffix(`${B}@${suffix}`);
      assert.ok(read, suffix);
      assert.equal(read.base, B);
      assert.equal(read.suffix, suffix);
      assert.deepEqual(read.request, request);
    });
  }

  it('reads them on every host and path form, after a png, a gif or a webp base too', () => {
    for (const base of [
      'https://i1.hdslb.com/bfs/face/member/noface.png',
      'http://i2.hdslb.com/bfs/archive/a.jpeg',
      'https://i0.hdslb.com/bfs/new_dyn/x.gif',
      'https://archive.biliimg.com/bfs/archive/y.webp',
      'http://127.0.0.1:8080/img/z.jpg',
    ]) {
      const read = readBilibiliSuffix(`${base}@220w_280h.webp`);
      assert.equal(read?.base, base, base);
    }
  });
});

describe('bilibili suffixes: unreadable ones are kept whole', () => {
  for (const suffix of unreadable) {
    it(`abc.jpg@${suffix}`, () => {
      assert.equal(readBilibiliSuffix(`${B}@${suffix}`), undefined);
    });
  }

  it('no suffix, an @ elsewhere, in the query, in the userinfo, twice, or no file extension before it', () => {
    for (const url of [
      B,
      'https://i0.hdslb.com/bfs/a@220w/abc.jpg',
      'https://i0.hdslb.com/bfs/abc.jpg?x=@220w.webp',
      'https://i0.hdslb.com/bfs/abc.jpg@220w.webp?x=1',
      'https://i0.hdslb.com/bfs/abc.jpg@220w.webp#top',
      'https://user@i0.hdslb.com/bfs/abc.jpg',
      'https://i0.hdslb.com/bfs/abc.jpg@220w@280h.webp',
      'https://i0.hdslb.com/bfs/abc@220w.webp',
      'https://i0.hdslb.com/bfs/logo@2x.png',
      'https://i0.hdslb.com/bfs/@220w.webp',
      'https://i0.hdslb.com/bfs/.jpg@220w.webp',
      'https://i0.hdslb.com/bfs/abc.jpg%40220w.webp',
      'not a url @220w.webp',
    ]) {
      assert.equal(readBilibiliSuffix(url), undefined, url);
    }
  });
});

describe('bilibili suffixes: the exact size asked of an original', () => {
  const cover = { width: 1146, height: 717, format: 'jpeg' };
  const box = (suffix: string, original: { width: number; height: number; format: string } = cover) => {
    const read = readBilibiliSuffix(`${B}@${suffix}`);
    assert.ok(read, suffix);
    return suffixSpec(read.request, original);
  };

  it('w and h are maxima: the aspect is kept inside the box', () => {
    assert.deepEqual(box('220w_280h.webp'), { width: 220, height: 138, fit: 'fill', format: 'webp' });
    assert.deepEqual(box('500w_100h.webp'), { width: 160, height: 100, fit: 'fill', format: 'webp' });
    assert.deepEqual(box('100w.avif'), { width: 100, height: 63, fit: 'fill', format: 'avif' });
    assert.deepEqual(box('190h'), { width: 304, height: 190, fit: 'fill', format: 'jpeg' });
  });

  it('1c crops to fill exactly w×h; 1e covers the box', () => {
    assert.deepEqual(box('336w_190h_1c.webp'), { width: 336, height: 190, fit: 'cover', format: 'webp' });
    assert.deepEqual(box('96w_96h_1e_1c.png'), { width: 96, height: 96, fit: 'cover', format: 'png' });
    assert.deepEqual(box('160w_160h_1e.webp'), { width: 256, height: 160, fit: 'fill', format: 'webp' });
  });

  it('never past the original: a larger box keeps its size, a larger crop is the largest box of its aspect inside it', () => {
    assert.deepEqual(box('4000w_3000h.webp'), { width: 1146, height: 717, fit: 'fill', format: 'webp' });
    assert.deepEqual(box('2000w.webp'), { width: 1146, height: 717, fit: 'fill', format: 'webp' });
    assert.deepEqual(box('.webp'), { width: 1146, height: 717, fit: 'fill', format: 'webp' });
    // 2000×1000 (2:1) inside 1146×717: 1146×573.
    assert.deepEqual(box('2000w_1000h_1c.webp'), { width: 1146, height: 573, fit: 'cover', format: 'webp' });
    // 1000×1000 inside a 64×40 original: 40×40.
    assert.deepEqual(box('1000w_1000h_1c.webp', { width: 64, height: 40, format: 'jpeg' }), { width: 40, height: 40, fit: 'cover', format: 'webp' });
    assert.deepEqual(box('220w_280h.webp', { width: 64, height: 40, format: 'jpeg' }), { width: 64, height: 40, fit: 'fill', format: 'webp' });
  });

  it('the format is the extension, else the original\'s own; q is passed on', () => {
    assert.equal(box('220w', { width: 640, height: 400, format: 'png' }).format, 'png');
    assert.equal(box('220w.jpg', { width: 640, height: 400, format: 'png' }).format, 'jpeg');
    assert.deepEqual(box('320w_200h_1c_85q.webp'), { width: 320, height: 200, fit: 'cover', format: 'webp', quality: 85 });
  });

  it('a 1-pixel answer at least, even for an extreme aspect', () => {
    assert.deepEqual(box('1w.webp', { width: 1000, height: 10, format: 'jpeg' }), { width: 1, height: 1, fit: 'fill', format: 'webp' });
  });
});

describe('bilibili suffixes: rendered by the render core', () => {
  it('a 1146×717 JPEG through renderVariant comes out at the size and format each suffix asks', async () => {
    const original = await sharp({ create: { width: 1146, height: 717, channels: 3, background: { r: 200, g: 80, b: 40 } } }).jpeg().toBuffer();
    const info = { width: 1146, height: 717, format: 'jpeg' };
    for (const [suffix, width, height, format] of [
      ['220w_280h.webp', 220, 138, 'webp'],
      ['336w_190h_1c.webp', 336, 190, 'webp'],
      ['100w.avif', 100, 63, 'heif'],
      ['96w_96h_1e_1c.png', 96, 96, 'png'],
      ['160w_160h_1e.jpg', 256, 160, 'jpeg'],
      ['2000w_1000h_1c.webp', 1146, 573, 'webp'],
    ] as const) {
      const read = readBilibiliSuffix(`${B}@${suffix}`);
      assert.ok(read, suffix);
      const made = await renderVariant(original, suffixSpec(read.request, info));
      const meta = await sharp(made.data).metadata();
      assert.deepEqual([meta.width, meta.height, meta.format], [width, height, format], suffix);
    }
  });
});

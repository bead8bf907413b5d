import assert from 'node:assert/strict';
import { once } from 'node:events';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { fetchCover } from '../src/downloads/fetchCover.js';
import { CoverError } from '../src/errors.js';
import { createHttpClient } from '../src/fetch/index.js';
import { decodeBudget, MAX_IMAGE_PIXELS, PixelBudget, processImage, readImageHeader } from '../src/images/index.js';
import { waitUntil } from './helpers/db.js';
import { makeImage, startOrigin } from './helpers/origin.js';
import { openTestStore } from './helpers/stores.js';
import { tempDir } from './helpers/tempDir.js';

describe('processImage', () => {
  it('crops to fill the resize box, keeping the aspect and the format', async () => {
    const tall = await makeImage('tall', 'png', 400, 1200);
    const out = await processImage(tall, { width: 320, height: 200 });
    assert.deepEqual([out.width, out.height, out.contentType, out.ext], [320, 200, 'image/png', 'png']);
    const meta = await sharp(out.data).metadata();
    assert.deepEqual([meta.width, meta.height, meta.format], [320, 200, 'png']);
  });

  it('never enlarges the default variant: a smaller image is cropped to the aspect at its own scale', async () => {
    for (const [width, height, expected] of [
      [64, 40, [64, 40]],
      [300, 900, [300, 188]],
      [100, 50, [80, 50]],
      [330, 150, [240, 150]],
    ] as const) {
      const body = await makeImage(`small-${width}`, 'png', width, height);
      const out = await processImage(body, { width: 320, height: 200 });
      const meta = await sharp(out.data).metadata();
      assert.deepEqual([meta.width, meta.height, out.width, out.height], [...expected, ...expected], `${width}×${height}`);
      // The original is the body itself: same format, within --original-max, upright.
      assert.equal(out.original.data, body);
      assert.deepEqual([out.original.width, out.original.height, out.original.ext], [width, height, 'png']);
    }
  });

  it('keeps the original beside the variant, scaled down once past originalMax', async () => {
    const jpeg = await makeImage('big', 'jpeg', 1146, 717);
    const out = await processImage(jpeg, { width: 320, height: 200 });
    const variant = await sharp(out.data).metadata();
    assert.deepEqual([variant.format, variant.width, variant.height], ['jpeg', 320, 200]);
    assert.equal(out.original.data, jpeg, 'within the limit, in its format, upright: the bytes as downloaded');
    assert.deepEqual([out.original.width, out.original.height, out.original.contentType, out.original.ext], [1146, 717, 'image/jpeg', 'jpg']);

    const scaled = await processImage(jpeg, { width: 320, height: 200 }, undefined, 800);
    const original = await sharp(scaled.original.data).metadata();
    // 717 × 800 / 1146 = 500.5…: sharp rounds to 501.
    assert.deepEqual([original.format, original.width, original.height], ['jpeg', 800, Math.round((717 * 800) / 1146)]);
    assert.deepEqual([scaled.original.width, scaled.original.height], [original.width, original.height]);
    assert.deepEqual([scaled.width, scaled.height], [320, 200], 'the default variant is unchanged');
  });

  it('turns an EXIF-rotated original upright, and keeps a GIF original as the variant’s format', async () => {
    const rotated = await sharp({ create: { width: 300, height: 500, channels: 3, background: '#336699' } }).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    const out = await processImage(rotated, { width: 320, height: 200 });
    const original = await sharp(out.original.data).metadata();
    assert.notEqual(out.original.data, rotated);
    assert.deepEqual([original.width, original.height, original.orientation ?? 1, original.format], [500, 300, 1, 'jpeg']);
    assert.deepEqual([out.original.width, out.original.height], [500, 300]);

    const gif = await sharp({ create: { width: 120, height: 90, channels: 3, background: '#993366' } }).gif().toBuffer();
    const fromGif = await processImage(gif, { width: 320, height: 200 });
    const gifOriginal = await sharp(fromGif.original.data).metadata();
    assert.deepEqual([fromGif.ext, fromGif.original.ext, gifOriginal.format, gifOriginal.width, gifOriginal.height], ['jpg', 'jpg', 'jpeg', 120, 90]);
    const gifVariant = await sharp(fromGif.data).metadata();
    assert.deepEqual([gifVariant.width, gifVariant.height], [120, 75]);
  });

  it('keeps the original bytes with resize off, after decoding them', async () => {
    const jpeg = await makeImage('orig', 'jpeg', 64, 48);
    const out = await processImage(jpeg, null);
    assert.equal(out.data, jpeg);
    assert.deepEqual([out.width, out.height, out.contentType, out.ext], [64, 48, 'image/jpeg', 'jpg']);
  });

  it('refuses text, empty bodies and truncated images as not_image', async () => {
    const jpeg = await makeImage('cut', 'jpeg', 200, 200);
    const notImage = (error: unknown) => error instanceof CoverError && error.code === 'not_image';
    await assert.rejects(processImage(Buffer.from('<html>nope</html>'), null), notImage);
    await assert.rejects(processImage(Buffer.alloc(0), { width: 10, height: 10 }), notImage);
    await assert.rejects(processImage(jpeg.subarray(0, Math.floor(jpeg.length / 2)), null), notImage);
    await assert.rejects(processImage(jpeg.subarray(0, Math.floor(jpeg.length / 2)), { width: 10, height: 10 }), notImage);
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
    await assert.rejects(processImage(svg, null), notImage);
  });
});

/** Images made with sharp in every shape the header reader has a branch for. */
async function sampleImages(): Promise<{ name: string; body: Buffer }[]> {
  const noise = (width: number, height: number, channels: 3 | 4) => {
    const data = Buffer.alloc(width * height * channels);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2_654_435_761) >>> 24;
    return sharp(data, { raw: { width, height, channels } });
  };
  const frames = (width: number, pageHeight: number, pages: number) => {
    const data = Buffer.alloc(width * pageHeight * pages * 4, 0x80);
    for (let i = 0; i < data.length; i += 7) data[i] = i & 255;
    return sharp(data, { raw: { width, height: pageHeight * pages, channels: 4, pageHeight } });
  };
  const samples: [string, Promise<Buffer>][] = [
    ['jpeg baseline', noise(641, 401, 3).jpeg({ quality: 80 }).toBuffer()],
    ['jpeg progressive, EXIF and ICC first', noise(300, 500, 3).withMetadata({ orientation: 6, icc: 'srgb' }).jpeg({ progressive: true }).toBuffer()],
    ['jpeg mozjpeg, 1 px wide', noise(1, 37, 3).jpeg({ mozjpeg: true }).toBuffer()],
    ['jpeg cmyk', noise(33, 21, 3).toColourspace('cmyk').jpeg().toBuffer()],
    ['png rgb', noise(320, 200, 3).png().toBuffer()],
    ['png rgba palette', noise(77, 55, 4).png({ palette: true }).toBuffer()],
    ['png 16 bit', noise(9, 65, 3).toColourspace('rgb16').png().toBuffer()],
    ['webp lossy (VP8)', noise(333, 111, 3).webp({ quality: 70 }).toBuffer()],
    ['webp lossless (VP8L)', noise(129, 257, 3).webp({ lossless: true }).toBuffer()],
    ['webp alpha (VP8X)', noise(64, 48, 4).webp({ quality: 70, alphaQuality: 50 }).toBuffer()],
    ['webp animated (VP8X)', frames(40, 30, 3).webp().toBuffer()],
    ['webp 16383 wide', sharp({ create: { width: 16383, height: 2, channels: 3, background: '#123456' } }).webp({ lossless: true }).toBuffer()],
    ['gif', noise(120, 90, 3).gif().toBuffer()],
    ['gif animated', frames(50, 40, 3).gif().toBuffer()],
    ['gif 640x480 (a monitor size)', noise(640, 480, 3).gif().toBuffer()],
  ];
  return Promise.all(samples.map(async ([name, body]) => ({ name, body: await body })));
}

describe('readImageHeader', () => {
  it('reads the format and size that sharp reports, for JPEG, PNG, WebP and GIF', async () => {
    const samples = await sampleImages();
    for (const { name, body } of samples) {
      const meta = await sharp(body, { animated: false }).metadata();
      assert.deepEqual(readImageHeader(body), { format: meta.format, width: meta.width, height: meta.height }, name);
      const kind = name.split(' ')[0]!;
      assert.equal(meta.format, kind, `${name} is what it says`);
    }
    // VP8X must be there for the alpha and animated ones, VP8L and VP8 for the others.
    const chunk = (name: string) => samples.find((sample) => sample.name === name)!.body.toString('latin1', 12, 16);
    assert.deepEqual(
      ['webp lossy (VP8)', 'webp lossless (VP8L)', 'webp alpha (VP8X)', 'webp animated (VP8X)'].map(chunk),
      ['VP8 ', 'VP8L', 'VP8X', 'VP8X'],
    );
  });

  it("sizes a GIF as libvips does: an odd logical screen, and a first frame that grows it", async () => {
    const base = await sharp({ create: { width: 50, height: 40, channels: 3, background: '#c80a0a' } }).gif().toBuffer();
    const descriptor = base.indexOf(0x2c, 13 + (base[10]! & 0x80 ? 3 << ((base[10]! & 7) + 1) : 0));
    const screens: [number, number, number?][] = [
      [100, 100], [20, 20], [640, 480], [640, 512], [800, 600], [1024, 768], [1280, 1024], [1600, 1200],
      [2048, 2048], [2049, 100], [100, 2049], [0, 100], [30, 0], [640, 100], [60, 60, 30],
    ];
    for (const [width, height, left] of screens) {
      const gif = Buffer.from(base);
      gif.writeUInt16LE(width, 6);
      gif.writeUInt16LE(height, 8);
      if (left !== undefined) gif.writeUInt16LE(left, descriptor + 1);
      const meta = await sharp(gif, { animated: false }).metadata();
      assert.deepEqual(readImageHeader(gif), { format: 'gif', width: meta.width, height: meta.height }, `screen ${width}x${height}`);
    }
  });

  it('knows nothing of other formats or of a header that is cut off', async () => {
    const [jpeg, png, webp, gif] = await Promise.all([
      makeImage('head', 'jpeg', 40, 30),
      makeImage('head', 'png', 40, 30),
      sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).webp().toBuffer(),
      sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).gif().toBuffer(),
    ]);
    const tiff = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).tiff().toBuffer();
    for (const body of [Buffer.alloc(0), Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'), Buffer.from('GIF89'), tiff, jpeg.subarray(0, 20), png.subarray(0, 20), webp.subarray(0, 25), gif.subarray(0, 14)]) {
      assert.equal(readImageHeader(body), null, body.subarray(0, 12).toString('latin1'));
    }
    // This JPEG's frame header (SOF0) starts at byte 140 and holds its size in bytes 145–148,
    // before the Huffman tables and the scan.
    assert.equal(jpeg.readUInt16BE(140), 0xffc0);
    assert.deepEqual(readImageHeader(jpeg.subarray(0, 149)), { format: 'jpeg', width: 40, height: 30 }, 'only the header is read');
    assert.equal(readImageHeader(jpeg.subarray(0, 148)), null, 'cut inside the frame header');
  });
});

describe('processImage with the header reader', () => {
  it('answers what sharp reports, with resize off and on, for every sample', async () => {
    for (const { name, body } of await sampleImages()) {
      const meta = await sharp(body, { animated: false }).metadata();
      const off = await processImage(body, null);
      assert.equal(off.data, body, name);
      assert.deepEqual([off.width, off.height, off.ext], [meta.width, meta.height, meta.format === 'jpeg' ? 'jpg' : meta.format], name);
      const on = await processImage(body, { width: 32, height: 20 });
      // Upright size; never enlarged: an image smaller than 32×20 gives the largest 32:20 box inside it.
      const [w, h] = (meta.orientation ?? 1) >= 5 ? [meta.height, meta.width] : [meta.width, meta.height];
      const box = w >= 32 && h >= 20 ? [32, 20] : [Math.max(1, Math.min(w, Math.round((h * 32) / 20))), Math.max(1, Math.min(h, Math.round((w * 20) / 32)))];
      const decoded = await sharp(on.data).metadata();
      assert.deepEqual([on.width, on.height, decoded.width, decoded.height], [...box, ...box], name);
      const original = await sharp(on.original.data).metadata();
      // Past --original-max (1920) on its longer side, scaled down to it.
      const scale = Math.min(1, 1920 / Math.max(w, h));
      const [ow, oh] = [Math.max(1, Math.round(w * scale)), Math.max(1, Math.round(h * scale))];
      assert.deepEqual([on.original.width, on.original.height, original.width, original.height], [ow, oh, ow, oh], `${name}: the original, upright`);
      assert.equal(on.original.ext, on.ext, name);
      assert.equal((await sharp(on.data).metadata()).format, meta.format === 'gif' ? 'jpeg' : meta.format, name);
    }
  });

  it('still refuses a body whose header is whole but whose data is cut off, in every format', async () => {
    const notImage = (error: unknown) => error instanceof CoverError && error.code === 'not_image';
    for (const { name, body } of await sampleImages()) {
      // Too small to cut inside the data; and of an animated image only the first frame is decoded (animated: false).
      if (name.includes('1 px') || name.includes('16383') || name.includes('animated') || body.length < 400) continue;
      const cut = body.subarray(0, Math.floor(body.length * 0.6));
      assert.ok(readImageHeader(cut), `${name}: the header survives the cut`);
      await assert.rejects(processImage(cut, null), notImage, `${name}, resize off`);
      await assert.rejects(processImage(cut, { width: 10, height: 10 }), notImage, `${name}, resize on`);
    }
  });

  it('still reads the formats it has no header reader for (TIFF), and refuses SVG', async () => {
    const tiff = await sharp({ create: { width: 24, height: 12, channels: 3, background: '#336699' } }).tiff().toBuffer();
    const out = await processImage(tiff, null);
    assert.deepEqual([out.width, out.height, out.contentType], [24, 12, 'image/tiff']);
    const notImage = (error: unknown) => error instanceof CoverError && error.code === 'not_image';
    const svg = Buffer.from('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>');
    await assert.rejects(processImage(svg, { width: 10, height: 10 }), notImage);
  });
});

/** A uniform greyscale PNG: tiny as a body, `width`×`height` pixels once decoded. */
function greyPng(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: '#808080' } }).toColourspace('b-w').png().toBuffer();
}

/**
 * Watches sharp's own task counters (libvips pipelines queued for or running on
 * a libuv thread) at every change, independently of the budget's bookkeeping.
 */
function watchSharp(): { changes: number; mostTasks: number; mostPixels: number; mostWaiting: number; stop(): void } {
  const seen = { changes: 0, mostTasks: 0, mostPixels: 0, mostWaiting: 0, stop: () => sharp.queue.off('change', listener) };
  const listener = () => {
    // sharp.counters() reads `queue` then `process`; a libuv thread that moves a
    // task from one to the other between those reads makes it count twice (seen
    // on CI: 3 with two tasks). Tasks enter and leave only on this thread, so
    // reading `process` first and `queue` after can only count a moving task
    // once or not at all: never more tasks than there are.
    const { process } = sharp.counters();
    const { queue } = sharp.counters();
    seen.changes++;
    seen.mostTasks = Math.max(seen.mostTasks, queue + process);
    seen.mostPixels = Math.max(seen.mostPixels, decodeBudget.inUse);
    seen.mostWaiting = Math.max(seen.mostWaiting, decodeBudget.waiting);
  };
  sharp.queue.on('change', listener);
  return seen;
}

describe('image size limit and decode budget', () => {
  // Two of these fill the budget exactly.
  const half = () => greyPng(5000, 2500);

  it('refuses an image over 25 megapixels from its header, as too_large, without decoding it', async () => {
    assert.equal(MAX_IMAGE_PIXELS, 25_000_000);
    const bomb = await greyPng(10_000, 10_000);
    assert.ok(bomb.length < 200_000, `a ${bomb.length}-byte body`);
    const watch = watchSharp();
    try {
      for (const resize of [null, { width: 320, height: 200 }]) {
        await assert.rejects(processImage(bomb, resize), (error: unknown) => {
          assert.ok(error instanceof CoverError);
          assert.equal(error.code, 'too_large');
          assert.equal(error.message, 'the image is 10000×10000 (100 megapixels), over the limit of 25 megapixels');
          return true;
        });
      }
      assert.equal(watch.changes, 0, 'no libvips pipeline was started');
    } finally {
      watch.stop();
    }
    assert.equal(decodeBudget.inUse, 0);
    // A format the header reader does not know is sized by sharp's metadata (its header), then refused.
    const tiff = await sharp({ create: { width: 5001, height: 5000, channels: 3, background: '#000' } }).toColourspace('b-w').tiff({ compression: 'deflate' }).toBuffer();
    await assert.rejects(processImage(tiff, null), (error: unknown) => error instanceof CoverError && error.code === 'too_large' && error.message.includes('5001×5000 (25 megapixels)'));
    // At the limit exactly is accepted.
    const out = await processImage(await greyPng(5000, 5000), null);
    assert.deepEqual([out.width, out.height], [5000, 5000]);
  });

  it('never decodes more pixels at once than the budget, however many calls run', async () => {
    assert.equal(decodeBudget.capacity, MAX_IMAGE_PIXELS, 'one image at the limit');
    assert.equal(2 * 5000 * 2500, decodeBudget.capacity);
    const image = await half();
    const watch = watchSharp();
    try {
      // Six at once, more than libuv's four threads: without the budget four would decode together.
      const outs = await Promise.all(Array.from({ length: 6 }, (_, i) => processImage(Buffer.from(image), i % 2 ? null : { width: 32, height: 20 })));
      assert.equal(outs.length, 6);
    } finally {
      watch.stop();
    }
    assert.equal(watch.mostPixels, decodeBudget.capacity, 'the budget was full');
    assert.ok(watch.mostWaiting >= 1, 'calls waited for it');
    assert.equal(watch.mostTasks, 2, 'two libvips pipelines at most, and two at once');
    assert.deepEqual([decodeBudget.inUse, decodeBudget.waiting], [0, 0]);
  });

  it('rejects at once on an abort while waiting for the budget, taking nothing', async () => {
    const image = await half();
    const first = processImage(Buffer.from(image), null);
    const second = processImage(Buffer.from(image), null);
    let settled = 0;
    void Promise.allSettled([first, second]).then(() => settled++);
    const controller = new AbortController();
    const third = processImage(Buffer.from(image), null, controller.signal);
    assert.deepEqual([decodeBudget.inUse, decodeBudget.waiting], [decodeBudget.capacity, 1], 'two decode, the third waits');
    const reason = new Error('time limit');
    controller.abort(reason);
    await assert.rejects(third, (error: unknown) => error === reason);
    assert.equal(settled, 0, 'the two decodes are still running');
    assert.deepEqual([decodeBudget.inUse, decodeBudget.waiting], [decodeBudget.capacity, 0], 'the waiter left and freed nothing');
    await Promise.all([first, second]);
    assert.deepEqual([decodeBudget.inUse, decodeBudget.waiting], [0, 0]);
  });

  it('rejects an already aborted call without decoding, and keeps the pixels of a running decode until it ends', async () => {
    const image = await half();
    const reason = new Error('shutting down');
    const watch = watchSharp();
    try {
      await assert.rejects(processImage(image, null, AbortSignal.abort(reason)), (error: unknown) => error === reason);
      assert.equal(watch.changes, 0, 'no libvips pipeline was started');
    } finally {
      watch.stop();
    }
    assert.equal(decodeBudget.inUse, 0);

    // Aborted while decoding: the call rejects at once; the decode cannot be
    // stopped, so its pixels stay taken until it ends, then they are freed.
    const controller = new AbortController();
    const started = once(sharp.queue, 'change');
    const running = processImage(Buffer.from(image), { width: 32, height: 20 }, controller.signal);
    assert.equal(decodeBudget.inUse, 5000 * 2500);
    await started; // the pipeline is queued for a libuv thread: it will run to its end
    controller.abort(reason);
    await assert.rejects(running, (error: unknown) => error === reason);
    assert.equal(decodeBudget.inUse, 5000 * 2500, 'held by the decode still running');
    await waitUntil(() => decodeBudget.inUse === 0, 'the decode ended and released its pixels');
  });
});

describe('a download waiting for the decode budget', () => {
  it('ends at once when its signal aborts (time limit, shutdown), leaving the budget as it was', async (t) => {
    const dir = await tempDir(t);
    const { store } = await openTestStore(t, 'sqlite');
    const origin = await startOrigin();
    t.after(() => origin.close());
    const client = createHttpClient({ allowPrivateNetwork: true, userAgent: 'coverhelper-test/0.0.0' });
    t.after(() => client.close());
    const covers = store.covers;
    const deps = { config: { allowHosts: ['127.0.0.1'], bilibiliApi: origin.url, maxBytes: 10_000_000, resize: null, originalMax: 1920, coversDir: path.join(dir, 'covers') }, covers, client };

    // Other decodes hold the whole budget.
    const release = await decodeBudget.acquire(decodeBudget.capacity);
    try {
      const controller = new AbortController();
      let outcome: unknown;
      void fetchCover(`${origin.url}/img/waits.png`, deps, controller.signal).then(
        () => (outcome = 'stored'),
        (error: unknown) => (outcome = error),
      );
      await waitUntil(() => decodeBudget.waiting === 1, 'the download waits for the budget');
      const reason = new Error('time limit');
      controller.abort(reason);
      await waitUntil(() => outcome !== undefined, 'the download ended', 5000);
      assert.equal(outcome, reason);
      assert.deepEqual([decodeBudget.inUse, decodeBudget.waiting], [decodeBudget.capacity, 0]);
      assert.equal(await covers.find(`${origin.url}/img/waits.png`), null, 'nothing stored');
    } finally {
      release();
    }
    assert.equal(decodeBudget.inUse, 0);
  });
});

describe('PixelBudget', () => {
  it('serves waiters in order, clamps a request to the whole budget, and releases once', async () => {
    const budget = new PixelBudget(10);
    const releaseA = await budget.acquire(6);
    const order: string[] = [];
    const b = budget.acquire(6).then((release) => (order.push('b'), release));
    const c = budget.acquire(1).then((release) => (order.push('c'), release));
    await Promise.resolve();
    assert.deepEqual([budget.inUse, budget.waiting, order], [6, 2, []], 'c fits but waits behind b');
    releaseA();
    releaseA();
    const [releaseB, releaseC] = await Promise.all([b, c]);
    assert.deepEqual([budget.inUse, order], [7, ['b', 'c']], 'a second release gave nothing back twice');
    releaseB();
    releaseC();
    const releaseAll = await budget.acquire(1_000);
    assert.equal(budget.inUse, 10, 'more than the budget takes all of it');
    releaseAll();
    assert.equal(budget.inUse, 0);
  });
});

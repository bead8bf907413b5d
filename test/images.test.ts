import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { CoverError } from '../src/errors.js';
import { processImage } from '../src/images/index.js';
import { makeImage } from './helpers/origin.js';

describe('processImage', () => {
  it('crops to fill the resize box, keeping the aspect and the format', async () => {
    const tall = await makeImage('tall', 'png', 300, 900);
    const out = await processImage(tall, { width: 320, height: 200 });
    assert.deepEqual([out.width, out.height, out.contentType, out.ext], [320, 200, 'image/png', 'png']);
    const meta = await sharp(out.data).metadata();
    assert.deepEqual([meta.width, meta.height, meta.format], [320, 200, 'png']);
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

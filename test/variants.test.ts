import assert from 'node:assert/strict';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { CoverError } from '../src/errors.js';
import { decodeBudget } from '../src/images/index.js';
import { DEFAULT_FORMATS, DEFAULT_WIDTHS, MAX_DIMENSION, renderVariant, specFromRequest, VariantRequestError, variantKey, variantPathOf } from '../src/images/variants.js';
import type { VariantSpec } from '../src/images/variants.js';
import {
  coverPathOfVariant,
  isOriginalPath,
  isVariantPath,
  listVariantFiles,
  openCoverFile,
  originalPathOf,
  removeCoverFiles,
  writeCoverFile,
} from '../src/store/index.js';
import { makeImage } from './helpers/origin.js';
import { tempDir } from './helpers/tempDir.js';

const original = { width: 1146, height: 717, format: 'jpeg' };
const options = { widths: DEFAULT_WIDTHS, formats: DEFAULT_FORMATS, round: true };
const CHROME_ACCEPT = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';

async function decoded(data: Buffer): Promise<[number | undefined, number | undefined, string | undefined]> {
  const meta = await sharp(data).metadata();
  return [meta.width, meta.height, meta.format === 'heif' ? (meta.compression === 'av1' ? 'avif' : 'heif') : meta.format];
}

describe('specFromRequest', () => {
  it('rounds the width up to the next of --widths and keeps the asked aspect', () => {
    assert.deepEqual(specFromRequest({ w: '300' }, original, { ...options, accept: 'image/webp' }), { width: 320, fit: 'inside', format: 'webp' });
    assert.deepEqual(specFromRequest({ w: '320', h: '200' }, original, { ...options, accept: 'image/webp' }), { width: 320, height: 200, fit: 'cover', format: 'webp' });
    assert.deepEqual(specFromRequest({ w: '300', h: '150' }, original, { ...options, accept: '' }), { width: 320, height: 160, fit: 'cover', format: 'jpeg' });
    assert.deepEqual(specFromRequest({ w: 161 }, original, { ...options, accept: '' }).width, 240);
    // Not rounded: the exact size (bilibili suffixes).
    assert.deepEqual(specFromRequest({ w: 220, h: 280, format: 'webp' }, original, { ...options, round: false }), { width: 220, height: 280, fit: 'cover', format: 'webp' });
    // inside resolves to the size it makes: @220w_280h of 1146×717 is 220×138.
    assert.deepEqual(specFromRequest({ w: 220, h: 280, fit: 'inside', format: 'webp' }, original, { ...options, round: false }), { width: 220, height: 138, fit: 'inside', format: 'webp' });
  });

  it('multiplies by dpr before rounding', () => {
    assert.equal(specFromRequest({ w: '160', dpr: '2' }, original, options).width, 320);
    assert.equal(specFromRequest({ w: '200', dpr: '1.5' }, original, options).width, 320);
    assert.deepEqual(specFromRequest({ w: '240', h: '150', dpr: '2' }, original, { ...options, accept: 'image/avif' }), {
      width: 480,
      height: 300,
      fit: 'cover',
      format: 'avif',
    });
  });

  it('never goes past the original, keeping the asked aspect', () => {
    assert.equal(specFromRequest({ w: '1280' }, original, options).width, 1146);
    assert.equal(specFromRequest({ w: '960', dpr: '3' }, original, options).width, 1146);
    // 1920×960 (2:1) shrunk to fit 1146×717: 1146×573.
    assert.deepEqual(specFromRequest({ w: '1920', h: '960' }, original, options), { width: 1146, height: 573, fit: 'cover', format: 'jpeg' });
    // A small original: 64×40 asked at 320×200 stays 64×40.
    assert.deepEqual(specFromRequest({ w: '320', h: '200', format: 'png' }, { width: 64, height: 40, format: 'png' }, options), { width: 64, height: 40, fit: 'cover', format: 'png' });
    // Only a height: the width it makes, capped at the original.
    assert.deepEqual(specFromRequest({ h: '2000', format: 'webp' }, original, options), { width: 1146, height: 717, fit: 'inside', format: 'webp' });
    // No size at all: the original's width in another format.
    assert.deepEqual(specFromRequest({ format: 'avif' }, original, options), { width: 1146, fit: 'inside', format: 'avif' });
  });

  it('chooses the format by f, else by Accept among --formats, else the original\'s own', () => {
    const pick = (accept: string | undefined, formats = DEFAULT_FORMATS, own = 'jpeg') => specFromRequest({ w: '320' }, { ...original, format: own }, { ...options, formats, accept }).format;
    assert.equal(pick(CHROME_ACCEPT), 'avif');
    assert.equal(pick('image/webp,*/*'), 'webp');
    assert.equal(pick('image/avif;q=0, image/webp'), 'webp');
    assert.equal(pick('*/*'), 'jpeg');
    assert.equal(pick(undefined), 'jpeg');
    assert.equal(pick(undefined, DEFAULT_FORMATS, 'png'), 'png');
    assert.equal(pick(undefined, DEFAULT_FORMATS, 'image/webp'), 'webp');
    assert.equal(pick(undefined, DEFAULT_FORMATS, 'gif'), 'jpeg');
    assert.equal(pick(CHROME_ACCEPT, ['webp']), 'webp');
    assert.equal(specFromRequest({ w: '320', format: 'jpg' }, original, { ...options, accept: CHROME_ACCEPT }).format, 'jpeg');
    assert.equal(specFromRequest({ w: '320', format: 'png' }, original, { ...options, accept: CHROME_ACCEPT }).format, 'png');
  });

  it('refuses bad values with a message naming them', () => {
    for (const [request, pattern] of [
      [{ w: '0' }, /^w must be/],
      [{ w: '-5' }, /^w must be/],
      [{ w: '1.5' }, /^w must be/],
      [{ w: 'abc' }, /^w must be/],
      [{ w: '99999999' }, /^w must be/],
      [{ w: '1e3' }, /^w must be/],
      [{ h: '0x10' }, /^h must be/],
      [{ dpr: '4' }, /^dpr must be/],
      [{ dpr: '0.5' }, /^dpr must be/],
      [{ dpr: 'NaN' }, /^dpr must be/],
      [{ fit: 'crop' }, /^fit must be one of cover, contain, inside, outside, fill/],
      [{ format: 'gif' }, /^f must be one of jpeg, png, webp, avif/],
      [{ format: 'svg' }, /^f must be/],
      [{ quality: '0' }, /^q must be/],
      [{ quality: '101' }, /^q must be/],
    ] as const) {
      assert.throws(
        () => specFromRequest(request, original, options),
        (error: unknown) => error instanceof VariantRequestError && error.code === 'bad_request' && pattern.test(error.message),
        JSON.stringify(request),
      );
    }
  });
});

describe('variantKey', () => {
  it('is stable, short and [a-z0-9-] only; different specs have different keys', () => {
    const specs: VariantSpec[] = [
      { width: 320, fit: 'inside', format: 'webp' },
      { width: 320, height: 200, fit: 'cover', format: 'webp' },
      { width: 320, height: 200, fit: 'contain', format: 'webp' },
      { width: 320, height: 200, fit: 'cover', format: 'avif' },
      { width: 320, height: 200, fit: 'cover', format: 'avif', quality: 50 },
    ];
    const keys = specs.map(variantKey);
    assert.equal(new Set(keys).size, keys.length);
    for (const key of keys) assert.match(key, /^[a-z0-9-]{1,40}$/);
    assert.equal(variantKey({ width: 320, height: 200, fit: 'cover', format: 'webp' }), 'w320-h200-cover-webp');
    assert.throws(() => variantKey({ width: 0, fit: 'cover', format: 'webp' }), RangeError);
    assert.throws(() => variantKey({ width: 10, fit: 'cover', format: 'gif' as never }), RangeError);
  });
});

describe('renderVariant', () => {
  it('makes the exact size and format asked, decoded back', async () => {
    const body = await makeImage('render', 'jpeg', 1146, 717);
    for (const [spec, expected] of [
      [{ width: 320, fit: 'inside', format: 'webp' }, [320, 200, 'webp']],
      [{ width: 480, height: 300, fit: 'cover', format: 'avif' }, [480, 300, 'avif']],
      [{ width: 220, height: 280, fit: 'cover', format: 'png' }, [220, 280, 'png']],
      [{ width: 220, height: 138, fit: 'inside', format: 'jpeg' }, [220, 138, 'jpeg']],
      [{ width: 300, height: 300, fit: 'contain', format: 'webp' }, [300, 300, 'webp']],
      [{ width: 300, height: 100, fit: 'fill', format: 'jpeg' }, [300, 100, 'jpeg']],
    ] as const) {
      const out = await renderVariant(body, spec);
      assert.deepEqual(await decoded(out.data), expected, JSON.stringify(spec));
      assert.deepEqual([out.width, out.height], expected.slice(0, 2));
      assert.equal(out.contentType, `image/${expected[2]}`);
    }
  });

  it('never enlarges, even for a spec that asks it to', async () => {
    const small = await makeImage('tiny', 'png', 64, 40);
    const out = await renderVariant(small, { width: 640, height: 400, fit: 'cover', format: 'webp' });
    assert.deepEqual(await decoded(out.data), [64, 40, 'webp']);
    const wide = await renderVariant(small, { width: 1920, fit: 'inside', format: 'jpeg' });
    assert.deepEqual(await decoded(wide.data), [64, 40, 'jpeg']);
  });

  it('takes its pixels from the shared decode budget and gives them back', async () => {
    const body = await makeImage('budget', 'jpeg', 800, 500);
    const hold = await decodeBudget.acquire(decodeBudget.capacity);
    const rendering = renderVariant(body, { width: 160, fit: 'inside', format: 'jpeg' });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(decodeBudget.waiting, 1);
    hold();
    assert.deepEqual(await decoded((await rendering).data), [160, 100, 'jpeg']);
    assert.equal(decodeBudget.inUse, 0);
  });

  it('refuses a body that is not an image, and honours an aborted signal', async () => {
    await assert.rejects(renderVariant(Buffer.from('not an image at all'), { width: 100, fit: 'inside', format: 'jpeg' }), (error: unknown) => error instanceof CoverError && error.code === 'not_image');
    const body = await makeImage('abort', 'jpeg', 400, 250);
    const controller = new AbortController();
    controller.abort(new CoverError('cancelled', 'nobody waits'));
    await assert.rejects(renderVariant(body, { width: 100, fit: 'inside', format: 'jpeg' }, controller.signal), /nobody waits/);
  });
});

describe('variant files', () => {
  const cover = 'example.com/abc-0123456789ab-ba9876543210.jpg';
  const spec: VariantSpec = { width: 320, height: 200, fit: 'cover', format: 'webp' };

  it('names a variant beside its cover; variant paths are told apart from covers and originals', () => {
    const variant = variantPathOf(cover, spec);
    assert.equal(variant, `${cover}.variants/w320-h200-cover-webp.webp`);
    assert.equal(isVariantPath(variant), true);
    assert.equal(coverPathOfVariant(variant), cover);
    assert.equal(isVariantPath(cover), false);
    assert.equal(isVariantPath(originalPathOf(cover)), false);
    assert.equal(isOriginalPath(variant), false);
    assert.equal(isVariantPath(`${cover}.variants/../x.webp`), false);
    assert.equal(coverPathOfVariant(cover), undefined);
  });

  it('lists, serves and removes a cover\'s variants with the cover', async (t) => {
    const dir = await tempDir(t);
    const other = 'example.com/other-0123456789ab-ba9876543210.jpg';
    await writeCoverFile(dir, cover, Buffer.from('cover'));
    await writeCoverFile(dir, originalPathOf(cover), Buffer.from('original'));
    await writeCoverFile(dir, variantPathOf(cover, spec), Buffer.alloc(123));
    await writeCoverFile(dir, variantPathOf(cover, { ...spec, format: 'avif' }), Buffer.alloc(45));
    await writeCoverFile(dir, other, Buffer.from('other'));
    await writeCoverFile(dir, variantPathOf(other, spec), Buffer.alloc(7));
    // Something not named as a variant in the folder is not listed.
    await writeFile(path.join(dir, `${cover}.variants`, 'stray.txt'), 'x');

    assert.deepEqual(await listVariantFiles(dir, cover), [
      { path: `${cover}.variants/w320-h200-cover-avif.avif`, bytes: 45 },
      { path: `${cover}.variants/w320-h200-cover-webp.webp`, bytes: 123 },
    ]);
    // Variants are served as plain /covers/<path> (originals are not).
    const opened = await openCoverFile(dir, variantPathOf(cover, spec));
    assert.equal(opened?.size, 123);
    await opened?.handle.close();
    assert.equal(await openCoverFile(dir, originalPathOf(cover)), undefined);

    assert.equal(await removeCoverFiles(dir, cover), 'removed');
    assert.deepEqual(await listVariantFiles(dir, cover), []);
    assert.equal(await openCoverFile(dir, cover), undefined);
    // The other cover's variants are untouched.
    assert.equal((await listVariantFiles(dir, other)).length, 1);
    // Removing again: nothing left, not an error.
    assert.equal(await removeCoverFiles(dir, cover), 'absent');
    assert.deepEqual(await listVariantFiles(dir, 'example.com/never-stored.jpg'), []);
  });

  it('never lists or removes through a variants folder that is a link', async (t) => {
    const dir = await tempDir(t);
    const outside = await tempDir(t);
    await writeFile(path.join(outside, 'w320-h200-cover-webp.webp'), 'precious');
    await mkdir(path.join(dir, 'example.com'), { recursive: true });
    await writeCoverFile(dir, cover, Buffer.from('cover'));
    await symlink(outside, path.join(dir, `${cover}.variants`));
    assert.deepEqual(await listVariantFiles(dir, cover), []);
    await removeCoverFiles(dir, cover);
    // The link itself may go; what it points at stays.
    assert.equal(await readFile(path.join(outside, 'w320-h200-cover-webp.webp'), 'utf8'), 'precious');
  });

  it('never asks for a side past MAX_DIMENSION, even of an original kept whole that is wider (a bound, not a 500)', () => {
    const wide = { width: 20_000, height: 1_000, format: 'jpeg' };
    const spec = specFromRequest({ format: 'webp' }, wide, { widths: [160, 320], formats: ['webp'], round: false });
    assert.equal(spec.width, MAX_DIMENSION);
    assert.doesNotThrow(() => variantKey(spec));
    const tall = specFromRequest({ w: 160, h: 10_000, fit: 'fill', format: 'webp' }, { width: 1_000, height: 20_000, format: 'jpeg' }, { widths: [160], formats: ['webp'], round: false });
    assert.ok(tall.width <= MAX_DIMENSION && (tall.height ?? 0) <= MAX_DIMENSION);
    assert.doesNotThrow(() => variantKey(tall));
  });
});

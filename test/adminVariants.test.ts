/**
 * The variants a task detail lists (src/admin/coverVariants.ts), on real files
 * rendered by the render core and written where the service writes them.
 */
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { avifSize, coverVariants, MAX_LISTED } from '../src/admin/coverVariants.js';
import { renderVariant } from '../src/images/variants.js';
import type { VariantSpec } from '../src/images/variants.js';
import { variantPathOf } from '../src/images/variants.js';
import { writeCoverFile } from '../src/store/index.js';
import { makeImage } from './helpers/origin.js';
import { tempDir } from './helpers/tempDir.js';

const COVER = '127.0.0.1/abc.jpg';
const PUBLIC = 'http://127.0.0.1:1/covers/';

async function store(dir: string, original: Buffer, spec: VariantSpec): Promise<{ path: string; bytes: number }> {
  const image = await renderVariant(original, spec);
  const relPath = variantPathOf(COVER, spec);
  await writeCoverFile(dir, relPath, image.data);
  return { path: relPath, bytes: image.data.length };
}

describe('coverVariants', () => {
  it('lists every stored variant with its format, pixel size read from the file, and bytes, largest first', async (t) => {
    const dir = await tempDir(t);
    const original = await makeImage('variants-list', 'jpeg', 1146, 717);
    await writeCoverFile(dir, COVER, await makeImage('variants-cover', 'jpeg', 320, 200));
    const made = [
      await store(dir, original, { width: 480, fit: 'inside', format: 'webp' }),
      await store(dir, original, { width: 480, fit: 'inside', format: 'avif' }),
      await store(dir, original, { width: 960, fit: 'inside', format: 'jpeg' }),
      await store(dir, original, { width: 160, height: 160, fit: 'cover', format: 'png' }),
    ];
    const { variants, total } = await coverVariants(dir, COVER, PUBLIC);
    assert.equal(total, 4);
    assert.deepEqual(variants, [
      { path: made[2]!.path, coverUrl: `${PUBLIC}127.0.0.1/abc.jpg.variants/w960-inside-jpeg.jpg`, format: 'jpeg', width: 960, height: 601, bytes: made[2]!.bytes },
      { path: made[1]!.path, coverUrl: `${PUBLIC}127.0.0.1/abc.jpg.variants/w480-inside-avif.avif`, format: 'avif', width: 480, height: 300, bytes: made[1]!.bytes },
      { path: made[0]!.path, coverUrl: `${PUBLIC}127.0.0.1/abc.jpg.variants/w480-inside-webp.webp`, format: 'webp', width: 480, height: 300, bytes: made[0]!.bytes },
      { path: made[3]!.path, coverUrl: `${PUBLIC}127.0.0.1/abc.jpg.variants/w160-h160-cover-png.png`, format: 'png', width: 160, height: 160, bytes: made[3]!.bytes },
    ]);
    // The sizes said are the files' own, as a decoder sees them.
    for (const variant of variants) {
      const meta = await sharp(path.join(dir, variant.path)).metadata();
      assert.deepEqual([meta.width, meta.height], [variant.width, variant.height], variant.path);
    }
  });

  it('a cover with no variants lists none', async (t) => {
    const dir = await tempDir(t);
    await writeCoverFile(dir, COVER, await makeImage('variants-none', 'jpeg', 320, 200));
    assert.deepEqual(await coverVariants(dir, COVER, PUBLIC), { variants: [], total: 0 });
    assert.deepEqual(await coverVariants(dir, '../escape.jpg', PUBLIC), { variants: [], total: 0 }, 'a path the guard refuses lists nothing');
  });

  it('a file whose header cannot be read takes its size from its name; links and strangers are not listed', async (t) => {
    const dir = await tempDir(t);
    const folder = path.join(dir, `${COVER}.variants`);
    await mkdir(folder, { recursive: true });
    await writeFile(path.join(folder, 'w320-h200-cover-webp.webp'), Buffer.from('not an image at all'));
    await writeFile(path.join(folder, 'w640-inside-avif.avif'), Buffer.alloc(0));
    await writeFile(path.join(folder, 'notes.txt'), 'hello');
    await writeFile(path.join(dir, 'secret.jpg'), await makeImage('variants-secret', 'jpeg', 64, 40));
    await symlink(path.join(dir, 'secret.jpg'), path.join(folder, 'w64-inside-jpeg.jpg'));
    const { variants, total } = await coverVariants(dir, COVER, PUBLIC);
    assert.equal(total, 2, 'the link and the stranger are not variants');
    assert.deepEqual(
      variants.map((v) => [v.path.split('/').at(-1), v.format, v.width, v.height, v.bytes]),
      [
        ['w640-inside-avif.avif', 'avif', 640, null, 0],
        ['w320-h200-cover-webp.webp', 'webp', 320, 200, 19],
      ],
    );
  });

  it(`describes at most ${MAX_LISTED}, and says how many there are`, async (t) => {
    const dir = await tempDir(t);
    const folder = path.join(dir, `${COVER}.variants`);
    await mkdir(folder, { recursive: true });
    const png = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#000' } }).png().toBuffer();
    await Promise.all(Array.from({ length: MAX_LISTED + 5 }, (_, i) => writeFile(path.join(folder, `w${i + 1}-h2-fill-png.png`), png)));
    const { variants, total } = await coverVariants(dir, COVER, PUBLIC);
    assert.equal(total, MAX_LISTED + 5);
    assert.equal(variants.length, MAX_LISTED);
    assert.ok(variants.every((v) => v.width === 2 && v.height === 2), 'the size read from each file');
  });
});

describe('avifSize', () => {
  it('reads the size of AVIF files of any shape, and refuses what is not one', async () => {
    for (const [width, height, alpha] of [[480, 300, false], [17, 1001, true], [1, 1, false]] as const) {
      const data = await sharp({ create: { width, height, channels: alpha ? 4 : 3, background: { r: 10, g: 20, b: 30, alpha: 0.5 } } })
        .avif()
        .toBuffer();
      assert.deepEqual(avifSize(data.subarray(0, 4096)), { width, height });
    }
    assert.equal(avifSize(Buffer.from('not an avif at all, not even close to one')), null);
    const jpeg = await makeImage('avif-size-jpeg');
    assert.equal(avifSize(jpeg), null);
    const avif = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#fff' } }).avif().toBuffer();
    const at = avif.indexOf('ispe', 0, 'latin1');
    assert.equal(avifSize(avif.subarray(0, at + 10)), null, 'cut off inside the box');
  });
});

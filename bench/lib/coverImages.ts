/**
 * Covers of the size bilibili serves (1920×1080 JPEG, ~300 KB), each with its
 * own pixels, for the cold scenario's realistic run.
 *
 * Each image is seeded noise blurred with σ = 2 (as costly to decode as a
 * photo of the same byte size: a JPEG decode is mostly entropy decoding, and
 * noise leaves nothing cheap to code), encoded at one JPEG quality chosen
 * once, on the first image, to land near 300 KB.
 *
 * Making one costs ~0.1 s of CPU, so they are kept on disk and made only once
 * per machine: `<tmpdir>/coverhelper-bench-cache/covers-1920x1080-v1/` holds
 * `NNNNN.jpg` and `quality.json`. A run that needs more images than are there
 * makes only the missing ones. Delete the folder to make them again.
 */
import { mkdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { cachedImages, writeAtomically } from './imageCache.js';
import type { Sharp } from 'sharp';

export const COVER_WIDTH = 1920;
export const COVER_HEIGHT = 1080;
const TARGET_BYTES = 300 * 1024;
const BLUR = 2;

export const coverCacheDir = path.join(os.tmpdir(), 'coverhelper-bench-cache', `covers-${COVER_WIDTH}x${COVER_HEIGHT}-v1`);

/** Seeded noise, blurred, as a sharp pipeline ready for its encoder. */
function noise(seed: number): Sharp {
  const raw = Buffer.alloc(COVER_WIDTH * COVER_HEIGHT * 3);
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < raw.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    raw[i] = (s >>> 16) & 255;
  }
  return sharp(raw, { raw: { width: COVER_WIDTH, height: COVER_HEIGHT, channels: 3 } }).blur(BLUR);
}

const encode = (seed: number, quality: number) => noise(seed).jpeg({ quality }).toBuffer();

/** The quality whose first image comes closest to TARGET_BYTES (bisection over 50–95). */
async function chooseQuality(): Promise<number> {
  let low = 50;
  let high = 95;
  let best = { quality: 80, miss: Infinity };
  while (low <= high) {
    const quality = Math.floor((low + high) / 2);
    const bytes = (await encode(1, quality)).length;
    const miss = Math.abs(bytes - TARGET_BYTES);
    if (miss < best.miss) best = { quality, miss };
    if (bytes > TARGET_BYTES) high = quality - 1;
    else low = quality + 1;
  }
  return best.quality;
}

async function readQuality(): Promise<number | undefined> {
  try {
    const saved = JSON.parse(await readFile(path.join(coverCacheDir, 'quality.json'), 'utf8')) as { quality?: unknown };
    return typeof saved.quality === 'number' ? saved.quality : undefined;
  } catch {
    return undefined;
  }
}

export interface CoverImages {
  images: Buffer[];
  quality: number;
  /** How many had to be made in this call (the rest came from the cache). */
  made: number;
}

/** `count` distinct covers, from the cache or made now (two at a time: the machine has two cores). */
export async function coverImages(count: number): Promise<CoverImages> {
  await mkdir(coverCacheDir, { recursive: true });
  let quality = await readQuality();
  if (quality === undefined) {
    quality = await chooseQuality();
    await writeAtomically(path.join(coverCacheDir, 'quality.json'), `${JSON.stringify({ quality, blur: BLUR, width: COVER_WIDTH, height: COVER_HEIGHT })}\n`);
  }
  const chosen = quality;
  const { images, made } = await cachedImages(coverCacheDir, count, (seed) => encode(seed, chosen));
  return { images, quality, made };
}

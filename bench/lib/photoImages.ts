/**
 * Photo-like covers of 1146×717 (a size bilibili serves covers at), each with
 * its own pixels, for the variant scenarios (bench/variants.ts,
 * bench/avifEffort.ts).
 *
 * Noise alone (bench/lib/coverImages.ts) is right for the cost of a decode but
 * wrong for an encoder: AVIF and WebP spend their effort finding structure, and
 * noise has none. So each image is what a cover is made of: a smooth two-colour
 * gradient, a few soft shapes (circles, rounded boxes, a band of "text" bars)
 * with hard edges, mild blurred noise as grain, then a light blur of the whole,
 * encoded as a JPEG at quality 85 (mozjpeg, as sharp ships it). Seeded, so the
 * same index always gives the same image.
 *
 * Making one costs ~50 ms, so they are kept on disk and made only once per
 * machine: `<tmpdir>/coverhelper-bench-cache/photos-1146x717-v1/NNNNN.jpg`.
 */
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { cachedImages } from './imageCache.js';

export const PHOTO_WIDTH = 1146;
export const PHOTO_HEIGHT = 717;
export const PHOTO_QUALITY = 85;

export const photoCacheDir = path.join(os.tmpdir(), 'coverhelper-bench-cache', `photos-${PHOTO_WIDTH}x${PHOTO_HEIGHT}-v1`);

/** A small seeded generator (mulberry32): the same seed, the same image. */
function random(seed: number): () => number {
  let a = (seed * 2654435761) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const hex = (r: () => number) =>
  `#${Array.from({ length: 3 }, () =>
    Math.floor(r() * 256)
      .toString(16)
      .padStart(2, '0'),
  ).join('')}`;

/** The shapes, as SVG drawn over the gradient. */
function shapes(r: () => number): string {
  const parts: string[] = [];
  const defs: string[] = [];
  for (let i = 0; i < 7; i++) {
    const id = `g${i}`;
    defs.push(`<radialGradient id="${id}"><stop offset="0" stop-color="${hex(r)}"/><stop offset="1" stop-color="${hex(r)}" stop-opacity="0.6"/></radialGradient>`);
    const x = Math.round(r() * PHOTO_WIDTH);
    const y = Math.round(r() * PHOTO_HEIGHT);
    const size = 40 + Math.round(r() * 260);
    if (r() < 0.5) parts.push(`<circle cx="${x}" cy="${y}" r="${size}" fill="url(#${id})"/>`);
    else parts.push(`<rect x="${x - size}" y="${y - size / 2}" width="${size * 2}" height="${size}" rx="${Math.round(size / 6)}" fill="url(#${id})" transform="rotate(${Math.round(r() * 40 - 20)} ${x} ${y})"/>`);
  }
  // A band of bars, as a cover's title text would be: many small hard edges.
  const top = Math.round(PHOTO_HEIGHT * (0.65 + r() * 0.2));
  for (let x = 40; x < PHOTO_WIDTH - 80; ) {
    const w = 8 + Math.round(r() * 30);
    parts.push(`<rect x="${x}" y="${top}" width="${w}" height="${26 + Math.round(r() * 16)}" fill="#ffffff" stroke="#000000" stroke-width="3"/>`);
    x += w + 4 + Math.round(r() * 10);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${PHOTO_WIDTH}" height="${PHOTO_HEIGHT}"><defs>${defs.join('')}</defs>${parts.join('')}</svg>`;
}

/** One photo-like JPEG for `seed`. */
export async function makePhoto(seed: number): Promise<Buffer> {
  const r = random(seed);
  const [a, b] = [Array.from({ length: 3 }, () => r() * 255), Array.from({ length: 3 }, () => r() * 255)];
  const angle = r() * Math.PI;
  const [cx, cy] = [Math.cos(angle), Math.sin(angle)];
  const raw = Buffer.alloc(PHOTO_WIDTH * PHOTO_HEIGHT * 3);
  let s = (seed * 2246822519) >>> 0;
  for (let y = 0; y < PHOTO_HEIGHT; y++) {
    for (let x = 0; x < PHOTO_WIDTH; x++) {
      const t = Math.min(1, Math.max(0, ((x / PHOTO_WIDTH - 0.5) * cx + (y / PHOTO_HEIGHT - 0.5) * cy) + 0.5));
      const wave = 18 * Math.sin(x / 37 + y / 53) * Math.cos(y / 29);
      for (let c = 0; c < 3; c++) {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        const grain = ((s >>> 16) & 255) / 255 - 0.5;
        raw[(y * PHOTO_WIDTH + x) * 3 + c] = Math.max(0, Math.min(255, a[c]! * (1 - t) + b[c]! * t + wave + grain * 40));
      }
    }
  }
  const base = await sharp(raw, { raw: { width: PHOTO_WIDTH, height: PHOTO_HEIGHT, channels: 3 } }).blur(0.8).png({ compressionLevel: 0 }).toBuffer();
  const drawn = await sharp(base)
    .composite([{ input: Buffer.from(shapes(r)) }])
    .png({ compressionLevel: 0 })
    .toBuffer();
  // Grain over the shapes too, then the lens's softness.
  const grain = Buffer.alloc(PHOTO_WIDTH * PHOTO_HEIGHT);
  for (let i = 0; i < grain.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    grain[i] = 118 + (((s >>> 16) & 255) * 20) / 255;
  }
  const grainPng = await sharp(grain, { raw: { width: PHOTO_WIDTH, height: PHOTO_HEIGHT, channels: 1 } }).toColourspace('srgb').png().toBuffer();
  return sharp(drawn)
    .composite([{ input: grainPng, blend: 'overlay' }])
    .blur(0.6)
    .jpeg({ quality: PHOTO_QUALITY })
    .toBuffer();
}

/** `count` distinct photo-like covers, from the cache or made now. */
export function photoImages(count: number): Promise<{ images: Buffer[]; made: number }> {
  return cachedImages(photoCacheDir, count, makePhoto);
}

/**
 * What AVIF's (and WebP's) encoder effort costs, to choose the render core's
 * setting from measurements rather than a guess.
 *
 *   npm run bench:avif       (node --import tsx bench/avifEffort.ts)
 *
 * For photo-like 1146×717 JPEG originals (bench/lib/photoImages.ts), each
 * rendered to 480 px wide the way a variant is (decode, resize, encode, with the
 * format's default quality):
 * - AVIF at effort 0..9 (sharp's `avif({ effort })`, default 4);
 * - WebP at effort 0..6 (sharp's `webp({ effort })`, default 4);
 * - JPEG as the reference line;
 * each at the quality the render core gives variants (src/images/encode.ts
 * `QUALITY.variant`: AVIF 60, WebP 82, JPEG 85 without mozjpeg's trellis).
 * Per setting: wall ms per render, CPU ms per render (this process, all
 * threads: process.cpuUsage), mean bytes, and PSNR against the same resize
 * kept lossless (how much the smaller file gives away). Renders run one at a
 * time, in-process, each setting on the same BENCH_AVIF_IMAGES images (12) after
 * one warm-up render; the settings are interleaved image by image so a change
 * in machine load falls on all of them alike.
 */
import sharp from 'sharp';
import type { Sharp } from 'sharp';
import { QUALITY } from '../src/images/encode.js';
import { photoImages, PHOTO_HEIGHT, PHOTO_WIDTH } from './lib/photoImages.js';
import { num, Report, step } from './lib/report.js';
import { envNumber, scaled } from './lib/scale.js';
import { runScenario } from './lib/service.js';

const WIDTH = 480;

interface Setting {
  name: string;
  encode: (image: Sharp) => Sharp;
  note?: string;
}

interface Tally {
  wallMs: number;
  cpuMs: number;
  bytes: number;
  psnr: number;
  count: number;
}

const cpuMsNow = () => {
  const used = process.cpuUsage();
  return (used.user + used.system) / 1000;
};

/** PSNR of `a` against `b` (same size RGB raw), dB. */
function psnr(a: Buffer, b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    sum += d * d;
  }
  const mse = sum / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

const raw = (data: Buffer) => sharp(data).removeAlpha().raw().toBuffer();

export const avifSettings: Setting[] = Array.from({ length: 10 }, (_, effort) => ({
  name: `avif effort ${effort}`,
  encode: (image: Sharp) => image.avif({ quality: QUALITY.variant.avif, effort }),
  ...(effort === 4 ? { note: "sharp's default" } : {}),
}));
export const webpSettings: Setting[] = Array.from({ length: 7 }, (_, effort) => ({
  name: `webp effort ${effort}`,
  encode: (image: Sharp) => image.webp({ quality: QUALITY.variant.webp, effort }),
  ...(effort === 4 ? { note: "sharp's default" } : {}),
}));

runScenario('avifEffort', 30 * 60_000, async () => {
  const report = new Report('avifEffort', `What encoder effort costs: ${PHOTO_WIDTH}×${PHOTO_HEIGHT} JPEG → ${WIDTH} w`, 'npm run bench:avif');
  const count = scaled(envNumber('BENCH_AVIF_IMAGES', 12), 3);
  const { images, made } = await photoImages(count);
  step(`${count} photo-like ${PHOTO_WIDTH}×${PHOTO_HEIGHT} JPEGs (mean ${num(images.reduce((s, i) => s + i.length, 0) / count / 1024, 1)} KB), ${made} made now; sharp ${sharp.versions.sharp}, libvips ${sharp.versions.vips}, aom ${sharp.versions.aom ?? '?'}, libwebp ${sharp.versions.webp ?? '?'}, sharp.concurrency() ${sharp.concurrency()}`);
  const settings: Setting[] = [{ name: 'jpeg', encode: (image) => image.jpeg({ quality: QUALITY.variant.jpeg, mozjpeg: false }), note: 'reference' }, ...webpSettings, ...avifSettings];
  const tallies = settings.map((): Tally => ({ wallMs: 0, cpuMs: 0, bytes: 0, psnr: 0, count: 0 }));

  // Warm-up: one render of each setting (loads the codecs, fills the allocator).
  for (const setting of settings) await setting.encode(sharp(images[0]).resize({ width: WIDTH })).toBuffer();

  for (const [k, image] of images.entries()) {
    const reference = await sharp(image).resize({ width: WIDTH }).removeAlpha().raw().toBuffer();
    for (const [i, setting] of settings.entries()) {
      const cpu = cpuMsNow();
      const start = performance.now();
      const out = await setting.encode(sharp(image).resize({ width: WIDTH })).toBuffer();
      const tally = tallies[i]!;
      tally.wallMs += performance.now() - start;
      tally.cpuMs += cpuMsNow() - cpu;
      tally.bytes += out.length;
      tally.psnr += psnr(await raw(out), reference);
      tally.count++;
    }
    step(`image ${k + 1}/${count} done`);
  }

  for (const [i, setting] of settings.entries()) {
    const t = tallies[i]!;
    const n = t.count;
    report.figure(
      setting.name,
      `${num(t.wallMs / n, 1)} ms`,
      `CPU ${num(t.cpuMs / n, 1)} ms per render; ${num(t.bytes / n / 1024, 1)} KB; PSNR ${num(t.psnr / n, 2)} dB${setting.note ? `; ${setting.note}` : ''}`,
    );
  }
  report.note(`Each figure is the mean over ${count} renders of distinct images, one at a time in this process; CPU is process.cpuUsage() (all threads) over each render. Quality is the render core's for variants (AVIF ${QUALITY.variant.avif}, WebP ${QUALITY.variant.webp}, JPEG ${QUALITY.variant.jpeg}).`);
  report.finish();
});

/**
 * A cover's dominant colour as `#rrggbb`, for a page to paint the cover's box
 * while the image loads.
 *
 * The pixels are the default variant's (already decoded to make it) or a
 * thumbnail of at most 64×64 that sharp decodes, in sRGB (sharp's output space:
 * a CMYK JPEG is converted), 8 bits a channel. At most 4096 of them, evenly
 * spaced, are counted in 4096 bins (16 levels a channel, as sharp's own
 * `stats().dominant`), and the colour is the mean of the pixels in the fullest
 * bin (sharp's `dominant` answers the bin's centre instead, so a solid #ff0000
 * image would come out #f80808). Pixels under half opaque are left out unless
 * there are no others. Ties go to the lower bin, so the answer is stable.
 */
import sharp from 'sharp';
import type { OutputInfo, Sharp } from 'sharp';

/** The thumbnail's longer side: at most 4096 pixels. */
export const COLOR_THUMB = 64;
/** Pixels counted at most (a larger image is sampled evenly). */
export const COLOR_SAMPLES = 4096;

/** The pipeline's end that `dominantOfPixels` reads: a ≤64×64 raw 8-bit thumbnail (sRGB, sharp's output space). */
export function colorThumbnail(pipeline: Sharp): Promise<{ data: Buffer; info: OutputInfo }> {
  return pipeline
    .resize(COLOR_THUMB, COLOR_THUMB, { fit: 'inside', withoutEnlargement: true })
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
}

/** The dominant colour of raw 8-bit pixels of 1 (grey), 2 (grey, alpha), 3 (RGB) or 4 (RGBA) channels. */
export function dominantOfPixels(raw: Uint8Array, channels: number): string {
  const pixels = Math.floor(raw.length / channels);
  // At most about COLOR_SAMPLES pixels are counted (evenly spaced): a default variant's 64,000 took 1.2 ms.
  const step = Math.max(1, Math.floor(pixels / COLOR_SAMPLES));
  const grey = channels < 3;
  const alpha = channels === 2 || channels === 4 ? channels - 1 : -1;
  if (pixels === 0) return '#000000';
  const counts = new Uint32Array(4096);
  const sums = new Uint32Array(4096 * 3);
  let opaque = 0;
  for (let pass = 0; pass < 2 && opaque === 0; pass++) {
    // First pass: the pixels at least half opaque; the second (all transparent) counts every pixel.
    const minAlpha = pass === 0 && alpha !== -1 ? 128 : 0;
    for (let i = 0; i < pixels; i += step) {
      const at = i * channels;
      if (alpha !== -1 && raw[at + alpha]! < minAlpha) continue;
      const r = raw[at]!;
      const g = grey ? r : raw[at + 1]!;
      const b = grey ? r : raw[at + 2]!;
      const bin = ((r >> 4) << 8) | ((g >> 4) << 4) | (b >> 4);
      counts[bin]!++;
      sums[bin * 3] = sums[bin * 3]! + r;
      sums[bin * 3 + 1] = sums[bin * 3 + 1]! + g;
      sums[bin * 3 + 2] = sums[bin * 3 + 2]! + b;
      opaque++;
    }
  }
  let best = 0;
  for (let bin = 1; bin < 4096; bin++) if (counts[bin]! > counts[best]!) best = bin;
  const n = counts[best]!;
  const hex = (sum: number) => Math.round(sum / n).toString(16).padStart(2, '0');
  return `#${hex(sums[best * 3]!)}${hex(sums[best * 3 + 1]!)}${hex(sums[best * 3 + 2]!)}`;
}

/** The dominant colour of an encoded image (decoded as a thumbnail; a small image is cheap). */
export async function dominantColor(image: Buffer, limitInputPixels: number): Promise<string> {
  const { data, info } = await colorThumbnail(sharp(image, { failOn: 'error', limitInputPixels, animated: false }));
  return dominantOfPixels(data, info.channels);
}

/** Whether a value is a colour as answers carry it: `#rrggbb`, lower case. */
export function isColor(value: unknown): value is string {
  return typeof value === 'string' && /^#[0-9a-f]{6}$/.test(value);
}

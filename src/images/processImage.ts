/**
 * Proves a body is an image by decoding it, and produces the bytes to store.
 *
 * With a resize spec the image is cropped to fill `width`×`height` (aspect kept,
 * centre crop) and re-encoded in its own format (JPEG, PNG, WebP, AVIF; anything
 * else becomes JPEG): the *default variant*. It is never enlarged: an image
 * smaller than the box is cropped to the box's aspect at its own scale (a 64×40
 * image stays 64×40, a 300×900 one becomes 300×188). Beside it comes the
 * *original*: the body itself when it is already in the variant's format, upright
 * (no EXIF rotation) and within `originalMax` on its longer side; otherwise the
 * decoded image, turned upright, scaled down to fit `originalMax` (never
 * enlarged), in the variant's format. The two always share a format, so the
 * original's path follows from the variant's (`originalPathOf`).
 *
 * Without a resize spec the original bytes are kept and are the original too,
 * but the image is still fully decoded first, so a body that merely claims to be
 * an image is refused.
 *
 * Either way the image's dominant colour comes with it (`dominantColor`), taken
 * from the default variant (or, with resize off, from the decode that proves
 * the body), so answers can carry it without touching the file again.
 *
 * Memory, which decoding spends far more of than the body's size suggests (a
 * 100 KB PNG can hold 10000×10000 pixels; a progressive JPEG is held whole,
 * as coefficients, while it decodes):
 * - an image over `MAX_IMAGE_PIXELS` is refused from its header, before any
 *   decode, as `too_large`;
 * - every decode first takes its width × height from one budget shared by all
 *   downloads and uploads (`decodeBudget`, as large as the limit), so however
 *   many workers run, at most that many pixels are being decoded at once;
 * - libvips' operation cache is off: every body is a new buffer, so it never
 *   hits, and what it keeps holds decoders' memory after they finish.
 */
import sharp from 'sharp';
import type { Sharp } from 'sharp';
import { CoverError } from '../errors.js';
import { encodeImage, FORMATS as formats } from './encode.js';
import type { EncodedImage, EncodeFormat } from './encode.js';
import { colorThumbnail, dominantOfPixels } from './dominantColor.js';
import { readImageHeader } from './imageHeader.js';
import { PixelBudget } from './pixelBudget.js';

/** `--resize WxH`: the box of the default variant (a cover crop, never enlarged). */
export interface ResizeSpec {
  width: number;
  height: number;
}

export type { EncodedImage } from './encode.js';

/** The default variant, and the original kept beside it (`original.data === data` when they are one file: resize off). */
export interface ProcessedImage extends EncodedImage {
  original: EncodedImage;
  /** The dominant colour, `#rrggbb` (`dominantColor`): of the default variant, or with resize off of the whole image. */
  color: string;
}

/** The default `--original-max`. */
export const DEFAULT_ORIGINAL_MAX = 1920;

/** Formats re-encoded as themselves when resizing; the rest become JPEG. */
const keepFormat = new Set(['jpeg', 'png', 'webp', 'avif']);

/**
 * Largest image accepted, in pixels: 25 megapixels. A cover is shown a few
 * hundred pixels wide; bilibili's covers are a few megapixels at most (commonly
 * 1920×1080 or smaller), a 4K frame is 8.3 MP and a 24 MP camera photo
 * (6000×4000) an administrator might upload still fits. Above it an image is a
 * decompression bomb for all a cover needs: decoding 25 MP takes 40–250 MB
 * by format (a progressive JPEG's coefficients, an interlaced PNG's rows), and
 * 100 MP four times that.
 */
export const MAX_IMAGE_PIXELS = 25_000_000;

/**
 * Pixels being decoded at once, across every worker: one image at the limit,
 * or a dozen ordinary covers (a 1920×1080 one takes 2 MP of it). Decoding
 * costs up to ~10 bytes a pixel (measured at 25 MP: a 16-bit interlaced PNG
 * 10, a 4:4:4 progressive JPEG 6, a GIF 5.6, a lossless WebP 4), so this holds
 * what decodes at once to about 250 MB whatever the images; twice the limit
 * would allow 500.
 */
export const decodeBudget = new PixelBudget(MAX_IMAGE_PIXELS);

// No body is ever decoded twice, so libvips' operation cache never hits; what
// it keeps holds decoders' memory after they finish (measured in the image-bomb
// benchmark: peak RSS 767 MB with it, 323 MB without).
sharp.cache(false);

/**
 * One native pipeline per image: the format and size come from
 * `readImageHeader`; only an image it does not know takes a `metadata()` call
 * first (which reads the header alone, and is also where SVG is recognised and
 * refused). Then the size is checked against the limit and taken from the
 * decode budget (waiting if need be) before the decode starts.
 *
 * `signal` (the download's: its time limit, shutdown) is honoured before the
 * decode, while waiting for the budget, and after. A decode already running
 * cannot be stopped (sharp has no way to cancel libvips' work): on abort the
 * call rejects at once with the signal's reason, and the decode finishes on its
 * own thread, keeping its pixels of the budget until it ends.
 */
export function processImage(body: Buffer, resize: ResizeSpec | null, signal?: AbortSignal, originalMax = DEFAULT_ORIGINAL_MAX): Promise<ProcessedImage> {
  return withinDecodeBudget(body, signal, (header) => decode(body, header, resize, originalMax));
}

/**
 * Runs `work` (one decode of `body`) within the decode budget: the header read
 * (SVG refused, the pixel limit checked by name), the pixels taken from
 * `decodeBudget` before `work` starts and given back when it ends, `signal`
 * honoured before, while waiting, and after (see `processImage`).
 */
export async function withinDecodeBudget<T>(body: Buffer, signal: AbortSignal | undefined, work: (header: Header) => Promise<T>): Promise<T> {
  signal?.throwIfAborted();
  const header = readImageHeader(body) ?? (await readMetadata(body));
  if (header.format === 'svg') throw new CoverError('not_image', 'SVG covers are not accepted');
  const pixels = header.width * header.height;
  if (pixels > MAX_IMAGE_PIXELS) {
    throw new CoverError(
      'too_large',
      `the image is ${header.width}×${header.height} (${megapixels(pixels)} megapixels), over the limit of ${megapixels(MAX_IMAGE_PIXELS)} megapixels`,
    );
  }
  const release = await decodeBudget.acquire(pixels, signal);
  const decoding = work(header).finally(release);
  const result = signal ? await untilAborted(decoding, signal) : await decoding;
  signal?.throwIfAborted();
  return result;
}

export interface Header {
  format: string;
  width: number;
  height: number;
}

export const megapixels = (pixels: number) => (pixels / 1e6).toLocaleString('en-US', { maximumFractionDigits: 1 });

export function input(body: Buffer) {
  // limitInputPixels is the second guard, for a body whose header undersold it.
  return sharp(body, { failOn: 'error', limitInputPixels: MAX_IMAGE_PIXELS, animated: false });
}

export function notImage(error: unknown): CoverError {
  return new CoverError('not_image', `the body is not a decodable image: ${(error as Error).message}`, { cause: error });
}

export async function readMetadata(body: Buffer): Promise<Header> {
  try {
    // The header alone: no pixel limit here, so that the size can be refused by name below.
    const meta = await sharp(body, { limitInputPixels: false, animated: false }).metadata();
    return { format: meta.format ?? '', width: meta.width ?? 0, height: meta.height ?? 0 };
  } catch (error) {
    throw notImage(error);
  }
}

async function decode(body: Buffer, header: Header, resize: ResizeSpec | null, originalMax: number): Promise<ProcessedImage> {
  const format = header.format;
  try {
    if (resize === null) {
      // Decode the whole body: a truncated or corrupt one fails here. Decoding to a
      // thumbnail reads every byte too, but lets JPEG shrink on load (a quarter
      // cheaper), and the thumbnail's pixels give the colour.
      const thumbnail = await colorThumbnail(input(body));
      const known = formats[format] ?? { contentType: 'application/octet-stream', ext: 'bin' };
      const image = { data: body, contentType: known.contentType, ext: known.ext, width: header.width, height: header.height };
      return { ...image, original: image, color: dominantOfPixels(thumbnail.data, thumbnail.info.channels) };
    }
    const target = keepFormat.has(format) ? format : 'jpeg';
    // EXIF orientations 5–8 turn the image a quarter: its upright size is the header's, swapped.
    // (A header read: no pixels decoded.)
    const orientation = (await input(body).metadata()).orientation ?? 1;
    const upright = orientation >= 5 ? { width: header.height, height: header.width } : { width: header.width, height: header.height };
    const box = defaultBox(upright, resize);
    // The variant's pixels first, then encoded: the same pixels give the colour, with no second decode.
    const pixels = await input(body).rotate().resize(box.width, box.height, { fit: 'cover', position: 'centre' }).raw().toBuffer({ resolveWithObject: true });
    const { width, height, channels } = pixels.info;
    const variant = await encode(sharp(pixels.data, { raw: { width, height, channels } }), target, 'variant');
    const longer = Math.max(upright.width, upright.height);
    const original =
      target === format && orientation === 1 && longer <= originalMax
        ? { data: body, contentType: formats[target]!.contentType, ext: formats[target]!.ext, width: upright.width, height: upright.height }
        : await encode(input(body).rotate().resize(originalMax, originalMax, { fit: 'inside', withoutEnlargement: true }), target, 'original');
    return { ...variant, original, color: dominantOfPixels(pixels.data, channels) };
  } catch (error) {
    throw notImage(error);
  }
}

/**
 * The size of the default variant of an upright `source`: the resize box when
 * the image covers it, else the largest box of the same aspect inside the image
 * (cropped, not enlarged).
 */
export function defaultBox(source: { width: number; height: number }, resize: ResizeSpec): { width: number; height: number } {
  if (source.width >= resize.width && source.height >= resize.height) return resize;
  const width = Math.max(1, Math.min(source.width, Math.round((source.height * resize.width) / resize.height)));
  const height = Math.max(1, Math.min(source.height, Math.round((source.width * resize.height) / resize.width)));
  return { width, height };
}

/** Encodes a pipeline in `target` (the original a little finer than the variant), with the shared encoder. */
function encode(pipeline: Sharp, target: string, kind: 'variant' | 'original'): Promise<EncodedImage> {
  return encodeImage(pipeline, target as EncodeFormat, kind);
}

/** `work`, or the signal's reason as soon as it aborts (`work` goes on, unobserved). */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

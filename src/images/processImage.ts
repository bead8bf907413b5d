/**
 * Proves a body is an image by decoding it, and produces the bytes to store.
 *
 * With a resize spec the image is cropped to fill `width`×`height` (aspect kept,
 * centre crop) and re-encoded in its own format (JPEG, PNG, WebP, AVIF; anything
 * else becomes JPEG). Without one the original bytes are kept, but the image is
 * still fully decoded first, so a body that merely claims to be an image is refused.
 */
import sharp from 'sharp';
import { CoverError } from '../errors.js';
import type { ResizeSpec } from '../config.js';

export interface ProcessedImage {
  data: Buffer;
  contentType: string;
  ext: string;
  width: number;
  height: number;
}

const formats: Record<string, { contentType: string; ext: string }> = {
  jpeg: { contentType: 'image/jpeg', ext: 'jpg' },
  png: { contentType: 'image/png', ext: 'png' },
  webp: { contentType: 'image/webp', ext: 'webp' },
  gif: { contentType: 'image/gif', ext: 'gif' },
  avif: { contentType: 'image/avif', ext: 'avif' },
  heif: { contentType: 'image/avif', ext: 'avif' },
  tiff: { contentType: 'image/tiff', ext: 'tiff' },
  svg: { contentType: 'image/svg+xml', ext: 'svg' },
};

/** Formats re-encoded as themselves when resizing; the rest become JPEG. */
const keepFormat = new Set(['jpeg', 'png', 'webp', 'avif']);

/** Largest decoded image, in pixels: guards against decompression bombs. */
const LIMIT_INPUT_PIXELS = 100_000_000;

export async function processImage(body: Buffer, resize: ResizeSpec | null): Promise<ProcessedImage> {
  const input = () => sharp(body, { failOn: 'error', limitInputPixels: LIMIT_INPUT_PIXELS, animated: false });
  let format: string;
  try {
    const meta = await input().metadata();
    format = meta.format ?? '';
    if (format === 'svg') throw new CoverError('not_image', 'SVG covers are not accepted');
    if (resize === null) {
      // Decode the whole body: a truncated or corrupt one fails here. Decoding to a
      // thumbnail reads every byte too, but lets JPEG shrink on load (a quarter cheaper).
      await input().resize(16, 16, { fit: 'inside' }).raw().toBuffer();
      const known = formats[format] ?? { contentType: 'application/octet-stream', ext: 'bin' };
      return { data: body, contentType: known.contentType, ext: known.ext, width: meta.width ?? 0, height: meta.height ?? 0 };
    }
    const target = keepFormat.has(format) ? format : 'jpeg';
    const pipeline = input().rotate().resize(resize.width, resize.height, { fit: 'cover', position: 'centre' });
    const encoded =
      target === 'png'
        ? pipeline.png()
        : target === 'webp'
          ? pipeline.webp({ quality: 82 })
          : target === 'avif'
            ? pipeline.avif({ quality: 60 })
            : pipeline.jpeg({ quality: 85, mozjpeg: false });
    const { data, info } = await encoded.toBuffer({ resolveWithObject: true });
    const known = formats[target]!;
    return { data, contentType: known.contentType, ext: known.ext, width: info.width, height: info.height };
  } catch (error) {
    if (error instanceof CoverError) throw error;
    throw new CoverError('not_image', `the body is not a decodable image: ${(error as Error).message}`, { cause: error });
  }
}

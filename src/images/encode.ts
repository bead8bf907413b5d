/**
 * The one encoder: every image the service stores (the default variant, the
 * original, the variants made on demand) is encoded here, with one table of
 * formats and one set of encode settings, so a variant asked for as WebP is
 * encoded exactly as a default variant that is WebP.
 */
import type { Sharp } from 'sharp';

export interface EncodedImage {
  data: Buffer;
  contentType: string;
  ext: string;
  width: number;
  height: number;
}

/** Content type and file extension by sharp's format name. */
export const FORMATS: Record<string, { contentType: string; ext: string }> = {
  jpeg: { contentType: 'image/jpeg', ext: 'jpg' },
  png: { contentType: 'image/png', ext: 'png' },
  webp: { contentType: 'image/webp', ext: 'webp' },
  gif: { contentType: 'image/gif', ext: 'gif' },
  avif: { contentType: 'image/avif', ext: 'avif' },
  heif: { contentType: 'image/avif', ext: 'avif' },
  tiff: { contentType: 'image/tiff', ext: 'tiff' },
  svg: { contentType: 'image/svg+xml', ext: 'svg' },
};

/** The formats images are encoded in; anything else becomes JPEG. */
export type EncodeFormat = 'jpeg' | 'png' | 'webp' | 'avif';

/** Default qualities: what pages get (`variant`), and the original kept, a little finer. */
export const QUALITY: Record<'variant' | 'original', Record<Exclude<EncodeFormat, 'png'>, number>> = {
  variant: { jpeg: 85, webp: 82, avif: 60 },
  original: { jpeg: 92, webp: 90, avif: 70 },
};

/** AVIF's encoder effort (0–9, sharp's default 4): CPU per image against bytes. */
export const AVIF_EFFORT = 4;

/**
 * Encodes a pipeline in `format` at `quality` (1–100; the kind's default when
 * undefined) and says what came out.
 */
export async function encodeImage(pipeline: Sharp, format: EncodeFormat, kind: 'variant' | 'original', quality?: number): Promise<EncodedImage> {
  const q = (key: Exclude<EncodeFormat, 'png'>) => quality ?? QUALITY[kind][key];
  const encoded =
    format === 'png'
      ? pipeline.png()
      : format === 'webp'
        ? pipeline.webp({ quality: q('webp') })
        : format === 'avif'
          ? pipeline.avif({ quality: q('avif'), effort: AVIF_EFFORT })
          : pipeline.jpeg({ quality: q('jpeg'), mozjpeg: false });
  const { data, info } = await encoded.toBuffer({ resolveWithObject: true });
  const known = FORMATS[format]!;
  return { data, contentType: known.contentType, ext: known.ext, width: info.width, height: info.height };
}

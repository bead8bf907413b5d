/**
 * The variants kept for a cover, as the admin task detail shows them: each
 * variant file's stored path, public URL, format, pixel size and bytes.
 *
 * The files are listed through the path guard (`listVariantFiles`) and each is
 * opened through it too, for its first bytes only: the size is read from the
 * header (JPEG, PNG, WebP by `readImageHeader`; AVIF from its `ispe` property),
 * never by decoding. A header that cannot be read leaves the size to the
 * variant's name (`w480-h300-…`), and `null` where the name does not say.
 * At most `MAX_LISTED` are described (a cover's variants are bounded only by
 * the cache); `total` says how many there are.
 */
import { coverUrl } from '../checks/index.js';
import { readImageHeader } from '../images/imageHeader.js';
import { listVariantFiles, openStoredFile } from '../store/coverFiles.js';
import type { VariantJson } from '../wire/adminStream.js';

/** Most variants described in one task detail. */
export const MAX_LISTED = 100;
/** Bytes read from each variant file for its header. */
const HEADER_BYTES = 4096;

const formatOfExt: Record<string, VariantJson['format']> = { jpg: 'jpeg', png: 'png', webp: 'webp', avif: 'avif' };

/**
 * Width and height of an AVIF (HEIF) image from its first bytes: the first
 * `ispe` (image spatial extents) property, a full box of version 0 holding the
 * width and the height as 32-bit numbers. Null when it is not within `head`.
 */
export function avifSize(head: Buffer): { width: number; height: number } | null {
  if (head.length < 12 || head.toString('latin1', 4, 8) !== 'ftyp') return null;
  const at = head.indexOf('ispe', 8, 'latin1');
  if (at < 4 || at + 16 > head.length) return null;
  const boxSize = head.readUInt32BE(at - 4);
  if (boxSize !== 20 || head[at + 4] !== 0) return null;
  const width = head.readUInt32BE(at + 8);
  const height = head.readUInt32BE(at + 12);
  return width > 0 && height > 0 ? { width, height } : null;
}

/** The size a variant's name gives (`w480-h300-cover-webp`): the width always, the height when the name has one. */
function sizeFromName(file: string): { width: number | null; height: number | null } {
  const key = file.slice(file.lastIndexOf('/') + 1);
  const w = /^w(\d{1,5})-/.exec(key);
  const h = /-h(\d{1,5})-/.exec(key);
  return { width: w ? Number(w[1]) : null, height: h ? Number(h[1]) : null };
}

async function headOf(coversDir: string, relPath: string): Promise<Buffer | undefined> {
  const opened = await openStoredFile(coversDir, relPath).catch(() => undefined);
  if (opened === undefined) return undefined;
  try {
    const buffer = Buffer.alloc(Math.min(HEADER_BYTES, opened.size));
    const { bytesRead } = await opened.handle.read(buffer, 0, buffer.length, 0);
    return buffer.subarray(0, bytesRead);
  } catch {
    return undefined;
  } finally {
    await opened.handle.close().catch(() => undefined);
  }
}

/** The variants stored for the cover at `coverPath`, largest first then by format, with how many there are. */
export async function coverVariants(coversDir: string, coverPath: string, publicUrl: string): Promise<{ variants: VariantJson[]; total: number }> {
  const files = await listVariantFiles(coversDir, coverPath);
  const variants: VariantJson[] = [];
  for (const file of files.slice(0, MAX_LISTED)) {
    const format = formatOfExt[file.path.slice(file.path.lastIndexOf('.') + 1)];
    if (format === undefined) continue;
    const head = await headOf(coversDir, file.path);
    const read = head === undefined ? null : format === 'avif' ? avifSize(head) : readImageHeader(head);
    const named = sizeFromName(file.path);
    variants.push({
      path: file.path,
      coverUrl: coverUrl(publicUrl, file.path),
      format,
      width: read?.width ?? named.width,
      height: read?.height ?? named.height,
      bytes: file.bytes,
    });
  }
  variants.sort((a, b) => (b.width ?? 0) - (a.width ?? 0) || (b.height ?? 0) - (a.height ?? 0) || (a.format < b.format ? -1 : a.format > b.format ? 1 : 0));
  return { variants, total: files.length };
}

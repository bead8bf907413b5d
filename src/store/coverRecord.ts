/**
 * Stores a processed image as a URL's cover file, with the original kept beside
 * it, and builds its row: the one path shared by downloads, custom uploads and
 * imports.
 *
 * The original is written first, then the cover, each temp file + rename; the
 * row is recorded by the caller only after both, so a row never points at a
 * missing file. If the cover's write fails after the original's, the original
 * is removed again (unless it was there before: the same content stored earlier,
 * which a row may point at).
 */
import type { CoverRow } from './entities.js';
import { coverPath, openStoredFile, originalPathOf, removeCoverFile, removeVariantFiles, sha256, writeCoverFile } from './coverFiles.js';

export interface CoverImage {
  data: Buffer;
  contentType: string;
  ext: string;
  width: number;
  height: number;
  /** The original to keep beside it; the same `data` when the stored file is the original. None: not kept. */
  original?: Omit<CoverImage, 'original' | 'color'>;
  /** Its dominant colour, `#rrggbb` (`processImage` computes it). */
  color?: string;
}

/** Writes the image (and its original) under its URL- and content-derived path; returns the row to record. */
export async function writeCover(
  url: string,
  image: CoverImage,
  options: { coversDir: string; source: CoverRow['source']; now: number; signal?: AbortSignal; resolvedPic?: string | undefined },
): Promise<CoverRow> {
  const hash = sha256(image.data);
  const path = coverPath(url, hash, image.ext);
  const original = image.original;
  const separate = original !== undefined && original.data !== image.data;
  const originalPath = original === undefined ? null : separate ? originalPathOf(path) : path;
  let wroteOriginal = false;
  if (separate && originalPath !== null) {
    const before = await openStoredFile(options.coversDir, originalPath);
    await before?.handle.close();
    await writeCoverFile(options.coversDir, originalPath, original.data, options.signal);
    wroteOriginal = before === undefined;
    // The same path with an original rewritten (a default variant that encodes the same from a
    // different original): the variants made from the old one must not be served for it.
    if (before !== undefined) await removeVariantFiles(options.coversDir, path);
  }
  try {
    await writeCoverFile(options.coversDir, path, image.data, options.signal);
  } catch (error) {
    if (wroteOriginal && originalPath !== null) await removeCoverFile(options.coversDir, originalPath).catch(() => undefined);
    throw error;
  }
  return {
    url,
    path,
    source: options.source,
    bytes: image.data.length,
    contentType: image.contentType,
    width: image.width,
    height: image.height,
    sha256: hash,
    createdAt: options.now,
    lastAskedAt: options.now,
    // A video page's cover: resolved now, to this pic.
    resolvedAt: options.resolvedPic === undefined ? null : options.now,
    resolvedPic: options.resolvedPic ?? null,
    originalPath,
    originalWidth: original?.width ?? null,
    originalHeight: original?.height ?? null,
    originalBytes: original?.data.length ?? null,
    color: image.color ?? null,
  };
}

/** The bytes a cover holds on disk: its file, its original when that is a file of its own, and its variants (as last counted). */
export function diskBytes(row: Pick<CoverRow, 'path' | 'bytes' | 'originalPath' | 'originalBytes' | 'variantBytes'>): number {
  return row.bytes + (row.originalPath !== null && row.originalPath !== row.path ? (row.originalBytes ?? 0) : 0) + (row.variantBytes ?? 0);
}

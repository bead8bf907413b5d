/**
 * Stores a processed image as a URL's cover file and builds its row: the one
 * path shared by downloads and custom uploads.
 */
import type { CoverRow } from './entities.js';
import { coverPath, sha256, writeCoverFile } from './coverFiles.js';

export interface CoverImage {
  data: Buffer;
  contentType: string;
  ext: string;
  width: number;
  height: number;
}

/** Writes the image under its URL- and content-derived path; returns the row to record. */
export async function writeCover(
  url: string,
  image: CoverImage,
  options: { coversDir: string; source: CoverRow['source']; now: number; signal?: AbortSignal; resolvedPic?: string | undefined },
): Promise<CoverRow> {
  const hash = sha256(image.data);
  const path = coverPath(url, hash, image.ext);
  await writeCoverFile(options.coversDir, path, image.data, options.signal);
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
  };
}

/**
 * `GET /covers/<path>`: a stored cover file, with its Content-Type, an ETag,
 * a long-lived Cache-Control (a path changes whenever its content does), 304
 * on If-None-Match, and 404 `{"code","message"}` for anything not a regular
 * file inside the covers folder (links are not followed out of it: see
 * `openCoverFile`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { sendError } from '../http/index.js';
import { openCoverFile } from '../store/index.js';

const contentTypes: Record<string, string> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.avif': 'image/avif',
  '.tiff': 'image/tiff',
};

/** The Content-Type of a stored cover, by its extension. */
export function contentTypeOf(file: string): string {
  return contentTypes[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/** A stored file's ETag: its size and modification time. */
export function etagOf(size: number, mtimeMs: number): string {
  return `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;
}

/** Whether the request's If-None-Match names `etag`. */
export function notModified(req: IncomingMessage, etag: string): boolean {
  const ifNoneMatch = req.headers['if-none-match'];
  return ifNoneMatch !== undefined && ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag || tag.trim() === '*');
}

/**
 * Answers `GET /covers/<file>`: `file` is the path after `/covers/`, as sent.
 * `extra` headers replace the defaults (the proxy prefix gives its own Cache-Control).
 */
export async function serveCover(req: IncomingMessage, res: ServerResponse, file: string, coversDir: string, extra: Record<string, string> = {}): Promise<void> {
  const found = await openCoverFile(coversDir, file);
  if (!found) return sendError(res, 404, 'not_found', 'no cover at this path');
  // Served from the handle opened and checked, so nothing swapped in after the check is read.
  const stream = found.handle.createReadStream({ autoClose: true });
  const close = () => stream.destroy();
  const etag = etagOf(found.size, found.mtimeMs);
  const headers = {
    'content-type': contentTypeOf(found.file),
    etag,
    'cache-control': 'public, max-age=31536000, immutable',
    'x-content-type-options': 'nosniff',
    ...extra,
  };
  if (notModified(req, etag)) {
    close();
    res.writeHead(304, headers).end();
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': String(found.size) });
  if (req.method === 'HEAD') {
    close();
    res.end();
    return;
  }
  try {
    await pipeline(stream, res);
  } catch {
    res.destroy();
  }
}

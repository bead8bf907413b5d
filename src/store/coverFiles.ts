/**
 * Cover files on disk: their paths, atomic writes, the temp sweep, and the
 * traversal-proof lookup behind `GET /covers/<path>`.
 *
 * A cover's relative path is `<host>/<base>-<urlhash>-<contenthash>.<ext>`:
 * readable (host and original base name), unique per URL (the URL's hash),
 * different whenever the content changes (the content's hash), and built only
 * from `[a-z0-9._-]` so it cannot escape the folder.
 *
 * Files are written to `<covers>/.tmp/<random>`, flushed, then renamed into
 * place: a crash leaves at worst a temp file, which `sweepTemp` removes at start,
 * never a half file at a published path. The temp folder sits inside the covers
 * folder so the rename never crosses filesystems.
 *
 * Links are not trusted: a cover is served only if it is a regular file (not a
 * link, FIFO or device) whose real path is inside the covers folder, and a cover
 * is written only into a folder whose real path is inside it. The covers folder
 * itself may be a link (an operator's mount).
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, realpath, rename, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';

export const TEMP_DIR = '.tmp';

const hash = (text: string | Buffer) => createHash('sha256').update(text).digest('hex');

function cleanSegment(text: string, fallback: string, max: number): string {
  const cleaned = text
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '_')
    .replace(/^[._-]+/, '')
    .replace(/[._-]+$/, '')
    .slice(0, max);
  return cleaned === '' ? fallback : cleaned;
}

/** The relative path for a URL's cover with the given content hash and extension. */
export function coverPath(url: string, contentSha256: string, ext: string): string {
  let host = 'unknown';
  let base = 'cover';
  try {
    const parsed = new URL(url);
    host = cleanSegment(parsed.hostname, 'unknown', 80);
    const last = parsed.pathname.split('/').filter(Boolean).pop() ?? '';
    let decoded = last;
    try {
      decoded = decodeURIComponent(last);
    } catch {
      // keep the raw segment
    }
    base = cleanSegment(decoded.replace(/\.[A-Za-z0-9]{1,5}$/, ''), 'cover', 60);
  } catch {
    // not a URL: the hashes still make the path unique
  }
  return `${host}/${base}-${hash(url).slice(0, 12)}-${contentSha256.slice(0, 12)}.${cleanSegment(ext, 'bin', 5)}`;
}

export function sha256(data: Buffer): string {
  return hash(data);
}

/** Folders known to exist inside the covers folder, so a write costs no mkdir (a removed folder is made again on ENOENT). */
const madeDirs = new Set<string>();

/** Whether `real` (a real path) is `realRoot` or inside it. */
function within(realRoot: string, real: string): boolean {
  return real === realRoot || real.startsWith(realRoot.endsWith(path.sep) ? realRoot : realRoot + path.sep);
}

/** Makes `dir` (under `root`) and checks that links do not take it outside the covers folder. */
async function ensureDir(root: string, dir: string): Promise<void> {
  if (madeDirs.has(dir)) return;
  await mkdir(dir, { recursive: true });
  if (!within(await realpath(root), await realpath(dir))) {
    throw Object.assign(new Error(`refusing to write through a link that leaves the covers folder: ${dir}`), { code: 'ELOOP' });
  }
  madeDirs.add(dir);
}

/**
 * Writes `data` to `<coversDir>/<relPath>` atomically: temp file, then rename.
 * If `signal` aborts before the rename, the temp file is removed and nothing is
 * published. A killed process leaves at worst a temp file; the page cache keeps
 * what was written, so no fsync is paid per cover (a power cut may lose covers
 * written in its last seconds, which are then downloaded again).
 */
export async function writeCoverFile(coversDir: string, relPath: string, data: Buffer, signal?: AbortSignal): Promise<void> {
  const target = resolveInside(coversDir, relPath);
  if (target === undefined) throw new Error(`refusing to write outside the covers folder: ${relPath}`);
  const tempDir = path.join(coversDir, TEMP_DIR);
  await ensureDir(coversDir, tempDir);
  await ensureDir(coversDir, path.dirname(target));
  const temp = path.join(tempDir, `${randomBytes(12).toString('hex')}.part`);
  try {
    let handle;
    try {
      handle = await open(temp, 'wx', 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      madeDirs.clear(); // a folder was removed under us: make them again
      await ensureDir(coversDir, tempDir);
      await ensureDir(coversDir, path.dirname(target));
      handle = await open(temp, 'wx', 0o644);
    }
    try {
      await handle.writeFile(data);
    } finally {
      await handle.close();
    }
    signal?.throwIfAborted();
    try {
      await rename(temp, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      madeDirs.delete(path.dirname(target));
      await ensureDir(coversDir, path.dirname(target));
      await rename(temp, target);
    }
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/**
 * Removes temp leftovers of an earlier run, or only those older than
 * `olderThanMs` (a covers folder other nodes write into too: their temp files
 * in progress are not leftovers). Returns how many were removed.
 */
export async function sweepTemp(coversDir: string, olderThanMs = 0, now = Date.now()): Promise<number> {
  const tempDir = path.join(coversDir, TEMP_DIR);
  let names: string[];
  try {
    names = await readdir(tempDir);
  } catch {
    return 0;
  }
  let removed = 0;
  await Promise.all(
    names.map(async (name) => {
      const file = path.join(tempDir, name);
      if (olderThanMs > 0) {
        const info = await lstat(file).catch(() => undefined);
        if (info === undefined || now - info.mtimeMs < olderThanMs) return;
      }
      await rm(file, { force: true, recursive: true });
      removed++;
    }),
  );
  return removed;
}

/** Removes a cover file; a missing file is not an error. */
export async function removeCoverFile(coversDir: string, relPath: string): Promise<void> {
  const target = resolveInside(coversDir, relPath);
  if (target !== undefined) await rm(target, { force: true });
}

/**
 * Joins a relative path under `root`, or `undefined` if any segment is empty,
 * `.`, `..`, hidden (starts with a dot), or holds a separator or NUL.
 */
export function resolveInside(root: string, relPath: string): string | undefined {
  const segments = relPath.split('/');
  for (const segment of segments) {
    if (segment === '' || segment.startsWith('.') || /[\\/\0]/.test(segment)) return undefined;
  }
  const resolvedRoot = path.resolve(root);
  const target = path.resolve(resolvedRoot, ...segments);
  return target.startsWith(resolvedRoot + path.sep) ? target : undefined;
}

/** A cover file opened for serving; the caller closes `handle` (or streams from it). */
export interface OpenCover {
  handle: FileHandle;
  file: string;
  size: number;
  mtimeMs: number;
}

/** Opened without following a link in the last segment, and without blocking on a FIFO. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** The real path of an open file: Linux names it under /proc (no race with a link swapped in); elsewhere the path is resolved again. */
async function realPathOf(handle: FileHandle, file: string): Promise<string> {
  try {
    return await readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    return realpath(file);
  }
}

/**
 * Opens the cover file at the URL path after `/covers/`, or `undefined`. Each
 * segment is percent-decoded once; `..`, encoded `%2e%2e`, encoded slashes,
 * absolute paths and dot-files come back `undefined`, and so does anything but a
 * regular file whose real path is inside `root`: a link (to `/etc/passwd`, or a
 * folder link leading out), a FIFO, a device.
 */
export async function openCoverFile(root: string, urlPath: string): Promise<OpenCover | undefined> {
  let decoded: string[];
  try {
    decoded = urlPath.split('/').map((segment) => decodeURIComponent(segment));
  } catch {
    return undefined;
  }
  if (decoded.some((segment) => segment.includes('/'))) return undefined;
  return openStoredFile(root, decoded.join('/'));
}

/**
 * Opens the file at a relative path under `root` (a cover's stored path), or
 * `undefined` unless it is a regular file whose real path is inside `root`: what
 * is found on disk is not trusted (a link put in the folder is not followed).
 */
export async function openStoredFile(root: string, relPath: string): Promise<OpenCover | undefined> {
  const file = resolveInside(root, relPath);
  if (file === undefined) return undefined;
  let handle: FileHandle;
  try {
    handle = await open(file, OPEN_FLAGS);
  } catch {
    return undefined;
  }
  try {
    const info = await handle.stat();
    if (info.isFile() && within(await realpath(root), await realPathOf(handle, file))) {
      return { handle, file, size: info.size, mtimeMs: info.mtimeMs };
    }
  } catch {
    // unreadable: not served
  }
  await handle.close();
  return undefined;
}

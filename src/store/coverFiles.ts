/**
 * Cover files on disk: their paths, atomic writes, the temp sweep, and the
 * traversal-proof lookup behind `GET /covers/<path>`.
 *
 * A cover's relative path is `<host>/<base>-<urlhash>-<contenthash>.<ext>`:
 * readable (host and original base name), unique per URL (the URL's hash),
 * different whenever the content changes (the content's hash), and built only
 * from `[a-z0-9._-]` so it cannot escape the folder.
 *
 * Each cover keeps its original beside it, at `originalPathOf(path)`:
 * `<host>/<base>-<urlhash>-<contenthash>.orig.<ext>` (the variant's path with
 * `.orig` before its extension; the two share a format). Whatever removes a
 * cover's file removes its original with it (`removeCoverFiles`). Originals are
 * not served (`isOriginalPath`).
 *
 * Its variants (sizes and formats made on demand from the original) sit in a
 * folder beside it, `variantsFolderOf(path)`: `<path>.variants/<key>.<ext>`
 * (`variantPathOf` in src/images/variants.ts; the key is `variantKey`'s, `[a-z0-9-]` only). One folder
 * per cover, so listing or removing a cover's variants never reads the whole
 * host folder. `.variants` is longer than any cover's extension, so the folder
 * cannot be another cover's path. Variants are served as they are (unlike
 * originals), and removed with their cover (`removeCoverFiles`).
 *
 * Files are written to `<covers>/.tmp/<random>`, flushed, then renamed into
 * place: a crash leaves at worst a temp file, which `sweepTemp` removes at start,
 * never a half file at a published path. The temp folder sits inside the covers
 * folder so the rename never crosses filesystems.
 *
 * Links are not trusted: every read, write, rename and removal here goes through
 * the path guard (`pathGuard.ts`): a cover is served only if it is a regular
 * file (not a link, FIFO or device) whose real path is inside the covers folder,
 * and a cover is written only through real folders inside it, checked at each
 * write. The covers folder itself may be a link (an operator's mount).
 */
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { systemClock } from '../clock.js';
import { createFile, listFiles, makeFolder, moveFile, openFile, PathRefusedError, plainSegments, removePath, statFiles, sweepFolder } from './pathGuard.js';
import type { FileStat, OpenedFile, RemoveOutcome } from './pathGuard.js';

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

/** The path of the original kept beside the cover stored at `relPath`. */
export function originalPathOf(relPath: string): string {
  const dot = relPath.lastIndexOf('.');
  const slash = relPath.lastIndexOf('/');
  return dot > slash ? `${relPath.slice(0, dot)}.orig${relPath.slice(dot)}` : `${relPath}.orig`;
}

/** Whether a stored path names an original (`originalPathOf`). */
export function isOriginalPath(relPath: string): boolean {
  return /\.orig(\.[A-Za-z0-9]+)?$/.test(relPath);
}

/** The folder beside a cover holding its variants. */
export function variantsFolderOf(relPath: string): string {
  return `${relPath}${VARIANTS_SUFFIX}`;
}

const VARIANTS_SUFFIX = '.variants';
const VARIANT_FILE = /^[a-z0-9-]+\.(jpg|png|webp|avif)$/;


/** Whether a stored path names a variant (`variantPathOf`). */
export function isVariantPath(relPath: string): boolean {
  const segments = relPath.split('/');
  return segments.length >= 2 && segments.at(-2)!.endsWith(VARIANTS_SUFFIX) && segments.at(-2)!.length > VARIANTS_SUFFIX.length && VARIANT_FILE.test(segments.at(-1)!);
}

/** The cover a variant path belongs to (`variantPathOf` undone), or undefined for a path that is not a variant's. */
export function coverPathOfVariant(relPath: string): string | undefined {
  if (!isVariantPath(relPath)) return undefined;
  return relPath.slice(0, relPath.lastIndexOf('/') - VARIANTS_SUFFIX.length);
}

/**
 * The variant files kept for the cover stored at `coverPath`, with their sizes
 * (through the path guard: a folder that is a link lists nothing, temp files
 * and anything not named as a variant are left out).
 */
export async function listVariantFiles(coversDir: string, coverPath: string): Promise<{ path: string; bytes: number }[]> {
  const folder = plainSegments(variantsFolderOf(coverPath));
  if (folder === undefined) return [];
  let files;
  try {
    files = await listFiles(coversDir, folder);
  } catch (error) {
    if (error instanceof PathRefusedError) return [];
    throw error;
  }
  return files.filter((file) => VARIANT_FILE.test(file.name)).map((file) => ({ path: `${variantsFolderOf(coverPath)}/${file.name}`, bytes: file.size }));
}

/** Removes the variants folder of the cover stored at `coverPath` (a link there: the link itself). */
export async function removeVariantFiles(coversDir: string, coverPath: string): Promise<RemoveOutcome> {
  const folder = plainSegments(variantsFolderOf(coverPath));
  return folder === undefined ? 'refused' : removePath(coversDir, folder, { recursive: true });
}

export function sha256(data: Buffer): string {
  return hash(data);
}

/** A cover's stored path as segments, or a refusal (a path that is not plain cannot be a cover's). */
function coverSegments(relPath: string): string[] {
  const segments = plainSegments(relPath);
  if (segments === undefined) throw new PathRefusedError(`refusing to write outside the covers folder: ${relPath}`);
  return segments;
}

/**
 * Writes `data` to `<coversDir>/<relPath>` atomically: temp file, then rename,
 * every step through the path guard (no link followed, the real location
 * checked at each write). If `signal` aborts before the rename, the temp file is
 * removed and nothing is published. A killed process leaves at worst a temp
 * file; the page cache keeps what was written, so no fsync is paid per cover (a
 * power cut may lose covers written in its last seconds, which are then
 * downloaded again).
 */
export async function writeCoverFile(coversDir: string, relPath: string, data: Buffer, signal?: AbortSignal, hooks: { beforeRename?: () => void } = {}): Promise<{ mtimeMs: number }> {
  const target = coverSegments(relPath);
  const temp = [TEMP_DIR, `${randomBytes(12).toString('hex')}.part`];
  // The folders are made only when missing: creating and moving check them anyway (each
  // segment a real folder inside the root), so a write into folders that exist checks each once.
  const whenMissing = async <T>(work: () => Promise<T>, folder: string[]): Promise<T> => {
    try {
      return await work();
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'ENOENT') throw error;
      await makeFolder(coversDir, folder);
      return work();
    }
  };
  const handle = await whenMissing(() => createFile(coversDir, temp, 0o644), [TEMP_DIR]);
  try {
    let mtimeMs: number;
    try {
      await handle.writeFile(data);
      // The file's time as written (a rename keeps it): what its ETag is made of.
      mtimeMs = (await handle.stat()).mtimeMs;
    } finally {
      await handle.close();
    }
    signal?.throwIfAborted();
    hooks.beforeRename?.();
    await whenMissing(() => moveFile(coversDir, temp, target), target.slice(0, -1));
    return { mtimeMs };
  } catch (error) {
    await removePath(coversDir, temp).catch(() => undefined);
    throw error;
  }
}

/**
 * Removes temp leftovers of an earlier run, or only those older than
 * `olderThanMs` (a covers folder other nodes write into too: their temp files
 * in progress are not leftovers). A link found there is removed itself, never
 * its target; a `.tmp` that is itself a link is not swept. Returns how many were
 * removed.
 */
export function sweepTemp(coversDir: string, olderThanMs = 0, now = systemClock.now()): Promise<number> {
  return sweepFolder(coversDir, [TEMP_DIR], olderThanMs, now);
}

/** Removes a cover file (a link there: the link itself); a missing file is not an error. */
export async function removeCoverFile(coversDir: string, relPath: string): Promise<RemoveOutcome> {
  const segments = plainSegments(relPath);
  return segments === undefined ? 'refused' : removePath(coversDir, segments);
}

/**
 * Removes a cover's file, the original kept beside it (`originalPathOf`) and its
 * variants (`variantsFolderOf`); missing files are not errors. The outcome is
 * the cover file's, or `refused` if any removal was.
 *
 * The cover file goes first and the variants folder last: a render that
 * publishes a variant while this runs either lands before the folder is
 * removed (and goes with it), or finds the cover's file gone when it looks
 * after publishing, and removes its variant itself (see `renders.ts`). A crash
 * part way is finished by the deletion runner, whose record outlives it: each
 * removal here finds what is left.
 */
export async function removeCoverFiles(coversDir: string, relPath: string): Promise<RemoveOutcome> {
  if (isVariantPath(relPath)) return removeCoverFile(coversDir, relPath);
  const outcome = await removeCoverFile(coversDir, relPath);
  if (isOriginalPath(relPath)) return outcome;
  const original = await removeCoverFile(coversDir, originalPathOf(relPath));
  const variants = await removeVariantFiles(coversDir, relPath);
  return original === 'refused' || variants === 'refused' ? 'refused' : outcome;
}

/**
 * Joins a relative path under `root`, or `undefined` if any segment is empty,
 * `.`, `..`, hidden (starts with a dot), or holds a separator or NUL.
 */
export function resolveInside(root: string, relPath: string): string | undefined {
  const segments = plainSegments(relPath);
  if (segments === undefined) return undefined;
  const resolvedRoot = path.resolve(root);
  const target = path.resolve(resolvedRoot, ...segments);
  return target.startsWith(resolvedRoot + path.sep) ? target : undefined;
}

/** A cover file opened for serving; the caller closes `handle` (or streams from it). */
export type OpenCover = OpenedFile;

/**
 * Opens the cover file at the URL path after `/covers/`, or `undefined`. Each
 * segment is percent-decoded once; `..`, encoded `%2e%2e`, encoded slashes,
 * absolute paths, dot-files and originals (`isOriginalPath`) come back `undefined`, and so does anything but a
 * regular file whose real path is inside `root`: a link (to `/etc/passwd`, or a
 * folder link leading out), a FIFO, a device.
 */
export async function openCoverFile(root: string, urlPath: string): Promise<OpenCover | undefined> {
  const stored = storedPathOfUrl(urlPath);
  // Originals are kept, not served: what pages get is made from them.
  if (stored === undefined || isOriginalPath(stored)) return undefined;
  return openStoredFile(root, stored);
}

/**
 * The stored path a URL path after `/covers/` names: each segment
 * percent-decoded once; undefined for a segment that does not decode, an
 * encoded slash, or a path that is not plain (`..`, dot-files, empty segments).
 */
export function storedPathOfUrl(urlPath: string): string | undefined {
  let decoded: string[];
  try {
    decoded = urlPath.split('/').map((segment) => decodeURIComponent(segment));
  } catch {
    return undefined;
  }
  if (decoded.some((segment) => segment.includes('/'))) return undefined;
  const joined = decoded.join('/');
  return plainSegments(joined) === undefined ? undefined : joined;
}

/**
 * Opens the file at a relative path under `root` (a cover's stored path), or
 * `undefined` unless the path guard finds a regular file inside `root`: what is
 * found on disk is not trusted (a link put in the folder is not followed).
 */
export async function openStoredFile(root: string, relPath: string): Promise<OpenCover | undefined> {
  const segments = plainSegments(relPath);
  return segments === undefined ? undefined : openFile(root, segments);
}

/**
 * The size and time of each stored file at `relPaths` that is a regular file
 * inside `root` (`statFiles`: no link followed, nothing opened), `undefined`
 * for one that is not. Files in one folder (a cover and its original) are
 * looked at with one check of that folder.
 */
export async function statStoredFiles(root: string, relPaths: readonly string[]): Promise<(FileStat | undefined)[]> {
  const split = relPaths.map((relPath) => plainSegments(relPath));
  const folder = split[0]?.slice(0, -1);
  if (folder !== undefined && split.every((segments) => segments !== undefined && segments.length === folder.length + 1 && segments.slice(0, -1).every((segment, i) => segment === folder[i]))) {
    return statFiles(root, folder, split.map((segments) => segments!.at(-1)!));
  }
  return Promise.all(split.map(async (segments) => (segments === undefined ? undefined : (await statFiles(root, segments.slice(0, -1), [segments.at(-1)!]))[0])));
}

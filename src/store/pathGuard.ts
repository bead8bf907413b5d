/**
 * The one path guard: every file the service reads, writes, renames or deletes
 * under one of its folders (the covers folder with its `.tmp` and `.jobs`, the
 * data folder) goes through here, and so one rule holds for all of them.
 *
 * A path is a root (the folder as configured) and a list of segments under it.
 * The rule, applied at every call (nothing is remembered between calls, so a
 * folder swapped for a link while the service runs is seen at the next call):
 *
 *   segments  plain names only: never empty, `.` or `..`, and never holding a
 *             separator or NUL. Dot-names such as `.tmp` are allowed here (the
 *             service names its own folders so); input is checked first with
 *             `plainSegments`, which refuses them.
 *   root      may itself be a link (an operator's mount): its real path is read
 *             once (`realRootOf`) and everything must stay inside it.
 *   folders   every folder between the root and the file is a real folder, never
 *             a link (each is `lstat`ed, even a link that points inside), and the
 *             real path of what is reached through them is inside the root's
 *             real path: read from `/proc/self/fd` for a file opened, made or
 *             renamed (after the call, so a swap in between is caught; the
 *             folder's own real path would say nothing more), and with
 *             `realpath` of the folder for a listing, a stat and a removal.
 *   files     opened with O_NOFOLLOW (a link as the last segment is refused) and
 *             O_NONBLOCK (a FIFO never blocks); what was opened is checked again
 *             by its real path, read from `/proc/self/fd`, so a link swapped in
 *             between the check and the open is still caught.
 *   stat      `statFiles`: the folder as for a listing, then `lstat` of each
 *             file (a link is not followed, and is not a file): nothing is read.
 *   mkdir     one segment at a time; an existing link where a folder belongs is
 *             refused, never followed and never replaced.
 *   rename    both folders checked just before; the file checked where it landed
 *             just after (if a swap took it outside, it is removed and the call
 *             fails).
 *   remove    a link is removed itself, never its target; a folder is removed
 *             without following any link in it; nothing is removed through a
 *             folder that is a link or leads out (the call answers `refused`).
 *
 * A refusal is a `PathRefusedError` (code `ELOOP`, as the kernel's own refusal
 * of O_NOFOLLOW). Writers report it as a storage fault (`disk_full` with this
 * message); readers treat it as "not there" (404, or 410 for an archive).
 */
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, realpath, rename, rmdir, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';

/** Segments under a root, e.g. `['.tmp', 'abc.part']` or `['example.com', 'a-….jpg']`. */
export type Segments = readonly string[];

/** A path the guard will not follow: a link, or a folder whose real path leaves the root. */
export class PathRefusedError extends Error {
  readonly code = 'ELOOP';
}

/** Opened for reading without following a link, and without blocking on a FIFO. */
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
/** Made new (never an existing file, never through a link in the last segment). */
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

const codeOf = (error: unknown): unknown => (error as { code?: unknown } | null)?.code;

/** Whether `real` (a real path) is `realRoot` or inside it. */
function within(realRoot: string, real: string): boolean {
  return real === realRoot || real.startsWith(realRoot.endsWith(path.sep) ? realRoot : realRoot + path.sep);
}

function checkSegments(segments: Segments): void {
  if (segments.length === 0) throw new PathRefusedError('refusing an empty path');
  for (const segment of segments) {
    if (segment === '' || segment === '.' || segment === '..' || /[\\/\0]/.test(segment)) {
      throw new PathRefusedError(`refusing the path segment ${JSON.stringify(segment)}`);
    }
  }
}

/**
 * The segments of a relative path taken from input (a cover's stored path, a
 * legacy row's path), or `undefined` if any segment is empty, `.`, `..`, hidden
 * (starts with a dot), or holds a backslash or NUL.
 */
export function plainSegments(relPath: string): string[] | undefined {
  const segments = relPath.split('/');
  for (const segment of segments) {
    if (segment === '' || segment.startsWith('.') || /[\\/\0]/.test(segment)) return undefined;
  }
  return segments;
}

/** The real path of an open file: Linux names it under /proc (no race with a link swapped in); elsewhere the path is resolved again. */
async function realPathOf(handle: FileHandle, file: string): Promise<string> {
  try {
    return await readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    return realpath(file);
  }
}

function linkRefused(abs: string, root: string): PathRefusedError {
  return new PathRefusedError(`refusing to follow a link: ${abs} is a link, and no folder under ${root} may be one`);
}

function outsideRefused(abs: string, root: string): PathRefusedError {
  return new PathRefusedError(`refusing to follow a link: ${abs} leads out of ${root}`);
}

/** The real path of each root seen, resolved once (bounded: a service has two or three roots). */
const realRoots = new Map<string, string>();

/**
 * The root's real path, resolved once per process: the root is the operator's
 * (it may be a link or a mount) and does not move under a running service; what
 * lies below it is resolved at every call. Were the root re-pointed anyway, what
 * lies under its new target would resolve outside the old real path and be
 * refused: never the other way round.
 */
async function realRootOf(root: string): Promise<string> {
  const known = realRoots.get(root);
  if (known !== undefined) return known;
  const real = await realpath(root);
  if (realRoots.size >= 64) realRoots.clear();
  realRoots.set(root, real);
  return real;
}

/**
 * The absolute path of `folder` under `root` once each of its segments is found
 * to be a real folder (not a link) and, with `resolve`, its real path inside the
 * root's; with `make`, the root is made if missing and missing segments one at a
 * time. ENOENT/ENOTDIR as the file system says them; a link is a
 * `PathRefusedError`. Without `resolve` the caller checks the real path of what
 * it reaches (the open file's, from `/proc/self/fd`) after the call: a folder's
 * real path read before would be as old as the `lstat`s already are.
 */
async function checkedFolder(root: string, folder: Segments, make: boolean, resolve = true): Promise<{ abs: string; realRoot: string }> {
  // The root is the operator's (it may be a link, a mount): made as configured if it is missing.
  if (make) await mkdir(root, { recursive: true });
  const realRoot = await realRootOf(root);
  let abs = path.resolve(root);
  for (const segment of folder) {
    abs = path.join(abs, segment);
    let info;
    try {
      info = await lstat(abs);
    } catch (error) {
      if (!make || codeOf(error) !== 'ENOENT') throw error;
      await mkdir(abs).catch((made: unknown) => {
        if (codeOf(made) !== 'EEXIST') throw made;
      });
      info = await lstat(abs);
    }
    if (info.isSymbolicLink()) throw linkRefused(abs, root);
    if (!info.isDirectory()) throw Object.assign(new Error(`ENOTDIR: not a folder: ${abs}`), { code: 'ENOTDIR' });
  }
  // Each segment was a real folder when looked at; the real path says where it is now.
  if (resolve && folder.length > 0 && !within(realRoot, await realpath(abs))) throw outsideRefused(abs, root);
  return { abs, realRoot };
}

/** Makes `folder` under `root` (each missing segment), refusing a link where a folder belongs. Returns its path. */
export async function makeFolder(root: string, folder: Segments): Promise<string> {
  if (folder.length > 0) checkSegments(folder);
  return (await checkedFolder(root, folder, true)).abs;
}

/**
 * Makes a new file (exclusive: never an existing one, never through a link) and
 * returns it open for writing; its folder must exist (see `makeFolder`). The
 * caller closes the handle.
 */
export async function createFile(root: string, file: Segments, mode: number): Promise<FileHandle> {
  checkSegments(file);
  // What was made is checked by its real path below.
  const { abs: dir, realRoot } = await checkedFolder(root, file.slice(0, -1), false, false);
  const abs = path.join(dir, file.at(-1)!);
  const handle = await open(abs, CREATE_FLAGS, mode);
  let real: string;
  try {
    real = await realPathOf(handle, abs);
  } catch (error) {
    await handle.close();
    throw error;
  }
  if (!within(realRoot, real)) {
    // A folder swapped for a link after the check: the empty file made out there goes at once.
    await handle.close();
    await unlink(real).catch(() => undefined);
    throw outsideRefused(abs, root);
  }
  return handle;
}

/** A regular file opened for reading; the caller closes `handle` (or streams from it). */
export interface OpenedFile {
  handle: FileHandle;
  /** Its path (under the root as configured). */
  file: string;
  size: number;
  mtimeMs: number;
}

/**
 * Why a file was not opened: `missing` (no such file or folder), `link` (the
 * last segment is a link), `folder_link` (a folder on the way is a link or leads
 * out), `not_file` (a FIFO, a device, a folder), `outside` (what was opened is
 * not inside the root: a swap in between), `unreadable` (any other error, in
 * `code`).
 */
export type OpenRefusal = 'missing' | 'link' | 'folder_link' | 'not_file' | 'outside' | 'unreadable';

/** Opens `file` under `root` for reading if it is a regular file inside it; otherwise says why not. */
export async function inspectFile(root: string, file: Segments): Promise<OpenedFile | { refused: OpenRefusal; code?: string }> {
  try {
    checkSegments(file);
  } catch {
    return { refused: 'missing' };
  }
  let dir: string;
  let realRoot: string;
  try {
    // What is opened is checked by its real path below.
    ({ abs: dir, realRoot } = await checkedFolder(root, file.slice(0, -1), false, false));
  } catch (error) {
    if (error instanceof PathRefusedError) return { refused: 'folder_link' };
    const code = codeOf(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return { refused: 'missing' };
    return { refused: 'unreadable', code: typeof code === 'string' ? code : 'error' };
  }
  const abs = path.join(dir, file.at(-1)!);
  let handle: FileHandle;
  try {
    handle = await open(abs, READ_FLAGS);
  } catch (error) {
    const code = codeOf(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return { refused: 'missing' };
    if (code === 'ELOOP') return { refused: 'link' };
    return { refused: 'unreadable', code: typeof code === 'string' ? code : 'error' };
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      await handle.close();
      return { refused: 'not_file' };
    }
    if (!within(realRoot, await realPathOf(handle, abs))) {
      await handle.close();
      return { refused: 'outside' };
    }
    return { handle, file: abs, size: info.size, mtimeMs: info.mtimeMs };
  } catch (error) {
    await handle.close().catch(() => undefined);
    const code = codeOf(error);
    return { refused: 'unreadable', code: typeof code === 'string' ? code : 'error' };
  }
}

/** `inspectFile` for callers that only need the file: `undefined` for anything not served. */
export async function openFile(root: string, file: Segments): Promise<OpenedFile | undefined> {
  const opened = await inspectFile(root, file);
  return 'refused' in opened ? undefined : opened;
}

/** A regular file's size and time, as `statFiles` finds them. */
export interface FileStat {
  size: number;
  mtimeMs: number;
}

/**
 * The size and time of each of `names` in `folder` under `root` that is a
 * regular file there (not a link: `lstat` never follows one), once each folder
 * on the way is found a real folder, not a link, and the folder's real path
 * inside the root's; `undefined` for a name that is missing or anything but a
 * file, and for all of them when the folder is missing or refused. Nothing is
 * opened or read: a look at files' identity (still the file read before?), not
 * at their bytes.
 */
export async function statFiles(root: string, folder: Segments, names: readonly string[]): Promise<(FileStat | undefined)[]> {
  let dir: string;
  try {
    for (const name of names) checkSegments([...folder, name]);
    ({ abs: dir } = await checkedFolder(root, folder, false));
  } catch (error) {
    const code = codeOf(error);
    if (error instanceof PathRefusedError || code === 'ENOENT' || code === 'ENOTDIR') return names.map(() => undefined);
    throw error;
  }
  return Promise.all(
    names.map(async (name) => {
      const info = await lstat(path.join(dir, name)).catch((error: unknown) => {
        const code = codeOf(error);
        if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
        throw error;
      });
      return info?.isFile() ? { size: info.size, mtimeMs: info.mtimeMs } : undefined;
    }),
  );
}

/**
 * Renames `from` to `to` (both under `root`; `to`'s folder must exist and is
 * not made here). Resolves with the size of the file where it landed; if a swap
 * took it out of the root, it is removed there and the call fails.
 */
export async function moveFile(root: string, from: Segments, to: Segments): Promise<{ size: number }> {
  checkSegments(from);
  checkSegments(to);
  // Where the file lands is checked by its real path just after.
  const { abs: fromDir } = await checkedFolder(root, from.slice(0, -1), false, false);
  const { abs: toDir, realRoot } = await checkedFolder(root, to.slice(0, -1), false, false);
  const target = path.join(toDir, to.at(-1)!);
  await rename(path.join(fromDir, from.at(-1)!), target);
  const handle = await open(target, READ_FLAGS);
  try {
    const real = await realPathOf(handle, target);
    if (!within(realRoot, real)) {
      await unlink(real).catch(() => undefined);
      throw outsideRefused(target, root);
    }
    return { size: (await handle.stat()).size };
  } finally {
    await handle.close();
  }
}

/** A folder's contents, then the folder, never following a link (a link is removed itself). */
async function removeTree(abs: string, realRoot: string, root: string): Promise<void> {
  if (!within(realRoot, await realpath(abs))) throw outsideRefused(abs, root);
  for (const name of await readdir(abs)) {
    // The folder is looked at again before each removal in it: one swapped for a link meanwhile is refused.
    if ((await lstat(abs)).isSymbolicLink()) throw linkRefused(abs, root);
    const entry = path.join(abs, name);
    const info = await lstat(entry).catch(() => undefined);
    if (info === undefined) continue;
    if (info.isDirectory()) await removeTree(entry, realRoot, root);
    else await unlink(entry).catch((error: unknown) => {
      if (codeOf(error) !== 'ENOENT') throw error;
    });
  }
  await rmdir(abs);
}

/** What `removePath` did: `refused` when a folder on the way is a link or leads out (nothing removed). */
export type RemoveOutcome = 'removed' | 'absent' | 'refused';

/**
 * Removes `file` under `root`: a file or a link (the link itself, never its
 * target), or with `recursive` a folder and what it holds (links in it removed
 * as links). Nothing is removed through a folder that is a link.
 */
export async function removePath(root: string, file: Segments, options: { recursive?: boolean } = {}): Promise<RemoveOutcome> {
  checkSegments(file);
  let dir: string;
  let realRoot: string;
  try {
    ({ abs: dir, realRoot } = await checkedFolder(root, file.slice(0, -1), false));
  } catch (error) {
    if (error instanceof PathRefusedError) return 'refused';
    const code = codeOf(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'absent';
    throw error;
  }
  const abs = path.join(dir, file.at(-1)!);
  let info;
  try {
    info = await lstat(abs);
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return 'absent';
    throw error;
  }
  try {
    if (info.isDirectory()) {
      if (!options.recursive) throw Object.assign(new Error(`EISDIR: a folder, not removed: ${abs}`), { code: 'EISDIR' });
      await removeTree(abs, realRoot, root);
    } else await unlink(abs);
  } catch (error) {
    if (error instanceof PathRefusedError) return 'refused';
    if (codeOf(error) === 'ENOENT') return 'absent';
    throw error;
  }
  return 'removed';
}

/**
 * The regular files `folder` under `root` holds, with their sizes (links,
 * folders and anything else in it are left out, never followed). A folder that
 * is missing is empty; one that is a link or leads out is refused
 * (`PathRefusedError`).
 */
export async function listFiles(root: string, folder: Segments): Promise<{ name: string; size: number }[]> {
  checkSegments(folder);
  let abs: string;
  try {
    ({ abs } = await checkedFolder(root, folder, false));
  } catch (error) {
    const code = codeOf(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw error;
  }
  let names: string[];
  try {
    names = await readdir(abs);
  } catch (error) {
    const code = codeOf(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw error;
  }
  const files: { name: string; size: number }[] = [];
  for (const name of names) {
    const info = await lstat(path.join(abs, name)).catch(() => undefined);
    if (info?.isFile()) files.push({ name, size: info.size });
  }
  return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Removes what `folder` under `root` holds (only entries older than
 * `olderThanMs`, when given): files, links (themselves) and folders. A folder
 * that is missing, a link or leads out is not swept (nothing is removed through
 * it). Returns how many entries were removed.
 */
export async function sweepFolder(root: string, folder: Segments, olderThanMs: number, now: number): Promise<number> {
  let abs: string;
  try {
    checkSegments(folder);
    ({ abs } = await checkedFolder(root, folder, false));
  } catch {
    return 0;
  }
  let names: string[];
  try {
    names = await readdir(abs);
  } catch {
    return 0;
  }
  let removed = 0;
  await Promise.all(
    names.map(async (name) => {
      if (olderThanMs > 0) {
        const info = await lstat(path.join(abs, name)).catch(() => undefined);
        if (info === undefined || now - info.mtimeMs < olderThanMs) return;
      }
      // Each entry is removed through the guard again: a folder swapped meanwhile is refused.
      const outcome = await removePath(root, [...folder, name], { recursive: true }).catch(() => 'refused' as const);
      if (outcome === 'removed') removed++;
    }),
  );
  return removed;
}

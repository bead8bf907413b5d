/**
 * A job's archive: a tar made with `tar-stream` (the maintained streaming tar
 * writer; no hand-written headers), holding `covers/<path>` for each ok cover
 * and a `README.txt` listing every URL with its file or its error.
 *
 * Archives live in `<covers>/.jobs/<id>.tar`: inside the covers folder so every
 * node of a cluster (which all mount it) can serve any job's archive and the
 * rename from `<covers>/.tmp/` never crosses filesystems, and in a dot-folder,
 * which `GET /covers/` never serves. The tar is streamed to a temp file and
 * renamed into place: a crash leaves at worst a temp file (swept at start),
 * never a half archive at the published path.
 */
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { systemClock } from '../clock.js';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import type { JobEntry, PackOutput } from '../../machines/index.js';
import { createFile, makeFolder, moveFile, openFile, openStoredFile, PathRefusedError, removePath, TEMP_DIR } from '../store/index.js';
import type { RemoveOutcome } from '../store/index.js';

export const ARCHIVE_DIR = '.jobs';

/** Job ids are UUIDs: nothing else names an archive file. */
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isJobId(id: string): boolean {
  return JOB_ID.test(id);
}

/** The archive file of a job, or undefined for anything that is not a job id. */
export function archiveFile(coversDir: string, id: string): string | undefined {
  return isJobId(id) ? path.join(path.resolve(coversDir), ARCHIVE_DIR, `${id}.tar`) : undefined;
}

/** The archive's segments under the covers folder, or undefined for anything that is not a job id. */
function archiveSegments(id: string): string[] | undefined {
  return isJobId(id) ? [ARCHIVE_DIR, `${id}.tar`] : undefined;
}

/**
 * Removes a job's archive through the path guard (a link there: the link
 * itself; nothing removed through a `.jobs` that is a link). A missing one is
 * not an error.
 */
export async function removeArchive(coversDir: string, id: string): Promise<RemoveOutcome> {
  const segments = archiveSegments(id);
  return segments === undefined ? 'absent' : removePath(coversDir, segments);
}

/**
 * The archive opened for sending, or undefined when there is none: a regular
 * file inside the covers folder, opened through the path guard (a link put in
 * its place, or a `.jobs` link leading out, is not followed). The caller closes
 * `handle`.
 */
export async function openArchive(coversDir: string, id: string): Promise<{ handle: FileHandle; size: number } | undefined> {
  const segments = archiveSegments(id);
  const opened = segments === undefined ? undefined : await openFile(coversDir, segments);
  return opened === undefined ? undefined : { handle: opened.handle, size: opened.size };
}

/** Files read ahead of the one being packed. */
const READ_AHEAD = 8;

/**
 * A cover file's bytes, or undefined when it is not a regular file whose real
 * path is inside the folder (gone, or a link put there: not followed).
 */
async function readCover(coversDir: string, relPath: string): Promise<{ data: Buffer; mtime: Date } | undefined> {
  const opened = await openStoredFile(coversDir, relPath);
  if (opened === undefined) return undefined;
  try {
    return { data: await opened.handle.readFile(), mtime: new Date(opened.mtimeMs) };
  } catch {
    return undefined;
  } finally {
    await opened.handle.close();
  }
}

/** The README's line for one URL: tab-separated, one URL a line. */
function readmeLine(entry: JobEntry): string {
  const url = entry.url.replace(/[\t\r\n]/g, ' ');
  if (entry.path !== undefined) {
    // The original's size and the colour follow when known (a cover stored before colours were kept has none yet).
    const size = entry.width !== undefined && entry.height !== undefined ? `\t${entry.width}x${entry.height}` : '';
    return `${url}\tcovers/${entry.path}${size}${size !== '' && entry.color !== undefined ? `\t${entry.color}` : ''}`;
  }
  const message = (entry.error?.message ?? '').replace(/[\t\r\n]+/g, ' ');
  return `${url}\terror ${entry.error?.code ?? 'error'}: ${message}`;
}

export function readme(job: { id: string; name: string }, entries: readonly JobEntry[]): string {
  const ok = entries.filter((entry) => entry.path !== undefined).length;
  return [
    `coverhelper archive job ${job.id}${job.name === '' ? '' : ` (${job.name.replace(/[\r\n]+/g, ' ')})`}`,
    `${ok} of ${entries.length} URLs have a cover in covers/; one line per URL, in the order asked:`,
    'URL<TAB>covers/<path><TAB><width>x<height><TAB><#rrggbb>, or URL<TAB>error <code>: <message>',
    '(width and height: the original image, in pixels; #rrggbb: its dominant colour, when known)',
    '',
    ...entries.map(readmeLine),
    '',
  ].join('\n');
}

/**
 * Writes the job's archive. An ok entry whose file is gone by now (deleted
 * meanwhile) is listed in the README as `file_missing` instead.
 */
export async function packArchive(coversDir: string, job: { id: string; name: string; packedAt?: number }, entries: readonly JobEntry[], signal?: AbortSignal): Promise<PackOutput> {
  if (!isJobId(job.id)) throw Object.assign(new Error(`not a job id: ${job.id}`), { code: 'internal_error' });
  // Through the path guard: real folders inside the covers folder, checked now, and a new file opened without following a link.
  const temp = [TEMP_DIR, `${randomBytes(12).toString('hex')}.part`];
  let out: Awaited<ReturnType<typeof createFile>>;
  try {
    await makeFolder(coversDir, [TEMP_DIR]);
    await makeFolder(coversDir, [ARCHIVE_DIR]);
    out = await createFile(coversDir, temp, 0o644);
  } catch (error) {
    throw packError(error);
  }
  const pack = tar.pack();
  // The file's errors (ENOSPC, EIO…) can come at any time while the covers are
  // read and packed: the pipeline's promise is raced against every wait below,
  // so its failure ends the packing at once and is never left unhandled.
  const written = pipeline(pack, out.createWriteStream({ highWaterMark: 1024 * 1024 }), signal ? { signal } : {});
  written.catch(() => undefined);
  /** `work`, or the write's failure if that comes first. */
  const unlessBroken = <T>(work: Promise<T>): Promise<T> => Promise.race([work, written.then(() => work)]);
  const listed: JobEntry[] = [];
  let missing = 0;
  const add = (header: Partial<tar.Header> & Pick<tar.Header, 'name'>, data: Buffer) =>
    unlessBroken(new Promise<void>((resolve, reject) => pack.entry(header, data, (error) => (error ? reject(error) : resolve()))));
  // The next few files are read while one is packed (in order): the reads' waits overlap.
  const reads: (Promise<{ data: Buffer; mtime: Date } | undefined> | undefined)[] = new Array<undefined>(entries.length);
  let next = 0;
  // A URL asked twice is listed twice and packed once: the first time its path comes.
  const seen = new Set<string>();
  const packed = new Map<string, boolean>();
  const readAhead = (upTo: number) => {
    for (; next < entries.length && next <= upTo; next++) {
      const entryPath = entries[next]!.path;
      if (entryPath === undefined || seen.has(entryPath)) continue;
      seen.add(entryPath);
      reads[next] = readCover(coversDir, entryPath);
    }
  };
  try {
    for (let i = 0; i < entries.length; i++) {
      signal?.throwIfAborted();
      readAhead(i + READ_AHEAD);
      const entry = entries[i]!;
      if (entry.path === undefined) {
        listed.push(entry);
        continue;
      }
      const already = packed.get(entry.path);
      if (already !== undefined) {
        // The same file again: listed as it went the first time.
        if (already) listed.push(entry);
        else {
          missing++;
          listed.push({ url: entry.url, error: { code: 'file_missing', message: `the cover file ${entry.path} was removed before it was packed` } });
        }
        continue;
      }
      const read = await unlessBroken(reads[i]!);
      reads[i] = undefined;
      packed.set(entry.path, read !== undefined);
      if (read === undefined) {
        missing++;
        listed.push({ url: entry.url, error: { code: 'file_missing', message: `the cover file ${entry.path} was removed before it was packed` } });
        continue;
      }
      await add({ name: `covers/${entry.path}`, size: read.data.length, mode: 0o644, mtime: read.mtime }, read.data);
      listed.push(entry);
    }
    const text = Buffer.from(readme(job, listed), 'utf8');
    await add({ name: 'README.txt', size: text.length, mode: 0o644, mtime: new Date(job.packedAt ?? systemClock.now()) }, text);
    pack.finalize();
    await written;
    const { size } = await moveFile(coversDir, temp, [ARCHIVE_DIR, `${job.id}.tar`]);
    return { bytes: size, missing };
  } catch (error) {
    // Reads still in flight settle (to undefined) on their own.
    pack.destroy();
    await written.catch(() => undefined);
    await removePath(coversDir, temp).catch(() => undefined);
    throw packError(error);
  }
}

/** Errors of a full disk (or a full quota). */
const DISK_FULL = new Set(['ENOSPC', 'EDQUOT']);

/**
 * What a packing failure says on the job: a full disk is `disk_full` (the job
 * fails; nothing is resumed at the next start), an abort stays as it is, any
 * other failure keeps its message with `internal_error`.
 */
export function packError(error: unknown): unknown {
  // A path the guard refused is named as such (the job runner makes it `disk_full`).
  if (error instanceof PathRefusedError) return error;
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && DISK_FULL.has(code)) {
    return Object.assign(new Error(`no space left to write the archive (${code}): free space in the covers folder and create the job again`, { cause: error }), { code: 'disk_full' });
  }
  if ((error as { name?: unknown } | null)?.name === 'AbortError') return error;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
    return Object.assign(new Error(`the archive could not be written (${code}: ${typeof message === 'string' ? message : String(error)})`, { cause: error }), { code: 'internal_error' });
  }
  return error;
}

/**
 * One try at one URL: the real I/O behind the download machine's `fetchCover`.
 *
 *   stored already?  → answer it (source `cache`, or `custom`)
 *   video page       → resolve its cover through bilibili's view API
 *   image URL        → download (guarded, size-limited, abortable)
 *                    → decode and resize → write atomically → upsert the row,
 *                      unless a custom cover was uploaded meanwhile (then it wins)
 *
 * The AbortSignal comes from the machine (`fromPromise`): leaving `running`
 * (time limit, shutdown) aborts the socket and any temp file.
 */
import type { Config } from '../config.js';
import { CoverError, storageFault, toCoverError } from '../errors.js';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { classifyUrl, downloadImage, hostAllowed, resolveVideoCover } from '../fetch/index.js';
import type { HttpClient } from '../fetch/index.js';
import { processImage } from '../images/index.js';
import { removeCoverFile, writeCover } from '../store/index.js';
import type { CoverIndex, CoverRow } from '../store/index.js';
import type { FetchCoverOutput, StoredCover } from '../../machines/types.js';

export interface FetchCoverDeps {
  config: Pick<Config, 'allowHosts' | 'bilibiliApi' | 'maxBytes' | 'resize' | 'coversDir'>;
  covers: CoverIndex;
  client: HttpClient;
  /** The one clock: the stored cover's time (default the system's). */
  clock?: Clock;
}

export function storedCover(row: CoverRow): StoredCover {
  return { path: row.path, contentType: row.contentType, bytes: row.bytes, width: row.width, height: row.height, sha256: row.sha256 };
}

/** The image URL to download for `url`: itself, or a video page's cover. */
async function imageUrlFor(url: string, deps: FetchCoverDeps, signal: AbortSignal): Promise<URL> {
  const kind = classifyUrl(url, deps.config.allowHosts);
  if (kind.kind === 'image') return kind.url;
  if (kind.kind === 'skip') throw new CoverError('invalid_url', `not an image or video URL this service handles: ${kind.reason}`);
  const pic = await resolveVideoCover(kind, { client: deps.client, apiBase: deps.config.bilibiliApi, signal });
  if (!hostAllowed(pic.hostname, deps.config.allowHosts)) {
    throw new CoverError('not_allowed', `the video's cover is on ${pic.hostname}, which is not in --allow-hosts`);
  }
  return pic;
}

export async function fetchCover(
  url: string,
  deps: FetchCoverDeps,
  signal: AbortSignal,
  onProgress?: (bytes: number, total: number | undefined) => void,
): Promise<FetchCoverOutput> {
  try {
    return await fetchAndStore(url, deps, signal, onProgress);
  } catch (error) {
    // An abort is the machine's own doing (time limit, shutdown): pass it on as it is.
    if (signal.aborted) throw error;
    throw toCoverError(error);
  }
}

async function fetchAndStore(
  url: string,
  deps: FetchCoverDeps,
  signal: AbortSignal,
  onProgress?: (bytes: number, total: number | undefined) => void,
): Promise<FetchCoverOutput> {
  // A URL stored and asked for lately is answered from memory; otherwise one indexed read.
  const existing = await deps.covers.findRemembered(url);
  if (existing) return { cover: storedCover(existing), source: existing.source === 'custom' ? 'custom' : 'cache' };

  const imageUrl = await imageUrlFor(url, deps, signal);
  const { body } = await downloadImage(imageUrl, {
    client: deps.client,
    allowHosts: deps.config.allowHosts,
    maxBytes: deps.config.maxBytes,
    signal,
    ...(onProgress ? { onProgress } : {}),
  });
  const image = await processImage(body, deps.config.resize, signal);
  signal.throwIfAborted();

  // A failure from here on is this machine's (disk, folder, database), not the origin's.
  let row: CoverRow;
  try {
    row = await writeCover(url, image, { coversDir: deps.config.coversDir, source: 'download', now: (deps.clock ?? systemClock).now(), signal });
  } catch (error) {
    if (signal.aborted) throw error;
    throw storageFault(error, 'cover file');
  }
  let custom: CoverRow | null;
  try {
    custom = await deps.covers.saveUnlessCustom(row);
  } catch (error) {
    // The file stays: an older row of this URL may point at the same path (same content).
    throw storageFault(error, 'cover row');
  }
  if (custom) {
    // The administrator uploaded a cover while this download ran: theirs wins.
    if (custom.path !== row.path) await removeCoverFile(deps.config.coversDir, row.path);
    return { cover: storedCover(custom), source: 'custom', fetched: body.length };
  }
  return { cover: storedCover(row), source: 'download', fetched: body.length };
}

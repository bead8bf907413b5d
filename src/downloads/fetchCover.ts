/**
 * One try at one URL: the real I/O behind the download machine's `fetchCover`.
 *
 *   stored already?  → answer it (source `cache`, or `custom`), unless this
 *                      is a background re-resolve of a video page (`reresolve`):
 *                      then its page is resolved again; an unchanged pic only
 *                      records the time, a changed one is downloaded and
 *                      replaces the cover (the old file is deleted after)
 *   video page       → resolve its cover through bilibili's view API
 *   image URL        → download (guarded, size-limited, abortable)
 *                    → decode and resize → write the original and the cover
 *                      atomically → upsert the row,
 *                      unless a custom cover was uploaded meanwhile (then it wins)
 *
 * The AbortSignal comes from the machine (`fromPromise`): leaving `running`
 * (time limit, shutdown) aborts the socket and any temp file.
 */
import type { Config } from '../config.js';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { CoverError, refusalToCoverError, storageFault, toCoverError } from '../errors.js';
import { classifyUrl, downloadImage, hostAllowed, resolveVideoCover } from '../fetch/index.js';
import type { HttpClient, RequestGate, VideoRef } from '../fetch/index.js';
import type { ApiIdentity } from '../fetch/bilibili.js';
import type { HostGates, Release } from '../upstream/hostGates.js';
import { UpstreamRefusal } from '../upstream/types.js';
import type { Priority } from '../upstream/types.js';
import { processImage } from '../images/index.js';
import { removeCoverFiles, writeCover } from '../store/index.js';
import type { CoverIndex, CoverRow } from '../store/index.js';
import type { FetchCoverOutput, StoredCover } from '../../machines/types.js';

export interface FetchCoverDeps {
  config: Pick<Config, 'allowHosts' | 'bilibiliApi' | 'maxBytes' | 'resize' | 'originalMax' | 'coversDir'>;
  covers: CoverIndex;
  client: HttpClient;
  /** The per-host gates every request passes (none: requests are not limited, for tests of the fetch alone). */
  gates?: HostGates;
  /** The one clock: the stored cover's time, Retry-After dates (default the system's). */
  clock?: Clock;
  /** The longest wait for a turn at a host's gate (half the time limit); undefined: no bound. */
  gateWaitMs?: number;
  /** The operator's API identity (`--bilibili-cookie`, `--api-user-agent`), sent to the API host only. */
  identity?: ApiIdentity;
  /** Which fetches are background re-resolves of a stored video page (`Reresolver.wants`). */
  reresolve?: { wants(url: string): boolean };
}

/** Why a replaced file is deleted (the deletions table's `reason`). */
export const COVER_CHANGED = 'cover_changed';

/** The gate of one download: its priority read at each request (a bulk download joined by an interactive asker moves up). */
function gateFor(deps: FetchCoverDeps, priority: () => Priority): RequestGate | undefined {
  const { gates } = deps;
  if (gates === undefined) return undefined;
  const clock = deps.clock ?? systemClock;
  const now = () => clock.now();
  const maxWaitMs = deps.gateWaitMs;
  if (maxWaitMs === undefined) return { acquire: (host, signal) => gates.acquire(host, priority, signal), now };
  return { acquire: (host, signal) => waitAtGate(gates, host, priority, signal, clock, maxWaitMs), now };
}

/** How soon a download that waited too long at its host's gate is queued again. */
export const GATE_RETRY_MS = 5_000;

/**
 * Waits for a turn at `host`'s gate, at most `maxWaitMs`: past that the wait
 * ends as `upstream_limited` (the URL is parked and queued again shortly), so
 * the time a slow host's limit takes is never the download's `tle`, remembered
 * against the URL, and a worker slot is not held for it.
 */
async function waitAtGate(gates: HostGates, host: string, priority: () => Priority, signal: AbortSignal, clock: Clock, maxWaitMs: number): Promise<Release> {
  signal.throwIfAborted();
  // A free slot is taken at once: no controller, listener nor timer for a wait that does not happen.
  const now = gates.tryAcquire(host, priority);
  if (now !== undefined) return now;
  const waiting = new AbortController();
  const onAbort = () => waiting.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  const timer = clock.setTimeout(() => {
    const retryAt = clock.now() + GATE_RETRY_MS;
    waiting.abort(new CoverError('upstream_limited', `waited ${Math.round(maxWaitMs / 1000)} s for a turn at ${host} (its --host-limits are taken); it is fetched again from ${new Date(retryAt).toISOString()}`, { retryAt }));
  }, maxWaitMs);
  try {
    return await gates.acquire(host, priority, waiting.signal);
  } finally {
    clock.clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * A refusal anywhere in the fetch (an HTTP status, an API code) cools its host
 * (unless its gate already did) and is the download's `upstream_limited`, with
 * when the host reopens: not the URL's failure.
 */
function limited(refusal: UpstreamRefusal, deps: FetchCoverDeps): CoverError {
  const { gates } = deps;
  // Heard already when the refusal came through a gated request (the gates ignore it then).
  gates?.refused(refusal);
  const retryAt = gates?.coolingUntil(refusal.host) ?? (deps.clock ?? systemClock).now() + (refusal.retryAfterMs ?? 30_000);
  return refusalToCoverError(refusal, retryAt);
}

export function storedCover(row: CoverRow): StoredCover {
  const cover: StoredCover = {
    path: row.path,
    contentType: row.contentType,
    bytes: row.bytes,
    width: row.width,
    height: row.height,
    sha256: row.sha256,
    originalWidth: row.originalWidth ?? row.width,
    originalHeight: row.originalHeight ?? row.height,
  };
  if (row.color !== null) cover.color = row.color;
  return cover;
}

/** The image URL to download for `url`: itself, or a video page's cover. */
async function imageUrlFor(url: string, deps: FetchCoverDeps, signal: AbortSignal, gate: RequestGate | undefined): Promise<{ imageUrl: URL; pic?: string }> {
  const kind = classifyUrl(url, deps.config.allowHosts);
  if (kind.kind === 'image') return { imageUrl: kind.url };
  if (kind.kind === 'skip') throw new CoverError('invalid_url', `not an image or video URL this service handles: ${kind.reason}`);
  const pic = await videoCover(kind, deps, signal, gate);
  return { imageUrl: pic, pic: pic.href };
}

/** A video page's cover URL, checked against `--allow-hosts`. */
async function videoCover(video: VideoRef, deps: FetchCoverDeps, signal: AbortSignal, gate: RequestGate | undefined): Promise<URL> {
  const pic = await resolveVideoCover(video, { client: deps.client, apiBase: deps.config.bilibiliApi, signal, ...(deps.identity ? { identity: deps.identity } : {}), ...(gate ? { gate } : {}) });
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
  priority: () => Priority = () => 'interactive',
): Promise<FetchCoverOutput> {
  try {
    return await fetchAndStore(url, deps, signal, onProgress, gateFor(deps, priority));
  } catch (error) {
    // An abort is the machine's own doing (time limit, shutdown): pass it on as it is.
    if (signal.aborted) throw error;
    if (error instanceof UpstreamRefusal) throw limited(error, deps);
    throw toCoverError(error);
  }
}

async function fetchAndStore(
  url: string,
  deps: FetchCoverDeps,
  signal: AbortSignal,
  onProgress: ((bytes: number, total: number | undefined) => void) | undefined,
  gate: RequestGate | undefined,
): Promise<FetchCoverOutput> {
  // A URL stored and asked for lately is answered from memory; otherwise one indexed read.
  const existing = await deps.covers.findRemembered(url);
  let resolved: { imageUrl: URL; pic?: string };
  if (existing) {
    const video = existing.source === 'download' && deps.reresolve?.wants(url) ? classifyUrl(url, deps.config.allowHosts) : undefined;
    if (video?.kind !== 'video') return { cover: storedCover(existing), source: existing.source === 'custom' ? 'custom' : 'cache' };
    // A background re-resolve: has the video's cover changed?
    const pic = await videoCover(video, deps, signal, gate);
    if (existing.resolvedPic === pic.href) {
      try {
        await deps.covers.markResolved(url, existing.path, (deps.clock ?? systemClock).now(), pic.href);
      } catch (error) {
        throw storageFault(error, 'cover row');
      }
      return { cover: storedCover(existing), source: 'cache' };
    }
    resolved = { imageUrl: pic, pic: pic.href };
  } else {
    resolved = await imageUrlFor(url, deps, signal, gate);
  }
  const { imageUrl, pic } = resolved;
  const { body } = await downloadImage(imageUrl, {
    client: deps.client,
    allowHosts: deps.config.allowHosts,
    maxBytes: deps.config.maxBytes,
    signal,
    ...(onProgress ? { onProgress } : {}),
    ...(gate ? { gate } : {}),
  });
  const image = await processImage(body, deps.config.resize, signal, deps.config.originalMax);
  signal.throwIfAborted();

  // A failure from here on is this machine's (disk, folder, database), not the origin's.
  let row: CoverRow;
  try {
    row = await writeCover(url, image, { coversDir: deps.config.coversDir, source: 'download', now: (deps.clock ?? systemClock).now(), signal, resolvedPic: pic });
  } catch (error) {
    if (signal.aborted) throw error;
    throw storageFault(error, 'cover file');
  }
  let custom: CoverRow | null;
  try {
    if (existing && existing.path !== row.path) {
      // The video's cover changed: the new file becomes the page's cover, the old
      // one is recorded for deletion in the same write, unless an upload came meanwhile (one conditional write).
      custom = await deps.covers.replaceUnlessCustom(row, existing.path, COVER_CHANGED);
    } else custom = await deps.covers.saveUnlessCustom(row);
  } catch (error) {
    // The file stays: an older row of this URL may point at the same path (same content).
    throw storageFault(error, 'cover row');
  }
  if (custom) {
    // The administrator uploaded a cover while this download ran: theirs wins.
    if (custom.path !== row.path) await removeCoverFiles(deps.config.coversDir, row.path);
    return { cover: storedCover(custom), source: 'custom', fetched: body.length };
  }
  return { cover: storedCover(row), source: 'download', fetched: body.length };
}

/**
 * The render supervisor: each missing variant is made once, by one actor
 * (`renderMachine`), however many ask for it at once; the askers wait on that
 * actor and each gets its outcome.
 *
 *   renders.variant(coverPath, spec, signal)  → the variant's stored file, made if missing
 *   renders.wouldStart(coverPath, spec)       → whether that would start a render now
 *
 * A variant is looked for in flight first (join it), then on disk (answer at
 * once), then a render actor is spawned, keyed by the variant's stored path.
 * Actors wait in a queue for a slot of the pool (`--render-workers`) and are
 * started in the order they were asked for. An asker whose signal aborts leaves
 * at once (rejected with the signal's reason); a render every asker left before
 * it started is dropped; one already running finishes (its file is kept for the
 * next asker). The queue is bounded in total (`maxQueued` renders waiting,
 * `maxAskers` askers): past it an ask is refused at once (`RendersBusyError`).
 *
 * One render: the cover's row by path (its original's path, or the cover file
 * itself for covers stored before originals were kept), the original read
 * through the path guard, `renderVariant` (shared decode budget), the file
 * written temp + rename (`writeCoverFile`), then two checks: if the cover's
 * file is gone meanwhile (removed, or replaced by an upload), the variant just
 * published is removed again (no orphan) and the render fails as `gone`;
 * otherwise the cover's variants are counted on disk and their bytes recorded
 * on its row (`variant_bytes`, counted in `--max-cache-bytes`). A cover keeps
 * at most `maxPerCover` variants (100): past it a new one is refused
 * (`TooManyVariantsError`), those made are still served. A crash between
 * the rename and that record leaves a complete file, uncounted until the next
 * render of that cover, and removed with the cover all the same.
 *
 * Renders of one cover come in bursts (a page asks for several sizes and
 * formats at once): while any render of a cover is in flight, its variants are
 * counted once (listed for the first render's `maxPerCover` check, then one
 * more per variant published), and the bytes are recounted on disk and
 * recorded once, by the last render of the burst to finish (awaited before it
 * answers; if the last one fails or is dropped, recounted in the background
 * when it ends). Each recount lists the folder, so it counts what any process
 * wrote there; a render alone on its cover lists before and recounts after.
 * On a folder other nodes share (`shared`), the count for the bound is listed
 * at every render: a kept count would not see the other nodes' variants.
 */
import sharp from 'sharp';
import { createActor, fromPromise } from 'xstate';
import { renderMachine } from '../../machines/renderMachine.js';
import type { RenderedVariant, RenderOutput } from '../../machines/renderMachine.js';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { CoverError } from '../errors.js';
import type { Logger } from '../logger.js';
import { crashPoint } from '../crashPoints.js';
import { listVariantFiles, openStoredFile, removeVariantFiles, statStoredFiles, writeCoverFile } from '../store/coverFiles.js';
import type { CoverIndex } from '../store/ports.js';
import { readImageHeader } from './imageHeader.js';
import { renderVariant, variantContentType, variantPathOf } from './variants.js';
import type { VariantFormat, VariantSpec } from './variants.js';

export type { RenderedVariant } from '../../machines/renderMachine.js';

/** Renders waiting for a worker, in total, before an ask is refused. */
export const DEFAULT_MAX_QUEUED = 1000;
/** Askers waiting on renders, in total, before an ask is refused. */
export const DEFAULT_MAX_ASKERS = 20_000;
/** A render's wall-clock limit. */
export const DEFAULT_RENDER_TIME_LIMIT_MS = 60_000;
/**
 * Variants kept per cover before a new one is refused: heights, fits, formats
 * and qualities multiply, and each is a file; pages ask for a handful.
 */
export const DEFAULT_MAX_PER_COVER = 100;

/** Refused: too many renders wait already. Answered 503 `busy` over HTTP; worth asking again shortly. */
export class RendersBusyError extends CoverError {
  readonly busy = true;
  constructor(message: string) {
    super('network', message);
  }
}

/** The cover has `maxPerCover` variants already: a new one is refused (answered 429 `too_many_variants`). */
export class TooManyVariantsError extends CoverError {
  readonly tooMany = true;
  constructor(message: string) {
    super('too_large', message);
  }
}

/** The cover is not stored (any more) at that path: answered 404. */
export class CoverGoneError extends CoverError {
  readonly gone = true;
  constructor(message: string) {
    super('http_status', message, { detail: 404 });
  }
}

const TOO_MANY = 'this cover has ';

const gone = (coverPath: string) => new CoverGoneError(`no cover is stored at ${coverPath} (removed or replaced)`);

export interface RendersDeps {
  coversDir: string;
  covers: Pick<CoverIndex, 'findByPath' | 'setVariantBytes'>;
  /** Renders running at once (`--render-workers`). */
  workers: number;
  /** Other nodes write variants into the same covers folder (a shared database). */
  shared?: boolean;
  clock?: Clock;
  logger?: Logger;
  maxQueued?: number;
  maxAskers?: number;
  timeLimitMs?: number;
  maxPerCover?: number;
}

/** The renders of one cover in flight now (see "bursts" above). */
interface CoverBurst {
  /** Renders of this cover spawned and not yet finished. */
  flights: number;
  /** How many variant files it has (listed once, then one more per variant published); undefined: not known yet. */
  count: number | undefined;
  /** The listing that will say `count`, while it runs. */
  counting: Promise<number> | undefined;
  /** A variant was published since its bytes were last recounted. */
  owed: boolean;
}

/** Counters since start, and what is in flight now. */
export interface RenderCounts {
  /** Renders started (given a worker). */
  started: number;
  /** Renders that made their file. */
  rendered: number;
  /** Renders that failed or ran out of time. */
  failed: number;
  /** Renders dropped before they started (every asker left). */
  dropped: number;
  /** Asks answered by joining a render in flight. */
  joined: number;
  /** Asks answered from a variant already on disk. */
  onDisk: number;
  /** Asks refused (the queue was full). */
  refused: number;
  /** Renders running now. */
  running: number;
  /** Renders waiting for a worker now. */
  queued: number;
  /** Askers waiting now. */
  waiting: number;
}

/** What an asker already knows of the cover, so that a render need not look it up again. */
export interface KnownCover {
  /** The stored file to render from (the cover row's original, else its file). */
  source?: string | undefined;
  /** The asker has just looked on disk and not found the variant. */
  notOnDisk?: boolean;
}

interface Asker {
  resolve: (variant: RenderedVariant) => void;
  reject: (error: Error) => void;
  leave: () => void;
}

interface Flight {
  path: string;
  coverPath: string;
  actor: ReturnType<typeof createActor<typeof renderMachine>>;
  askers: Set<Asker>;
  started: boolean;
}

function failureError(failure: { code: string; message: string; detail?: number | undefined }): CoverError {
  if (failure.code === 'http_status' && failure.detail === 404) return new CoverGoneError(failure.message);
  if (failure.code === 'too_large' && failure.message.startsWith(TOO_MANY)) return new TooManyVariantsError(failure.message);
  return new CoverError(failure.code as CoverError['code'], failure.message, failure.detail === undefined ? {} : { detail: failure.detail });
}

export class Renders {
  readonly #deps: RendersDeps;
  readonly #clock: Clock;
  readonly #flights = new Map<string, Flight>();
  readonly #queue: Flight[] = [];
  #running = 0;
  #waiting = 0;
  #closed = false;
  readonly #counts = { started: 0, rendered: 0, failed: 0, dropped: 0, joined: 0, onDisk: 0, refused: 0 };
  readonly #logic;

  constructor(deps: RendersDeps) {
    if (!(Number.isInteger(deps.workers) && deps.workers >= 1)) throw new RangeError(`render workers must be a whole number from 1, not ${deps.workers}`);
    this.#deps = deps;
    this.#clock = deps.clock ?? systemClock;
    this.#logic = renderMachine.provide({
      actors: {
        render: fromPromise<RenderedVariant, { path: string }>(({ input, signal }) => this.#render(input.path, signal)),
      },
      actions: {
        reportFinished: (_args, { output }) => this.#finished(output),
      },
    });
  }

  /** Whether this variant is being rendered now (asking for it joins that render). */
  inFlight(coverPath: string, spec: VariantSpec): boolean {
    return this.#flights.has(variantPathOf(coverPath, spec));
  }

  /** Whether asking for this variant now would start a render (not on disk, not in flight). */
  async wouldStart(coverPath: string, spec: VariantSpec): Promise<boolean> {
    const path = variantPathOf(coverPath, spec);
    if (this.#flights.has(path)) return false;
    const opened = await openStoredFile(this.#deps.coversDir, path);
    if (opened === undefined) return !this.#flights.has(path);
    await opened.handle.close();
    return false;
  }

  /**
   * The variant's stored file, rendering it once if missing (concurrent callers
   * share one render). Rejects with a `CoverError` on failure, with the
   * signal's reason on abort, with `RendersBusyError` when the queue is full.
   */
  async variant(coverPath: string, spec: VariantSpec, signal?: AbortSignal, known: KnownCover = {}): Promise<RenderedVariant> {
    signal?.throwIfAborted();
    this.#open();
    const path = variantPathOf(coverPath, spec);
    const inFlight = this.#flights.get(path);
    if (inFlight) return this.#join(inFlight, signal, true);
    if (!known.notOnDisk) {
      const found = await this.#onDisk(path, spec.format);
      if (found) {
        this.#counts.onDisk++;
        return found;
      }
      signal?.throwIfAborted();
      this.#open();
      // Another asker may have started it while the disk was looked at.
      const started = this.#flights.get(path);
      if (started) return this.#join(started, signal, true);
    }
    return this.#join(this.#spawn(coverPath, spec, path, known.source), signal, false);
  }

  /** Counters since start, and what is in flight now (`coverhelper_renders_total`). */
  counts(): RenderCounts {
    return { ...this.#counts, running: this.#running, queued: this.#queue.length, waiting: this.#waiting };
  }

  /** Cancels every render (askers get `shutting_down`); new asks are refused. */
  /**
   * Takes no more renders and cancels those in flight; resolves once the variant
   * bytes owed by renders that published are recorded (before the store closes).
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const flight of [...this.#flights.values()]) flight.actor.send({ type: 'CANCEL' });
    // The cancelled renders leave their bursts in this turn or the next; their recounts are chained per cover.
    await new Promise((resolve) => setImmediate(resolve));
    await Promise.all([...this.#tallies.values()]);
  }

  #open(): void {
    if (this.#closed) throw new CoverError('shutting_down', 'the service is shutting down');
  }

  #spawn(coverPath: string, spec: VariantSpec, path: string, source: string | undefined): Flight {
    const maxQueued = this.#deps.maxQueued ?? DEFAULT_MAX_QUEUED;
    if (this.#queue.length >= maxQueued) {
      this.#counts.refused++;
      throw new RendersBusyError(`${this.#queue.length} renders are waiting for a worker already (at most ${maxQueued}); ask again shortly`);
    }
    const actor = createActor(this.#logic, {
      input: { path, timeLimitMs: this.#deps.timeLimitMs ?? DEFAULT_RENDER_TIME_LIMIT_MS, clock: this.#clock },
      clock: this.#clock,
    });
    const flight: Flight = { path, coverPath, actor, askers: new Set(), started: false };
    this.#specs.set(path, { coverPath, spec, source });
    const burst = this.#bursts.get(coverPath);
    if (burst) burst.flights++;
    else this.#bursts.set(coverPath, { flights: 1, count: undefined, counting: undefined, owed: false });
    this.#flights.set(path, flight);
    this.#queue.push(flight);
    actor.start();
    return flight;
  }

  /** What each render in flight is to make (read by `#render`). */
  readonly #specs = new Map<string, { coverPath: string; spec: VariantSpec; source: string | undefined }>();

  #join(flight: Flight, signal: AbortSignal | undefined, joined: boolean): Promise<RenderedVariant> {
    const maxAskers = this.#deps.maxAskers ?? DEFAULT_MAX_ASKERS;
    if (this.#waiting >= maxAskers) {
      this.#counts.refused++;
      if (flight.askers.size === 0 && !flight.started) flight.actor.send({ type: 'DROP' });
      throw new RendersBusyError(`${this.#waiting} asks are waiting for renders already (at most ${maxAskers}); ask again shortly`);
    }
    if (joined) this.#counts.joined++;
    return new Promise<RenderedVariant>((resolve, reject) => {
      const onAbort = () => {
        asker.leave();
        reject(signal!.reason as Error);
        if (flight.askers.size === 0 && !flight.started) flight.actor.send({ type: 'DROP' });
      };
      const asker: Asker = {
        resolve,
        reject,
        leave: () => {
          if (flight.askers.delete(asker)) this.#waiting--;
          signal?.removeEventListener('abort', onAbort);
        },
      };
      flight.askers.add(asker);
      this.#waiting++;
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pump();
    });
  }

  /** Starts queued renders while workers are free (a render nobody waits for is dropped instead). */
  #pump(): void {
    while (this.#running < this.#deps.workers && this.#queue.length > 0) {
      const flight = this.#queue.shift()!;
      if (flight.askers.size === 0) {
        flight.actor.send({ type: 'DROP' });
        continue;
      }
      flight.started = true;
      this.#running++;
      this.#counts.started++;
      flight.actor.send({ type: 'START' });
    }
  }

  /** A render actor reached its end: its askers get the outcome, its worker goes to the next. */
  #finished(output: RenderOutput): void {
    const flight = this.#flights.get(output.path);
    if (flight === undefined) return;
    this.#flights.delete(output.path);
    this.#specs.delete(output.path);
    const queued = this.#queue.indexOf(flight);
    if (queued >= 0) this.#queue.splice(queued, 1);
    if (flight.started) this.#running--;
    this.#leaveBurst(flight.coverPath);
    if (output.status === 'ok') this.#counts.rendered++;
    else if (output.status === 'dropped') this.#counts.dropped++;
    else if (flight.started) this.#counts.failed++;
    const askers = [...flight.askers];
    for (const asker of askers) asker.leave();
    for (const asker of askers) {
      if (output.status === 'ok') asker.resolve(output.variant);
      else if (output.status === 'error') asker.reject(failureError(output.error));
      else asker.reject(new CoverError('cancelled', 'the render was dropped'));
    }
    // Formatted only when written: winston formats a line before its transports drop it by level.
    if (output.status === 'ok' && this.#deps.logger?.isDebugEnabled()) this.#deps.logger.debug('variant rendered', { path: output.path, bytes: output.variant.bytes, ms: output.ms });
    else if (output.status === 'error' && output.error.code !== 'shutting_down') this.#deps.logger?.warn('variant render failed', { path: output.path, code: output.error.code, message: output.error.message });
    // After this turn: the actor is still finishing its own transition.
    queueMicrotask(() => this.#pump());
  }

  /** The variant at `path` when it is on disk: its size read from its header. */
  async #onDisk(path: string, format: VariantFormat): Promise<RenderedVariant | undefined> {
    const opened = await openStoredFile(this.#deps.coversDir, path);
    if (opened === undefined) return undefined;
    let data: Buffer;
    try {
      data = await opened.handle.readFile();
    } finally {
      await opened.handle.close();
    }
    const header = readImageHeader(data) ?? (await sharp(data).metadata().catch(() => undefined));
    if (header?.width === undefined || header.height === undefined) return undefined;
    return { path, contentType: variantContentType(format), bytes: data.length, width: header.width, height: header.height };
  }

  /** Per cover, its renders in flight now: the burst's variant count and whether a recount is owed. */
  readonly #bursts = new Map<string, CoverBurst>();

  /** A render of the cover ended: the last of its burst leaves a recount owed to the background. */
  #leaveBurst(coverPath: string): void {
    const burst = this.#bursts.get(coverPath);
    if (burst === undefined) return;
    if (--burst.flights > 0) return;
    this.#bursts.delete(coverPath);
    // Owed even when closing: close() waits for it, so the row counts what is on disk.
    if (burst.owed) {
      this.#tally(coverPath).catch((error: unknown) => this.#deps.logger?.warn('variant bytes not recorded', { path: coverPath, error }));
    }
  }

  /** Per cover, the recount of its variant bytes in progress: recounts of one cover run one after the other. */
  readonly #tallies = new Map<string, Promise<void>>();

  /**
   * Records the bytes of the cover's variants as on disk now. Recounts of one
   * cover are chained, so the last one written counts every file.
   */
  #tally(coverPath: string): Promise<void> {
    const previous = this.#tallies.get(coverPath) ?? Promise.resolve();
    const next = previous.then(async () => {
      // What is published from here on is owed another recount (this listing may not see it).
      const burst = this.#bursts.get(coverPath);
      if (burst) burst.owed = false;
      const files = await listVariantFiles(this.#deps.coversDir, coverPath);
      await this.#deps.covers.setVariantBytes(coverPath, files.reduce((sum, file) => sum + file.bytes, 0));
    });
    const settled = next.catch(() => undefined);
    this.#tallies.set(coverPath, settled);
    void settled.then(() => {
      if (this.#tallies.get(coverPath) === settled) this.#tallies.delete(coverPath);
    });
    return next;
  }

  /** One render: the real work behind the actor's `render`. */
  async #render(path: string, signal: AbortSignal): Promise<RenderedVariant> {
    const what = this.#specs.get(path);
    if (what === undefined) throw new CoverError('cancelled', 'the render was dropped');
    const { coverPath, spec } = what;
    const { coversDir, covers } = this.#deps;
    // The file to render from: as the asker found it in the cover's row, else from the row now.
    let source = what.source;
    if (source === undefined) {
      const row = await covers.findByPath(coverPath);
      if (row === null) throw gone(coverPath);
      source = row.originalPath ?? row.path;
    }
    const maxPerCover = this.#deps.maxPerCover ?? DEFAULT_MAX_PER_COVER;
    // Spawned with this render and kept until it finishes.
    const burst = this.#bursts.get(coverPath)!;
    // Counted once per burst on a folder only this node writes; on a shared one (several nodes)
    // from the disk at each render, since other nodes add variants a kept count does not see and
    // the bound is the folder's, not this node's.
    const fromDisk = this.#deps.shared === true && burst.count !== undefined;
    if (burst.count === undefined || fromDisk) {
      burst.counting ??= listVariantFiles(coversDir, coverPath)
        .then((files) => files.length)
        .finally(() => {
          burst.counting = undefined;
        });
      const listed = await burst.counting;
      burst.count = fromDisk ? Math.max(listed, burst.count ?? 0) : (burst.count ?? listed);
    }
    const before = burst.count;
    if (before >= maxPerCover) {
      throw new TooManyVariantsError(`${TOO_MANY}${before} variants already (at most ${maxPerCover}); ask for one of the sizes it has, such as a w of --widths without h or q`);
    }
    const opened = await openStoredFile(coversDir, source);
    if (opened === undefined) throw gone(coverPath);
    // What was read: the published variant must come from the file still there after.
    const read = { size: opened.size, mtimeMs: opened.mtimeMs };
    let original: Buffer;
    try {
      original = await opened.handle.readFile();
    } finally {
      await opened.handle.close();
    }
    signal.throwIfAborted();
    const image = await renderVariant(original, spec, signal);
    const { mtimeMs } = await writeCoverFile(coversDir, path, image.data, signal, { beforeRename: () => crashPoint('render:temp-written') });
    crashPoint('render:published');
    // The cover removed, or its original rewritten, meanwhile: what was just published must not
    // outlive it nor be served for the new one. (Removal takes the cover's file first, then its
    // original, then the variants; an upload at the same path rewrites the original first.)
    // Looked at, not opened: both through the path guard, in one look at their folder.
    const found = await statStoredFiles(coversDir, source === coverPath ? [coverPath] : [coverPath, source]);
    const after = found.at(-1);
    if (found.includes(undefined) || after === undefined || after.size !== read.size || after.mtimeMs !== read.mtimeMs) {
      burst.count = undefined;
      await removeVariantFiles(coversDir, coverPath);
      throw gone(coverPath);
    }
    if (burst.count !== undefined) burst.count++;
    burst.owed = true;
    // The last render of the cover's burst records its bytes; the others answer now.
    if (burst.flights <= 1) await this.#tally(coverPath);
    return { path, contentType: image.contentType, bytes: image.data.length, width: image.width, height: image.height, made: { data: image.data, mtimeMs } };
  }
}

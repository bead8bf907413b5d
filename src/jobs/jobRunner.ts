/**
 * Archive jobs on this node: each job that runs here is one `jobMachine`
 * actor, given its real I/O:
 *
 *   fetchUrls     the job's URLs asked of `CoverChecks`, exactly as a `/ws`
 *                 check asks them: answered from the cover index, skipped, or
 *                 waiting on the supervisor's one download per URL (its worker
 *                 slots, retries and tardy/paused gate). There is no second
 *                 download path. A URL whose upstream host cools is asked again
 *                 when the host reopens, until half the job's time to live has
 *                 passed (askUntilAnswered.ts).
 *   packArchive   `packArchive` (archive.ts): the tar to a temp file, renamed.
 *   persist       the job row (status at once, progress at most every 250 ms),
 *                 which the store publishes to the admin streams of every node.
 *   announce      the `started` / `finished` callback (callbacks.ts).
 *
 * Claims: a node runs a job only after claiming its row; it renews its claims
 * every third of the lease. A job cut off by a kill (or whose node died) is
 * unfinished and unclaimed once the lease runs out: `resume()` (at start, and
 * at every heartbeat on a shared database) claims it and runs it again from the
 * start; its covers are then mostly in the index, so this costs little.
 *
 * Expiry: finished jobs past `--job-ttl` are handed to the deletion runner
 * (records of kind `job`), which marks the row `expired` and removes the archive.
 */
import { randomUUID } from 'node:crypto';
import { createActor, fromCallback, fromPromise } from 'xstate';
import type { Actor } from 'xstate';
import { jobMachine } from '../../machines/index.js';
import type { FetchUrlsInput, JobContext, JobEntry, JobEvent, JobMachine, JobStatus, PackInput, PackOutput } from '../../machines/index.js';
import type { CheckResult, CoverChecks } from '../checks/index.js';
import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';
import { storageFault } from '../errors.js';
import type { Logger } from '../logger.js';
import { PathRefusedError } from '../store/index.js';
import type { DeletionQueue, JobPatch, JobStore, JobSummary } from '../store/index.js';
import { ARCHIVE_DIR, packArchive } from './archive.js';
import { askUntilAnswered } from './askUntilAnswered.js';
import { Slots } from './slots.js';
import type { CallbackEvent, CallbackOutcome, JobCallbacks } from './callbacks.js';
import type { CallbackJob, JobJson, JobStatus as WireJobStatus } from '../wire/jobs.js';
import type { Same } from '../sameType.js';

/** How often a running job's counts are written (and so published). */
const PROGRESS_INTERVAL_MS = 250;

export interface JobRunnerDeps {
  jobs: JobStore;
  deletions: DeletionQueue;
  /** Kicked when expiries are scheduled. */
  deletionRunner: { kick(): void };
  checks: Pick<CoverChecks, 'check' | 'leave'>;
  callbacks: JobCallbacks;
  coversDir: string;
  logger: Logger;
  node: string;
  /** `--job-ttl` in ms. */
  ttlMs: number;
  /** The lease of a claim, in ms. */
  leaseMs: number;
  /** `http://HOST:PORT`, for `archiveUrl`. */
  serviceUrl: () => string;
  /** Several nodes share the database: look for orphaned jobs at every heartbeat. */
  shared: boolean;
  /** The one clock (default the system's): job times, progress writes, the heartbeat, the job actors. */
  clock?: Clock;
}

/** The job as the API, the admin stream and the callbacks show it (docs/JOBS.md): declared by the wire contract. */
export type { JobJson };

/** The wire's job statuses are the job machine's own: one added on either side breaks the compile here. */
const _jobStatusesAgree: Same<JobStatus, WireJobStatus> = true;

function outcome(text: string | null): CallbackOutcome | undefined {
  if (text === null) return undefined;
  try {
    return JSON.parse(text) as CallbackOutcome;
  } catch {
    return undefined;
  }
}

export function jobJson(job: JobSummary, serviceUrl: string): JobJson {
  const started = outcome(job.callbackStarted);
  const finished = outcome(job.callbackFinished);
  return {
    id: job.id,
    name: job.name,
    status: job.status,
    total: job.total,
    ok: job.ok,
    failed: job.failed,
    waiting: job.waiting,
    created: new Date(job.createdAt).toISOString(),
    expires: new Date(job.expiresAt).toISOString(),
    ...(job.status === 'ready' ? { archiveUrl: `${serviceUrl}/api/jobs/${job.id}/archive` } : {}),
    ...(job.errorCode !== null ? { error: { code: job.errorCode, message: job.errorMessage ?? '' } } : {}),
    ...(job.node !== null ? { node: job.node } : {}),
    ...(job.callbackUrl !== null ? { callback: { ...(started ? { started } : {}), ...(finished ? { finished } : {}) } } : {}),
  };
}

/** A check's answer as the job's README lists it. */
function entryOf(result: CheckResult): JobEntry {
  if (result.status === 'ok' && result.path !== undefined) {
    const entry: JobEntry = { url: result.url, path: result.path };
    if (result.width !== undefined && result.height !== undefined) {
      entry.width = result.width;
      entry.height = result.height;
    }
    if (result.color !== undefined) entry.color = result.color;
    return entry;
  }
  if (result.status === 'skipped') return { url: result.url, error: { code: 'skipped', message: result.reason ?? 'not a cover URL' } };
  return { url: result.url, error: { code: result.error?.code ?? 'error', message: result.error?.message ?? 'failed' } };
}

type JobActor = Actor<JobMachine>;

/** Jobs packing at once on this node (each holds up to nine cover files in memory); the others wait in `packing`. */
export const PACKING_AT_ONCE = 2;

export class JobRunner {
  private readonly actors = new Map<string, JobActor>();
  private readonly packing = new Slots(PACKING_AT_ONCE);
  private timer: ClockTimer | undefined;
  private stopping = false;
  private resuming: Promise<number> | undefined;
  /** Jobs this node finished, by outcome (for /metrics). */
  readonly outcomes: Record<'ready' | 'failed' | 'expired', number> = { ready: 0, failed: 0, expired: 0 };

  private readonly clock: Clock;

  constructor(private readonly deps: JobRunnerDeps) {
    this.clock = deps.clock ?? systemClock;
  }

  private now(): number {
    return this.clock.now();
  }

  /** Jobs running on this node. */
  get running(): number {
    return this.actors.size;
  }

  /** Creates a job and starts it here. */
  async create(input: { urls: string[]; name: string; callback: string | undefined }): Promise<JobSummary> {
    const created = this.now();
    const id = randomUUID();
    const job = await this.deps.jobs.create({
      id,
      name: input.name,
      status: 'queued',
      urls: JSON.stringify(input.urls),
      total: input.urls.length,
      ok: 0,
      failed: 0,
      callbackUrl: input.callback ?? null,
      callbackStarted: null,
      callbackFinished: null,
      archiveBytes: null,
      errorCode: null,
      errorMessage: null,
      createdAt: created,
      expiresAt: created + this.deps.ttlMs,
      finishedAt: null,
    });
    if (await this.deps.jobs.claim(id)) this.run(job, input.urls);
    const row = await this.deps.jobs.get(id);
    if (row === null) return job;
    const { urls: _urls, ...summary } = row;
    return summary;
  }

  /** Claims and runs every unfinished job nobody alive holds. Resolves with how many were resumed. */
  resume(): Promise<number> {
    this.resuming ??= this.resumeAll().finally(() => (this.resuming = undefined));
    return this.resuming;
  }

  private async resumeAll(): Promise<number> {
    let resumed = 0;
    for (const id of await this.deps.jobs.claimable(100)) {
      if (this.stopping) break;
      if (this.actors.has(id) || !(await this.deps.jobs.claim(id))) continue;
      const row = await this.deps.jobs.get(id);
      if (row === null) continue;
      let urls: string[];
      try {
        const parsed: unknown = JSON.parse(row.urls);
        urls = Array.isArray(parsed) ? parsed.filter((url): url is string => typeof url === 'string') : [];
      } catch {
        urls = [];
      }
      this.deps.logger.info('resuming an archive job', { id, status: row.status, urls: urls.length });
      const { urls: _urls, ...summary } = row;
      this.run(summary, urls);
      resumed++;
    }
    return resumed;
  }

  /**
   * The job's fetching: the job is the asker of its URLs (bulk: interactive askers
   * come first at the upstream); stopped (cancelled, expired, the node stopping), it leaves.
   */
  private fetchUrls(job: JobSummary) {
    return fromCallback<JobEvent, FetchUrlsInput>(({ input, sendBack }) => {
      let live = true;
      const asker = { kind: 'job', bulk: true };
      const asking = askUntilAnswered({
        urls: input.urls,
        check: (urls, onWaited) => this.deps.checks.check(urls, onWaited, asker),
        clock: this.clock,
        // A cooling host is waited for until half the job's time to live has passed: its archive is then there for the other half.
        waitUntil: job.createdAt + (job.expiresAt - job.createdAt) / 2,
        onProgress: (counts) => {
          if (live) sendBack({ type: 'PROGRESS', ...counts });
        },
      });
      asking.done.then(
        (results) => {
          if (live) sendBack({ type: 'FETCHED', entries: results.map(entryOf) });
        },
        (error: unknown) => {
          if (live) sendBack({ type: 'FETCH_FAILED', error: { code: 'internal_error', message: (error as Error).message ?? String(error) } });
        },
      );
      return () => {
        live = false;
        asking.stop();
        this.deps.checks.leave(asker);
      };
    });
  }

  private run(job: JobSummary, urls: string[]): void {
    const { jobs, logger } = this.deps;
    let known: JobSummary = job;
    // Writes of one job, in order; progress at most every PROGRESS_INTERVAL_MS.
    let chain: Promise<unknown> = Promise.resolve();
    let announced: Promise<unknown> = Promise.resolve();
    let lastStatus: JobStatus = job.status;
    let lastProgress = 0;
    let progressTimer: ClockTimer | undefined;
    const write = (patch: JobPatch) => {
      chain = chain
        .then(() => jobs.update(job.id, patch))
        .then((row) => {
          if (row) known = row;
        })
        .catch((error: unknown) => logger.error('job write failed', { id: job.id, error }));
      return chain;
    };
    const patchOf = (context: JobContext): JobPatch => ({
      status: context.status,
      ok: context.ok,
      failed: context.failed,
      waiting: context.waiting,
      ...(context.status === 'ready' || context.status === 'failed' ? { finishedAt: this.now(), archiveBytes: context.archiveBytes ?? null } : {}),
      ...(context.error ? { errorCode: context.error.code.slice(0, 32), errorMessage: context.error.message } : {}),
    });

    const machine = jobMachine.provide({
      actors: {
        fetchUrls: this.fetchUrls(job),
        packArchive: fromPromise<PackOutput, PackInput>(({ input, signal }) =>
          this.packing.run(
            () =>
              packArchive(this.deps.coversDir, { id: input.id, name: job.name, packedAt: this.now() }, input.entries, signal).catch((error: unknown) => {
                // A path the guard refused (a `.jobs` or `.tmp` link) is a storage fault: `disk_full`, naming the link.
                throw error instanceof PathRefusedError ? storageFault(error, 'archive') : error;
              }),
            signal,
          ),
        ),
      },
      actions: {
        persist: (_, { context }) => {
          this.clock.clearTimeout(progressTimer);
          progressTimer = undefined;
          if (context.status !== lastStatus) {
            lastStatus = context.status;
            lastProgress = this.now();
            void write(patchOf(context));
            return;
          }
          // Progress: at once if the last write is old enough, else once the interval has passed (the latest counts).
          const wait = lastProgress + PROGRESS_INTERVAL_MS - this.now();
          const counts = { ok: context.ok, failed: context.failed, waiting: context.waiting };
          if (wait <= 0) {
            lastProgress = this.now();
            void write(counts);
          } else {
            progressTimer = this.clock.setTimeout(() => {
              progressTimer = undefined;
              lastProgress = this.now();
              void write(counts);
            }, wait);
          }
        },
        announce: (_, { event }) => {
          if (known.callbackUrl === null) return;
          const kept = outcome(event === 'started' ? known.callbackStarted : known.callbackFinished);
          // A job resumed after a restart does not say `started` twice.
          if (kept?.ok) return;
          // After the writes so far (the body says the new status), and after the callback before it: `finished` never overtakes `started`.
          const written = chain;
          announced = announced
            .then(() => written)
            .then(() => this.announce(known, event))
            .catch((error: unknown) => logger.error('job callback failed', { id: job.id, event, error }));
        },
      },
    });
    const actor = createActor(machine, { input: { id: job.id, urls }, clock: this.clock });
    this.actors.set(job.id, actor);
    actor.subscribe({
      next: (snapshot) => {
        if (snapshot.status !== 'done') return;
        this.clock.clearTimeout(progressTimer);
        this.actors.delete(job.id);
        const status = snapshot.context.status;
        if (snapshot.value === 'stopped') return;
        if (status === 'ready' || status === 'failed') {
          this.outcomes[status]++;
          logger.info(`archive job ${status}`, { id: job.id, ok: snapshot.context.ok, failed: snapshot.context.failed, bytes: snapshot.context.archiveBytes, error: snapshot.context.error });
        }
      },
      error: (error) => {
        this.clock.clearTimeout(progressTimer);
        this.actors.delete(job.id);
        logger.error('archive job actor failed', { id: job.id, error });
      },
    });
    actor.start();
    actor.send({ type: 'START' });
  }

  /**
   * At start: the `finished` callbacks a kill cut off (not delivered, not given
   * up) are sent again, from the first try. Resolves with how many.
   */
  async redeliver(): Promise<number> {
    const jobs = await this.deps.jobs.claimUndelivered(100);
    for (const job of jobs) void this.announce(job, 'finished').catch((error: unknown) => this.deps.logger.error('job callback failed', { id: job.id, error }));
    return jobs.length;
  }

  /** Sends a callback, writing each try's outcome on the job. */
  private announce(job: JobSummary, event: CallbackEvent): Promise<void> {
    const url = job.callbackUrl;
    if (url === null) return Promise.resolve();
    return this.deps.jobs.get(job.id).then((row) => {
      if (row === null) return;
      const { urls: _urls, ...current } = row;
      const { callback: _callback, node: _node, ...body } = jobJson(current, this.deps.serviceUrl());
      return this.deps.callbacks.send(url, event, { ...body } satisfies CallbackJob, (result) =>
        this.deps.jobs.update(job.id, event === 'started' ? { callbackStarted: JSON.stringify(result) } : { callbackFinished: JSON.stringify(result) }),
      );
    });
  }

  /** Hands finished jobs past their time to the deletion runner. Resolves with how many. */
  async expire(): Promise<number> {
    const due = await this.deps.jobs.expiredBy(this.now(), 100);
    if (due.length === 0) return 0;
    await this.deps.deletions.schedule(
      due.map((job) => ({ url: job.id, path: `${ARCHIVE_DIR}/${job.id}.tar`, kind: 'job' as const, reason: 'job_expired' })),
      this.now(),
    );
    this.deps.deletionRunner.kick();
    return due.length;
  }

  /** The deletion runner's step for a `job` record: the row marked expired (the archive file goes next). */
  async markExpired(id: string): Promise<void> {
    const row = await this.deps.jobs.update(id, { status: 'expired', archiveBytes: null });
    if (row) this.outcomes.expired++;
  }

  /** Heartbeat: renews claims, takes over orphaned jobs (shared database), schedules expiries. */
  start(intervalMs = Math.max(1000, Math.min(this.deps.leaseMs / 3, this.deps.ttlMs / 4))): void {
    const beat = async () => {
      if (this.actors.size > 0) await this.deps.jobs.renew();
      if (this.deps.shared) await this.resume();
      await this.expire();
    };
    this.timer = this.clock.setInterval(() => void beat().catch((error: unknown) => this.deps.logger.error('job heartbeat failed', { error })), intervalMs);
    this.timer.unref();
  }

  /** Stops the jobs running here (they are resumed later, here or elsewhere) and lets go of their claims. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.clock.clearInterval(this.timer);
    await this.resuming?.catch(() => undefined);
    for (const actor of [...this.actors.values()]) actor.send({ type: 'STOP' });
    this.actors.clear();
    await this.deps.jobs.releaseAll().catch(() => undefined);
  }
}

/**
 * The admin HTTP API (docs/ADMIN.md), under `/admin/api/`. Every call needs the admin
 * token as `Authorization: Bearer …`; without it: 401 and nothing else.
 *
 *   GET    /admin/api/tasks?status=&q=&code=&host=&sort=&limit=&offset=
 *                                                    tasks (q: URL contains; code: error code; host: the URL's host;
 *                                                    sort: `changed` newest first, the default, or `tries` most first)
 *   GET    /admin/api/task?url=                      one task: its row, its cover and the variants kept of it, its timeline (from the database)
 *   GET    /admin/api/summary                        tasks by status, covers stored
 *   PUT    /admin/api/covers?url=                    body = image bytes → custom cover
 *   DELETE /admin/api/covers?url=                    202; the deletion runner removes it
 *   POST   /admin/api/retry?url=                     forget a failure, download now
 *   POST   /admin/api/retry-failed                   the same for every failed task
 *   POST   /admin/api/fetch?url=                     fetch a URL now (checked as /ws checks it), as an interactive download
 *   POST   /admin/api/clear-failed                   forget failed tasks (rows and timelines), at most 10,000 a call
 *   POST   /admin/api/cancel?url=                    cancel a queued or running download here
 *   POST   /admin/api/pause | /admin/api/resume      hold or release new downloads (every node)
 *   GET    /admin/api/nodes                          the nodes using the database
 *   GET    /admin/api/jobs?limit=&offset=            archive jobs, newest first: {"total","jobs"}
 *
 * Each is an entry of the route table (src/servers/routes.ts), behind its
 * admin-token guard; these are their handlers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendError, sendJson } from '../http/index.js';
import type { RouteContext } from '../http/index.js';
import { answerFields, coverUrl } from '../checks/index.js';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { CoverError } from '../errors.js';
import { classifyUrl } from '../fetch/index.js';
import { MAX_URL_LENGTH, RESULT_ERROR_CODES } from '@coverhelper/client/protocol';
import type { Downloads } from '../downloads/index.js';
import type { Logger } from '../logger.js';
import { hostOfUrl } from '../store/index.js';
import type { ClusterState, CoverIndex, DeletionQueue, JobStore, NodeRow, TaskLedger, TaskRow, TaskSort } from '../store/index.js';
import { jobJson } from '../jobs/index.js';
import type { DeletionRunner } from '../maintenance/index.js';
import { timelineEvent } from './taskHistory.js';
import { coverVariants } from './coverVariants.js';
import { storeCustomCover } from './customCovers.js';
import type { CustomCoverDeps } from './customCovers.js';
import type { TaskStatus } from '../../machines/types.js';
import type { CoverJson, NodeJson, NodesAnswer, Summary, TaskDetail, TaskJson, TasksPage, TaskStatus as WireTaskStatus } from '../wire/adminStream.js';
import type { Same } from '../sameType.js';
import type { JobsPage } from '../wire/jobs.js';

/** The wire's task statuses are the machines' own: one added on either side breaks the compile here. */
const _taskStatusesAgree: Same<TaskStatus, WireTaskStatus> = true;

export interface AdminApiDeps extends Omit<CustomCoverDeps, 'onReplaced' | 'config'> {
  config: CustomCoverDeps['config'] & Pick<Config, 'lease' | 'allowHosts'>;
  downloads: Downloads;
  covers: CoverIndex;
  tasks: TaskLedger;
  deletions: DeletionQueue;
  cluster: ClusterState;
  deletionRunner: DeletionRunner;
  logger: Logger;
  publicUrl: () => string;
  /** Archive jobs (`GET /admin/api/jobs`). */
  jobs?: Pick<JobStore, 'list'>;
  /** `http://HOST:PORT`, for the jobs' `archiveUrl`. */
  serviceUrl?: () => string;
  /** The one clock (default the system's): custom covers' times, which nodes are live. */
  clock?: Clock;
}

const statuses: readonly TaskStatus[] = ['waiting', 'queued', 'downloading', 'ok', 'error', 'tle'];

/** Most failed tasks one retry-failed call starts again. */
const RETRY_ALL_LIMIT = 10_000;
/** Most failed tasks one clear-failed call forgets. */
const CLEAR_FAILED_LIMIT = 10_000;
const sorts: readonly TaskSort[] = ['changed', 'tries'];

/**
 * The `host` query parameter: a host name as URLs carry it (no port, no path),
 * in lower case as stored; `null` when absent, undefined when not a host name.
 */
function hostParam(raw: string | null): string | null | undefined {
  if (raw === null || raw === '') return null;
  if (raw.length > 255) return undefined;
  const host = hostOfUrl(`http://${raw}/`);
  return host !== null && host === raw.toLowerCase() ? host : undefined;
}

/** The fetch-now asker: interactive (it goes before bulk work), and it never leaves, so its download is never dropped. */
const adminFetch = { kind: 'admin-fetch' } as const;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A task row as the API shows it. */
export function taskJson(row: TaskRow): TaskJson {
  return {
    url: row.url,
    status: row.status,
    attempts: row.attempts,
    error: row.errorCode ? { code: row.errorCode, message: row.errorMessage ?? '' } : null,
    bytes: row.bytesDone,
    total: row.bytesTotal,
    createdAt: iso(row.createdAt),
    updatedAt: iso(row.updatedAt),
    startedAt: iso(row.startedAt),
    finishedAt: iso(row.finishedAt),
    /** The node holding the task (running or queueing its download), if any. */
    node: row.claimedBy,
  };
}

/**
 * A node as the API shows it: a node whose last heartbeat is older than the
 * lease is `gone` (its claims have run out), whatever it last said, and a gone
 * or stopped node holds no work: its queued and downloading are 0, not what it
 * said last. `live`, for this node: its gate and counts now rather than as of
 * its last heartbeat; `paused`: the stored switch holds every node, so a live
 * node is shown paused without waiting for its next heartbeat.
 */
export function nodeJson(node: NodeRow, now: number, leaseMs: number, live?: { status: string; queued: number; downloading: number }, paused = false): NodeJson {
  const alive = node.status !== 'stopped' && now - node.lastSeen <= leaseMs;
  const status = alive ? (live?.status ?? (paused && node.status !== 'starting' ? 'paused' : node.status)) : node.status === 'stopped' ? 'stopped' : 'gone';
  return {
    id: node.id,
    started: iso(node.startedAt),
    lastSeen: iso(node.lastSeen),
    queued: alive ? (live?.queued ?? node.queued) : 0,
    downloading: alive ? (live?.downloading ?? node.downloading) : 0,
    status,
  };
}

/** The `url` query parameter, which must be an http(s) URL. */
function targetUrl(query: URLSearchParams): string | undefined {
  const url = query.get('url');
  if (!url) return undefined;
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? url : undefined;
  } catch {
    return undefined;
  }
}

function intParam(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number | undefined {
  const raw = query.get(name);
  if (raw === null || raw === '') return fallback;
  const n = Number(raw);
  return Number.isInteger(n) && n >= min && n <= max ? n : undefined;
}

/** Checks `limit` and `offset`; undefined once answered 400. */
function page(res: ServerResponse, query: URLSearchParams, defaultLimit: number): { limit: number; offset: number } | undefined {
  const limit = intParam(query, 'limit', defaultLimit, 1, 1000);
  const offset = intParam(query, 'offset', 0, 0, Number.MAX_SAFE_INTEGER);
  if (limit === undefined) return void sendError(res, 400, 'bad_request', 'limit must be a whole number from 1 to 1000');
  if (offset === undefined) return void sendError(res, 400, 'bad_request', 'offset must be a whole number, 0 or more');
  return { limit, offset };
}

/** A handler of the admin API: the request, its answer and its query. */
type AdminHandler = (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) => Promise<void>;

/** What the dashboard reads: tasks, one task, the summary, the nodes, the jobs. */
function readHandlers(deps: AdminApiDeps) {
  return {
    /** `GET /admin/api/tasks`. */
    tasks: async (_req, res, { url }) => {
      const query = url.searchParams;
      const status = query.get('status') || undefined;
      if (status !== undefined && !statuses.includes(status as TaskStatus)) {
        return sendError(res, 400, 'bad_request', `status must be one of ${statuses.join(', ')}`);
      }
      const paged = page(res, query, 100);
      if (paged === undefined) return;
      const search = query.get('q') || undefined;
      if (search !== undefined && search.length > 2048) return sendError(res, 400, 'bad_request', 'q is at most 2048 characters');
      const code = query.get('code') || undefined;
      if (code !== undefined && !(RESULT_ERROR_CODES as readonly string[]).includes(code)) {
        return sendError(res, 400, 'bad_request', `code ${JSON.stringify(code.slice(0, 64))} is not an error code; one of ${RESULT_ERROR_CODES.join(', ')}`);
      }
      const host = hostParam(query.get('host'));
      if (host === undefined) return sendError(res, 400, 'bad_request', `host ${JSON.stringify(query.get('host')!.slice(0, 64))} is not a host name (a name or address as URLs carry it, without a port)`);
      const sort = query.get('sort') || 'changed';
      if (!sorts.includes(sort as TaskSort)) return sendError(res, 400, 'bad_request', `sort ${JSON.stringify(sort.slice(0, 64))} is not known; one of ${sorts.join(', ')}`);
      const { tasks, total } = await deps.tasks.list({ status: status as TaskStatus | undefined, search, errorCode: code, host: host ?? undefined, sort: sort as TaskSort, ...paged });
      return sendJson(res, 200, { tasks: tasks.map(taskJson), total, ...paged } satisfies TasksPage);
    },
    /** `GET /admin/api/task`. */
    task: async (_req, res, { url }) => {
      const target = url.searchParams.get('url');
      if (!target) return sendError(res, 400, 'bad_request', 'needs ?url=');
      if (target.length > MAX_URL_LENGTH) return sendError(res, 400, 'bad_request', `the URL is longer than ${MAX_URL_LENGTH} characters`);
      const [row, cover, timeline] = await Promise.all([deps.tasks.get(target), deps.covers.find(target), deps.tasks.timeline(target).then((rows) => rows.map(timelineEvent))]);
      if (!row && !cover && timeline.length === 0) return sendError(res, 404, 'not_found', 'no task or cover for this URL');
      // The sizes and formats made of the cover on demand (`/covers/<path>?w=&f=`), as stored now.
      const made = cover ? await coverVariants(deps.config.coversDir, cover.path, deps.publicUrl()) : { variants: [], total: 0 };
      return sendJson(res, 200, {
        task: row ? taskJson(row) : null,
        // `answer`: what ok answers say of it (the original's size, the colour when known).
        cover: cover ? ({ ...cover, coverUrl: coverUrl(deps.publicUrl(), cover.path), createdAt: new Date(cover.createdAt).toISOString(), lastAskedAt: new Date(cover.lastAskedAt).toISOString(), answer: answerFields(cover) } satisfies CoverJson) : null,
        variants: made.variants,
        variantsTotal: made.total,
        timeline,
      } satisfies TaskDetail);
    },
    /** `GET /admin/api/summary`. */
    summary: async (_req, res) => {
      const [tasks, covers, bytes] = await Promise.all([deps.tasks.countByStatus(), deps.covers.count(), deps.covers.downloadedBytes()]);
      return sendJson(res, 200, { tasks, covers: { count: covers, downloadedBytes: bytes } } satisfies Summary);
    },
    /** `GET /admin/api/nodes`. */
    nodes: async (_req, res) => {
      const now = (deps.clock ?? systemClock).now();
      const nodes = await deps.cluster.nodes();
      const self = deps.cluster.node;
      const status = deps.downloads.status();
      const { queued, downloading } = deps.downloads.counts();
      const lease = deps.config.lease * 1000;
      return sendJson(res, 200, {
        self,
        nodes: nodes.map((node) => nodeJson(node, now, lease, node.id === self ? { status, queued, downloading } : undefined, status === 'paused')),
      } satisfies NodesAnswer);
    },
    /** `GET /admin/api/jobs`. */
    jobs: async (_req, res, { url, path }) => {
      if (!deps.jobs) return sendError(res, 404, 'not_found', `no admin route GET ${path}`);
      const paged = page(res, url.searchParams, 50);
      if (paged === undefined) return;
      const { jobs, total } = await deps.jobs.list(paged);
      const base = deps.serviceUrl?.() ?? '';
      return sendJson(res, 200, { total, jobs: jobs.map((job) => jobJson(job, base)) } satisfies JobsPage);
    },
  } satisfies Record<string, AdminHandler>;
}

/** Covers the administrator sets or removes. */
function coverHandlers(deps: AdminApiDeps) {
  return {
    /** `PUT /admin/api/covers`: streamed to disk by `storeCustomCover`, not read into memory. */
    putCover: async (req, res, { url }) => {
      const target = targetUrl(url.searchParams);
      if (target === undefined) {
        req.resume();
        return sendError(res, 400, 'bad_request', 'needs ?url= with an http(s) URL');
      }
      try {
        const row = await storeCustomCover(target, req, { ...deps, onReplaced: () => deps.deletionRunner.kick() }, (deps.clock ?? systemClock).now());
        deps.downloads.forget(target);
        deps.logger.info('custom cover stored', { url: target, path: row.path, bytes: row.bytes });
        return sendJson(res, 200, { url: target, status: 'ok', coverUrl: coverUrl(deps.publicUrl(), row.path), path: row.path, source: 'custom', ...answerFields(row) });
      } catch (error) {
        req.resume();
        if (error instanceof CoverError && error.code === 'too_large') return sendError(res, 413, error.code, error.message);
        if (error instanceof CoverError && error.code === 'not_image') return sendError(res, 422, error.code, error.message);
        if (!req.complete || req.destroyed) {
          deps.logger.info('custom cover upload cut off; nothing changed', { url: target });
          return sendError(res, 400, 'bad_request', 'the upload was cut off');
        }
        throw error;
      }
    },
    /** `DELETE /admin/api/covers`. */
    deleteCover: async (_req, res, { url }) => {
      const target = targetUrl(url.searchParams);
      if (target === undefined) return sendError(res, 400, 'bad_request', 'needs ?url= with an http(s) URL');
      const [row, task] = await Promise.all([deps.covers.find(target), deps.tasks.get(target)]);
      if (!row && !task) return sendError(res, 404, 'not_found', 'no cover or task for this URL');
      // Recorded first; the runner removes the row, then the file. An empty path removes rows only.
      await deps.deletions.schedule([{ url: target, path: row?.path ?? '', kind: 'entry', reason: 'admin' }], (deps.clock ?? systemClock).now());
      deps.downloads.forget(target);
      deps.deletionRunner.kick();
      deps.logger.info('cover removal scheduled by the administrator', { url: target, path: row?.path ?? null });
      return sendJson(res, 202, { url: target, status: 'deleting' });
    },
  } satisfies Record<string, AdminHandler>;
}

/** Downloads the administrator starts, retries, cancels, forgets, pauses or resumes. */
function downloadHandlers(deps: AdminApiDeps) {
  return {
    /**
     * `POST /admin/api/fetch?url=`: the URL checked as a check over /ws checks
     * it; stored already → 200 `ok` with its cover; in flight → 202 `in_flight`;
     * else a download starts now, interactive (a remembered failure forgotten) → 202 `queued`.
     */
    fetch: async (_req, res, { url }) => {
      const target = url.searchParams.get('url');
      if (!target) return sendError(res, 400, 'bad_request', 'needs ?url= with the URL to fetch');
      if (target.length > MAX_URL_LENGTH) return sendError(res, 400, 'bad_request', `the URL is longer than ${MAX_URL_LENGTH} characters`);
      const kind = classifyUrl(target, deps.config.allowHosts);
      if (kind.kind === 'skip') return sendError(res, 400, 'bad_request', `this URL is not fetched: ${kind.reason}`);
      const cover = await deps.covers.find(target);
      if (cover) return sendJson(res, 200, { url: target, status: 'ok', source: cover.source, coverUrl: coverUrl(deps.publicUrl(), cover.path) });
      const flight = deps.downloads.inFlight(target);
      if (flight) return sendJson(res, 202, { url: target, status: 'in_flight', state: flight.state });
      deps.downloads.forget(target);
      deps.downloads.askMany([target], adminFetch);
      deps.logger.info('download started by the administrator', { url: target });
      return sendJson(res, 202, { url: target, status: 'queued' });
    },
    /** `POST /admin/api/retry`. */
    retry: async (_req, res, { url }) => {
      const target = targetUrl(url.searchParams);
      if (target === undefined) return sendError(res, 400, 'bad_request', 'needs ?url= with an http(s) URL');
      deps.downloads.retry([target]);
      deps.logger.info('download retried by the administrator', { url: target });
      return sendJson(res, 202, { url: target, status: 'queued' });
    },
    /** `POST /admin/api/retry-failed`. */
    retryFailed: async (_req, res) => {
      const urls: string[] = [];
      for (const status of ['error', 'tle'] as const) {
        const { tasks } = await deps.tasks.list({ status, limit: RETRY_ALL_LIMIT - urls.length, offset: 0 });
        urls.push(...tasks.map((task) => task.url));
        if (urls.length >= RETRY_ALL_LIMIT) break;
      }
      deps.downloads.retry(urls);
      deps.logger.info('failed downloads retried by the administrator', { count: urls.length });
      return sendJson(res, 202, { retried: urls.length });
    },
    /** `POST /admin/api/clear-failed`: failed task rows and their timelines, forgotten (their remembered failures too). */
    clearFailed: async (_req, res) => {
      const urls = await deps.tasks.removeFailed(CLEAR_FAILED_LIMIT);
      for (const url of urls) deps.downloads.forget(url);
      deps.logger.info('failed tasks cleared by the administrator', { count: urls.length });
      return sendJson(res, 200, { removed: urls.length, more: urls.length === CLEAR_FAILED_LIMIT });
    },
    /** `POST /admin/api/cancel`. */
    cancel: async (_req, res, { url }) => {
      const target = targetUrl(url.searchParams);
      if (target === undefined) return sendError(res, 400, 'bad_request', 'needs ?url= with an http(s) URL');
      const outcome = deps.downloads.cancel(target);
      if ('none' in outcome) return sendError(res, 404, 'not_found', 'this URL is not being downloaded');
      if ('elsewhere' in outcome) return sendError(res, 409, 'elsewhere', `node ${outcome.elsewhere} is downloading this URL; cancel it there`);
      deps.logger.info('download cancelled by the administrator', { url: target });
      return sendJson(res, 202, { url: target, status: 'cancelled' });
    },
    /** `POST /admin/api/pause`. */
    pause: async (_req, res) => {
      await deps.downloads.pause();
      deps.logger.info('downloads paused by the administrator');
      return sendJson(res, 200, { status: deps.downloads.status() });
    },
    /** `POST /admin/api/resume`. */
    resume: async (_req, res) => {
      await deps.downloads.resume();
      deps.logger.info('downloads resumed by the administrator');
      return sendJson(res, 200, { status: deps.downloads.status() });
    },
  } satisfies Record<string, AdminHandler>;
}

/** The admin API's handlers (already authorised), for the route table. */
export function adminApi(deps: AdminApiDeps) {
  return { ...readHandlers(deps), ...coverHandlers(deps), ...downloadHandlers(deps) };
}

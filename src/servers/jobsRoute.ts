/**
 * Archive jobs over HTTP (docs/JOBS.md), behind the client token when one is set:
 *
 *   POST /api/jobs               `{"urls":[…], "callback"?, "name"?}` → 201 with the job
 *   GET  /api/jobs/:id           the job (`archiveUrl` once ready)
 *   GET  /api/jobs/:id/archive   the tar (`application/x-tar`, Content-Length);
 *                                409 before it is ready, 410 once expired
 *
 * Bad input is 400 `{"code","message"}`: a body that is not a JSON object,
 * `urls` missing or not all strings (or too long), more than `--max-batch` × 10
 * URLs (`too_many_urls`) (checked by the protocol module's `parseUrlList`), a
 * bad `name` or `callback` (`bad_callback`). An unknown id is 404. Bodies are
 * read like the door's, bounded in size, time and in total (src/http/requestBody.ts).
 * The routes are entries of the route table (routes.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { parseUrlList } from '@coverhelper/client/protocol';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { readJsonObject, sendError, sendJson } from '../http/index.js';
import type { RouteContext } from '../http/index.js';
import { isJobId, jobJson, openArchive } from '../jobs/index.js';
import type { JobCallbacks, JobRunner } from '../jobs/index.js';
import type { JobRow, JobStore } from '../store/index.js';

/** The largest job body: 10,000 URLs of a few hundred bytes fit many times over. */
export const MAX_JOB_BODY_BYTES = 16 * 1024 * 1024;
const MAX_NAME_LENGTH = 200;

export interface JobsRouteDeps {
  runner: Pick<JobRunner, 'create'>;
  jobs: Pick<JobStore, 'get'>;
  callbacks: Pick<JobCallbacks, 'refuse'>;
  coversDir: string;
  /** `--max-batch`: a job holds at most ten times as many URLs. */
  maxBatch: number;
  serviceUrl: () => string;
  /** The one clock (default the system's): whether an archive expired, the body's deadline. */
  clock?: Clock;
}

/** The handlers of the jobs' routes (already authorised), for the route table. */
export function jobsApi(deps: JobsRouteDeps) {
  /** The job `:id`, or undefined once answered 404. */
  const find = async (res: ServerResponse, id: string | undefined): Promise<JobRow | undefined> => {
    const job = id !== undefined && isJobId(id) ? await deps.jobs.get(id) : null;
    if (job === null) return void sendError(res, 404, 'not_found', `no job ${id ?? ''}`);
    return job;
  };
  return {
    /** `POST /api/jobs`. */
    create: (req: IncomingMessage, res: ServerResponse) => create(req, res, deps),
    /** `GET /api/jobs/:id`. */
    job: async (_req: IncomingMessage, res: ServerResponse, { params }: RouteContext): Promise<void> => {
      const job = await find(res, params.id);
      if (job === undefined) return;
      const { urls: _urls, ...summary } = job;
      sendJson(res, 200, jobJson(summary, deps.serviceUrl()));
    },
    /** `GET /api/jobs/:id/archive`. */
    archive: async (req: IncomingMessage, res: ServerResponse, { params }: RouteContext): Promise<void> => {
      const job = await find(res, params.id);
      if (job === undefined) return;
      const now = (deps.clock ?? systemClock).now();
      if (job.status === 'expired' || job.expiresAt <= now) return sendError(res, 410, 'expired', `job ${job.id} expired at ${new Date(job.expiresAt).toISOString()}; its archive is gone`);
      if (job.status !== 'ready') return sendError(res, 409, 'not_ready', `job ${job.id} is ${job.status}; the archive is there once it is ready`);
      const archive = await openArchive(deps.coversDir, job.id);
      if (archive === undefined) return sendError(res, 410, 'expired', `the archive of job ${job.id} is gone`);
      try {
        res.writeHead(200, {
          'content-type': 'application/x-tar',
          'content-length': String(archive.size),
          'content-disposition': `attachment; filename="coverhelper-${job.id}.tar"`,
          'cache-control': 'no-store',
        });
        if (req.method === 'HEAD') {
          res.end();
          return;
        }
        await pipeline(archive.handle.createReadStream({ start: 0, end: Math.max(0, archive.size - 1), autoClose: false }), res).catch((error: unknown) => {
          // A client that goes away mid-download is not an error of the service.
          if (!res.destroyed) throw error;
        });
      } finally {
        await archive.handle.close();
      }
    },
  };
}

async function create(req: IncomingMessage, res: ServerResponse, deps: JobsRouteDeps): Promise<void> {
  const bad = (message: string, code = 'bad_request') => sendError(res, 400, code, message);
  const value = await readJsonObject(req, res, MAX_JOB_BODY_BYTES, '{"urls":[…], "callback"?: "https://…", "name"?: "…"}', { clock: deps.clock ?? systemClock });
  if (value === undefined) return;
  const { callback, name } = value;
  const limit = deps.maxBatch * 10;
  const list = parseUrlList(value.urls, limit, { noun: 'job', limit: '--max-batch × 10' });
  if (!list.ok) return bad(list.message, list.code);
  if (list.urls.length === 0) return bad('"urls" is empty');
  if (name !== undefined && (typeof name !== 'string' || name.length > MAX_NAME_LENGTH)) return bad(`"name" is a string of at most ${MAX_NAME_LENGTH} characters`);
  if (callback !== undefined && callback !== null) {
    const refused = await deps.callbacks.refuse(callback);
    if (refused !== undefined) return bad(refused, 'bad_callback');
  }
  const job = await deps.runner.create({ urls: list.urls, name: typeof name === 'string' ? name : '', callback: typeof callback === 'string' ? callback : undefined });
  sendJson(res, 201, jobJson(job, deps.serviceUrl()));
}

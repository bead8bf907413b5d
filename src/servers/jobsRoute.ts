/**
 * Archive jobs over HTTP (SPEC §11), behind the client token when one is set:
 *
 *   POST /api/jobs               `{"urls":[…], "callback"?, "name"?}` → 201 with the job
 *   GET  /api/jobs/:id           the job (`archiveUrl` once ready)
 *   GET  /api/jobs/:id/archive   the tar (`application/x-tar`, Content-Length);
 *                                409 before it is ready, 410 once expired
 *
 * Bad input is 400 `{"code","message"}`: a body that is not a JSON object,
 * `urls` missing or not all strings (or too long), more than `--max-batch` × 10
 * URLs (`too_many_urls`), a bad `name` or `callback` (`bad_callback`). An
 * unknown id is 404. Bodies are read like the door's, bounded in size, time and
 * in total (requestBody.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { MAX_URL_LENGTH } from '../../client/src/protocol.js';
import { isJobId, jobJson, openArchive } from '../jobs/index.js';
import type { JobCallbacks, JobRunner } from '../jobs/index.js';
import type { JobStore } from '../store/index.js';
import { readBody, refuseBody } from './requestBody.js';

export const JOBS_PREFIX = '/api/jobs';

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
  now?: () => number;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}

function bad(res: ServerResponse, message: string, code = 'bad_request'): void {
  json(res, 400, { code, message });
}

/** Handles a request under `/api/jobs` (already authorised). */
export async function handleJobs(req: IncomingMessage, res: ServerResponse, pathname: string, deps: JobsRouteDeps): Promise<void> {
  const rest = pathname.slice(JOBS_PREFIX.length);
  if (rest === '' || rest === '/') {
    if (req.method !== 'POST') {
      req.resume();
      return json(res, 405, { code: 'method_not_allowed', message: 'POST {"urls":[…]} to /api/jobs' });
    }
    return create(req, res, deps);
  }
  const [, id, tail, ...more] = rest.split('/');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    req.resume();
    return json(res, 405, { code: 'method_not_allowed', message: 'GET a job or its archive' });
  }
  const job = id !== undefined && isJobId(id) && more.length === 0 ? await deps.jobs.get(id) : null;
  if (job === null || (tail !== undefined && tail !== 'archive')) return json(res, 404, { code: 'not_found', message: `no job ${id ?? ''}` });
  const { urls: _urls, ...summary } = job;
  if (tail === undefined) return json(res, 200, jobJson(summary, deps.serviceUrl()));
  const now = (deps.now ?? Date.now)();
  if (job.status === 'expired' || job.expiresAt <= now) return json(res, 410, { code: 'expired', message: `job ${job.id} expired at ${new Date(job.expiresAt).toISOString()}; its archive is gone` });
  if (job.status !== 'ready') return json(res, 409, { code: 'not_ready', message: `job ${job.id} is ${job.status}; the archive is there once it is ready` });
  const archive = await openArchive(deps.coversDir, job.id);
  if (archive === undefined) return json(res, 410, { code: 'expired', message: `the archive of job ${job.id} is gone` });
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
}

async function create(req: IncomingMessage, res: ServerResponse, deps: JobsRouteDeps): Promise<void> {
  const body = await readBody(req, MAX_JOB_BODY_BYTES);
  if (!body.ok) return refuseBody(res, body.refusal);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.text);
  } catch {
    return bad(res, 'the body is not JSON (send {"urls":[…], "callback"?: "https://…", "name"?: "…"})');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return bad(res, 'the body is a JSON object: {"urls":[…]}');
  const { urls, callback, name } = parsed as { urls?: unknown; callback?: unknown; name?: unknown };
  if (!Array.isArray(urls)) return bad(res, 'needs "urls", an array of strings');
  if (urls.length === 0) return bad(res, '"urls" is empty');
  const notString = urls.findIndex((url) => typeof url !== 'string');
  if (notString !== -1) return bad(res, `urls[${notString}] is not a string`);
  const limit = deps.maxBatch * 10;
  if (urls.length > limit) return bad(res, `${urls.length} URLs in one job; at most ${limit} (--max-batch × 10)`, 'too_many_urls');
  const long = (urls as string[]).findIndex((url) => url.length > MAX_URL_LENGTH);
  if (long !== -1) return bad(res, `urls[${long}] is longer than ${MAX_URL_LENGTH} characters`);
  if (name !== undefined && (typeof name !== 'string' || name.length > MAX_NAME_LENGTH)) return bad(res, `"name" is a string of at most ${MAX_NAME_LENGTH} characters`);
  if (callback !== undefined && callback !== null) {
    const refused = await deps.callbacks.refuse(callback);
    if (refused !== undefined) return bad(res, refused, 'bad_callback');
  }
  const job = await deps.runner.create({ urls: urls as string[], name: typeof name === 'string' ? name : '', callback: typeof callback === 'string' ? callback : undefined });
  json(res, 201, jobJson(job, deps.serviceUrl()));
}

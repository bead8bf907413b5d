/**
 * The service's route table: every HTTP door is one entry here, served by
 * `RouteTable` (src/http/routeTable.ts) with its 404, 405 + `Allow`, HEAD where
 * GET is, and `{"code","message"}` errors. A new door is one more entry.
 *
 * Tokens (src/http/token.ts): the admin API's area guard asks for the admin
 * token as a Bearer header before any matching (a caller without it gets a bare
 * 401 and learns nothing else); the client's routes (`/api/*`) ask for the
 * client token, when one is set, as a Bearer header or `?token=`, once the
 * method is known. The WebSocket upgrades are not routes: httpServer.ts checks
 * their tokens with the same function.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { adminApi, DASHBOARD_PATHS, serveDashboard } from '../admin/index.js';
import type { AdminApiDeps } from '../admin/index.js';
import { hasToken, RouteTable, sendError, sendJson } from '../http/index.js';
import type { Guard, RouteContext } from '../http/index.js';
import type { Logger } from '../logger.js';
import { asksForVariant, serveCover, serveCoverVariant } from './coverRoute.js';
import type { CoverVariantDeps } from './coverRoute.js';
import type { Door } from './doorRoute.js';
import { jobsApi } from './jobsRoute.js';
import type { JobsRouteDeps } from './jobsRoute.js';
import type { Metrics } from './metrics.js';
import type { ProxyRoute } from './proxyRoute.js';

export interface ServiceRouteDeps {
  coversDir: string;
  clientToken: string | undefined;
  adminToken: string;
  logger: Logger;
  health: () => Promise<Record<string, unknown>>;
  metrics: Metrics;
  door: Door;
  admin: AdminApiDeps;
  /** Archive jobs: without them `/api/jobs` is not in the table (404). */
  jobs?: JobsRouteDeps;
  /** The proxy prefix (`/?url=`, `/proxy/`) and the home page (`GET /`). */
  proxy?: ProxyRoute;
  /** Variants on `/covers/<path>?w=…`: without them a query is ignored (the plain file). */
  variants?: CoverVariantDeps;
}

export const UNAUTHORIZED_MESSAGE = 'this service needs the client token (Authorization: Bearer … or ?token=)';

/** The admin token as a Bearer header, or a bare 401: nothing else is said. */
export function adminGuard(token: string, logger: Logger): Guard {
  return (req, res, { url, path }) => {
    if (hasToken(req, url, token, 'header')) return true;
    logger.debug('admin call refused: wrong or missing admin token', { method: req.method, path, remote: req.socket.remoteAddress });
    res.writeHead(401, { 'content-length': '0' }).end();
    return false;
  };
}

/** The client token, when one is set (Bearer header or `?token=`), or 401 `unauthorized`. */
export function clientGuard(token: string | undefined): Guard {
  return (req, res, { url }) => {
    if (hasToken(req, url, token, 'header-or-query')) return true;
    sendError(res, 401, 'unauthorized', UNAUTHORIZED_MESSAGE);
    return false;
  };
}

/** `GET /ws` or `/admin/ws` without an upgrade. */
function upgradeRequired(req: IncomingMessage, res: ServerResponse, { path }: RouteContext): void {
  req.resume();
  sendError(res, 426, 'upgrade_required', `${path} is a WebSocket: connect with an Upgrade: websocket request`, { upgrade: 'websocket', connection: 'Upgrade' });
}

/** Every HTTP route of the service. */
export function serviceRoutes(deps: ServiceRouteDeps): RouteTable {
  const client = { guard: clientGuard(deps.clientToken) };
  const admin = adminApi(deps.admin);
  const dashboard = (req: IncomingMessage, res: ServerResponse, { path }: RouteContext) => void serveDashboard(req, res, path);
  const table = new RouteTable()
    .get('/covers/*', (req, res, { params, url }) =>
      // The plain file unless the query asks for a variant (a query-less request decides on one comparison).
      url.search !== '' && deps.variants !== undefined && asksForVariant(url.searchParams)
        ? serveCoverVariant(req, res, params['*'] ?? '', url.searchParams, deps.variants)
        : serveCover(req, res, params['*'] ?? '', deps.coversDir),
    )
    .get('/c/*', (req, res, { params }) => deps.door.cover(req, res, params['*'] ?? ''))
    .post('/api/check', (req, res) => deps.door.serveApiCheck(req, res), client)
    .get('/healthz', async (_req, res, { url }) => {
      // `?strict=1` is for load balancers that should send nothing to a node not ready (tardy, paused).
      const health = await deps.health();
      const strict = url.searchParams.get('strict');
      sendJson(res, (strict === '1' || strict === 'true') && health.status !== 'ready' ? 503 : 200, health);
    })
    .get('/metrics', async (_req, res) => {
      const text = await deps.metrics.render();
      res.writeHead(200, { 'content-type': deps.metrics.contentType, 'cache-control': 'no-store' }).end(text);
    })
    .get('/ws', upgradeRequired)
    .get('/admin/ws', upgradeRequired)
    .guard('/admin/api/*', adminGuard(deps.adminToken, deps.logger))
    .get('/admin/api/tasks', admin.tasks)
    .get('/admin/api/task', admin.task)
    .get('/admin/api/summary', admin.summary)
    .get('/admin/api/nodes', admin.nodes)
    .get('/admin/api/jobs', admin.jobs)
    .add('PUT', '/admin/api/covers', admin.putCover)
    .add('DELETE', '/admin/api/covers', admin.deleteCover)
    .post('/admin/api/retry', admin.retry)
    .post('/admin/api/retry-failed', admin.retryFailed)
    .post('/admin/api/fetch', admin.fetch)
    .post('/admin/api/clear-failed', admin.clearFailed)
    .post('/admin/api/cancel', admin.cancel)
    .post('/admin/api/pause', admin.pause)
    .post('/admin/api/resume', admin.resume);
  // The proxy prefix: `/` (its home page without `url`) and `/proxy/…`; neither shadows a route above.
  if (deps.proxy) table.get('/', deps.proxy.serve).get('/proxy/*', deps.proxy.serve);
  // The dashboard's page, script and style hold no data: each call they make carries the token.
  for (const path of DASHBOARD_PATHS) table.get(path, dashboard);
  if (deps.jobs) {
    const jobs = jobsApi(deps.jobs);
    table
      .post('/api/jobs', jobs.create, client)
      .post('/api/jobs/', jobs.create, client)
      .get('/api/jobs/:id', jobs.job, client)
      .get('/api/jobs/:id/archive', jobs.archive, client);
  }
  return table;
}

/**
 * The one HTTP server: cover files, `/healthz`, and the `/ws` upgrade.
 * The client token, when set, is checked at the upgrade (`Authorization: Bearer`
 * or `?token=`), before any WebSocket exists; a refusal is a plain HTTP 401.
 */
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { handleAdminApi, serveAdminSocket, serveDashboard } from '../admin/index.js';
import type { AdminApiDeps, AdminFeed } from '../admin/index.js';
import type { Logger } from '../logger.js';
import type { Stats } from '../stats.js';
import { serveClientSocket } from './clientSocket.js';
import type { ClientSocketDeps, ServedClient } from './clientSocket.js';
import { COVERS_PREFIX, serveCover } from './coverRoute.js';
import { DOOR_PREFIX } from './doorRoute.js';
import type { Door } from './doorRoute.js';
import { handleJobs, JOBS_PREFIX } from './jobsRoute.js';
import type { JobsRouteDeps } from './jobsRoute.js';
import type { Metrics } from './metrics.js';
import { Keepalive } from './keepalive.js';
import { ResultRounds } from './resultRounds.js';
import { endStarting } from '../startChecks.js';
import { MAX_FRAME_BYTES } from '../../client/src/protocol.js';

/** How long a WebSocket peer has to answer the closing handshake at shutdown. */
const CLOSE_GRACE_MS = 1000;


export interface HttpServerDeps extends ClientSocketDeps {
  coversDir: string;
  clientToken: string | undefined;
  stats: Stats;
  logger: Logger;
  /** The `/healthz` body. */
  health: () => Promise<Record<string, unknown>>;
  /** `/metrics`. */
  metrics: Metrics;
  admin: { token: string; api: AdminApiDeps; feed: AdminFeed };
  /** How often idle client sockets are pinged (30 s unless a test sets a short one). */
  pingIntervalMs?: number;
  /** The HTTP door: signed cover URLs and `POST /api/check`. */
  door: Door;
  /** Archive jobs under `/api/jobs`. */
  jobs?: JobsRouteDeps;
}

/** Compares secrets in constant time (for equal lengths; length is not secret here). */
export function tokenMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The token of a request: `Authorization: Bearer X`, else `?token=X`. */
export function requestToken(req: IncomingMessage, url: URL): string | undefined {
  const header = req.headers.authorization;
  const match = header === undefined ? null : /^Bearer\s+(.+)$/i.exec(header);
  return match?.[1]?.trim() ?? url.searchParams.get('token') ?? undefined;
}

/**
 * Answers an upgrade with an HTTP error and closes: with a `{"code","message"}`
 * body, or none at all (the admin routes say nothing to a caller without the token).
 */
function refuseUpgrade(socket: Duplex, status: number, reason: string, body?: { code: string; message: string }): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  const type = body === undefined ? '' : 'Content-Type: application/json; charset=utf-8\r\n';
  // end() flushes the answer, then closes; no WebSocket is ever made.
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\n${type}Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers }).end(text);
}

/**
 * Serves the routes on `bound` (a server `bindPort` bound early, answering 503
 * until now), or on a new server the caller binds.
 */
export function createHttpServer(deps: HttpServerDeps, bound?: http.Server) {
  // No permessage-deflate: result frames are written to the TCP socket framed by us (textFrames.ts).
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
  /** When the client sockets' gathered `result` frames are written. */
  const resultRounds = new ResultRounds();
  const keepalive = new Keepalive(deps.pingIntervalMs);
  /** Open client sockets, each with what closing waits for. */
  const clientSockets = new Map<WebSocket, ServedClient>();
  /** Open admin streams, for tests and the leak check: socket → its pending count. */
  const adminSockets = new Map<WebSocket, { pending: () => number }>();

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const get = req.method === 'GET' || req.method === 'HEAD';
    const rawPath = (req.url ?? '/').split('?')[0] ?? '/';
    if (get && rawPath.startsWith(COVERS_PREFIX)) return serveCover(req, res, rawPath, deps.coversDir);
    if (get && rawPath.startsWith(DOOR_PREFIX)) return deps.door.cover(req, res, rawPath);
    /** The client token, when one is set, for the client's HTTP routes: false when refused (answered 401). */
    const clientAllowed = () => {
      if (deps.clientToken === undefined || tokenMatches(requestToken(req, url), deps.clientToken)) return true;
      req.resume();
      json(res, 401, { code: 'unauthorized', message: 'this service needs the client token (Authorization: Bearer … or ?token=)' });
      return false;
    };
    if (url.pathname === '/api/check') {
      if (req.method !== 'POST') return json(res, 405, { code: 'method_not_allowed', message: 'POST {"urls":[…]} to /api/check' });
      if (!clientAllowed()) return;
      return deps.door.check(req, res);
    }
    if (deps.jobs && (url.pathname === JOBS_PREFIX || url.pathname.startsWith(`${JOBS_PREFIX}/`))) {
      if (!clientAllowed()) return;
      return handleJobs(req, res, url.pathname, deps.jobs);
    }
    if (get && url.pathname === '/healthz') return json(res, 200, await deps.health());
    if (get && url.pathname === '/metrics') {
      const text = await deps.metrics.render();
      res.writeHead(200, { 'content-type': deps.metrics.contentType, 'cache-control': 'no-store' }).end(text);
      return;
    }
    if (url.pathname.startsWith('/admin/api/')) {
      const header = req.headers.authorization;
      const bearer = header === undefined ? undefined : /^Bearer\s+(.+)$/i.exec(header)?.[1]?.trim();
      if (!tokenMatches(bearer, deps.admin.token)) {
        deps.logger.debug('admin call refused: wrong or missing admin token', { method: req.method, path: url.pathname, remote: req.socket.remoteAddress });
        req.resume();
        res.writeHead(401, { 'content-length': '0' }).end();
        return;
      }
      return handleAdminApi(req, res, url, deps.admin.api);
    }
    if (url.pathname === '/ws' || url.pathname === '/admin/ws') {
      req.resume();
      return json(res, 426, { code: 'upgrade_required', message: `${url.pathname} is a WebSocket: connect with an Upgrade: websocket request` }, { upgrade: 'websocket', connection: 'Upgrade' });
    }
    // The dashboard's page, script and style hold no data: each call they make carries the token.
    if (get && serveDashboard(req, res, url.pathname)) return;
    json(res, 404, { code: 'not_found', message: `no route for ${req.method ?? 'GET'} ${url.pathname}` });
  };

  const server = bound ?? http.createServer();
  if (bound) endStarting(bound);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // The access log, at debug: method, path (never the query: it may hold a token), status, time.
    if (deps.logger.isDebugEnabled()) {
      const started = performance.now();
      res.once('finish', () =>
        deps.logger.debug('http', {
          method: req.method,
          path: (req.url ?? '/').split('?')[0],
          status: res.statusCode,
          ms: Math.round((performance.now() - started) * 10) / 10,
          remote: req.socket.remoteAddress,
        }),
      );
    }
    handle(req, res).catch((error: unknown) => {
      deps.logger.error('request failed', { url: req.url, error });
      if (!res.headersSent) json(res, 500, { code: 'internal_error', message: 'see the service log' });
      else res.destroy();
    });
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/admin/ws') {
      if (!tokenMatches(requestToken(req, url), deps.admin.token)) {
        deps.logger.debug('admin stream refused: wrong or missing admin token', { remote: req.socket.remoteAddress });
        return refuseUpgrade(socket, 401, 'Unauthorized');
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        deps.stats.connected('admin', (closed) => ws.once('close', closed));
        deps.logger.debug('admin stream connected', { remote: req.socket.remoteAddress });
        adminSockets.set(ws, serveAdminSocket(ws, deps.admin.feed));
        ws.once('close', () => adminSockets.delete(ws));
      });
      return;
    }
    if (url.pathname !== '/ws') return refuseUpgrade(socket, 404, 'Not Found', { code: 'not_found', message: `no WebSocket at ${url.pathname}; clients connect to /ws` });
    if (deps.clientToken !== undefined && !tokenMatches(requestToken(req, url), deps.clientToken)) {
      deps.logger.debug('client socket refused: wrong or missing client token', { remote: req.socket.remoteAddress });
      return refuseUpgrade(socket, 401, 'Unauthorized', { code: 'unauthorized', message: 'this service needs the client token (Authorization: Bearer … or ?token=)' });
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      deps.stats.connected('client', (closed) => ws.once('close', closed));
      const remote = req.socket.remoteAddress;
      deps.logger.debug('client socket connected', { remote });
      ws.once('close', (code: number) => deps.logger.debug('client socket closed', { remote, code }));
      clientSockets.set(ws, serveClientSocket(ws, deps, resultRounds));
      keepalive.add(ws);
      ws.once('close', () => clientSockets.delete(ws));
    });
  });

  return {
    server,
    adminSockets,
    /**
     * Closes every WebSocket (1001, going away) and the listening socket. A client
     * socket is closed once the checks it sent are answered (the downloads they
     * wait on were settled by the supervisor's shutdown), waiting at most
     * CLOSE_GRACE_MS for them.
     */
    async close(): Promise<void> {
      let waited: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...[...clientSockets.values()].map((client) => client.drained()), deps.door.drained()]),
        new Promise<void>((resolve) => (waited = setTimeout(resolve, CLOSE_GRACE_MS))),
      ]);
      clearTimeout(waited);
      keepalive.close();
      const clients = [...wss.clients];
      const closed = clients.map((client) => new Promise<void>((resolve) => client.once('close', () => resolve())));
      for (const client of clients) client.close(1001, 'server shutting down');
      // A peer that does not answer the closing handshake (one that stopped reading) is cut off.
      const cutOff = setTimeout(() => {
        for (const client of clients) client.terminate();
      }, CLOSE_GRACE_MS);
      await Promise.all(closed);
      clearTimeout(cutOff);
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

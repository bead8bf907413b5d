/**
 * The one HTTP server: every HTTP request is served by the route table
 * (routes.ts); the `/ws` and `/admin/ws` upgrades are checked here, with the
 * same token check, before any WebSocket exists; a refusal is a plain HTTP 401.
 */
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { serveAdminSocket } from '../admin/index.js';
import type { AdminApiDeps, AdminFeed } from '../admin/index.js';
import { hasToken, refuseUpgrade, requestUrl, sendError } from '../http/index.js';
import { systemClock } from '../clock.js';
import type { ClockTimer } from '../clock.js';
import type { Logger } from '../logger.js';
import type { Stats } from '../stats.js';
import { serveClientSocket } from './clientSocket.js';
import type { ClientSocketDeps, ServedClient } from './clientSocket.js';
import type { Door } from './doorRoute.js';
import type { JobsRouteDeps } from './jobsRoute.js';
import type { Metrics } from './metrics.js';
import { Keepalive } from './keepalive.js';
import { ResultRounds } from './resultRounds.js';
import type { ProxyRoute } from './proxyRoute.js';
import { serviceRoutes, UNAUTHORIZED_MESSAGE } from './routes.js';
import type { CoverVariantDeps } from './coverRoute.js';
import { endStarting } from '../preflight.js';
import { MAX_FRAME_BYTES } from '@coverhelper/client/protocol';

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
  /** The proxy prefix and the home page. */
  proxy?: ProxyRoute;
  /** Variants on `/covers/<path>?w=…`. */
  variants?: CoverVariantDeps;
}

/**
 * Serves the routes on `bound` (a server `bindPort` bound early, answering 503
 * until now), or on a new server the caller binds.
 */
export function createHttpServer(deps: HttpServerDeps, bound?: http.Server) {
  // No permessage-deflate: result frames are written to the TCP socket framed by us (textFrames.ts).
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
  /** When the client sockets' gathered `result` frames are written. */
  const clock = deps.clock ?? systemClock;
  const resultRounds = new ResultRounds(clock);
  const keepalive = new Keepalive(deps.pingIntervalMs, clock);
  /** Open client sockets, each with what closing waits for. */
  const clientSockets = new Map<WebSocket, ServedClient>();
  /** Open admin streams, for tests and the leak check: socket → its pending count. */
  const adminSockets = new Map<WebSocket, { pending: () => number }>();

  const routes = serviceRoutes({ ...deps, adminToken: deps.admin.token, admin: deps.admin.api });

  const server = bound ?? http.createServer();
  if (bound) endStarting(bound);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // The access log, at debug: method, path (never the query: it may hold a token), status, time.
    if (deps.logger.isDebugEnabled()) {
      const begun = clock.monotonic();
      res.once('finish', () =>
        deps.logger.debug('http', {
          method: req.method,
          path: (req.url ?? '/').split('?')[0],
          status: res.statusCode,
          ms: Math.round((clock.monotonic() - begun) * 10) / 10,
          remote: req.socket.remoteAddress,
        }),
      );
    }
    // Requests by route and status, and their time to the end of the answer (/metrics).
    const started = clock.monotonic();
    let route = 'none';
    res.once('close', () => deps.metrics.observeRequest(route, res.statusCode, (clock.monotonic() - started) / 1000));
    routes.serve(req, res, (matched) => (route = matched)).catch((error: unknown) => {
      deps.logger.error('request failed', { url: req.url, error });
      if (!res.headersSent) sendError(res, 500, 'internal_error', 'see the service log');
      else res.destroy();
    });
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = requestUrl(req.url);
    if (url === undefined) return refuseUpgrade(socket, 400, { code: 'bad_request', message: 'the request target is not a path' });
    if (url.pathname === '/admin/ws') {
      if (!hasToken(req, url, deps.admin.token, 'header-or-query')) {
        deps.logger.debug('admin stream refused: wrong or missing admin token', { remote: req.socket.remoteAddress });
        return refuseUpgrade(socket, 401);
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        deps.stats.connected('admin', (closed) => ws.once('close', closed));
        deps.logger.debug('admin stream connected', { remote: req.socket.remoteAddress });
        adminSockets.set(ws, serveAdminSocket(ws, deps.admin.feed, { clock }));
        ws.once('close', () => adminSockets.delete(ws));
      });
      return;
    }
    if (url.pathname !== '/ws') return refuseUpgrade(socket, 404, { code: 'not_found', message: `no WebSocket at ${url.pathname}; clients connect to /ws` });
    if (!hasToken(req, url, deps.clientToken, 'header-or-query')) {
      deps.logger.debug('client socket refused: wrong or missing client token', { remote: req.socket.remoteAddress });
      return refuseUpgrade(socket, 401, { code: 'unauthorized', message: UNAUTHORIZED_MESSAGE });
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      deps.stats.connected('client', (closed) => ws.once('close', closed));
      const remote = req.socket.remoteAddress;
      deps.logger.debug('client socket connected', { remote });
      ws.once('close', (code: number) => deps.logger.debug('client socket closed', { remote, code }));
      clientSockets.set(ws, serveClientSocket(ws, deps, resultRounds, remote));
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
      let waited: ClockTimer | undefined;
      await Promise.race([
        Promise.all([...[...clientSockets.values()].map((client) => client.drained()), deps.door.drained()]),
        new Promise<void>((resolve) => (waited = clock.setTimeout(resolve, CLOSE_GRACE_MS))),
      ]);
      clock.clearTimeout(waited);
      keepalive.close();
      const clients = [...wss.clients];
      const closed = clients.map((client) => new Promise<void>((resolve) => client.once('close', () => resolve())));
      for (const client of clients) client.close(1001, 'server shutting down');
      // A peer that does not answer the closing handshake (one that stopped reading) is cut off.
      const cutOff = clock.setTimeout(() => {
        for (const client of clients) client.terminate();
      }, CLOSE_GRACE_MS);
      await Promise.all(closed);
      clock.clearTimeout(cutOff);
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

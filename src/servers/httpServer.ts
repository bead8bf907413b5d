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
import type { Logger } from '../logger.js';
import type { Stats } from '../stats.js';
import { serveClientSocket } from './clientSocket.js';
import type { ClientSocketDeps } from './clientSocket.js';
import { COVERS_PREFIX, serveCover } from './coverRoute.js';

/** Largest WebSocket frame accepted; a larger one closes the socket with 1009. */
export const MAX_FRAME_BYTES = 1024 * 1024;

export interface HttpServerDeps extends ClientSocketDeps {
  coversDir: string;
  clientToken: string | undefined;
  stats: Stats;
  logger: Logger;
  /** The `/healthz` body. */
  health: () => Promise<Record<string, unknown>>;
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

function refuseUpgrade(socket: Duplex, status: number, text: string): void {
  // end() flushes the answer, then closes; no WebSocket is ever made.
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${text.length + 1}\r\n\r\n${text}\n`);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(text);
}

export function createHttpServer(deps: HttpServerDeps) {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const get = req.method === 'GET' || req.method === 'HEAD';
    const rawPath = (req.url ?? '/').split('?')[0] ?? '/';
    if (get && rawPath.startsWith(COVERS_PREFIX)) return serveCover(req, res, rawPath, deps.coversDir);
    if (get && url.pathname === '/healthz') return json(res, 200, await deps.health());
    json(res, 404, { error: 'not_found', message: `no route for ${req.method ?? 'GET'} ${url.pathname}` });
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      deps.logger.error('request failed', { url: req.url, error });
      if (!res.headersSent) json(res, 500, { error: 'internal_error', message: 'see the service log' });
      else res.destroy();
    });
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/ws') return refuseUpgrade(socket, 404, 'Not Found');
    if (deps.clientToken !== undefined && !tokenMatches(requestToken(req, url), deps.clientToken)) {
      return refuseUpgrade(socket, 401, 'Unauthorized');
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      deps.stats.connections++;
      ws.once('close', () => deps.stats.connections--);
      serveClientSocket(ws, deps);
    });
  });

  return {
    server,
    /** Closes every WebSocket (1001, going away) and the listening socket. */
    async close(): Promise<void> {
      for (const client of wss.clients) client.close(1001, 'server shutting down');
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

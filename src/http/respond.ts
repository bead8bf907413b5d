/**
 * The one writer of the HTTP edge's JSON answers. Every error, everywhere, is
 * `{"code","message"}` with `Content-Type: application/json; charset=utf-8` and
 * `Cache-Control: no-store` (a route may add headers, such as `Retry-After`);
 * an upgrade refused before any WebSocket exists is written the same way on
 * the raw socket.
 */
import { STATUS_CODES } from 'node:http';
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorBody } from '../wire/door.js';

export const JSON_TYPE = 'application/json; charset=utf-8';

/** An error body: declared by the wire contract of the HTTP edge's answers. */
export type { ErrorBody };

/** Answers `text`, already JSON. */
export function sendJsonText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': JSON_TYPE, 'cache-control': 'no-store', ...headers }).end(text);
}

/** Answers `body` as JSON. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendJsonText(res, status, JSON.stringify(body), headers);
}

/** Answers an error: `{"code","message"}`. */
export function sendError(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  sendJson(res, status, { code, message } satisfies ErrorBody, headers);
}

/**
 * Answers an upgrade with an HTTP error and closes: with a `{"code","message"}`
 * body, or none at all (the admin routes say nothing to a caller without the token).
 */
export function refuseUpgrade(socket: Duplex, status: number, body?: ErrorBody, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : JSON.stringify({ code: body.code, message: body.message });
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`, 'Connection: close'];
  if (body !== undefined) lines.push(`Content-Type: ${JSON_TYPE}`);
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  lines.push(`Content-Length: ${Buffer.byteLength(text)}`);
  // end() flushes the answer, then closes; no WebSocket is ever made.
  socket.end(`${lines.join('\r\n')}\r\n\r\n${text}`);
}

/** A `Retry-After` header saying the seconds until `retryAt` (ISO), at least 1; none when there is no readable `retryAt`. */
export function retryAfterHeader(retryAt: string | undefined, now: number): Record<string, string> {
  if (retryAt === undefined) return {};
  const seconds = Math.max(1, Math.ceil((Date.parse(retryAt) - now) / 1000));
  return Number.isFinite(seconds) ? { 'retry-after': String(seconds) } : {};
}

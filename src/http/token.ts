/**
 * The one token check of the HTTP edge, for the admin API, the client's HTTP
 * routes (`/api/*`) and both WebSocket upgrades. A token comes as
 * `Authorization: Bearer X`, or, where the contract allows it (the WebSocket
 * upgrades and the client's routes, not the admin API), as `?token=X`; the
 * header wins when both are sent. Compared in constant time.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** Where a route takes its token from. */
export type TokenPlace = 'header' | 'header-or-query';

/** Compares secrets in constant time (for equal lengths; length is not secret here). */
export function tokenMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The token of `Authorization: Bearer X`, if sent. */
export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  const match = header === undefined ? null : /^Bearer\s+(.+)$/i.exec(header);
  return match?.[1]?.trim();
}

/** The token of a request: `Authorization: Bearer X`, else `?token=X`. */
export function requestToken(req: IncomingMessage, url: URL): string | undefined {
  return bearerToken(req) ?? url.searchParams.get('token') ?? undefined;
}

/**
 * Whether the request carries `expected` where `place` says; true when no token
 * is set (`expected` undefined: the client token is optional, the admin one is not).
 */
export function hasToken(req: IncomingMessage, url: URL, expected: string | undefined, place: TokenPlace): boolean {
  if (expected === undefined) return true;
  return tokenMatches(place === 'header' ? bearerToken(req) : requestToken(req, url), expected);
}

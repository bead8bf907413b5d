/**
 * Wire contract: the HTTP edge's JSON answers of the door (`GET /c/…`,
 * `POST /api/check`) and the proxy prefix (`GET /?url=…`, `GET /proxy/…`).
 *
 * Most of it is the `/ws` protocol's, declared once in the client package's
 * protocol module (`@coverhelper/client/protocol`) and reused here:
 *
 *   POST /api/check 200     a `done` frame (`DoneFrame`, id null when the body named none)
 *   POST /api/check 400     `{"code","message"}` with the `/ws` codes (`ProtocolErrorCode`)
 *   GET /c/… 502            the failed result's `error` (`ResultError`: `status` for `http_status`)
 *   every other error       `{"code","message"}` (`ErrorBody`; the proxy's 502 also names
 *                           the code in `X-Coverhelper-Error`)
 *
 * Built by src/servers/doorRoute.ts, src/servers/proxyRoute.ts and
 * src/http/respond.ts; read by the tests. Types only, imports only types.
 */
import type { CheckResult, ServerFrame } from '@coverhelper/client/protocol';

/** The one error body of every HTTP route. */
export interface ErrorBody {
  code: string;
  message: string;
}

/** `POST /api/check`'s answer: the body of a `/ws` `done` frame. */
export type DoneFrame = Extract<ServerFrame, { type: 'done' }>;

/** `GET /c/…`'s 502 body: the failed result's error, as results carry it. */
export type ResultError = NonNullable<CheckResult['error']>;

/**
 * Errors with a stable `code`.
 *
 * Every failure a client can see is a `CoverError` whose `code` is one of
 * the protocol's result codes. Causes are kept in `cause` for the log. Whether a
 * failure is worth another try is decided here, from one table keyed by code
 * (`isRetryable`), and nowhere else.
 */
import type { ResultErrorCode } from '@coverhelper/client/protocol';

/** The error codes of results (`result.error.code`): the protocol module's one list. */
export type ErrorCode = ResultErrorCode;

export interface CoverErrorInfo {
  code: ErrorCode;
  message: string;
}

export class CoverError extends Error {
  override readonly name = 'CoverError';
  readonly code: ErrorCode;
  /** For `http_status`: the origin's status; for `resolve_failed`: bilibili's `code`. */
  readonly detail: number | undefined;
  /** For `upstream_limited`: when the cooling host reopens (epoch ms). */
  readonly retryAt: number | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; detail?: number; retryAt?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.detail = options.detail;
    this.retryAt = options.retryAt;
  }

  toInfo(): CoverErrorInfo {
    return { code: this.code, message: this.message };
  }
}

/**
 * Which failures are transient. A retryable error may succeed if tried again
 * later; the others are answers about the URL itself.
 */
const retryableByCode: Record<ErrorCode, boolean> = {
  invalid_url: false,
  not_allowed: false,
  http_status: false, // refined by status below
  too_large: false,
  not_image: false,
  tle: false,
  network: true,
  resolve_failed: false, // refined by bilibili's code below
  disk_full: false, // the resource guard holds downloads while the disk is full
  shutting_down: false,
  cancelled: false,
  // The host cools: the download waits for it to reopen, it is not tried again at once.
  upstream_limited: false,
  // A suffix's variant past --proxy-rate, or its cover replaced meanwhile: answers to this ask, not download failures.
  too_many_requests: false,
  file_missing: false,
};

/**
 * Which failures are about the URL itself, and so answered from memory for
 * `--fail-ttl` instead of being tried again. A local storage fault (`disk_full`)
 * or a shutdown says nothing about the URL: the next ask tries again.
 */
const rememberedByCode: Record<ErrorCode, boolean> = {
  invalid_url: true,
  not_allowed: true,
  http_status: true,
  too_large: true,
  not_image: true,
  tle: true,
  network: true,
  resolve_failed: true,
  disk_full: false,
  shutting_down: false,
  cancelled: false,
  // A refusal of the host (rate, risk control) says nothing of the URL.
  upstream_limited: false,
  too_many_requests: false,
  file_missing: false,
};

/** Whether a failure with this code is remembered as the URL's answer for `--fail-ttl`. */
export function isRemembered(code: string): boolean {
  return (rememberedByCode as Record<string, boolean | undefined>)[code] ?? true;
}

/** HTTP statuses that say "try again later" rather than "no such thing". */
const retryableStatuses = new Set([408, 425, 429, 500, 502, 503, 504]);

/**
 * bilibili API codes that are transient: -500/-503/-504 (server error,
 * overloaded, timeout). The risk-control codes (-412, -352, -799, -509) never
 * reach here as `resolve_failed`: they are the host's refusal (`UpstreamRefusal`,
 * then `upstream_limited`). Others such as -404 (no such video), -400 (bad
 * request), -403 and 62002/62004/62012 (invisible or under review) are permanent.
 */
const retryableBilibiliCodes = new Set([-500, -503, -504]);

/**
 * A failure as answers carry it: `{code, message}`, and for `http_status` the
 * origin's last `status` as a number (a redirect's after too many redirects):
 * from the failure's detail, or, for an outcome heard from another node, which
 * keeps the message only, from its `HTTP <status>`.
 */
export function resultError(failure: { code: string; message: string; detail?: number | undefined }): { code: string; message: string; status?: number } {
  const error = { code: failure.code, message: failure.message };
  if (failure.code !== 'http_status') return error;
  const status = failure.detail ?? Number(/^HTTP ([1-5]\d\d)\b/.exec(failure.message)?.[1]);
  return Number.isInteger(status) && status >= 100 && status <= 599 ? { ...error, status } : error;
}

export function isRetryable(error: { code: ErrorCode; detail?: number | undefined }): boolean {
  if (error.code === 'http_status') return error.detail !== undefined && retryableStatuses.has(error.detail);
  if (error.code === 'resolve_failed') return error.detail !== undefined && retryableBilibiliCodes.has(error.detail);
  return retryableByCode[error.code];
}

/**
 * An upstream refused for rate or risk reasons (HTTP 412/429/503, or a bilibili
 * API answer with code -412, -352, -799 or -509). Not the URL's failure: its
 * host cools down (src/upstream/) and the URL is fetched again when the host reopens.
 */
export class UpstreamRefusal extends Error {
  constructor(
    /** The host that refused (lower case, no port). */
    readonly host: string,
    /** What it answered, for the log and the operator: `HTTP 429`, `API code -352`. */
    readonly why: string,
    /** Its `Retry-After`, in ms, when it sent one. */
    readonly retryAfterMs?: number,
  ) {
    super(`${host} refused: ${why}`);
    this.name = 'UpstreamRefusal';
  }
}

/**
 * An upstream's refusal for rate or risk reasons (`UpstreamRefusal`: HTTP
 * 412/429/503, bilibili API codes -412, -352, -799, -509) as the URL's answer:
 * `upstream_limited`, never remembered against the URL (`isRemembered`) and not
 * retried by the download machine (the host's cooling decides when it is asked again).
 */
export function refusalToCoverError(refusal: UpstreamRefusal, retryAt?: number): CoverError {
  const when = retryAt === undefined ? 'once the host accepts requests' : `from ${new Date(retryAt).toISOString()}, when the host reopens`;
  return new CoverError('upstream_limited', `${refusal.host} refused for rate or risk reasons (${refusal.why}); not this URL's failure: it is fetched again ${when}`, {
    cause: refusal,
    ...(retryAt === undefined ? {} : { retryAt }),
  });
}

/** Turns anything thrown into a `CoverError`; unknown failures count as `network`. */
export function toCoverError(error: unknown): CoverError {
  if (error instanceof CoverError) return error;
  if (error instanceof UpstreamRefusal) return refusalToCoverError(error);
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new CoverError('disk_full', 'no space left for the cover file', { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new CoverError('network', message || 'network failure', { cause: error });
}

/**
 * A failure to store a cover here (writing its file or its row): `disk_full`,
 * never retried against the origin and never remembered as the URL's failure.
 * Its message names the cause so an operator can act: no space, a read-only or
 * unwritable folder, a database that refuses writes.
 */
export function storageFault(error: unknown, what: string): CoverError {
  if (error instanceof CoverError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const detail = error instanceof Error ? error.message : String(error);
  const reason =
    code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL'
      ? 'no space left'
      : code === 'EROFS' || code === 'SQLITE_READONLY'
        ? 'read-only storage'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied'
          : 'storage error';
  return new CoverError('disk_full', `could not store the ${what}: ${reason} (${typeof code === 'string' ? `${code}: ` : ''}${detail})`, { cause: error });
}

/**
 * A start that failed: what failed, where (a path or an option), and what to
 * do. `main` prints it as one line and exits with `exitCode`: 1, or 2 when the
 * configuration is at fault (a node that disagrees with the other nodes of its
 * database: its id taken by a live node, a shared secret that differs).
 */
export class StartError extends Error {
  override readonly name = 'StartError';
  readonly exitCode: 1 | 2;
  constructor(
    /** What failed and where, such as "the database /srv/data/coverhelper.sqlite is not a SQLite database". */
    readonly what: string,
    /** What to do about it. */
    readonly hint: string,
    options: { cause?: unknown; exitCode?: 1 | 2 } = {},
  ) {
    super(`${what}; ${hint}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.exitCode = options.exitCode ?? 1;
  }
}

/** A bad configuration value; `main` prints its message on one line and exits 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(message === 'unknown option' ? `unknown option --${option}` : `invalid --${option}: ${message}`);
  }
}

/**
 * Types shared by the machines and the code that provides their I/O.
 * Plain data only: the machines import nothing but `xstate` and the wire
 * protocol's types (the client package's dependency-free protocol module).
 */
import type { CoverSource } from '@coverhelper/client/protocol';

/** Where a cover came from, as answered to clients: declared once, by the wire protocol. */
export type { CoverSource };

/** A stored cover, as the store records it and clients are told of it. */
export interface StoredCover {
  /** Path relative to the covers folder, with `/` separators. */
  path: string;
  contentType: string;
  bytes: number;
  width: number;
  height: number;
  sha256: string;
  /** The original's size (the stored file's when no original is kept), for answers. */
  originalWidth?: number;
  originalHeight?: number;
  /** The dominant colour, `#rrggbb`; absent for a cover stored before colours were kept, until the colour pass reaches it. */
  color?: string;
}

/** What the `fetchCover` actor resolves with. */
export interface FetchCoverOutput {
  cover: StoredCover;
  source: CoverSource;
  /** Bytes of the body downloaded from the origin (none when answered from the store). */
  fetched?: number;
}

/** The failure shape the machines carry: a stable code and a message. */
export interface FailureInfo {
  code: string;
  message: string;
  /** For `http_status` the origin's status, for `resolve_failed` bilibili's code; not sent to clients. */
  detail?: number | undefined;
  /** For `upstream_limited`: when the URL's host reopens (epoch ms). */
  retryAt?: number | undefined;
}

/** What a finished download hands to every subscriber. */
export type DownloadOutput =
  | { url: string; status: 'ok'; cover: StoredCover; source: CoverSource; fetched?: number }
  /** `retryAt` (epoch ms): answered from a failure remembered until then, without a download. */
  | { url: string; status: 'error'; error: FailureInfo; retryAt?: number };

/** Task statuses as docs/ADMIN.md names them. */
export type TaskStatus = 'waiting' | 'queued' | 'downloading' | 'ok' | 'error' | 'tle';

/**
 * The clock the machines run on, as far as they use it: the shape of src/clock.ts's
 * `Clock` that they need (machines import nothing from src/), and the shape XState's
 * public `clock` option asks for, so the same object serves both.
 */
export interface MachineClock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** A number in [0, 1) (retry jitter). */
  random(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

/** Input of one download actor. */
export interface DownloadInput {
  url: string;
  /** Wall-clock limit for the whole download, retries included. */
  timeLimitMs: number;
  /** Extra tries for transient failures. */
  retries: number;
  /** Draws the retry jitter, a number in [0, 1) (the clock's `random`). */
  random: () => number;
}

/** Input of the `fetchCover` actor: one try at one URL. */
export interface FetchCoverInput {
  url: string;
  /** 1 for the first try. */
  attempt: number;
}

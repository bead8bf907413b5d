/**
 * Resolves a bilibili video page to its cover image URL (README, Administration: which URLs are fetched) through
 * `GET {apiBase}/x/web-interface/view?bvid=…` (or `aid=…`), which answers
 * `{ code, message, data: { pic } }`.
 *
 * The returned URL is not checked against `--allow-hosts` here; the caller does
 * that, as for any other image URL.
 */
import { CoverError } from '../errors.js';
import { UpstreamRefusal } from '../upstream/types.js';
import { getJson } from './download.js';
import type { RequestGate } from './download.js';
import type { HttpClient } from './httpClient.js';
import type { VideoRef } from './urlRules.js';
import { isPrivateHost } from './urlRules.js';

export interface ResolveOptions {
  client: HttpClient;
  /** `--bilibili-api`, such as `https://api.bilibili.com` (a trailing slash is ignored). */
  apiBase: string;
  signal: AbortSignal;
  /** The per-host gate the API request passes. */
  gate?: RequestGate;
  /** The operator's API identity (`--bilibili-cookie`, `--api-user-agent`): sent to the API host only. */
  identity?: ApiIdentity;
}

/** What a view answer says when it is a refusal (`API code -352`), else undefined: read inside the gate, so a probe is judged by it. */
export function apiRefusal(answer: unknown): string | undefined {
  const code = field(answer, 'code');
  return typeof code === 'number' && refusalCodes.has(code) ? `API code ${code}` : undefined;
}

/** What the view API requests carry besides the defaults: never sent to another host. */
export interface ApiIdentity {
  /** The `Cookie` line (`SESSDATA=…; buvid3=…`), already checked (`checkCookieLine`). */
  cookie?: string | undefined;
  /** `User-Agent` of API requests; the client's own when unset. */
  userAgent?: string | undefined;
}

/**
 * Codes that say the video cannot be seen (deleted, private, under review,
 * region-locked, …): the URL's own answer, remembered for `--fail-ttl`.
 */
export const unavailableCodes: ReadonlyMap<number, string> = new Map([
  [-404, 'the video does not exist or was deleted'],
  [62002, 'the video is not visible (made private or hidden by its uploader)'],
  [62004, 'the video is under review'],
  [62012, 'the video is visible to its uploader only'],
]);

/**
 * Risk-control codes: bilibili refuses the caller, not the video. The host
 * cools down and the URL is asked again once it reopens; nothing is remembered
 * against the URL.
 */
export const refusalCodes: ReadonlyMap<number, string> = new Map([
  [-412, 'request blocked by risk control'],
  [-352, 'risk check failed'],
  [-799, 'requests too frequent'],
  [-509, 'over the request limit'],
]);

/** The view API endpoint for a video. */
export function viewApiUrl(video: VideoRef, apiBase: string): URL {
  let url: URL;
  try {
    url = new URL(`${apiBase.replace(/\/+$/, '')}/x/web-interface/view`);
  } catch (error) {
    throw new CoverError('resolve_failed', `bad bilibili API base ${JSON.stringify(apiBase)}`, { cause: error });
  }
  url.searchParams.set(video.param, video.id);
  return url;
}

function field(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
}

/**
 * The cover URL of `video`. Throws `resolve_failed` (with bilibili's `code` as
 * `detail` when it answered one other than 0: a deleted or private video names
 * what its code means) for answers without a usable cover; `UpstreamRefusal`
 * (the API host, `API code -352`) for a risk-control code; and the errors of
 * `getJson` (`http_status`, `network`, an abort) otherwise.
 *
 * A `//host/…` pic becomes https; an `http:` pic is upgraded to https unless its
 * host is a private literal (or localhost) and the client allows private origins.
 */
export async function resolveVideoCover(video: VideoRef, options: ResolveOptions): Promise<URL> {
  const { client, signal, gate, identity } = options;
  const apiUrl = viewApiUrl(video, options.apiBase);
  // The identity goes to the API host only; getJson follows no redirect, so it cannot go further.
  const headers: Record<string, string> = {};
  if (identity?.userAgent !== undefined) headers['user-agent'] = identity.userAgent;
  if (identity?.cookie !== undefined) headers.cookie = identity.cookie;
  const answer = await getJson(apiUrl, { client, signal, headers, refusal: apiRefusal, ...(gate ? { gate } : {}) });

  const code = field(answer, 'code');
  if (typeof code !== 'number') throw new CoverError('resolve_failed', 'bilibili API answer has no numeric code');
  if (code !== 0) {
    const message = field(answer, 'message');
    const text = typeof message === 'string' && message !== '' ? message.slice(0, 200) : 'no message';
    const refused = refusalCodes.get(code);
    if (refused !== undefined) throw new UpstreamRefusal(apiUrl.hostname.toLowerCase(), `API code ${code}`);
    const unavailable = unavailableCodes.get(code);
    if (unavailable !== undefined) {
      throw new CoverError('resolve_failed', `bilibili answered code ${code} (${unavailable}) for ${video.param}=${video.id}: ${text}; the URL is remembered as failed for --fail-ttl`, { detail: code });
    }
    throw new CoverError('resolve_failed', `bilibili answered code ${code}: ${text}`, { detail: code });
  }

  const pic = field(field(answer, 'data'), 'pic');
  if (typeof pic !== 'string' || pic.trim() === '') {
    throw new CoverError('resolve_failed', `bilibili answered no cover for ${video.param}=${video.id}`);
  }
  const raw = pic.trim();
  let url: URL;
  try {
    url = new URL(raw.startsWith('//') ? `https:${raw}` : raw);
  } catch {
    throw new CoverError('resolve_failed', `bilibili answered an invalid cover URL: ${raw}`);
  }
  if (url.protocol === 'http:' && !(client.allowPrivateNetwork && isPrivateHost(url.hostname))) {
    url.protocol = 'https:';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new CoverError('resolve_failed', `bilibili answered a cover URL that is not http(s): ${raw}`);
  }
  return url;
}

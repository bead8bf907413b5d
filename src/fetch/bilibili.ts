/**
 * Resolves a bilibili video page to its cover image URL (SPEC §4) through
 * `GET {apiBase}/x/web-interface/view?bvid=…` (or `aid=…`), which answers
 * `{ code, message, data: { pic } }`.
 *
 * The returned URL is not checked against `--allow-hosts` here; the caller does
 * that, as for any other image URL.
 */
import { CoverError } from '../errors.js';
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
}

/** bilibili's risk-control and rate-limit codes: the API host cools (not the video's failure). */
const refusalCodes = new Set([-412, -352, -799, -509]);

/** What a view answer says when it is a refusal (`API code -352`), else undefined. */
export function apiRefusal(answer: unknown): string | undefined {
  const code = field(answer, 'code');
  return typeof code === 'number' && refusalCodes.has(code) ? `API code ${code}` : undefined;
}

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
 * `detail` when it answered one other than 0) for answers without a usable cover,
 * and the errors of `getJson` (`http_status`, `network`, an abort) otherwise.
 *
 * A `//host/…` pic becomes https; an `http:` pic is upgraded to https unless its
 * host is a private literal (or localhost) and the client allows private origins.
 */
export async function resolveVideoCover(video: VideoRef, options: ResolveOptions): Promise<URL> {
  const { client, signal, gate } = options;
  const answer = await getJson(viewApiUrl(video, options.apiBase), { client, signal, refusal: apiRefusal, ...(gate ? { gate } : {}) });

  const code = field(answer, 'code');
  if (typeof code !== 'number') throw new CoverError('resolve_failed', 'bilibili API answer has no numeric code');
  if (code !== 0) {
    const message = field(answer, 'message');
    const text = typeof message === 'string' && message !== '' ? message : 'no message';
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

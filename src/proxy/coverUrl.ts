/**
 * The cover URL of a proxy request: blogs write `<prefix><cover URL>`
 * by string concatenation, with the prefix `…/?url=` or `…/proxy/`, the cover
 * encoded with `encodeURIComponent` or not, and in any of the forms plugins
 * produce. `coverUrlFromProxyRequest` turns the raw request target (path and
 * query exactly as received) into one normalised absolute URL, the same string
 * for every form of the same cover, so they share one stored cover.
 *
 * Cover URL forms (`normaliseCoverUrl`):
 * - `https://…`, `http://…` as they are (`https:/host/…` too: a proxy in front
 *   that merges slashes makes it);
 * - `//host/…` and scheme-less `host/…` (also `host:port/…`) are taken as https;
 * - any other scheme (`file:`, `data:`, `javascript:`, `ftp:`, `blob:`, …) is
 *   `not_allowed`; no URL, an empty one, or one that does not parse is `bad_request`;
 * - the value is percent-encoded when the part before its first `/` holds a `%`
 *   (a scheme and a host never do): then it is decoded, again while that stays
 *   true (a cover encoded twice), at most three times. A raw URL is not decoded:
 *   its own `%20` stays as it is. A `+` is a plus, never a space;
 * - a bilibili processing suffix (`…/abc.jpg@220w_280h.webp`) that can be read
 *   (src/proxy/bilibiliSuffix.ts) names a variant of the URL without it: `url`
 *   is then that URL (what is checked, downloaded and stored) and `suffix` says
 *   what size and format to make of it. One that cannot be read stays part of
 *   the URL, fetched as the CDN serves it;
 * - a bilibili video page (`https://www.bilibili.com/video/BV…`) is recognised
 *   (`video`): the service resolves it as for `/ws`.
 *
 * `/?url=` shape: the query is split on `&`. Parts before `url=` are weserv
 * parameters. The `url=` value runs to the next `&`; after it, for a raw value
 * (one concatenated unencoded, which may carry its own `?query`):
 * - a part named like a weserv parameter (`w`, `h`, `dpr`, `fit`, `output`, `q`,
 *   `default`, and weserv's others: `n`, `we`, …) is a parameter;
 * - any other part continues the cover's own query when the value has a `?`
 *   (`?url=https://h/a.jpg?x=1&y=2&w=200` is the cover `https://h/a.jpg?x=1&y=2`
 *   with `w=200`), and is ignored when it has none.
 * So a raw cover whose own query has a weserv parameter name (`…/a.jpg?w=5`)
 * loses it to the proxy: encode such a URL. After an encoded value, whose own
 * `&` would be `%26`, parts are parameters, unknown ones ignored. The first
 * `url=` counts.
 *
 * `/proxy/` shape: everything after `/proxy/` is the cover, its `?query`
 * included, when given raw. When the cover is percent-encoded, its query is
 * inside the encoding and a raw `?…` after it holds weserv parameters.
 */
import { classifyUrl } from '../fetch/urlRules.js';
import type { VideoRef } from '../fetch/urlRules.js';
import { readBilibiliSuffix } from './bilibiliSuffix.js';
import type { BilibiliSuffix } from './bilibiliSuffix.js';
import { addWeservParam, noParams } from './weserv.js';
import type { WeservParams } from './weserv.js';

/** Longest cover URL taken, as on `/ws`. */
export const MAX_COVER_URL_LENGTH = 8192;

/** The path prefix of the `/proxy/` shape. */
export const PROXY_PATH_PREFIX = '/proxy/';

export type ProxyErrorCode = 'bad_request' | 'not_allowed';

export interface ProxyError {
  ok: false;
  code: ProxyErrorCode;
  message: string;
  /** True for `GET /` (or `/?…`) without a `url` parameter: the route may answer its home page instead. */
  noUrl?: true;
}

export interface ProxyCover {
  ok: true;
  /**
   * The normalised cover URL (`URL.href`): the key the cover is stored under.
   * Without the bilibili suffix when there is a readable one.
   */
  url: string;
  /** A readable bilibili suffix the URL was given with (removed from `url`): the variant asked. */
  suffix: BilibiliSuffix | undefined;
  /** Set when `url` is a bilibili video page, resolved to its cover as on `/ws`. */
  video: VideoRef | undefined;
  /** The weserv parameters given with it. */
  params: WeservParams;
  /** Which prefix the request used. */
  shape: 'query' | 'path';
}

export type ProxyCoverResult = ProxyCover | ProxyError;

const fail = (code: ProxyErrorCode, message: string): ProxyError => ({ ok: false, code, message });

/** A leading `scheme:`; `host:port` (digits, then `/`, `?`, `#` or the end) is not one. */
const schemePattern = /^([a-z][a-z0-9+.-]*):/i;
const hostPortPattern = /^[a-z0-9][a-z0-9.-]*:\d+(?:[/?#]|$)/i;

/** Whether the part of `value` before its first `/` holds a `%`: the mark of an encoded URL. */
function looksEncoded(value: string): boolean {
  const slash = value.indexOf('/');
  return (slash === -1 ? value : value.slice(0, slash)).includes('%');
}

/** `value` decoded while it looks encoded (at most three times); undefined for bad percent-encoding. */
function decodeCover(value: string): { text: string; decoded: boolean } | undefined {
  let text = value;
  let decoded = false;
  for (let i = 0; i < 3 && looksEncoded(text); i++) {
    try {
      text = decodeURIComponent(text);
    } catch {
      return undefined;
    }
    decoded = true;
  }
  return { text, decoded };
}

/** `decodeURIComponent`, or the text as it is when it is not valid percent-encoding. */
function decodePart(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * One cover URL, already percent-decoded if it was encoded, as an absolute
 * http(s) URL (see the module comment for the forms), or why not.
 */
export function normaliseCoverUrl(value: string): { ok: true; url: URL } | ProxyError {
  const text = value.trim();
  if (text === '') return fail('bad_request', 'the url parameter is empty');
  if (text.length > MAX_COVER_URL_LENGTH) return fail('bad_request', `the cover URL is longer than ${MAX_COVER_URL_LENGTH} characters`);
  let candidate: string;
  if (text.startsWith('//')) {
    candidate = `https:${text}`;
  } else if (text.startsWith('/') || text.startsWith('\\')) {
    return fail('bad_request', 'the cover URL has no host');
  } else {
    const scheme = schemePattern.exec(text);
    if (scheme && !hostPortPattern.test(text)) {
      const name = scheme[1]!.toLowerCase();
      if (name !== 'http' && name !== 'https') return fail('not_allowed', `not an http(s) URL (${name})`);
      candidate = text;
    } else {
      candidate = `https://${text}`;
    }
  }
  let url: URL;
  try {
    url = new URL(candidate);
  } catch {
    return fail('bad_request', 'the cover URL is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return fail('not_allowed', `not an http(s) URL (${url.protocol.slice(0, -1)})`);
  if (url.hostname === '') return fail('bad_request', 'the cover URL has no host');
  return { ok: true, url };
}

/**
 * A cover URL given as a parameter value (`default=`), percent-encoded or not,
 * normalised as `normaliseCoverUrl` does.
 */
export function normaliseCoverValue(value: string): { ok: true; url: URL } | ProxyError {
  const decoded = decodeCover(value);
  if (decoded === undefined) return fail('bad_request', 'not valid percent-encoding');
  return normaliseCoverUrl(decoded.text);
}

/** A successful parse, with the video page recognised. */
function cover(url: URL, params: WeservParams, shape: ProxyCover['shape']): ProxyCover {
  const suffix = readBilibiliSuffix(url.href);
  const href = suffix === undefined ? url.href : suffix.base;
  const kind = classifyUrl(href, []);
  return { ok: true, url: href, suffix, video: kind.kind === 'video' ? kind : undefined, params, shape };
}

/** Splits `name=value` (the name percent-decoded); `hasValue` false for a part without `=`. */
function splitPart(part: string): { name: string; value: string; hasValue: boolean } {
  const eq = part.indexOf('=');
  if (eq === -1) return { name: decodePart(part), value: '', hasValue: false };
  return { name: decodePart(part.slice(0, eq)), value: part.slice(eq + 1), hasValue: true };
}

/** Reads `parts` as weserv parameters into `params` (unknown names and parts without `=` are ignored). */
function readParams(parts: readonly string[], params: WeservParams): void {
  for (const part of parts) {
    const { name, value, hasValue } = splitPart(part);
    if (hasValue) addWeservParam(params, name, decodePart(value));
  }
}

function fromQuery(query: string): ProxyCoverResult {
  const parts = query === '' ? [] : query.split('&');
  const at = parts.findIndex((part) => splitPart(part).name === 'url' && part.includes('='));
  const params = noParams();
  if (at === -1) return { ...fail('bad_request', 'no url parameter: use /?url=<cover URL> or /proxy/<cover URL>'), noUrl: true };
  readParams(parts.slice(0, at), params);
  const raw = splitPart(parts[at]!).value;
  const decoded = decodeCover(raw);
  if (decoded === undefined) return fail('bad_request', 'the url parameter is not valid percent-encoding');
  let value = decoded.text;
  const rest = parts.slice(at + 1);
  if (decoded.decoded) {
    readParams(rest, params);
  } else {
    const ownQuery = value.includes('?');
    for (const part of rest) {
      const { name, value: paramValue, hasValue } = splitPart(part);
      if (hasValue && addWeservParam(params, name, decodePart(paramValue))) continue;
      if (ownQuery) value += `&${part}`;
    }
  }
  const normal = normaliseCoverUrl(value);
  return normal.ok ? cover(normal.url, params, 'query') : normal;
}

function fromPath(rest: string): ProxyCoverResult {
  const params = noParams();
  if (!looksEncoded(rest)) {
    const normal = normaliseCoverUrl(rest);
    return normal.ok ? cover(normal.url, params, 'path') : normal;
  }
  const q = rest.indexOf('?');
  const decoded = decodeCover(q === -1 ? rest : rest.slice(0, q));
  if (decoded === undefined) return fail('bad_request', 'the cover URL is not valid percent-encoding');
  if (q !== -1) readParams(rest.slice(q + 1).split('&'), params);
  const normal = normaliseCoverUrl(decoded.text);
  return normal.ok ? cover(normal.url, params, 'path') : normal;
}

/**
 * The cover a proxy request names, from its raw request target (`req.url`:
 * path and query as received, e.g. `/?url=https%3A%2F%2Fi0.hdslb.com%2Fa.jpg&w=200`
 * or `/proxy/https://i0.hdslb.com/a.jpg@220w_280h.webp`), or why not. A target
 * that is neither `/` (with a query) nor under `/proxy/` is `bad_request`: the
 * route only calls this for those two. Whether the cover may be fetched is
 * `checkProxyCover`'s business.
 */
export function coverUrlFromProxyRequest(target: string): ProxyCoverResult {
  if (target.length > MAX_COVER_URL_LENGTH + 1024) return fail('bad_request', 'the request target is too long');
  if (target.startsWith(PROXY_PATH_PREFIX)) {
    const rest = target.slice(PROXY_PATH_PREFIX.length);
    if (rest === '' || rest.startsWith('?')) return fail('bad_request', 'no cover URL after /proxy/');
    return fromPath(rest);
  }
  const q = target.indexOf('?');
  const pathname = q === -1 ? target : target.slice(0, q);
  if (pathname !== '/') return fail('bad_request', 'not a proxy request: use /?url=<cover URL> or /proxy/<cover URL>');
  return fromQuery(q === -1 ? '' : target.slice(q + 1));
}

/**
 * Which URLs are handled (README, Administration: which URLs are fetched).
 *
 * - `classifyUrl` sorts an input URL into an image to download, a bilibili video
 *   page to resolve, or something to skip.
 * - `hostAllowed` matches a hostname against `--allow-hosts` patterns.
 * - `isPrivateHost` says whether a hostname names a private origin without DNS
 *   (`localhost`, or an IP literal `isPrivateAddress` refuses; see
 *   `privateAddress.ts`, which the HTTP client's connector uses on every connection).
 */
import { isPrivateAddress } from './privateAddress.js';

/** A bilibili video page, by the parameter the view API takes. */
export interface VideoRef {
  kind: 'video';
  /** `bvid` for `/video/BV…` pages, `aid` for `/video/av123` pages. */
  param: 'bvid' | 'aid';
  /** The id as the API wants it: `BV1xx411c7mD` or `170001`. */
  id: string;
}

/**
 * What to do with an input URL.
 *
 * `video` is `{ kind: 'video', param: 'bvid' | 'aid', id }` rather than two shapes
 * keyed by `bvid` / `aid`: one field tells the resolver which query parameter to send.
 */
/** `skip` says why, in words an operator can act on. */
export type UrlKind = { kind: 'image'; url: URL } | VideoRef | { kind: 'skip'; reason: string };

const bilibiliHosts = new Set(['www.bilibili.com', 'bilibili.com', 'm.bilibili.com']);
const bvPath = /^\/video\/(bv[0-9a-z]{10})\/?$/i;
const avPath = /^\/video\/av([1-9][0-9]{0,18})\/?$/i;

/** Lower case, without the trailing dot of a fully qualified name. */
function normalHost(hostname: string): string {
  const h = hostname.toLowerCase();
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

/**
 * Sorts an input URL (README, Administration: which URLs are fetched).
 *
 * - bilibili video pages (`http(s)://[www.|m.]bilibili.com/video/BV…` or `…/video/av123`,
 *   with or without trailing slash, query or fragment) are `video`, whatever the allow list;
 * - other http(s) URLs whose host matches `allowHosts` are `image`;
 * - everything else (unparsable, other schemes, hosts not allowed, URLs carrying
 *   user:password) is `skip`.
 */
export function classifyUrl(input: string, allowHosts: readonly string[]): UrlKind {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return { kind: 'skip', reason: 'not a URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { kind: 'skip', reason: `not an http(s) URL (${url.protocol.slice(0, -1)})` };
  if (url.username !== '' || url.password !== '') return { kind: 'skip', reason: 'the URL carries a user name or password' };
  if (url.hostname === '') return { kind: 'skip', reason: 'the URL has no host' };

  if (bilibiliHosts.has(normalHost(url.hostname))) {
    const bv = bvPath.exec(url.pathname);
    if (bv) return { kind: 'video', param: 'bvid', id: `BV${bv[1]!.slice(2)}` };
    const av = avPath.exec(url.pathname);
    if (av) return { kind: 'video', param: 'aid', id: av[1]! };
  }

  if (hostAllowed(url.hostname, allowHosts)) return { kind: 'image', url };
  return { kind: 'skip', reason: `host ${url.hostname} is not in --allow-hosts` };
}

/**
 * Whether `hostname` (as `URL.hostname` gives it; IPv6 in brackets) matches one of
 * the `--allow-hosts` patterns: `host` exactly, `*.domain` any subdomain of domain
 * (not domain itself), `*` anything. Case-insensitive; a trailing dot is ignored.
 */
export function hostAllowed(hostname: string, patterns: readonly string[]): boolean {
  const host = normalHost(hostname);
  if (host === '') return false;
  for (const raw of patterns) {
    const pattern = normalHost(raw.trim());
    if (pattern === '*') return true;
    if (pattern.startsWith('*.')) {
      const suffix = pattern.slice(1); // ".domain"
      if (host.length > suffix.length && host.endsWith(suffix)) return true;
    } else if (pattern !== '' && pattern === host) {
      return true;
    }
  }
  return false;
}

/**
 * Whether a hostname (as `URL.hostname` gives it) names a private origin without
 * a DNS lookup: a private IP literal (IPv6 with or without brackets), or
 * `localhost` / `*.localhost`. Names that need DNS answer false here; the
 * connector checks what they resolve to.
 */
export function isPrivateHost(hostname: string): boolean {
  const host = normalHost(hostname);
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  return isPrivateAddress(host);
}

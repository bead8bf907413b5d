/**
 * Only what `/ws` would fetch is fetched through the proxy: an image
 * URL on `--allow-hosts`, or a bilibili video page. Everything else is
 * `not_allowed` before any connection is made. On top of `/ws`'s rules, a host
 * that is a private address literal (or `localhost`) is refused here unless
 * `--allow-private-network`: with `--proxy open` and `--allow-hosts *` that
 * is the one thing between a page and the machine's own network before DNS
 * (names that resolve to private addresses are refused by the HTTP client's
 * connector, as for every download).
 */
import { classifyUrl, isPrivateHost } from '../fetch/urlRules.js';
import type { Config } from '../config.js';
import { normaliseCoverValue } from './coverUrl.js';
import type { ProxyError } from './coverUrl.js';

export type ProxyRules = Pick<Config, 'allowHosts' | 'allowPrivateNetwork'>;

export type ProxyPermission = { ok: true; kind: 'image' | 'video' } | ProxyError;

/** Whether the normalised cover URL `url` (`ProxyCover.url`) may be fetched, and as what. */
export function checkProxyCover(url: string, rules: ProxyRules): ProxyPermission {
  const kind = classifyUrl(url, rules.allowHosts);
  if (kind.kind === 'skip') return { ok: false, code: 'not_allowed', message: kind.reason };
  if (kind.kind === 'image' && !rules.allowPrivateNetwork && isPrivateHost(kind.url.hostname)) {
    return { ok: false, code: 'not_allowed', message: `host ${kind.url.hostname} is a private address` };
  }
  return { ok: true, kind: kind.kind };
}

/**
 * Where a `default=` value may send the browser: its URL normalised like a
 * cover's (`//host/…`, scheme-less, encoded) when it is an image URL the same
 * rules allow, else `undefined` (then the placeholder is answered instead).
 */
export function defaultRedirect(value: string | undefined, rules: ProxyRules): string | undefined {
  if (value === undefined) return undefined;
  const normal = normaliseCoverValue(value);
  if (!normal.ok) return undefined;
  const permission = checkProxyCover(normal.url.href, rules);
  return permission.ok && permission.kind === 'image' ? normal.url.href : undefined;
}

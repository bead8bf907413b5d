/**
 * The dashboard's files (`GET /admin/`, `/admin/dashboard.js`, `/admin/dashboard.css`),
 * from src/admin/dashboard/ (copied beside the built modules by `npm run build`).
 *
 * Only the names listed here are served: no part of the request path reaches
 * the filesystem. Each file is read once. Every answer carries a
 * Content-Security-Policy that allows scripts and styles from this origin only
 * (no inline script, no `eval`), so an injected URL or error message can never run.
 * `/admin` (no slash) is redirected to `/admin/`, so the page's relative links
 * (`dashboard.js`, `api/…`, `ws`) resolve under it, also behind a path prefix.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';

export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self' ws: wss:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Request path → the file under src/admin/dashboard/ and its type. */
const ASSETS: ReadonlyMap<string, { file: string; type: string }> = new Map([
  ['/admin/', { file: 'index.html', type: 'text/html; charset=utf-8' }],
  ['/admin/dashboard.js', { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' }],
  ['/admin/dashboard.css', { file: 'dashboard.css', type: 'text/css; charset=utf-8' }],
]);

/** Every path `serveDashboard` answers: the route table's entries for the dashboard. */
export const DASHBOARD_PATHS: readonly string[] = ['/admin', ...ASSETS.keys()];

const cache = new Map<string, Buffer>();

/** The bytes of one dashboard file (by its name under src/admin/dashboard/), read once. */
export function dashboardFile(file: string): Buffer {
  let body = cache.get(file);
  if (body === undefined) {
    body = readFileSync(new URL(`./dashboard/${file}`, import.meta.url));
    cache.set(file, body);
  }
  return body;
}

/** Answers a GET/HEAD of the dashboard; false when `pathname` is not one of its files. */
export function serveDashboard(req: IncomingMessage, res: ServerResponse, pathname: string): boolean {
  const headers = {
    'content-security-policy': DASHBOARD_CSP,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-cache',
  };
  if (pathname === '/admin') {
    // Relative, so it also works behind a proxy that adds a path prefix.
    res.writeHead(301, { ...headers, location: 'admin/', 'content-length': '0' }).end();
    return true;
  }
  const asset = ASSETS.get(pathname);
  if (asset === undefined) return false;
  const body = dashboardFile(asset.file);
  res.writeHead(200, { ...headers, 'content-type': asset.type, 'content-length': String(body.length) });
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}

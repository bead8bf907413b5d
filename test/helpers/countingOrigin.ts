/**
 * An origin on 127.0.0.1 that counts what reaches it (when, how many at once,
 * how often each image was served) and refuses on demand: for the tests of the
 * per-host limits and of cooling.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { makeImage } from './origin.js';

export interface Hit {
  path: string;
  at: number;
  status: number;
}

/** An origin that serves /img/<name>.jpg (64×40, or `size`) after `delayMs` (and after what `hold` returns), and refuses while `refuse` says so. */
export async function countingOrigin(
  t: TestContext,
  options: {
    delayMs?: number;
    refuse?: (hit: number) => { status: number; headers?: Record<string, string> } | undefined;
    hold?: (hit: number) => Promise<void> | undefined;
    size?: { width: number; height: number };
  } = {},
) {
  const hits: Hit[] = [];
  let open = 0;
  let maxOpen = 0;
  const served = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const hit: Hit = { path: url.pathname, at: Date.now(), status: 200 };
    hits.push(hit);
    open++;
    maxOpen = Math.max(maxOpen, open);
    res.once('close', () => open--);
    const number = hits.length;
    const refusal = options.refuse?.(number);
    if (refusal) {
      hit.status = refusal.status;
      res.writeHead(refusal.status, refusal.headers ?? {}).end('slow down');
      return;
    }
    const m = /^\/img\/(.+)\.jpg$/.exec(url.pathname);
    if (!m) {
      hit.status = 404;
      res.writeHead(404).end();
      return;
    }
    void makeImage(m[1]!, 'jpeg', options.size?.width ?? 64, options.size?.height ?? 40).then(async (body) => {
      await options.hold?.(number);
      if (options.delayMs) await new Promise((resolve) => setTimeout(resolve, options.delayMs));
      served.set(url.pathname, (served.get(url.pathname) ?? 0) + 1);
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length }).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits, served, maxOpen: () => maxOpen };
}

/**
 * nginx as the HTTP door's peer: every request under `/c/` answered with a
 * static `302` to one fixed cover URL, with the door's `Cache-Control`, no
 * logging, HTTP/1.1 keep-alive. The least work a redirect can take: what a
 * signed cover URL's redirect is measured against (bench/door.ts).
 */
import { startNginxServer } from './nginxServer.js';
import type { RunningNginx } from './nginxServer.js';

export type RedirectNginx = RunningNginx;

/** Starts `binary` with `workers` worker processes, redirecting `/c/…` to `location`. */
export function startRedirectNginx(binary: string, dir: string, location: string, workers: number): Promise<RedirectNginx> {
  return startNginxServer(binary, dir, workers, {
    writer: 'bench/lib/nginxRedirect.ts',
    server: `    location /c/ {
      add_header Cache-Control "public, max-age=3600" always;
      return 302 ${location};
    }`,
    probe: async (url) => (await fetch(`${url}/c/probe`, { redirect: 'manual' })).status === 302,
  });
}

/**
 * nginx as the proxy prefix's peer: the static file server a blog owner would
 * put in front of a folder of covers, `location /covers/ { root …; }`, with
 * Debian's default `sendfile on` and `tcp_nopush on`, image MIME types, no
 * logging, HTTP/1.1 keep-alive. What a stored cover answered from disk is
 * measured against (bench/proxy.ts).
 */
import { startNginxServer } from './nginxServer.js';
import type { RunningNginx } from './nginxServer.js';

export type StaticNginx = RunningNginx;

/**
 * Starts `binary` with `workers` worker processes serving `<root>/covers/…` at
 * `/covers/…`; `probe` is a path under `/covers/` that exists (waited for as a 200).
 */
export function startStaticNginx(binary: string, dir: string, root: string, probe: string, workers: number): Promise<StaticNginx> {
  return startNginxServer(binary, dir, workers, {
    writer: 'bench/lib/nginxStatic.ts',
    http: `  sendfile on;
  tcp_nopush on;
  types {
    image/jpeg jpg jpeg;
    image/png png;
    image/webp webp;
    image/gif gif;
    image/avif avif;
  }
  default_type application/octet-stream;`,
    server: `    location /covers/ {
      root ${root};
      add_header Cache-Control "public, max-age=2592000" always;
    }`,
    probe: async (url) => {
      const res = await fetch(`${url}${probe}`);
      await res.arrayBuffer();
      return res.status === 200;
    },
  });
}

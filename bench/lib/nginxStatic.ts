/**
 * nginx as the proxy prefix's peer: the static file server a blog owner would
 * put in front of a folder of covers, `location /covers/ { root …; }`, with
 * Debian's default `sendfile on` and `tcp_nopush on`, image MIME types, no
 * logging, HTTP/1.1 keep-alive. What a stored cover answered from disk is
 * measured against (bench/proxy.ts).
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from './nginx.js';
import { track } from './service.js';

export interface StaticNginx {
  url: string;
  close(): Promise<void>;
}

/**
 * Starts `binary` with `workers` worker processes serving `<root>/covers/…` at
 * `/covers/…`; `probe` is a path under `/covers/` that exists (waited for as a 200).
 */
export async function startStaticNginx(binary: string, dir: string, root: string, probe: string, workers: number): Promise<StaticNginx> {
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const conf = `# written by coverhelper bench/lib/nginxStatic.ts
${asRoot ? 'user root;' : ''}
daemon off;
master_process on;
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  types {
    image/jpeg jpg jpeg;
    image/png png;
    image/webp webp;
    image/gif gif;
    image/avif avif;
  }
  default_type application/octet-stream;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location /covers/ {
      root ${root};
      add_header Cache-Control "public, max-age=2592000" always;
    }
  }
}
`;
  const file = path.join(dir, 'nginx.conf');
  await writeFile(file, conf);
  const child = spawn(binary, ['-p', dir, '-c', file, '-e', path.join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  track(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${stderr}`);
    const up = await fetch(`${url}${probe}`).then(
      async (res) => {
        await res.arrayBuffer();
        return res.status === 200;
      },
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not serve ${url}${probe} within 10 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url,
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * nginx as the HTTP door's peer: every request under `/c/` answered with a
 * static `302` to one fixed cover URL, with the door's `Cache-Control`, no
 * logging, HTTP/1.1 keep-alive. The least work a redirect can take: what a
 * signed cover URL's redirect is measured against (bench/door.ts).
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from './nginx.js';
import { track } from './service.js';

export interface RedirectNginx {
  url: string;
  close(): Promise<void>;
}

/** Starts `binary` with `workers` worker processes, redirecting `/c/…` to `location`. */
export async function startRedirectNginx(binary: string, dir: string, location: string, workers: number): Promise<RedirectNginx> {
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const conf = `# written by coverhelper bench/lib/nginxRedirect.ts
${asRoot ? 'user root;' : ''}
daemon off;
master_process on;
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location /c/ {
      add_header Cache-Control "public, max-age=3600" always;
      return 302 ${location};
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
    const up = await fetch(`${url}/c/probe`, { redirect: 'manual' }).then(
      (res) => res.status === 302,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not answer on ${url} within 10 s: ${stderr}`);
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

/**
 * One nginx in the foreground for a bench, on a free loopback port: the config's
 * frame (workers, pid, logs, temp paths, keep-alive, no access log) around the
 * `http { … }` lines a peer needs, started, waited for until `probe` says it
 * answers, and stopped with SIGTERM. The peers (nginxRedirect.ts, nginxStatic.ts)
 * are only their lines and their probe.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from './nginx.js';
import { track } from './service.js';

export interface RunningNginx {
  url: string;
  close(): Promise<void>;
}

export interface NginxServerOptions {
  /** Which file wrote the config (its first line says so). */
  writer: string;
  /** Lines inside `http { … }` before the server block. */
  http?: string;
  /** Lines inside `server { … }` after its `listen`. */
  server: string;
  /** Whether nginx answers yet, asked every 50 ms for up to 10 s. */
  probe: (url: string) => Promise<boolean>;
}

/** Starts `binary` with `workers` worker processes in `dir`. */
export async function startNginxServer(binary: string, dir: string, workers: number, options: NginxServerOptions): Promise<RunningNginx> {
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const conf = `# written by coverhelper ${options.writer}
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
${options.http ?? ''}
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
${options.server}
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
    if (await options.probe(url).catch(() => false)) break;
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

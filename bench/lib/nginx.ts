/**
 * nginx as the herd scenario's peer: a caching reverse proxy with
 * `proxy_cache_lock on` in front of the same origin, on 127.0.0.1, speaking
 * HTTP/2 without TLS (prior knowledge) so that one connection can ask for 200
 * URLs at once, as one coverhelper WebSocket does.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { track } from './service.js';

export interface Nginx {
  url: string;
  close(): Promise<void>;
  errors(): Promise<string>;
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nginx did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The hard limit on open files this process (and so nginx) may raise itself to. */
function openFilesHardLimit(): number {
  try {
    const m = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m?.[1] === 'unlimited' ? 262_144 : Math.min(262_144, Number(m?.[1] ?? 4096));
  } catch {
    return 4096;
  }
}

export async function startNginx(binary: string, dir: string, originUrl: string): Promise<Nginx> {
  await mkdir(path.join(dir, 'cache'), { recursive: true });
  const port = await freePort();
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const conf = `# written by coverhelper bench/lib/nginx.ts
${asRoot ? 'user root;' : ''}
daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile ${openFilesHardLimit()};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  # 100,000 streams at once would each hold the cached file open; share the descriptors.
  open_file_cache max=10000 inactive=60s;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=covers:16m max_size=2g inactive=60m use_temp_path=off;
  server {
    listen 127.0.0.1:${port} http2;
    http2_max_concurrent_streams 256;
    location / {
      proxy_pass ${originUrl};
      proxy_cache covers;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 30s;
      proxy_cache_lock_age 30s;
      proxy_cache_valid 200 1h;
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
  try {
    await waitForPort(port, child, 10_000);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`${(error as Error).message}: ${stderr}`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    errors: () => readFile(path.join(dir, 'error.log'), 'utf8').catch(() => ''),
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * The main-thread cost of `downloadImage` (src/fetch/download.ts) alone, for
 * comparing two versions of it side by side (not a scenario of `npm run bench`).
 *
 *   node --import tsx bench/downloadRead.ts [downloads=3000] [kb=50]
 *
 * An origin in a child process on 127.0.0.1 serves one body of `kb` KB; this
 * process downloads it `downloads` times, 16 at a time, through the service's
 * own client and `downloadImage` (size limit, AbortSignal, progress callback as
 * the service passes them), and prints its CPU per download in µs (the origin's
 * CPU is not in it). Run it from two git worktrees alternately and compare.
 */
import { fork } from 'node:child_process';
import { createHttpClient, downloadImage } from '../src/fetch/index.js';
import { log } from './lib/report.js';

const downloads = Number(process.argv[2] ?? 3000);
const kb = Number(process.argv[3] ?? 50);

if (process.argv[2] === 'origin') {
  const http = await import('node:http');
  const body = Buffer.alloc(Number(process.argv[3]) * 1024, 7);
  const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length }).end(body));
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as { port: number }).port));
  process.on('disconnect', () => process.exit(0));
} else {
  const origin = fork(new URL(import.meta.url).pathname, ['origin', String(kb)], { execArgv: process.execArgv });
  const port = await new Promise<number>((resolve) => origin.once('message', (m) => resolve(m as number)));
  const client = createHttpClient({ allowPrivateNetwork: true, userAgent: 'bench' });
  const url = new URL(`http://127.0.0.1:${port}/a.jpg`);
  const run = async (n: number) => {
    let next = 0;
    const worker = async () => {
      while (next++ < n) {
        const controller = new AbortController();
        let seen = 0;
        const { body } = await downloadImage(url, { client, allowHosts: ['127.0.0.1'], maxBytes: 10 * 1024 * 1024, signal: controller.signal, onProgress: (bytes) => (seen = bytes) });
        if (body.length !== kb * 1024 || seen !== body.length) throw new Error('short body');
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
  };
  await run(500);
  const before = process.cpuUsage();
  await run(downloads);
  const cpu = process.cpuUsage(before);
  log(JSON.stringify({ downloads, kb, cpuUsPerDownload: +((cpu.user + cpu.system) / downloads).toFixed(1) }));
  await client.close();
  origin.disconnect();
}

/**
 * The service's main-thread CPU per cold download, for comparing two versions
 * of the download path side by side (not a scenario of `npm run bench`).
 *
 *   node --import tsx bench/downloadCost.ts [downloads=1000] [runs=3] [size=small|large]
 *
 * Starts the real service (`--workers 16 --resize off`) and an origin on
 * 127.0.0.1 in this process (bench/lib/bulkOrigin.ts: `small` 64×40 JPEGs, so
 * decoding is cheap and the service's own bookkeeping per download shows; or
 * `large` 640×400), warms the service up with 200 downloads, then sends
 * `runs` checks of `downloads` new URLs each (one check of up to 1,000 per
 * frame) and times each until its `done` frames. Per run it prints the
 * service's CPU per download, its main thread's (where JavaScript runs:
 * /proc/<pid>/task/<pid>/stat) and the whole process's (/proc/<pid>/stat), in
 * µs, and the wall time; then the medians as one JSON line. Run it from two
 * git worktrees alternately (A B A B …) and compare the medians: on a shared
 * machine only the ratios of runs taken close together mean anything.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import { mainThreadCpuSeconds, procCpuSeconds, startBenchService, stopService } from './lib/service.js';
import { log } from './lib/report.js';
import { median } from './lib/stats.js';
import { checkFrame, closeSocket, openSocket } from './lib/wsLoad.js';

const downloads = Number(process.argv[2] ?? 1000);
const runs = Number(process.argv[3] ?? 3);
const size = process.argv[4] === 'large' ? 'large' : 'small';

const origin = await startBulkOrigin(size);
const dir = await mkdtemp(path.join(os.tmpdir(), 'coverhelper-cost-'));
const service = await startBenchService({ dataDir: `${dir}/data`, coversDir: `${dir}/covers`, workers: 16, resize: 'off' });
const pid = service.child.pid!;
const ws = await openSocket(service.wsUrl);
let seq = 0;

async function run(set: string, count: number): Promise<{ main: number; all: number; ms: number }> {
  const urls = Array.from({ length: count }, (_, i) => origin.imageUrl(set, i));
  const frames = Array.from({ length: Math.ceil(count / 1000) }, () => checkFrame(`h${String(seq++).padStart(8, '0')}`, urls.splice(0, 1000)));
  const all0 = procCpuSeconds(pid);
  const main0 = mainThreadCpuSeconds(pid);
  const start = performance.now();
  const ok = await new Promise<number>((resolve) => {
    let done = 0;
    let okCount = 0;
    const onMessage = (data: Buffer) => {
      const head = data.toString('latin1', 0, 60);
      if (!head.startsWith('{"type":"done"')) return;
      okCount += Number(/"ok":(\d+)/.exec(head)?.[1] ?? 0);
      if (++done === frames.length) {
        ws.off('message', onMessage);
        resolve(okCount);
      }
    };
    ws.on('message', onMessage);
    for (const frame of frames) ws.send(frame, { binary: false });
  });
  const ms = performance.now() - start;
  if (ok !== count) throw new Error(`${set}: ${ok} of ${count} ok`);
  return { main: ((mainThreadCpuSeconds(pid) - main0) / count) * 1e6, all: ((procCpuSeconds(pid) - all0) / count) * 1e6, ms };
}

try {
  await run('warm', 200);
  const results = [];
  for (let r = 0; r < runs; r++) {
    const result = await run(`r${r}`, downloads);
    results.push(result);
    log(`run ${r + 1}: main thread ${result.main.toFixed(0)} µs/download, process ${result.all.toFixed(0)} µs/download, ${result.ms.toFixed(0)} ms`);
  }
  log(
    JSON.stringify({
      downloads,
      runs,
      size,
      mainUs: Math.round(median(results.map((r) => r.main))),
      allUs: Math.round(median(results.map((r) => r.all))),
      ms: Math.round(median(results.map((r) => r.ms))),
    }),
  );
} finally {
  await closeSocket(ws);
  await stopService(service);
  await origin.close();
  await rm(dir, { recursive: true, force: true });
}

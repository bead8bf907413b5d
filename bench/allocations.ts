/**
 * What a burst of checks allocates, and the memory it peaks at: a profiling tool
 * for the memory scenario (not part of `npm run bench`).
 *
 *   node --import tsx bench/allocations.ts [URLS] [--held]     (default 100,000)
 *
 * Sends URLS distinct small-image URLs as checks of 1,000, all at once (the
 * memory scenario's worst case), samples /metrics and /proc every 50 ms for the
 * peaks of RSS, V8 heap used and committed, and external memory, and records a
 * sampling allocation profile through the inspector that keeps what the GC
 * already collected (so it shows garbage, not only what is live), summed by the
 * last four frames. With `--held` the origin holds every request, so the burst
 * is measured with every URL in flight and nothing finished.
 */
import { Inspector } from './lib/inspector.js';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import { log, mb, num, step } from './lib/report.js';
import { metrics, procMemory, runScenario, sleep, startBenchService, stopService, tempDir, waitIdle } from './lib/service.js';
import { checkFrame, closeSocket, openSocket } from './lib/wsLoad.js';

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

const GAUGES = ['process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_heap_size_total_bytes', 'nodejs_external_memory_bytes'];

/** Allocated bytes by the innermost four frames (innermost first). */
function summarise(head: ProfileNode, top: number): void {
  const by = new Map<string, number>();
  let total = 0;
  const walk = (node: ProfileNode, stack: string[]) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const frame = `${functionName || '(anonymous)'} ${url.replace(/.*node_modules\//, '').replace(/^.*?\/(src|machines)\//, '$1/')}:${lineNumber + 1}`;
    const here = [...stack, frame];
    if (node.selfSize > 0) {
      total += node.selfSize;
      const key = here.slice(-4).reverse().join(' < ');
      by.set(key, (by.get(key) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, here);
  };
  walk(head, []);
  log(`\nallocated during the burst (sampled, collected objects included): ${mb(total)}`);
  for (const [key, size] of [...by].sort((a, b) => b[1] - a[1]).slice(0, top)) log(`  ${mb(size).padStart(10)}  ${key}`);
}

runScenario('allocations', 10 * 60_000, async () => {
  const count = Number(process.argv.slice(2).find((arg) => /^\d+$/.test(arg)) ?? 100_000);
  const held = process.argv.includes('--held');
  const dir = await tempDir('allocations');
  const origin = await startBulkOrigin('small');
  const service = await startBenchService({ dataDir: `${dir}/data`, coversDir: `${dir}/covers`, workers: 16, resize: 'off', nodeOptions: ['--inspect=127.0.0.1:0'] });
  const pid = service.child.pid!;
  const inspector = await Inspector.attach(() => service.stderr());
  await inspector.call('HeapProfiler.enable');
  await inspector.call('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  origin.hold = held;
  const ws = await openSocket(service.wsUrl);
  let done = 0;
  ws.on('message', (data: Buffer) => {
    if (data.toString('latin1', 0, 16) === '{"type":"done",') done++;
  });
  const urls = Array.from({ length: count }, (_, i) => origin.imageUrl('alloc', i));
  const peaks = new Map<string, number>();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const values = await metrics(service);
      for (const name of GAUGES) peaks.set(name, Math.max(peaks.get(name) ?? 0, values.get(name) ?? 0));
      await sleep(50);
    }
  })();
  const start = performance.now();
  const checks = Math.ceil(count / 1000);
  for (let k = 0; k < checks; k++) ws.send(checkFrame(`h${String(k).padStart(8, '0')}`, urls.slice(k * 1000, (k + 1) * 1000)), { binary: false });
  if (held) {
    for (let tries = 0; ; tries++) {
      const values = await metrics(service);
      if ((values.get('coverhelper_queued') ?? 0) + (values.get('coverhelper_downloading') ?? 0) >= count) break;
      if (tries > 3000) throw new Error(`not all ${count} URLs in flight`);
      await sleep(100);
    }
    await sleep(1000);
  } else {
    while (done < checks) await sleep(100);
    await waitIdle(service, 60_000);
  }
  sampling = false;
  await sampler;
  step(`${num(count)} URLs ${held ? 'in flight (origin holding)' : 'downloaded'} after ${num(performance.now() - start)} ms`);
  const { peak, rss } = procMemory(pid);
  log(`peak RSS (VmHWM) ${mb(peak)}, RSS now ${mb(rss)}`);
  for (const name of GAUGES) log(`  highest ${name} (50 ms samples) ${mb(peaks.get(name) ?? 0)}`);
  const { profile } = (await inspector.call('HeapProfiler.stopSampling', {}, 120_000)) as { profile: { head: ProfileNode } };
  summarise(profile.head, 25);
  origin.release();
  await closeSocket(ws);
  await inspector.close();
  await stopService(service);
  await origin.close();
});

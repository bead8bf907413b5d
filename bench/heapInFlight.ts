/**
 * What one URL in flight costs in memory, and of what it is made: a profiling
 * tool for the memory scenario (not part of `npm run bench`).
 *
 *   node --import tsx bench/heapInFlight.ts [URLS]      (default 20,000)
 *
 * The origin holds every request, so after the checks are sent all URLs stay
 * in flight (16 downloading, the rest queued). Then, through the inspector:
 * V8 heap after a full GC and RSS, before and with the URLs in flight, and a
 * heap snapshot summarised by constructor (self size, count), written to
 * bench/profiles/heap/ for Chrome DevTools.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import { Inspector } from './lib/inspector.js';
import { benchRoot } from './lib/paths.js';
import { log, mb, num, step } from './lib/report.js';
import { health, procMemory, runScenario, sleep, startBenchService, stopService, tempDir } from './lib/service.js';
import { checkFrame, closeSocket, openSocket } from './lib/wsLoad.js';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count per constructor / type, from a .heapsnapshot. */
function summarise(snapshot: Snapshot, top: number): void {
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const [typeAt, nameAt, sizeAt] = [fields.indexOf('type'), fields.indexOf('name'), fields.indexOf('self_size')];
  const groups = new Map<string, { size: number; count: number }>();
  let total = 0;
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const type = types[snapshot.nodes[i + typeAt]!]!;
    const name = snapshot.strings[snapshot.nodes[i + nameAt]!]!;
    const size = snapshot.nodes[i + sizeAt]!;
    total += size;
    const key = type === 'object' || type === 'closure' ? `${type} ${name.slice(0, 60)}` : `(${type})${type === 'native' ? ` ${name.slice(0, 40)}` : ''}`;
    const group = groups.get(key) ?? { size: 0, count: 0 };
    group.size += size;
    group.count++;
    groups.set(key, group);
  }
  log(`\nheap snapshot: ${mb(total)} in ${num(snapshot.nodes.length / width)} objects; by constructor (self size):`);
  for (const [key, { size, count }] of [...groups].sort((a, b) => b[1].size - a[1].size).slice(0, top)) {
    log(`  ${mb(size).padStart(10)}  ${num(count).padStart(10)}  ${key}`);
  }
}

runScenario('heapInFlight', 10 * 60_000, async () => {
  const count = Number(process.argv[2] ?? 20_000);
  const dir = await tempDir('heap');
  const origin = await startBulkOrigin('small');
  const service = await startBenchService({ dataDir: `${dir}/data`, coversDir: `${dir}/covers`, workers: 16, resize: 'off', nodeOptions: ['--inspect=127.0.0.1:0'] });
  const pid = service.child.pid!;
  const inspector = await Inspector.attach(() => service.stderr());
  const before = await inspector.heap();
  const rssBefore = procMemory(pid).rss;
  origin.hold = true;
  const ws = await openSocket(service.wsUrl);
  const urls = Array.from({ length: count }, (_, i) => origin.imageUrl('heap', i));
  for (let k = 0; k * 1000 < count; k++) ws.send(checkFrame(`h${String(k).padStart(8, '0')}`, urls.slice(k * 1000, (k + 1) * 1000)), { binary: false });
  for (let tries = 0; ; tries++) {
    const h = await health(service);
    if (h.queued + h.downloading >= count) break;
    if (tries > 600) throw new Error(`only ${h.queued + h.downloading} of ${count} in flight`);
    await sleep(100);
  }
  await sleep(1000);
  const during = await inspector.heap();
  const { rss, peak } = procMemory(pid);
  const actors = await inspector.liveActors();
  step(`${num(count)} URLs in flight: actors ${JSON.stringify(actors)}`);
  log(`V8 heap used: ${mb(before.used)} before, ${mb(during.used)} with them in flight: ${num((during.used - before.used) / count)} bytes per URL`);
  log(`RSS: ${mb(rssBefore)} before, ${mb(rss)} with them in flight (peak ${mb(peak)}): ${num((rss - rssBefore) / count)} bytes per URL`);

  const out = path.join(benchRoot, 'profiles', 'heap');
  await mkdir(out, { recursive: true });
  const file = path.join(out, `in-flight-${count}.heapsnapshot`);
  const stream = createWriteStream(file);
  const off = inspector.onEvent((method, params) => {
    if (method === 'HeapProfiler.addHeapSnapshotChunk') stream.write(String(params.chunk));
  });
  await inspector.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false }, 300_000);
  off();
  await new Promise<void>((resolve) => stream.end(resolve));
  step(`heap snapshot written to ${file}`);
  summarise(JSON.parse(await readFile(file, 'utf8')) as Snapshot, 30);

  origin.release();
  await closeSocket(ws);
  await inspector.close();
  await stopService(service);
  await origin.close();
});

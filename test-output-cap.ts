import { CoverClient } from './client/src/index.js';
import { startBulkOrigin } from './bench/lib/bulkOrigin.js';
import { startBenchService, stopService, tempDir } from './bench/lib/service.js';
const dir = await tempDir('cap');
const origin = await startBulkOrigin('small');
const service = await startBenchService({ dataDir: `${dir}/data`, coversDir: `${dir}/covers` });
const urls = Array.from({ length: 2000 }, (_, i) => origin.imageUrl('c', i));
const seed = new CoverClient(service.wsUrl, { timeoutMs: 300_000 });
await seed.check(urls); await seed.close();
const batches = Array.from({ length: 20 }, (_, k) => urls.slice(k * 100, (k + 1) * 100));
for (const cap of [undefined, undefined]) {
  const covers = new CoverClient(service.wsUrl, { timeoutMs: 300_000, ...(cap ? { maxBatch: cap } : {}) });
  await covers.check(urls);
  let next = 0, n = 0;
  const stopAt = performance.now() + 2000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 16 }, async () => { while (performance.now() < stopAt) { const r = await covers.check(batches[next++ % 20]!); n += r.length; } }));
  console.log('cap', cap, 'rate', Math.round(n / ((performance.now() - t0) / 1000)), 'per frame', Math.round(covers.stats.urlsSent / covers.stats.framesSent));
  await covers.close();
}
await stopService(service); await origin.close(); process.exit(0);

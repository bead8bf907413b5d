/**
 * The main-thread cost of the download actors and the supervisor alone: N
 * downloads of new URLs through the real `supervisorMachine` and
 * `downloadMachine`, with a `fetchCover` that resolves on the next turn (no I/O)
 * and the side-effect actions left as the machines' no-op defaults, `workers`
 * at a time. Prints CPU per download (µs) of this process (one thread does all
 * of it). Run it the same way on two commits to compare them side by side:
 *
 *   node --import tsx bench/downloadActor.ts [downloads=20000] [workers=16]
 */
import { createActor, fromPromise } from 'xstate';
import { downloadMachine, supervisorMachine } from '../machines/index.js';
import { systemClock } from '../src/clock.js';
import { log } from './lib/report.js';
import type { DownloadOutput, FetchCoverInput, FetchCoverOutput } from '../machines/index.js';

const total = Number(process.argv[2] ?? 20_000);
const workers = Number(process.argv[3] ?? 16);

const cover = { path: 'a/b.jpg', contentType: 'image/jpeg', bytes: 10, width: 1, height: 1, sha256: 'ab' };

const download = downloadMachine.provide({
  actors: {
    fetchCover: fromPromise<FetchCoverOutput, FetchCoverInput>(
      () => new Promise((resolve) => setImmediate(() => resolve({ cover, source: 'download', fetched: 10 }))),
    ),
  },
});

async function run(prefix: string, count: number): Promise<void> {
  const supervisor = createActor(supervisorMachine, {
    input: { workers, download, timeLimitMs: 60_000, retries: 2, failTtlMs: 60_000, isRemembered: () => true, shared: false, clock: systemClock, finishLater: setImmediate },
    clock: systemClock,
  });
  supervisor.start();
  const urls = Array.from({ length: count }, (_, i) => `http://127.0.0.1/${prefix}/${i}.jpg`);
  const outputs: Promise<DownloadOutput>[] = [];
  supervisor.send({
    type: 'REQUEST',
    urls,
    reply: (answers) => {
      for (const answer of answers) outputs.push('flight' in answer ? answer.flight.done : Promise.resolve(answer.output));
    },
  });
  const done = await Promise.all(outputs);
  if (done.some((output) => output.status !== 'ok')) throw new Error('a download failed');
  supervisor.stop();
}

await run('warm', Math.min(2000, total));
const before = process.cpuUsage();
const started = performance.now();
await run('timed', total);
const cpu = process.cpuUsage(before);
const ms = performance.now() - started;
log(JSON.stringify({ downloads: total, workers, cpuUsPerDownload: +((cpu.user + cpu.system) / total).toFixed(1), wallMs: Math.round(ms) }));

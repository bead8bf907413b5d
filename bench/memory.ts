/**
 * Memory, in two parts, each with its own service process:
 *
 *   npm run bench:memory               both parts (node --import tsx bench/memory.ts)
 *   npm run bench:memory -- small      the 100,000 small images only
 *   npm run bench:memory -- bombs      the 40 image bombs only
 *
 * Small images: 100,000 distinct small images through the service.
 * The service runs `--workers 16 --resize off` with `--inspect=127.0.0.1:0`
 * (through NODE_OPTIONS), so the bench can force a GC and read V8's heap, and
 * count the XState actors alive (bench/lib/inspector.ts), without any change
 * to the service. RSS and peak RSS (VmHWM) come from /proc/<pid>/status.
 *
 * One WebSocket sends the 100,000 URLs as 100 checks of 1,000 at once (the
 * worst case: every URL is in flight at the same moment), then waits for the
 * 100 `done` frames. Goals: peak RSS < 300 MB; no download actor alive after;
 * heap after within 20% of the heap before (both after a forced full GC; the
 * "before" is taken after a 1,000-image warm-up, so that code loaded on first
 * use is not counted as growth — the heap right after `listening` is shown too).
 *
 * Image bombs: 40 distinct small bodies that decode to 24–100 megapixels
 * (bench/lib/bombOrigin.ts), asked for in one check on one WebSocket, through
 * the service at `--workers 10` and the default `--resize 320x200`. Its RSS is
 * read every 50 ms. Goals: peak RSS (VmHWM) < 600 MB; after the check's `done`,
 * RSS under 300 MB within 60 s (watched for 90 s). It runs twice: with the
 * allocator this process has (glibc's defaults unless MALLOC_* or LD_PRELOAD
 * are set), then with MALLOC_MMAP_THRESHOLD_=1048576, the setting recommended
 * on glibc (docs/BENCHMARKS.md, Memory).
 */
import { connect } from '../test/helpers/wsClient.js';
import type { Frame } from '../test/helpers/wsClient.js';
import { startBombOrigin } from './lib/bombOrigin.js';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import { Inspector } from './lib/inspector.js';
import { mb, num, Report, step } from './lib/report.js';
import { scaled } from './lib/scale.js';
import { health, metrics, procCpuSeconds, procMemory, runScenario, sleep, startBenchService, stopService, tempDir, waitIdle } from './lib/service.js';
import { checkFrame, closeSocket, openSocket } from './lib/wsLoad.js';
import type WebSocket from 'ws';

const GOAL_PEAK = 300 * 2 ** 20;
const GOAL_HEAP_GROWTH = 0.2;
const GOAL_BOMB_PEAK = 600 * 2 ** 20;
const GOAL_BOMB_SETTLED = 300 * 2 ** 20;
const GOAL_BOMB_FALL_MS = 60_000;
const BOMB_WATCH_MS = 90_000;
/** The fixed glibc mmap threshold recommended for the service (1 MiB). */
const MMAP_THRESHOLD = 1_048_576;

/** Sends every frame at once; resolves with the ok count when every `done` is in. */
function checkAll(ws: WebSocket, frames: Buffer[], timeoutMs: number, onDone?: (done: number) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    let done = 0;
    let ok = 0;
    const timer = setTimeout(() => {
      ws.off('message', listener);
      reject(new Error(`${frames.length - done} checks not done after ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (data: Buffer) => {
      const head = data.toString('latin1', 0, 60);
      if (!head.startsWith('{"type":"done"')) return;
      ok += Number(/"ok":(\d+)/.exec(head)?.[1] ?? 0);
      done++; // not inside `onDone?.(…)`: an optional call skips its arguments
      onDone?.(done);
      if (done === frames.length) {
        clearTimeout(timer);
        ws.off('message', listener);
        resolve(ok);
      }
    };
    ws.on('message', listener);
    for (const frame of frames) ws.send(frame, { binary: false });
  });
}

const framesFor = (urls: string[]) => Array.from({ length: Math.ceil(urls.length / 1000) }, (_, k) => checkFrame(`h${String(k).padStart(8, '0')}`, urls.slice(k * 1000, (k + 1) * 1000)));

async function smallImages(report: Report): Promise<void> {
  const count = scaled(100_000, 2000);
  const dir = await tempDir('memory');
  const origin = await startBulkOrigin('small');
  const service = await startBenchService({
    dataDir: `${dir}/data`,
    coversDir: `${dir}/covers`,
    workers: 16,
    resize: 'off',
    nodeOptions: ['--inspect=127.0.0.1:0'],
    profileName: 'memory',
  });
  const pid = service.child.pid!;
  const inspector = await Inspector.attach(() => service.stderr());
  const heapListening = await inspector.heap();
  const rssListening = procMemory(pid).rss;
  step(`service on ${service.url}; heap after listening ${mb(heapListening.used)}, RSS ${mb(rssListening)}`);

  // Warm-up: every code path runs once before the "before" figures.
  const ws = await openSocket(service.wsUrl);
  const warm = Array.from({ length: 1000 }, (_, i) => origin.imageUrl('warm', i));
  if ((await checkAll(ws, framesFor(warm), 120_000)) !== warm.length) throw new Error('warm-up: not every URL ok');
  await waitIdle(service, 30_000);
  await sleep(1500); // let the touch timer and the task writer run
  const heapBefore = await inspector.heap();
  const rssBefore = procMemory(pid).rss;
  step(`after a ${warm.length}-image warm-up: heap ${mb(heapBefore.used)}, RSS ${mb(rssBefore)}`);

  // The load, sampled every 250 ms.
  const urls = Array.from({ length: count }, (_, i) => origin.imageUrl('mem', i));
  let maxSampled = 0;
  let maxActors = 0;
  const sampler = setInterval(() => {
    maxSampled = Math.max(maxSampled, procMemory(pid).rss);
  }, 250);
  const cpu = procCpuSeconds(pid);
  const start = performance.now();
  let lastLog = 0;
  let midway: Promise<unknown> = Promise.resolve();
  const ok = await checkAll(ws, framesFor(urls), 12 * 60_000, (done) => {
    // Once, early: how many download actors live while the load is in flight.
    if (done === 1) {
      midway = inspector
        .liveActors()
        .then((actors) => (maxActors = actors.download ?? 0))
        .catch(() => undefined);
    }
    if (performance.now() - lastLog > 10_000) {
      lastLog = performance.now();
      step(`  ${done}/${Math.ceil(count / 1000)} checks done, RSS ${mb(procMemory(pid).rss)}`);
    }
  });
  const elapsed = performance.now() - start;
  const cpuUsed = procCpuSeconds(pid) - cpu;
  await midway;
  clearInterval(sampler);
  if (ok !== count) throw new Error(`${ok} of ${count} ok`);
  step(`${num(count)} images in ${num(elapsed / 1000, 1)} s (${num(count / (elapsed / 1000))} images/s)`);

  await closeSocket(ws);
  const idle = await waitIdle(service, 60_000);
  await sleep(2000);
  const samples = await metrics(service);
  const heapAfter = await inspector.heap();
  const actors = await inspector.liveActors();
  const { rss: rssAfter, peak } = procMemory(pid);
  const h = await health(service);
  await inspector.close();
  await stopService(service);
  await origin.close();

  const downloadActors = actors.download ?? 0;
  const growth = heapAfter.used / heapBefore.used - 1;
  report.figure('images', `${num(count)} × ${num(origin.meanBytes / 1024, 1)} KB`, `distinct JPEGs (64×40), 100 checks of 1,000 sent at once; ${num(count / (elapsed / 1000))} images/s`);
  report.goal('peak RSS (VmHWM)', mb(peak), `< ${mb(GOAL_PEAK)}`, peak < GOAL_PEAK, `highest 250 ms sample ${mb(maxSampled)}`);
  report.figure('RSS after all finished', mb(rssAfter), `before the load ${mb(rssBefore)}; after listening ${mb(rssListening)}`);
  report.goal('download actors alive after', String(downloadActors), '0', downloadActors === 0, `after the first check was done, ${num(maxActors)} were alive; all actors now: ${JSON.stringify(actors)}`);
  report.goal('in-flight work after (/healthz, /metrics)', `${idle.queued + idle.downloading} / ${(samples.get('coverhelper_queued') ?? NaN) + (samples.get('coverhelper_downloading') ?? NaN)}`, '0', h.queued + h.downloading === 0 && samples.get('coverhelper_queued') === 0 && samples.get('coverhelper_downloading') === 0);
  report.goal('heap after / heap before', `${mb(heapAfter.used)} / ${mb(heapBefore.used)} (${growth >= 0 ? '+' : ''}${num(growth * 100, 1)} %)`, `within ${num(GOAL_HEAP_GROWTH * 100)} %`, Math.abs(growth) <= GOAL_HEAP_GROWTH, `after forced GC; heap right after listening ${mb(heapListening.used)}`);
  report.figure('service CPU', `${num(cpuUsed, 1)} s`, `${num((cpuUsed / count) * 1000, 2)} ms per image`);
}

/** Each kind's answers, e.g. `png-10000x10000: 20 too_large`. */
function tally(kinds: { name: string }[], results: Frame[]): string {
  const byKind = new Map<string, Map<string, number>>();
  results.forEach((result, i) => {
    const error = result.error as { code?: string } | undefined;
    const answer = result.status === 'ok' ? 'ok' : (error?.code ?? String(result.status));
    const counts = byKind.get(kinds[i]!.name) ?? new Map<string, number>();
    counts.set(answer, (counts.get(answer) ?? 0) + 1);
    byKind.set(kinds[i]!.name, counts);
  });
  return [...byKind].map(([name, counts]) => `${name}: ${[...counts].map(([answer, n]) => `${n} ${answer}`).join(', ')}`).join('; ');
}

/** The allocator settings a service process inherits from this one. */
function allocatorEnv(env: NodeJS.ProcessEnv): string {
  const set = Object.entries(env).filter(([name]) => /^(MALLOC_|GLIBC_TUNABLES$|LD_PRELOAD$)/.test(name));
  return set.length > 0 ? set.map(([name, value]) => `${name}=${value}`).join(' ') : "glibc's defaults";
}

/**
 * The 40 bombs through a fresh service, with `extraEnv` added to what it
 * inherits: startService spreads this process's environment when it spawns,
 * so the variables are set here for that moment and put back after.
 */
async function imageBombs(report: Report, label: string, extraEnv: Record<string, string> = {}): Promise<void> {
  const dir = await tempDir('bombs');
  const origin = await startBombOrigin();
  const saved = Object.fromEntries(Object.keys(extraEnv).map((name) => [name, process.env[name]]));
  Object.assign(process.env, extraEnv);
  const allocator = allocatorEnv(process.env);
  let service;
  try {
    service = await startBenchService({ dataDir: `${dir}/data`, coversDir: `${dir}/covers`, workers: 10, resize: '320x200', profileName: 'memory-bombs' });
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
  const pid = service.child.pid!;
  const rssListening = procMemory(pid).rss;
  step(`${label}: service on ${service.url} (--workers 10 --resize 320x200, ${allocator}), RSS ${mb(rssListening)}; ${origin.urls.length} bombs on ${origin.url}`);

  let maxSampled = 0;
  const sampler = setInterval(() => {
    maxSampled = Math.max(maxSampled, procMemory(pid).rss);
  }, 50);
  const client = await connect(service.wsUrl);
  const start = performance.now();
  const { done } = await client.check('bombs', origin.urls, 5 * 60_000);
  const answered = performance.now();
  const rssAnswered = procMemory(pid).rss;
  step(`${origin.urls.length} answers in ${num((answered - start) / 1000, 1)} s; RSS ${mb(rssAnswered)}, highest 50 ms sample ${mb(maxSampled)}`);

  // Watch RSS fall back, every 50 ms, for at most BOMB_WATCH_MS.
  let fellAfter: number | undefined;
  for (;;) {
    const elapsed = performance.now() - answered;
    if (procMemory(pid).rss < GOAL_BOMB_SETTLED) {
      fellAfter = elapsed;
      break;
    }
    if (elapsed > BOMB_WATCH_MS) break;
    await sleep(50);
  }
  clearInterval(sampler);
  const rssAfterWatch = procMemory(pid).rss;
  await sleep(5000);
  const { rss: rssSettled, peak } = procMemory(pid);
  await client.close();
  await stopService(service);
  await origin.close();

  const results = (done.results ?? []) as Frame[];
  const sizes = [...origin.sizes].map(([name, bytes]) => `${name} ${num(bytes / 1024)} KB`).join(', ');
  report.figure(`${label}: images`, `${origin.urls.length}`, `one check at --workers 10 --resize 320x200, ${allocator}; ${sizes}`);
  report.figure(`${label}: answers`, `${num((answered - start) / 1000, 1)} s`, tally(origin.kinds, results));
  report.goal(`${label}: peak RSS (VmHWM)`, mb(peak), `< ${mb(GOAL_BOMB_PEAK)}`, peak < GOAL_BOMB_PEAK, `highest 50 ms sample ${mb(maxSampled)}; after listening ${mb(rssListening)}`);
  report.goal(
    `${label}: RSS under ${mb(GOAL_BOMB_SETTLED)} after the last answer`,
    fellAfter === undefined ? `not within ${num(BOMB_WATCH_MS / 1000)} s` : `${num(fellAfter / 1000, 1)} s`,
    `< ${num(GOAL_BOMB_FALL_MS / 1000)} s`,
    fellAfter !== undefined && fellAfter < GOAL_BOMB_FALL_MS,
    `RSS at the last answer ${mb(rssAnswered)}, then ${mb(rssAfterWatch)}, 5 s later ${mb(rssSettled)}`,
  );
}

const parts = process.argv.slice(2);
const wanted = (part: string) => parts.length === 0 || parts.includes(part);
if (parts.some((part) => part !== 'small' && part !== 'bombs')) {
  process.stderr.write(`usage: bench/memory.ts [small] [bombs] (both when none is named)\n`);
  process.exit(2);
}

runScenario('memory', 25 * 60_000, async () => {
  const report = new Report('memory', `Memory: ${[wanted('small') ? '100,000 distinct small images' : '', wanted('bombs') ? '40 image bombs' : ''].filter(Boolean).join('; ')}`, 'npm run bench:memory');
  if (wanted('small')) await smallImages(report);
  if (wanted('bombs')) {
    await imageBombs(report, 'bombs');
    // What docs/BENCHMARKS.md recommends on glibc, side by side (unless already set).
    if (process.env.MALLOC_MMAP_THRESHOLD_ === undefined) await imageBombs(report, 'bombs, MALLOC_MMAP_THRESHOLD_', { MALLOC_MMAP_THRESHOLD_: String(MMAP_THRESHOLD) });
  }
  report.finish();
});

/**
 * The client package: cached checks through `CoverClient` against raw frames
 * over one socket, side by side in the same run.
 *
 *   npm run bench:client        (node --import tsx bench/client.ts)
 *
 * 1. Batches: calls of 100 cached URLs, `BENCH_CLIENT_WINDOW` (16) calls in
 *    flight, for `BENCH_CLIENT_SECONDS` (3) s after a 1 s warm-up,
 *    `BENCH_CLIENT_ROUNDS` (5) rounds alternating client and raw (the machine is
 *    shared and noisy: short alternating rounds, medians). Raw frames: prebuilt
 *    check frames of 100 URLs on one socket, 16 in flight, each `done` parsed
 *    with the protocol module's `parseServerFrame` (what any client that uses
 *    its answers must do). Goal: client ≥ 0.8× raw. Also shown: raw frames
 *    whose replies are recognised by their first bytes and never parsed
 *    (wsLoad's `pipelined`, the hot-path bench's load: no client can do less).
 * 2. Single URLs: `BENCH_CLIENT_SINGLES` (1,000) concurrent one-URL calls
 *    (a blog rendering many pages at once), through the client (which merges
 *    the calls of one turn into frames) and raw (one frame per URL, the same
 *    number in flight). A figure, no goal.
 *
 * Both go to the same service (cached, small JPEGs), in the bench process.
 */
import { CoverClient } from '@coverhelper/client';
import { parseServerFrame } from '@coverhelper/client/protocol';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import { num, ratio, Report, step } from './lib/report.js';
import { envNumber, scaled } from './lib/scale.js';
import { procCpuSeconds, runScenario, startBenchService, stopService, tempDir, waitIdle } from './lib/service.js';
import { median } from './lib/stats.js';
import { checkFrame, closeSocket, DONE_PREFIX, idFor, openSocket, pipelined } from './lib/wsLoad.js';
import type WebSocket from 'ws';

const BATCH = 100;
const GOAL_SHARE = 0.8;

/** Calls of `batches[k]` through the client, `window` at a time, for `durationMs`: URLs answered. */
async function clientLoop(covers: CoverClient, batches: string[][], window: number, durationMs: number): Promise<{ urls: number; elapsedMs: number; bad: number }> {
  const start = performance.now();
  const stopAt = start + durationMs;
  let next = 0;
  let urls = 0;
  let bad = 0;
  const worker = async () => {
    while (performance.now() < stopAt) {
      const batch = batches[next++ % batches.length]!;
      const results = await covers.check(batch);
      urls += results.length;
      for (const result of results) if (result.status !== 'ok') bad++;
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
  return { urls, elapsedMs: performance.now() - start, bad };
}

/** Raw frames, `window` in flight, each reply parsed by the protocol module: URLs answered. */
function rawParsed(ws: WebSocket, requests: Buffer[], window: number, durationMs: number): Promise<{ urls: number; elapsedMs: number; bad: number }> {
  return new Promise((resolve) => {
    const start = performance.now();
    const stopAt = start + durationMs;
    let sent = 0;
    let done = 0;
    let urls = 0;
    let bad = 0;
    const onMessage = (data: Buffer) => {
      const frame = parseServerFrame(data.toString('utf8'));
      if (frame?.type !== 'done') {
        if (frame?.type !== 'result') bad++;
        return;
      }
      done++;
      urls += frame.results.length;
      bad += frame.results.length - frame.ok;
      if (performance.now() < stopAt) {
        ws.send(requests[sent++ % requests.length]!, { binary: false });
      } else if (done >= sent) {
        ws.off('message', onMessage);
        resolve({ urls, elapsedMs: performance.now() - start, bad });
      }
    };
    ws.on('message', onMessage);
    for (let i = 0; i < window; i++) ws.send(requests[sent++ % requests.length]!, { binary: false });
  });
}

runScenario('client', 10 * 60_000, async () => {
  const cachedCount = scaled(10_000, 1000);
  const seconds = envNumber('BENCH_CLIENT_SECONDS', scaled(3, 1));
  const window = envNumber('BENCH_CLIENT_WINDOW', 16);
  const rounds = envNumber('BENCH_CLIENT_ROUNDS', 5);
  const singles = envNumber('BENCH_CLIENT_SINGLES', 1000);
  const report = new Report('client', 'The client package: cached checks through CoverClient against raw frames', 'npm run bench:client');

  const dir = await tempDir('client');
  const origin = await startBulkOrigin('small');
  const service = await startBenchService({ dataDir: `${dir}/data`, coversDir: `${dir}/covers`, workers: 16, resize: 'off', profileName: 'client' });
  const pid = service.child.pid!;
  step(`service on ${service.url}; caching ${num(cachedCount)} small images through the client`);

  const urls = Array.from({ length: cachedCount }, (_, i) => origin.imageUrl('client', i));
  // frameUrls 256: the bulk setting (frames of 256, cached URLs apart), as client/README.md advises for many calls at once.
  const covers = new CoverClient(service.wsUrl, { timeoutMs: 300_000, frameUrls: 256 });
  const seeded = await covers.check(urls);
  const seededOk = seeded.filter((r) => r.status === 'ok').length;
  if (seededOk !== cachedCount) throw new Error(`seeding: ${seededOk} of ${cachedCount} ok`);
  await waitIdle(service, 60_000);
  const again = await covers.check(urls);
  if (again.some((r) => r.source !== 'cache')) throw new Error('not every URL is answered from the cache');
  step(`${num(cachedCount)} URLs cached and answered from the cache`);

  const batches = Array.from({ length: cachedCount / BATCH }, (_, k) => urls.slice(k * BATCH, (k + 1) * BATCH));
  const requests = batches.map((batch) => checkFrame(idFor(0), batch));
  const expect = Buffer.from(`${DONE_PREFIX}${idFor(0)}","ok":${BATCH},"skipped":0,"failed":0,`);
  const maxBatches = Math.ceil((10_000_000 * seconds) / BATCH);

  // 1. Batches of 100, alternating so each sees the same machine state.
  const rates = { client: [] as number[], raw: [] as number[], parsed: [] as number[] };
  const cpu = { client: 0, raw: 0, parsed: 0 };
  const answered = { client: 0, raw: 0, parsed: 0 };
  for (let round = 1; round <= rounds; round++) {
    for (const target of ['client', 'raw', 'parsed'] as const) {
      let rate: number;
      let count: number;
      let cpuBefore = process.cpuUsage();
      let serviceBefore = procCpuSeconds(pid);
      const measureFromHere = () => {
        cpuBefore = process.cpuUsage();
        serviceBefore = procCpuSeconds(pid);
      };
      if (target === 'client') {
        await clientLoop(covers, batches, window, 1000);
        measureFromHere();
        const result = await clientLoop(covers, batches, window, seconds * 1000);
        if (result.bad > 0) throw new Error(`client: ${result.bad} answers not ok`);
        rate = result.urls / (result.elapsedMs / 1000);
        count = result.urls;
      } else {
        const ws = await openSocket(service.wsUrl);
        if (target === 'raw') {
          await pipelined(ws, requests, { window, durationMs: 1000, maxBatches, expect });
          measureFromHere();
          const result = await pipelined(ws, requests, { window, durationMs: seconds * 1000, maxBatches, expect });
          if (result.unexpected > 0) throw new Error(`raw: ${result.unexpected} unexpected frames, first: ${result.firstUnexpected}`);
          rate = (result.batches * BATCH) / (result.elapsedMs / 1000);
          count = result.batches * BATCH;
        } else {
          await rawParsed(ws, requests, window, 1000);
          measureFromHere();
          const result = await rawParsed(ws, requests, window, seconds * 1000);
          if (result.bad > 0) throw new Error(`raw parsed: ${result.bad} answers not ok`);
          rate = result.urls / (result.elapsedMs / 1000);
          count = result.urls;
        }
        await closeSocket(ws);
      }
      rates[target].push(rate);
      const used = process.cpuUsage(cpuBefore);
      const benchCpu = (used.user + used.system) / 1e6;
      cpu[target] += benchCpu;
      answered[target] += count;
      step(`round ${round} ${target.padEnd(6)}: ${num(rate)} URLs/s (bench process CPU ${num(benchCpu, 2)} s, service ${num(procCpuSeconds(pid) - serviceBefore, 2)} s)`);
    }
  }
  const clientRate = median(rates.client);
  const rawRate = median(rates.raw);
  const parsedRate = median(rates.parsed);

  // 2. Many single-URL calls at once.
  const singleRates = { client: [] as number[], raw: [] as number[] };
  const singleRequests = urls.map((url) => checkFrame(idFor(0), [url]));
  const singleExpect = Buffer.from(`${DONE_PREFIX}${idFor(0)}","ok":1,"skipped":0,"failed":0,`);
  const singleBatches = urls.map((url) => [url]);
  for (let round = 1; round <= rounds; round++) {
    const result = await clientLoop(covers, singleBatches, singles, seconds * 1000);
    if (result.bad > 0) throw new Error(`client singles: ${result.bad} answers not ok`);
    singleRates.client.push(result.urls / (result.elapsedMs / 1000));
    const ws = await openSocket(service.wsUrl);
    const raw = await pipelined(ws, singleRequests, { window: singles, durationMs: seconds * 1000, maxBatches: 10_000_000, expect: singleExpect });
    await closeSocket(ws);
    if (raw.unexpected > 0) throw new Error(`raw singles: ${raw.unexpected} unexpected frames, first: ${raw.firstUnexpected}`);
    singleRates.raw.push(raw.batches / (raw.elapsedMs / 1000));
    step(`round ${round} singles: client ${num(singleRates.client.at(-1)!)} URLs/s, raw ${num(singleRates.raw.at(-1)!)} URLs/s (${num(singles)} calls in flight)`);
  }
  const stats = covers.stats;
  await covers.close();

  const perThousand = (target: 'client' | 'raw' | 'parsed') => `${num((cpu[target] * 1e6) / answered[target], 2)} µs`;
  report.figure('cached URLs', num(cachedCount), 'small JPEGs, cached through the client itself');
  report.goal('client / raw frames (parsed), calls of 100 URLs', ratio(clientRate / parsedRate), `≥ ${ratio(GOAL_SHARE)}`, clientRate / parsedRate >= GOAL_SHARE, `median of ${rounds} × ${seconds} s, ${window} calls (frames) in flight`);
  report.figure('client, calls of 100 URLs', `${num(clientRate)} URLs/s`, `runs: ${rates.client.map((r) => num(r)).join(', ')}`);
  report.figure('raw frames, replies parsed', `${num(parsedRate)} URLs/s`, `runs: ${rates.parsed.map((r) => num(r)).join(', ')}`);
  report.figure('raw frames, replies not parsed', `${num(rawRate)} URLs/s`, `runs: ${rates.raw.map((r) => num(r)).join(', ')}; client / this ${ratio(clientRate / rawRate)}`);
  report.figure('bench process CPU per URL', `client ${perThousand('client')}, parsed raw ${perThousand('parsed')}, unparsed raw ${perThousand('raw')}`, 'the client\'s own cost beside the bare loops (all share the 2 cores with the service)');
  report.figure(`${num(singles)} single-URL calls in flight`, `client ${num(median(singleRates.client))} URLs/s, raw ${num(median(singleRates.raw))} URLs/s`, `client / raw ${ratio(median(singleRates.client) / median(singleRates.raw))}: the client merges the calls of one turn into frames; raw sends one frame a URL`);
  report.figure('frames the client sent', num(stats.framesSent), `for ${num(stats.urlsSent)} URLs (${num(stats.urlsSent / stats.framesSent, 1)} a frame)`);

  await stopService(service);
  await origin.close();
  report.finish();
});

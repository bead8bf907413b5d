/**
 * Hot path: cached URLs checked over one WebSocket.
 *
 *   npm run bench:hot        (node --import tsx bench/hotPath.ts)
 *
 * 1. Throughput: batches of 100 cached URLs on one socket, `BENCH_HOT_WINDOW`
 *    (16) batches in flight, for `BENCH_HOT_SECONDS` (10) s after a 2 s warm-up,
 *    three rounds alternating service and baseline. Goal: ≥ 100,000 URLs/s and
 *    ≥ 0.8× the baseline.
 * 2. Latency: single-URL checks sent open-loop at 2,000/s for 10 s (after 2 s
 *    of warm-up); p50/p99 round trip. Goal: p99 < 2 ms.
 *
 * Baseline: bench/lib/bareWsServer.ts, a bare `ws` server in its own process
 * answering each frame with the service's own `done` frame for that batch size,
 * captured byte for byte (same size), with the request's id copied in.
 */
import { connect } from '../test/helpers/wsClient.js';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import { ms, num, ratio, Report, step } from './lib/report.js';
import { envNumber, scaled } from './lib/scale.js';
import { procCpuSeconds, runScenario, startBenchService, stopService, tempDir, waitIdle } from './lib/service.js';
import { median, percentile, sortedCopy } from './lib/stats.js';
import { CHECK_PREFIX, checkFrame, closeSocket, DONE_PREFIX, ID_LENGTH, idFor, openLoop, openSocket, pipelined, STALL_MS, startBareServer } from './lib/wsLoad.js';
import type WebSocket from 'ws';

const BATCH = 100;
const GOAL_RATE = 100_000;
const GOAL_SHARE = 0.8;
const GOAL_P99_MS = 2;
const LATENCY_RATE = 2000;

/** The first reply frame to `frame` on `ws`, raw. */
function firstReply(ws: WebSocket, frame: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    ws.once('message', (data: Buffer) => resolve(data));
    ws.send(frame, { binary: false });
  });
}

/** The bytes a `done` frame starts with, up to its counts: `{"type":"done","id":"h00000000","ok":N,"skipped":0,"failed":0,`. */
const doneHead = (id: string, ok: number) => Buffer.from(`${DONE_PREFIX}${id}","ok":${ok},"skipped":0,"failed":0,`);

runScenario('hotPath', 10 * 60_000, async () => {
  const cachedCount = scaled(10_000, 1000);
  const seconds = envNumber('BENCH_HOT_SECONDS', scaled(10, 2));
  const window = envNumber('BENCH_HOT_WINDOW', 16);
  const rounds = envNumber('BENCH_HOT_ROUNDS', 3);
  const report = new Report('hotPath', 'Hot path: cached URLs over one WebSocket', 'npm run bench:hot');

  const dir = await tempDir('hot');
  const origin = await startBulkOrigin('small');
  const service = await startBenchService({ dataDir: `${dir}/data`, coversDir: `${dir}/covers`, workers: 16, resize: 'off', profileName: 'hotPath' });
  const pid = service.child.pid!;
  const serviceStart = performance.now();
  /** Seconds since the service started: where a phase sits in its CPU profile. */
  const at = () => `service t+${num((performance.now() - serviceStart) / 1000, 1)} s`;
  step(`service on ${service.url}; caching ${num(cachedCount)} small images`);

  // Cache the URLs through the service itself, and check every answer.
  const urls = Array.from({ length: cachedCount }, (_, i) => origin.imageUrl('hot', i));
  const client = await connect(service.wsUrl);
  const seeded = await Promise.all(
    Array.from({ length: Math.ceil(cachedCount / 1000) }, (_, k) => client.check(`seed-${k}`, urls.slice(k * 1000, (k + 1) * 1000), 300_000)),
  );
  const seededOk = seeded.reduce((sum, { done }) => sum + Number(done.ok), 0);
  if (seededOk !== cachedCount) throw new Error(`seeding: ${seededOk} of ${cachedCount} ok`);
  await waitIdle(service, 60_000);

  const batches = Array.from({ length: cachedCount / BATCH }, (_, k) => urls.slice(k * BATCH, (k + 1) * BATCH));
  for (const [k, batch] of batches.entries()) {
    const { done, results } = await client.check(`verify-${k}`, batch);
    const answers = done.results as { status: string; source?: string }[];
    if (done.ok !== BATCH || results.length !== 0 || answers.some((r) => r.source !== 'cache')) {
      throw new Error(`batch ${k} is not all cache hits: ${JSON.stringify(done).slice(0, 300)}`);
    }
  }
  await client.close();
  step(`${batches.length} batches of ${BATCH} verified: every URL answered from the cache`);

  // The service's own replies, byte for byte, become the baseline's replies.
  const id0 = idFor(0);
  const requests = batches.map((batch) => checkFrame(id0, batch));
  const probe = await openSocket(service.wsUrl);
  const replies: Buffer[] = [];
  for (const request of requests) replies.push(await firstReply(probe, request));
  const middle = replies.map((r) => r.length).sort((a, b) => a - b)[Math.floor(replies.length / 2)]!;
  const batchReply = replies.find((r) => r.length === middle)!;
  const singleReply = await firstReply(probe, checkFrame(id0, [urls[0]!]));
  await closeSocket(probe);
  const batchExpect = doneHead(id0, BATCH);
  const singleExpect = doneHead(id0, 1);
  if (!batchReply.subarray(0, batchExpect.length).equals(batchExpect)) throw new Error(`unexpected done frame: ${batchReply.subarray(0, 200).toString()}`);
  const idPlace = { idAt: DONE_PREFIX.length, idFrom: CHECK_PREFIX.length, idLength: ID_LENGTH };
  const bare = await startBareServer(dir, { batch: { reply: batchReply, ...idPlace }, single: { reply: singleReply, ...idPlace } });
  step(`baseline bare ws server on ${bare.url}; replies of ${num(batchReply.length)} bytes (100 URLs) and ${num(singleReply.length)} bytes (1 URL)`);

  // 1. Throughput, alternating so both see the same machine state.
  const maxBatches = Math.ceil((10_000_000 * seconds) / BATCH);
  const rates: { service: number[]; bare: number[] } = { service: [], bare: [] };
  let serviceCpu = 0;
  let serviceSeconds = 0;
  /** Each run's CPU of the answering process and of the measuring client (this process), as shares of a core. */
  const busy: { service: string[]; bare: string[] } = { service: [], bare: [] };
  for (let round = 1; round <= rounds; round++) {
    for (const target of ['service', 'bare'] as const) {
      const ws = await openSocket(target === 'service' ? service.wsUrl : `${bare.url}?r=batch`);
      await pipelined(ws, requests, { window, durationMs: 2000, maxBatches, expect: batchExpect });
      const cpuBefore = procCpuSeconds(target === 'service' ? pid : bare.pid);
      const clientBefore = process.cpuUsage();
      const from = at();
      const result = await pipelined(ws, requests, { window, durationMs: seconds * 1000, maxBatches, expect: batchExpect });
      const serverCpu = procCpuSeconds(target === 'service' ? pid : bare.pid) - cpuBefore;
      const client = process.cpuUsage(clientBefore);
      const share = (cpu: number) => `${num((cpu / (result.elapsedMs / 1000)) * 100)} %`;
      busy[target].push(`server ${share(serverCpu)}, client ${share((client.user + client.system) / 1e6)}`);
      if (target === 'service') {
        serviceCpu += serverCpu;
        serviceSeconds += result.elapsedMs / 1000;
      }
      await closeSocket(ws);
      if (result.unexpected > 0) throw new Error(`${target}: ${result.unexpected} unexpected frames, first: ${result.firstUnexpected}`);
      const rate = (result.batches * BATCH) / (result.elapsedMs / 1000);
      rates[target].push(rate);
      step(`round ${round} ${target.padEnd(7)}: ${num(rate)} URLs/s (${num(result.batches)} batches in ${num(result.elapsedMs / 1000, 1)} s; ${busy[target].at(-1)} of a core; ${from} to ${at()})`);
    }
  }
  const serviceRate = median(rates.service);
  const bareRate = median(rates.bare);

  // 2. Latency of single-URL checks at a steady rate.
  const latency: Record<'service' | 'bare', Float64Array> = { service: new Float64Array(), bare: new Float64Array() };
  const achieved: Record<'service' | 'bare', number> = { service: 0, bare: 0 };
  const stalls: Record<'service' | 'bare', string> = { service: '', bare: '' };
  for (const target of ['service', 'bare'] as const) {
    const ws = await openSocket(target === 'service' ? service.wsUrl : `${bare.url}?r=single`);
    const from = at();
    const result = await openLoop(ws, urls, { rate: LATENCY_RATE, warmupMs: 2000, durationMs: seconds * 1000, expect: singleExpect });
    await closeSocket(ws);
    if (result.unexpected > 0) throw new Error(`${target}: ${result.unexpected} unexpected frames in the latency run`);
    latency[target] = sortedCopy(result.rtts);
    achieved[target] = result.rate;
    stalls[target] = `${result.stalls.count} (${num(result.stalls.ms)} ms in all)`;
    step(`latency ${target.padEnd(7)}: p50 ${ms(percentile(latency[target], 50))}, p99 ${ms(percentile(latency[target], 99))} at ${num(result.rate)} checks/s (${from} to ${at()})`);
  }
  const p = (target: 'service' | 'bare', q: number) => percentile(latency[target], q);

  report.figure('cached URLs in the store', num(cachedCount), 'small JPEGs cached through the service itself');
  report.figure('reply size, 100-URL done frame', `${num(batchReply.length)} B`, 'the baseline sends this many bytes too');
  report.goal('service throughput', `${num(serviceRate)} URLs/s`, `≥ ${num(GOAL_RATE)} URLs/s`, serviceRate >= GOAL_RATE, `median of ${rounds} × ${seconds} s, ${window} batches in flight; runs: ${rates.service.map((r) => num(r)).join(', ')}`);
  report.figure('baseline (bare ws) throughput', `${num(bareRate)} URLs/s`, `runs: ${rates.bare.map((r) => num(r)).join(', ')}`);
  report.goal('service / baseline', ratio(serviceRate / bareRate), `≥ ${ratio(GOAL_SHARE)}`, serviceRate / bareRate >= GOAL_SHARE);
  report.figure('service CPU while measured', `${num((serviceCpu / serviceSeconds) * 100)} % of a core`, `${num((serviceCpu * 1e6) / (serviceRate * serviceSeconds), 2)} µs of CPU per URL`);
  report.figure('CPU of each side, per run', `service runs: ${busy.service.join('; ')}`, `bare runs: ${busy.bare.join('; ')} (server = the answering process, client = the measuring WebSocket client, this process)`);
  report.figure('service p50, single-URL check', ms(p('service', 50)), `at ${num(achieved.service)} checks/s sent open-loop`);
  report.figure('service p90', ms(p('service', 90)));
  report.goal('service p99', ms(p('service', 99)), `< ${GOAL_P99_MS} ms`, p('service', 99) < GOAL_P99_MS);
  report.figure('service p99.9 / max', `${ms(p('service', 99.9))} / ${ms(p('service', 100))}`);
  report.figure('baseline p50 / p99', `${ms(p('bare', 50))} / ${ms(p('bare', 99))}`, `at ${num(achieved.bare)} checks/s`);
  report.figure('p99 service / baseline', ratio(p('service', 99) / p('bare', 99)));
  report.figure(`measuring client's stalls (> ${STALL_MS} ms)`, `service run ${stalls.service}`, `bare run ${stalls.bare}: the client (this process) did not run for that long, and a reply that came meanwhile counts the stall in its round trip`);

  await bare.close();
  await stopService(service);
  await origin.close();
  report.finish();
});

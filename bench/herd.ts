/**
 * Thundering herd: 500 sockets ask at once for the same 200 uncached URLs; the
 * origin (test/helpers/origin.ts, in a process of its own: bench/lib/originProcess.ts)
 * adds 20 ms to every image response.
 *
 *   npm run bench:herd       (node --import tsx bench/herd.ts)
 *
 * Goals: exactly 200 origin requests, and the service's own CPU (all its
 * threads, /proc/PID/stat) per herd within 1.2× of its CPU per one-socket round
 * asking for the same 200 (each on fresh URLs, three repetitions): 100,000
 * answers for at most a fifth of the downloads' cost. The wall-clock ratio is
 * reported beside it, as information: on a small machine it mostly measures the
 * measuring client, whose CPU is reported apart.
 *
 * The limit of the answers themselves: a bare `ws` server in its own process
 * (bench/lib/bareWsServer.ts) answering each of the 500 sockets' check with the
 * frames the service sent one socket in the last herd (captured, pre-built),
 * in one write per socket; its CPU per herd beside the service's CPU beyond
 * its one-socket round.
 *
 * Peer: nginx (Debian's package, installed if missing) with `proxy_cache` and
 * `proxy_cache_lock on` in front of the same origin, asked the same way: 500
 * HTTP/2 connections, each with its 200 requests at once.
 */
import http2 from 'node:http2';
import { askAll, openMany } from './lib/herdLoad.js';
import { ensureTool, toolVersion } from './lib/install.js';
import { startNginx } from './lib/nginx.js';
import { startOriginProcess } from './lib/originProcess.js';
import { ms, num, ratio, Report, step } from './lib/report.js';
import { envNumber, scaled } from './lib/scale.js';
import { addCpuSince, clockNow, cpuSplit, procCpuSeconds, profileWindow, procWriteCalls, runScenario, startBenchService, stopService, tempDir } from './lib/service.js';
import { median } from './lib/stats.js';
import { CHECK_PREFIX, closeSocket, DONE_PREFIX, ID_LENGTH, openSocket, startBareServer } from './lib/wsLoad.js';

const URLS = 200;
const ORIGIN_DELAY_MS = 20;
const GOAL_FACTOR = 1.2;

const names = (set: string, count: number) => Array.from({ length: count }, (_, i) => `${set}-${i}`);

/** `count` HTTP/2 connections, each asking for every path at once; the time from the first request to the last body. */
async function h2Herd(base: string, count: number, paths: string[], timeoutMs: number): Promise<{ ms: number; ok: number; failed: number; clientCpu: number; firstFailure?: string }> {
  const sessions = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<http2.ClientHttp2Session>((resolve, reject) => {
          const session = http2.connect(base);
          session.once('connect', () => resolve(session));
          session.once('error', reject);
        }),
    ),
  );
  let ok = 0;
  let failed = 0;
  let firstFailure: string | undefined;
  const start = performance.now();
  const cpu = process.cpuUsage();
  const all = Promise.all(
    sessions.flatMap((session) =>
      paths.map(
        (path) =>
          new Promise<void>((resolve) => {
            const req = session.request({ ':path': path });
            let status = 0;
            req.on('response', (headers) => (status = Number(headers[':status'])));
            req.on('data', () => {});
            req.on('end', () => {
              if (status === 200) ok++;
              else {
                failed++;
                firstFailure ??= `HTTP ${status}`;
              }
              resolve();
            });
            req.on('error', (error: Error) => {
              failed++;
              firstFailure ??= error.message;
              resolve();
            });
            req.end();
          }),
      ),
    ),
  );
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([all, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`nginx herd: not finished in ${timeoutMs} ms`)), timeoutMs)))]);
  clearTimeout(timer);
  const elapsed = performance.now() - start;
  const used = process.cpuUsage(cpu);
  await Promise.all(sessions.map((session) => new Promise<void>((resolve) => session.close(() => resolve()))));
  return { ms: elapsed, ok, failed, clientCpu: (used.user + used.system) / 1e6, ...(firstFailure ? { firstFailure } : {}) };
}

/** A bare ws server answering `count` sockets' check with `frames` (results, then the done frame); its CPU per herd, the mean of `reps`. */
async function bareHerd(dir: string, count: number, frames: Buffer[], urls: string[], reps: number): Promise<{ cpu: number; runs: number[]; frames: number }> {
  const done = frames.at(-1);
  if (done === undefined || !done.toString('latin1', 0, 20).startsWith('{"type":"done"')) throw new Error('herd: no done frame captured');
  const before = frames.slice(0, -1);
  const bare = await startBareServer(dir, { herd: { reply: done, idAt: DONE_PREFIX.length, idFrom: CHECK_PREFIX.length, idLength: ID_LENGTH, before } });
  const sockets = await openMany(`${bare.url}?r=herd`, count);
  const runs: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const cpu = procCpuSeconds(bare.pid);
    const run = await askAll(sockets, urls, 120_000);
    runs.push(procCpuSeconds(bare.pid) - cpu);
    if (run.ok !== count) throw new Error(`bare herd: ${run.ok} of ${count} sockets had every URL ok`);
    step(`bare herd rep ${rep + 1}: ${count} sockets ${ms(run.ms, 0)}, ${num(runs[rep]!, 2)} s of its CPU`);
  }
  await Promise.all(sockets.map(closeSocket));
  await bare.close();
  // A mean, as the service's figures beside it are (their CPU over all repetitions, divided).
  return { cpu: runs.reduce((sum, v) => sum + v, 0) / runs.length, runs, frames: frames.length };
}

runScenario('herd', 12 * 60_000, async () => {
  const socketCount = scaled(500, 10);
  const reps = envNumber('BENCH_HERD_REPS', 3);
  const workers = envNumber('BENCH_HERD_WORKERS', 16);
  const report = new Report('herd', 'Thundering herd: 500 sockets, the same 200 uncached URLs', 'npm run bench:herd');
  const dir = await tempDir('herd');
  // Every set of names is new to the service and to nginx; their images are made
  // before the clock starts, so the origin's time is its 20 ms and little else.
  // The origin runs in its own process: here it would wait for the 500 sockets'
  // frames, and the bench would time its own client.
  const sets = (prefix: string) => Array.from({ length: reps }, (_, rep) => names(`${prefix}${rep}`, URLS));
  const plan = { single: sets('s'), herd: sets('h'), nginxSingle: sets('ns'), nginxHerd: sets('nh') };
  step(`making ${num(Object.values(plan).flat(2).length)} origin images (origin in its own process)`);
  const origin = await startOriginProcess({ delayMs: ORIGIN_DELAY_MS, images: Object.values(plan).flat(2) });

  const service = await startBenchService({ dataDir: `${dir}/data`, coversDir: `${dir}/covers`, workers, resize: 'off', profileName: 'herd' });
  const serviceStart = performance.now();
  /** Seconds since the service started: where a phase sits in its CPU profile. */
  const at = () => `service t+${num((performance.now() - serviceStart) / 1000, 1)} s`;
  step(`service on ${service.url} (--workers ${workers} --resize off); opening ${socketCount} sockets`);
  const sockets = await openMany(service.wsUrl, socketCount);
  const single = await openSocket(service.wsUrl);
  const urlsOf = (set: string[]) => set.map((name) => `${origin.url}/img/${name}.jpg`);

  const singleMs: number[] = [];
  const herdMs: number[] = [];
  const herdHits: number[] = [];
  /** The service's CPU over the one-socket rounds and over the herds. */
  const singleUsed = { total: 0, kernel: 0, main: 0 };
  const herdUsed = { total: 0, kernel: 0, main: 0 };
  let herdWrites = 0;
  let clientCpu = 0;
  let singleClientCpu = 0;
  /** One socket's frames in the last herd, as the service sent them: the physical limit's replies. */
  const captured: Buffer[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const from = at();
    const singleFrom = cpuSplit(service.child.pid!);
    const one = await askAll([single], urlsOf(plan.single[rep]!), 60_000);
    addCpuSince(singleUsed, service.child.pid!, singleFrom);
    const middle = at();
    if (one.ok !== 1) throw new Error('single socket: not every URL ok');
    singleMs.push(one.ms);
    singleClientCpu += one.clientCpu;
    const herdFrom = cpuSplit(service.child.pid!);
    const writes = procWriteCalls(service.child.pid!);
    const herdClock = clockNow();
    const many = await askAll(sockets, urlsOf(plan.herd[rep]!), 120_000, rep === reps - 1 ? captured : undefined);
    profileWindow(`herd ${rep + 1}`, herdClock);
    addCpuSince(herdUsed, service.child.pid!, herdFrom);
    herdWrites += procWriteCalls(service.child.pid!) - writes;
    if (many.ok !== socketCount) throw new Error(`herd: ${many.ok} of ${socketCount} sockets had every URL ok`);
    herdMs.push(many.ms);
    clientCpu += many.clientCpu;
    herdHits.push(await origin.hits(plan.herd[rep]!));
    step(`rep ${rep + 1}: one socket ${ms(one.ms, 0)} (${await origin.hits(plan.single[rep]!)} origin requests), ${socketCount} sockets ${ms(many.ms, 0)} (${herdHits[rep]} origin requests, ${num(many.results)} result frames; one socket ${from}, herd ${middle} to ${at()})`);
  }
  await Promise.all([...sockets, single].map(closeSocket));
  await stopService(service);

  const one = median(singleMs);
  const many = median(herdMs);
  const hitsOk = herdHits.every((hits) => hits === URLS);
  report.figure('one socket, 200 URLs', ms(one, 0), `median of ${reps}: ${singleMs.map((v) => ms(v, 0)).join(', ')}; --workers ${workers}, origin +${ORIGIN_DELAY_MS} ms`);
  report.figure(`${socketCount} sockets, the same 200 URLs`, ms(many, 0), `median of ${reps}: ${herdMs.map((v) => ms(v, 0)).join(', ')}`);
  report.goal('origin requests for the herd', herdHits.join(', '), `exactly ${URLS} each`, hitsOk);
  report.figure('service CPU per one-socket round', `${num(singleUsed.total / reps, 2)} s`, `all threads, ${num(singleUsed.kernel / reps, 2)} s of it in the kernel, ${num(singleUsed.main / reps, 2)} s on the main thread; ${URLS} downloads, ${URLS} answers; the measuring client used ${num(singleClientCpu / reps, 2)} s`);
  report.figure('service CPU per herd', `${num(herdUsed.total / reps, 2)} s`, `all threads, ${num(herdUsed.kernel / reps, 2)} s of it in the kernel, ${num(herdUsed.main / reps, 2)} s on the main thread; ${URLS} downloads, ${num(socketCount * URLS)} answers; the measuring WebSocket client (in the bench process) used ${num(clientCpu / reps, 2)} s`);
  const extraAnswers = (socketCount - 1) * URLS;
  report.goal('service CPU per herd / per one-socket round', ratio(herdUsed.total / singleUsed.total), `≤ ${ratio(GOAL_FACTOR)}`, herdUsed.total / singleUsed.total <= GOAL_FACTOR, `${num(((herdUsed.total - singleUsed.total) / reps / extraAnswers) * 1e6, 1)} µs of service CPU per answer beyond the one socket's`);
  report.figure('herd time / one-socket time (wall, information)', ratio(many / one), 'the measuring client shares the cores');
  report.figure('service write system calls per herd', num(Math.round(herdWrites / reps)), 'syscw of /proc/PID/io: socket writes (result rounds, done frames) and the covers\' file and database writes');

  // The physical limit of the answers: a bare ws server (its own process) that
  // answers each socket's check with the very frames the service sent (captured
  // from one socket of the last herd), pre-built, in one write per socket.
  const limit = await bareHerd(dir, socketCount, captured, urlsOf(plan.herd[reps - 1]!), reps);
  const extraCpu = (herdUsed.total - singleUsed.total) / reps;
  report.figure('limit: bare ws server, CPU per herd', `${num(limit.cpu, 2)} s`, `${socketCount} checks read, ${num(limit.frames * socketCount)} pre-built frames sent (one socket's ${num(limit.frames)} as the service sent them), one write per socket; mean of ${reps}: ${limit.runs.map((v) => num(v, 2)).join(', ')} s`);
  report.figure('service CPU per herd beyond one socket / the bare limit', ratio(extraCpu / limit.cpu), `${num(extraCpu, 2)} s against ${num(limit.cpu, 2)} s: what the service spends on the answers above what sending them costs at least`);
  // How far the goal is from the limit: the ratio a service whose answers cost
  // no more than sending them would reach, and what the goal leaves for the rest.
  const singleCpu = singleUsed.total / reps;
  const leftOver = (GOAL_FACTOR - 1) * singleCpu - limit.cpu;
  report.figure(
    'the best ratio reachable (one-socket round + the bare limit)',
    ratio((singleCpu + limit.cpu) / singleCpu),
    `the goal ${ratio(GOAL_FACTOR)} leaves ${num(leftOver * 1000, 0)} ms of CPU beyond the limit for parsing, joining and framing ${num(extraAnswers)} answers: ${num((leftOver / extraAnswers) * 1e6, 2)} µs each (the service spends ${num(((extraCpu - limit.cpu) / extraAnswers) * 1e6, 2)} µs)`,
  );

  // The peer.
  const tool = process.env.BENCH_NO_PEERS ? { skip: 'BENCH_NO_PEERS is set' } : ensureTool('nginx', 'nginx');
  if ('skip' in tool) {
    report.skip('nginx proxy_cache_lock', tool.skip);
  } else {
    const nginx = await startNginx(tool.path, `${dir}/nginx`, origin.url);
    step(`${toolVersion(tool.path, '-v')} on ${nginx.url} (HTTP/2, proxy_cache_lock on)`);
    const nSingle: number[] = [];
    const nHerd: number[] = [];
    const nHits: number[] = [];
    let failed = 0;
    let nClientCpu = 0;
    for (let rep = 0; rep < reps; rep++) {
      const a = await h2Herd(nginx.url, 1, plan.nginxSingle[rep]!.map((name) => `/img/${name}.jpg`), 60_000);
      const b = await h2Herd(nginx.url, socketCount, plan.nginxHerd[rep]!.map((name) => `/img/${name}.jpg`), 180_000);
      failed += a.failed + b.failed;
      nClientCpu += b.clientCpu;
      nSingle.push(a.ms);
      nHerd.push(b.ms);
      nHits.push(await origin.hits(plan.nginxHerd[rep]!));
      step(`nginx rep ${rep + 1}: one connection ${ms(a.ms, 0)}, ${socketCount} connections ${ms(b.ms, 0)} (${nHits[rep]} origin requests, ${b.ok} ok, ${b.failed} failed${b.firstFailure ? `: ${b.firstFailure}` : ''})`);
    }
    const errors = (await nginx.errors()).trim();
    await nginx.close();
    const nOne = median(nSingle);
    const nMany = median(nHerd);
    report.figure('nginx: one connection, 200 URLs', ms(nOne, 0), `median of ${reps}: ${nSingle.map((v) => ms(v, 0)).join(', ')}`);
    report.figure(`nginx: ${socketCount} connections`, ms(nMany, 0), `median of ${reps}: ${nHerd.map((v) => ms(v, 0)).join(', ')}${failed ? `; ${failed} requests failed` : ''}; the measuring HTTP/2 client (in the bench process) used ${num(nClientCpu / reps, 2)} s of CPU`);
    report.figure('nginx: origin requests for the herd', nHits.join(', '));
    report.figure('nginx herd / one-connection time', ratio(nMany / nOne));
    report.figure('coverhelper herd time / nginx herd time', ratio(many / nMany), '< 1 means coverhelper was faster');
    if (errors) report.note(`nginx error log: ${errors.split('\n').slice(-3).join(' | ')}`);
  }
  await origin.close();
  report.finish();
});

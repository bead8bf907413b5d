/**
 * The proxy prefix: stored covers answered through `GET /?url=<cover URL>` per
 * second, side by side with nginx serving the same files from disk; then the
 * herd through the proxy.
 *
 *   npm run bench:proxy         (node --import tsx bench/proxy.ts)
 *
 * Stored covers: `BENCH_PROXY_COVERS` (1,000) JPEGs of `BENCH_PROXY_SIZE`
 * (`large`: 640×400, about 50 KB, a blog cover's size; or `small`) are cached
 * through the service with the client package, then asked for as a static
 * blog's page does, `<prefix><cover URL>` with the cover URL encoded. Each side
 * gets the same load from the bench process: `BENCH_PROXY_CONNECTIONS` (32)
 * keep-alive HTTP/1.1 connections (undici's Pool), one request at a time on
 * each, closed loop, for `BENCH_PROXY_SECONDS` (5) s after a 1 s warm-up,
 * `BENCH_PROXY_ROUNDS` (3) rounds alternating. A third line in the same rounds,
 * the service's own `GET /covers/<path>` of the same files, tells the proxy's
 * own work from the cost of serving a file. Every answer is checked: 200,
 * an `image/…` Content-Type, no `X-Coverhelper-Error` (not the placeholder), a
 * body of at least one byte. Goal: at least 0.5× nginx.
 *
 * The peer, nginx, runs with one worker process (the service is one event
 * loop) and `location /covers/ { root …; }` over the service's own covers
 * folder (`bench/lib/nginxStatic.ts`): the static server a blog owner would put
 * in front, asked for each cover at its path under `/covers/`. It looks up
 * nothing and checks nothing: a ceiling, not a rival.
 *
 * The herd: `BENCH_PROXY_HERD` (500) requests at once, each on its own
 * connection, for the same `BENCH_PROXY_HERD_URLS` (50) covers not yet stored
 * (10 each), the origin adding 20 ms to every image. Goal: exactly one origin
 * request per cover; every answer the cover (checked as above); the time from
 * the first request to the last body.
 */
import { Pool } from 'undici';
import { CoverClient } from '@coverhelper/client';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import type { SizeClass } from './lib/bulkOrigin.js';
import { ensureTool, toolVersion } from './lib/install.js';
import { startStaticNginx } from './lib/nginxStatic.js';
import { mb, ms, num, ratio, Report, step } from './lib/report.js';
import { envNumber, scaled } from './lib/scale.js';
import { procCpuSeconds, runScenario, startBenchService, stopService, tempDir, waitIdle } from './lib/service.js';
import { median } from './lib/stats.js';

const GOAL_RATIO = 0.5;
const HERD_DELAY_MS = 20;

const proxyPath = (url: string) => `/?url=${encodeURIComponent(url)}`;

interface Answer {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  bytes: number;
}

/** Why an answer is not a cover's bytes, or undefined when it is. */
function wrong({ statusCode, headers, bytes }: Answer): string | undefined {
  const type = headers['content-type'];
  if (statusCode === 200 && typeof type === 'string' && type.startsWith('image/') && headers['x-coverhelper-error'] === undefined && bytes > 0) return undefined;
  return `${statusCode} ${String(type)} ${bytes} bytes${headers['x-coverhelper-error'] ? ` X-Coverhelper-Error: ${String(headers['x-coverhelper-error'])}` : ''}`;
}

async function get(pool: Pool, path: string): Promise<Answer> {
  const { statusCode, headers, body } = await pool.request({ path, method: 'GET' });
  let bytes = 0;
  for await (const chunk of body) bytes += (chunk as Buffer).length;
  return { statusCode, headers, bytes };
}

/** Closed-loop GETs of `paths` on `connections` keep-alive connections for `durationMs`: images per second. */
async function load(origin: string, paths: readonly string[], connections: number, durationMs: number): Promise<{ rate: number; bytesPerSecond: number; requests: number; bad: number; firstBad?: string }> {
  const pool = new Pool(origin, { connections, pipelining: 1 });
  const start = performance.now();
  const stopAt = start + durationMs;
  let next = 0;
  let ok = 0;
  let bytes = 0;
  let bad = 0;
  let firstBad: string | undefined;
  const worker = async () => {
    while (performance.now() < stopAt) {
      const answer = await get(pool, paths[next++ % paths.length]!);
      const why = wrong(answer);
      if (why === undefined) {
        ok++;
        bytes += answer.bytes;
      } else {
        bad++;
        firstBad ??= why;
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  const seconds = (performance.now() - start) / 1000;
  await pool.close();
  return { rate: ok / seconds, bytesPerSecond: bytes / seconds, requests: ok + bad, bad, ...(firstBad ? { firstBad } : {}) };
}

runScenario('proxy', 10 * 60_000, async () => {
  const count = envNumber('BENCH_PROXY_COVERS', scaled(1000, 100));
  const seconds = envNumber('BENCH_PROXY_SECONDS', scaled(5, 2));
  const connections = envNumber('BENCH_PROXY_CONNECTIONS', 32);
  const rounds = envNumber('BENCH_PROXY_ROUNDS', 3);
  const herdRequests = envNumber('BENCH_PROXY_HERD', 500);
  const herdUrls = envNumber('BENCH_PROXY_HERD_URLS', 50);
  const size = (process.env.BENCH_PROXY_SIZE ?? 'large') as SizeClass;
  if (size !== 'large' && size !== 'small') throw new Error(`BENCH_PROXY_SIZE must be large or small, got ${String(size)}`);
  const report = new Report('proxy', 'The proxy prefix: stored covers through /?url= against nginx serving the files; the herd', 'npm run bench:proxy');

  const dir = await tempDir('proxy');
  const origin = await startBulkOrigin(size);
  const service = await startBenchService({ dataDir: `${dir}/data`, coversDir: `${dir}/covers`, resize: 'off', profileName: 'proxy' });
  const pid = service.child.pid!;
  step(`service on ${service.url}; caching ${num(count)} ${size} images (about ${mb(origin.meanBytes * count)})`);
  const urls = Array.from({ length: count }, (_, i) => origin.imageUrl('proxy', i));
  const covers = new CoverClient(service.wsUrl, { timeoutMs: 300_000 });
  const cached = await covers.check(urls);
  await covers.close();
  if (cached.some((r) => r.status !== 'ok' || r.coverUrl === undefined)) throw new Error('not every URL was cached');
  await waitIdle(service, 60_000);
  const proxyPaths = urls.map(proxyPath);
  const filePaths = cached.map((r) => new URL(r.coverUrl!).pathname);

  // Each proxy URL once, checked: the cover's own bytes, no download started.
  const check = new Pool(service.url, { connections: 8 });
  const requestsBefore = origin.requests;
  for (const [i, p] of proxyPaths.entries()) {
    const answer = await get(check, p);
    const why = wrong(answer);
    if (why !== undefined) throw new Error(`${p}: ${why}`);
    const stored = await get(check, filePaths[i]!);
    if (stored.bytes !== answer.bytes) throw new Error(`${p}: ${answer.bytes} bytes, the stored cover ${filePaths[i]} has ${stored.bytes}`);
  }
  await check.close();
  if (origin.requests !== requestsBefore) throw new Error(`${origin.requests - requestsBefore} origin requests while answering stored covers`);
  step(`${num(count)} proxy URLs, each 200 with its stored cover's bytes`);

  const tool = process.env.BENCH_NO_PEERS ? { skip: 'BENCH_NO_PEERS is set' } : ensureTool('nginx', 'nginx');
  const nginx = 'skip' in tool ? undefined : await startStaticNginx(tool.path, `${dir}/nginx`, dir, filePaths[0]!, 1);
  if (nginx && 'path' in tool) step(`${toolVersion(tool.path, '-v')} on ${nginx.url} (one worker, location /covers/ { root …; })`);

  const targets = ['service', 'covers', 'nginx'] as const;
  const rates: Record<(typeof targets)[number], number[]> = { service: [], covers: [], nginx: [] };
  const throughput: Record<(typeof targets)[number], number[]> = { service: [], covers: [], nginx: [] };
  const cpu = { service: { seconds: 0, requests: 0 }, covers: { seconds: 0, requests: 0 } };
  for (let round = 1; round <= rounds; round++) {
    for (const target of targets) {
      if (target === 'nginx' && !nginx) continue;
      const base = target === 'nginx' ? nginx!.url : service.url;
      const paths = target === 'service' ? proxyPaths : filePaths;
      await load(base, paths, connections, 1000);
      const cpuBefore = procCpuSeconds(pid);
      const result = await load(base, paths, connections, seconds * 1000);
      if (result.bad > 0) throw new Error(`${target}: ${result.bad} answers were not the cover, first: ${result.firstBad}`);
      if (target !== 'nginx') {
        cpu[target].seconds += procCpuSeconds(pid) - cpuBefore;
        cpu[target].requests += result.requests;
      }
      rates[target].push(result.rate);
      throughput[target].push(result.bytesPerSecond);
      step(`round ${round} ${target.padEnd(7)}: ${num(result.rate)} images/s (${mb(result.bytesPerSecond)}/s)`);
    }
  }
  if (origin.requests !== requestsBefore) throw new Error(`${origin.requests - requestsBefore} origin requests while answering stored covers`);
  const serviceRate = median(rates.service);
  report.figure('stored covers', num(count), `${size} JPEGs (mean ${num(origin.meanBytes / 1024, 1)} KB), cached through the client package, --resize off`);
  report.figure('service, /?url= stored covers', `${num(serviceRate)} /s`, `${mb(median(throughput.service))}/s; median of ${rounds} × ${seconds} s, ${connections} keep-alive connections; runs: ${rates.service.map((r) => num(r)).join(', ')}`);
  report.figure('service CPU per image', `${num((cpu.service.seconds * 1e6) / cpu.service.requests, 1)} µs`, 'cover URL parse, allow check, index lookup, open/stat, the bytes streamed');
  report.figure('service, /covers/ the same files', `${num(median(rates.covers))} /s`, `${mb(median(throughput.covers))}/s, ${num((cpu.covers.seconds * 1e6) / cpu.covers.requests, 1)} µs CPU each; the service's own static route (no proxy work), a reference; runs: ${rates.covers.map((r) => num(r)).join(', ')}`);
  if (nginx) {
    const nginxRate = median(rates.nginx);
    report.figure('nginx, the same files (one worker)', `${num(nginxRate)} /s`, `${mb(median(throughput.nginx))}/s; runs: ${rates.nginx.map((r) => num(r)).join(', ')}`);
    report.goal('service / nginx', ratio(serviceRate / nginxRate), `≥ ${ratio(GOAL_RATIO)}`, serviceRate / nginxRate >= GOAL_RATIO, 'the same load generator (undici, in the bench process) for both');
    await nginx.close();
  } else {
    report.skip('nginx, the same files', 'skip' in tool ? tool.skip : 'not started', `≥ ${ratio(GOAL_RATIO)}`);
  }

  // The herd: every request on its own connection, all at once, for covers not yet stored.
  origin.delayMs = HERD_DELAY_MS;
  const herdTargets = Array.from({ length: herdUrls }, (_, i) => proxyPath(origin.imageUrl('herd', i)));
  const herdPool = new Pool(service.url, { connections: herdRequests, pipelining: 1 });
  step(`herd: ${num(herdRequests)} requests at once for ${num(herdUrls)} new covers through /?url=`);
  const herdCpuBefore = procCpuSeconds(pid);
  const herdStart = performance.now();
  const answers = await Promise.all(Array.from({ length: herdRequests }, (_, i) => get(herdPool, herdTargets[i % herdUrls]!)));
  const herdMs = performance.now() - herdStart;
  const herdCpu = procCpuSeconds(pid) - herdCpuBefore;
  await herdPool.close();
  const herdBad = answers.map(wrong).filter((why) => why !== undefined);
  const originHerd = origin.perSet.get('herd') ?? 0;
  report.goal('herd: origin requests', num(originHerd), `= ${num(herdUrls)}`, originHerd === herdUrls, `${num(herdRequests)} requests at once on ${num(herdRequests)} connections, ${num(herdRequests / herdUrls)} per cover; origin adds ${HERD_DELAY_MS} ms`);
  report.goal('herd: answers that are the cover', `${num(herdRequests - herdBad.length)} / ${num(herdRequests)}`, `= ${num(herdRequests)}`, herdBad.length === 0, herdBad.length > 0 ? `first: ${herdBad[0]}` : '200, image/jpeg, no X-Coverhelper-Error');
  report.figure('herd: time until all answered', ms(herdMs, 0), `from the first request to the last body, connections opened on the way; service CPU ${num(herdCpu, 2)} s`);

  await stopService(service);
  await origin.close();
  report.finish();
});

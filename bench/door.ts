/**
 * The HTTP door: cached `GET /c/<signature>/<base64url>` redirects per second,
 * side by side with nginx answering a static `302` on the same machine.
 *
 *   npm run bench:door          (node --import tsx bench/door.ts)
 *
 * `BENCH_DOOR_URLS` (1,000) URLs are cached through the service, then signed
 * with the client package's `signCoverUrl`. Each side gets the same load
 * from the bench process: `BENCH_DOOR_CONNECTIONS` (32) keep-alive HTTP/1.1
 * connections (undici's Pool), one request at a time on each, closed loop, for
 * `BENCH_DOOR_SECONDS` (5) s after a 1 s warm-up, `BENCH_DOOR_ROUNDS` (3) rounds
 * alternating. Every answer is checked: a 302 whose Location is a cover URL.
 *
 * The peer, nginx, runs with one worker process (the service is one event
 * loop) and `return 302` in a `location /c/`: no signature, no lookup, no
 * logging. It is the ceiling of a redirect on this machine, not a rival.
 */
import { Pool } from 'undici';
import { CoverClient, signCoverUrl } from '@coverhelper/client';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import { ensureTool, toolVersion } from './lib/install.js';
import { startRedirectNginx } from './lib/nginxRedirect.js';
import { num, ratio, Report, step } from './lib/report.js';
import { envNumber, scaled } from './lib/scale.js';
import { procCpuSeconds, runScenario, startBenchService, stopService, tempDir, waitIdle } from './lib/service.js';
import { median } from './lib/stats.js';

const KEY = 'bench-door-key-0123456789abcdef';

/** Closed-loop GETs of `paths` on `connections` keep-alive connections for `durationMs`: 302s per second. */
async function load(origin: string, paths: readonly string[], connections: number, durationMs: number, locationPrefix: string): Promise<{ rate: number; bad: number; firstBad?: string }> {
  const pool = new Pool(origin, { connections, pipelining: 1 });
  const start = performance.now();
  const stopAt = start + durationMs;
  let next = 0;
  let ok = 0;
  let bad = 0;
  let firstBad: string | undefined;
  const worker = async () => {
    while (performance.now() < stopAt) {
      const { statusCode, headers, body } = await pool.request({ path: paths[next++ % paths.length]!, method: 'GET' });
      await body.dump();
      const location = headers.location;
      if (statusCode === 302 && typeof location === 'string' && location.startsWith(locationPrefix)) ok++;
      else {
        bad++;
        firstBad ??= `${statusCode} ${String(location)}`;
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  const elapsed = performance.now() - start;
  await pool.close();
  return { rate: ok / (elapsed / 1000), bad, ...(firstBad ? { firstBad } : {}) };
}

runScenario('door', 10 * 60_000, async () => {
  const count = envNumber('BENCH_DOOR_URLS', scaled(1000, 100));
  const seconds = envNumber('BENCH_DOOR_SECONDS', scaled(5, 2));
  const connections = envNumber('BENCH_DOOR_CONNECTIONS', 32);
  const rounds = envNumber('BENCH_DOOR_ROUNDS', 3);
  const report = new Report('door', 'The HTTP door: cached /c/ redirects against nginx\'s static 302', 'npm run bench:door');

  const dir = await tempDir('door');
  const origin = await startBulkOrigin('small');
  const service = await startBenchService({ dataDir: `${dir}/data`, coversDir: `${dir}/covers`, resize: 'off', args: ['--url-key', KEY], profileName: 'door' });
  const pid = service.child.pid!;
  step(`service on ${service.url}; caching ${num(count)} small images`);
  const urls = Array.from({ length: count }, (_, i) => origin.imageUrl('door', i));
  const covers = new CoverClient(service.wsUrl, { timeoutMs: 300_000 });
  const cached = await covers.check(urls);
  await covers.close();
  if (cached.some((r) => r.status !== 'ok')) throw new Error('not every URL was cached');
  await waitIdle(service, 60_000);
  const paths = urls.map((url) => new URL(signCoverUrl(url, KEY, service.url)).pathname);
  const coverPrefix = `${service.url}/covers/`;

  // Each signed URL once, checked: a redirect to its own cover.
  for (const [i, p] of paths.entries()) {
    const res = await fetch(`${service.url}${p}`, { redirect: 'manual' });
    if (res.status !== 302 || res.headers.get('location') !== cached[i]!.coverUrl) throw new Error(`${p}: ${res.status} ${res.headers.get('location')}`);
  }
  step(`${num(count)} signed URLs, each a 302 to its cover`);

  const tool = process.env.BENCH_NO_PEERS ? { skip: 'BENCH_NO_PEERS is set' } : ensureTool('nginx', 'nginx');
  const nginx = 'skip' in tool ? undefined : await startRedirectNginx(tool.path, `${dir}/nginx`, `${coverPrefix}fixed.jpg`, 1);
  if (nginx && 'path' in tool) step(`${toolVersion(tool.path, '-v')} on ${nginx.url} (one worker, return 302)`);

  const rates: { service: number[]; nginx: number[] } = { service: [], nginx: [] };
  let serviceCpu = 0;
  let serviceRequests = 0;
  for (let round = 1; round <= rounds; round++) {
    for (const target of ['service', 'nginx'] as const) {
      if (target === 'nginx' && !nginx) continue;
      const base = target === 'service' ? service.url : nginx!.url;
      await load(base, paths, connections, 1000, coverPrefix);
      const cpuBefore = procCpuSeconds(pid);
      const result = await load(base, paths, connections, seconds * 1000, coverPrefix);
      if (result.bad > 0) throw new Error(`${target}: ${result.bad} answers were not the redirect, first: ${result.firstBad}`);
      if (target === 'service') {
        serviceCpu += procCpuSeconds(pid) - cpuBefore;
        serviceRequests += result.rate * seconds;
      }
      rates[target].push(result.rate);
      step(`round ${round} ${target.padEnd(7)}: ${num(result.rate)} redirects/s`);
    }
  }
  const serviceRate = median(rates.service);
  report.figure('signed URLs (cached)', num(count), 'small JPEGs, cached through the client package');
  report.figure('service, cached /c/ redirects', `${num(serviceRate)} /s`, `median of ${rounds} × ${seconds} s, ${connections} keep-alive connections; runs: ${rates.service.map((r) => num(r)).join(', ')}`);
  report.figure('service CPU per redirect', `${num((serviceCpu * 1e6) / serviceRequests, 1)} µs`, 'signature check, URL lookup in the cover memory, the 302');
  if (nginx) {
    const nginxRate = median(rates.nginx);
    report.figure('nginx, static 302 (one worker)', `${num(nginxRate)} /s`, `runs: ${rates.nginx.map((r) => num(r)).join(', ')}`);
    report.figure('service / nginx', ratio(serviceRate / nginxRate), 'the same load generator (undici, in the bench process) for both');
    await nginx.close();
  } else {
    report.skip('nginx, static 302', 'skip' in tool ? tool.skip : 'not started');
  }
  await stopService(service);
  await origin.close();
  report.finish();
});

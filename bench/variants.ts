/**
 * Variants made on demand, against the same renders done by a plain script.
 *
 *   npm run bench:variants       (node --import tsx bench/variants.ts)
 *
 * Photo-like 1146×717 JPEG originals (bench/lib/photoImages.ts, each its own
 * pixels, ~125 KB) are stored first the way a user's are: the real service
 * (`--resize 320x200`, the default; the original kept beside the cover) downloads
 * each from an origin on 127.0.0.1 through `POST /api/check`. Then rounds
 * alternate, each on covers of its own so that every request is a render:
 * - coverhelper: for each cover of the round, `GET /covers/<path>?w=480&f=webp`,
 *   `?w=480&f=avif` and `?w=960&f=jpeg`, 8 at a time on keep-alive connections
 *   (undici Pool, in the bench process); each answer is checked (200, the
 *   format's Content-Type, a body) and timed until the last one;
 * - the same-work script (bench/lib/variantScript.ts): the same renders of the
 *   same original files, as many at a time as the machine has cores (the
 *   service's `--render-workers` default), through the render core's own
 *   `specFromRequest`, `renderVariant` and the service's `writeCoverFile`.
 * Goals, on the median of the round-by-round ratios: coverhelper ≥ 0.90× the
 * script's renders/s, and its CPU per render ≤ 1.15× the script's. CPU per
 * render is utime + stime of the contender's own process (/proc/<pid>/stat, all
 * threads) over the run; the HTTP asker runs in the bench process and is not in
 * the service's figure.
 *
 * Disk per cover with the original kept: the mean, over the covers the service
 * rendered, of the cover (the default variant), its original and the three
 * variants made, as stored.
 *
 * BENCH_VARIANTS_ROUNDS (3) rounds of BENCH_VARIANTS_COVERS (40) covers, that
 * is 120 renders per contender per round.
 */
import { spawn } from 'node:child_process';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { Pool } from 'undici';
import { listVariantFiles, originalPathOf } from '../src/store/coverFiles.js';
import { serveImages } from './lib/bulkOrigin.js';
import { lineOf } from './lib/coldRuns.js';
import { benchRoot } from './lib/paths.js';
import { photoImages, PHOTO_HEIGHT, PHOTO_WIDTH } from './lib/photoImages.js';
import { num, ratio, Report, step } from './lib/report.js';
import { envNumber, scaled } from './lib/scale.js';
import { clockNow, mainThreadCpuSeconds, procCpuSeconds, profiling, runScenario, startBenchService, stopService, tempDir, track } from './lib/service.js';
import type { Service } from './lib/service.js';
import { median } from './lib/stats.js';

const GOAL_RATE = 0.9;
const GOAL_CPU = 1.15;
/** Requests the asker keeps in flight. */
const IN_FLIGHT = 8;

/** The renders asked for each cover: what a page with `srcset` and `<picture>` asks most. */
export const VARIANTS = [
  { w: 480, f: 'webp', contentType: 'image/webp', format: 'webp' },
  { w: 480, f: 'avif', contentType: 'image/avif', format: 'heif' },
  { w: 960, f: 'jpeg', contentType: 'image/jpeg', format: 'jpeg' },
] as const;

interface Render {
  /** The cover's stored path. */
  cover: string;
  variant: (typeof VARIANTS)[number];
}

interface Run {
  ms: number;
  renders: number;
  /** CPU of the contender's process over the run, s. */
  cpu: number;
  mainCpu: number;
  /** CPU of the bench process over the run (for the service: the asker), s. */
  benchCpu: number;
}

const rate = (run: Run) => run.renders / (run.ms / 1000);
const cpuMs = (run: Run) => (run.cpu / run.renders) * 1000;
const benchCpuSeconds = () => {
  const used = process.cpuUsage();
  return (used.user + used.system) / 1e6;
};

interface CheckResult {
  url: string;
  status: string;
  path?: string;
  code?: string;
}

/** Stores every URL through `POST /api/check` (1,000 a request), and returns each one's stored path. */
async function storeAll(service: Service, urls: string[]): Promise<string[]> {
  const paths: string[] = [];
  for (let k = 0; k < urls.length; k += 1000) {
    const res = await fetch(`${service.url}/api/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ urls: urls.slice(k, k + 1000) }) });
    if (res.status !== 200) throw new Error(`POST /api/check: HTTP ${res.status} ${await res.text()}`);
    const done = (await res.json()) as { results: CheckResult[] };
    for (const result of done.results) {
      if (result.status !== 'ok' || !result.path) throw new Error(`${result.url}: ${result.status} ${result.code ?? ''}`);
      paths.push(result.path);
    }
  }
  return paths;
}

const requestPath = (render: Render) => `/covers/${render.cover.split('/').map(encodeURIComponent).join('/')}?w=${render.variant.w}&f=${render.variant.f}`;

/** The service's run: every render asked over HTTP, IN_FLIGHT at a time; the first answer of each format is kept for a decode check. */
async function viaService(service: Service, renders: Render[], firsts: Map<string, Buffer>): Promise<Run> {
  const pool = new Pool(service.url, { connections: IN_FLIGHT, pipelining: 1 });
  const pid = service.child.pid!;
  const cpu = procCpuSeconds(pid);
  const mainCpu = mainThreadCpuSeconds(pid);
  const benchCpu = benchCpuSeconds();
  const clock = clockNow();
  const start = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < renders.length) {
      const render = renders[next++]!;
      const { statusCode, headers, body } = await pool.request({ method: 'GET', path: requestPath(render) });
      const data = Buffer.from(await body.arrayBuffer());
      if (statusCode !== 200 || headers['content-type'] !== render.variant.contentType || data.length === 0) {
        throw new Error(`GET ${requestPath(render)}: HTTP ${statusCode}, ${String(headers['content-type'])}, ${data.length} bytes${String(headers['content-type']).startsWith('application/json') ? `: ${data.toString('utf8', 0, 300)}` : ''}`);
      }
      if (!firsts.has(render.variant.f)) firsts.set(render.variant.f, data);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const ms = performance.now() - start;
  const run = { ms, renders: renders.length, cpu: procCpuSeconds(pid) - cpu, mainCpu: mainThreadCpuSeconds(pid) - mainCpu, benchCpu: benchCpuSeconds() - benchCpu };
  // Under BENCH_PROFILE=1, where the run sits in the service's profile (bench/profileTop.ts --clock).
  if (profiling()) step(`coverhelper (pid ${pid}): profile window --clock ${clock.toFixed(3)}-${clockNow().toFixed(3)}`);
  await pool.close();
  return run;
}

/** The script's run, in its own process (bench/lib/variantScript.ts), on the same originals. */
async function viaScript(dir: string, coversDir: string, renders: Render[], concurrency: number): Promise<Run> {
  await mkdir(dir, { recursive: true });
  const list = path.join(dir, 'renders.tsv');
  await writeFile(list, `${renders.map((r) => [path.join(coversDir, originalPathOf(r.cover)), r.cover, r.variant.w, r.variant.f].join('\t')).join('\n')}\n`);
  const out = path.join(dir, 'out');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(benchRoot, 'lib/variantScript.ts'), list, out, String(concurrency)], { stdio: ['pipe', 'pipe', 'inherit'] });
  track(child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const died = exited.then((code) => Promise.reject(new Error(`variant script exited with ${code} before it was done`)));
  died.catch(() => undefined);
  await Promise.race([lineOf(child, /^ready$/m, 30_000, 'variant script'), died]);
  const pid = child.pid!;
  const cpu = procCpuSeconds(pid);
  const mainCpu = mainThreadCpuSeconds(pid);
  const benchCpu = benchCpuSeconds();
  const start = performance.now();
  child.stdin.write('go\n');
  const done = await Promise.race([lineOf(child, /^done (\d+)$/m, 600_000, 'variant script'), died]);
  const ms = performance.now() - start;
  const run = { ms, renders: Number(done[1]), cpu: procCpuSeconds(pid) - cpu, mainCpu: mainThreadCpuSeconds(pid) - mainCpu, benchCpu: benchCpuSeconds() - benchCpu };
  child.stdin.end();
  if ((await exited) !== 0) throw new Error('variant script failed');
  if (run.renders !== renders.length) throw new Error(`variant script: ${run.renders} of ${renders.length}`);
  return run;
}

/** The monotonic clock V8 stamps profiles with, in seconds. */

const sizeOf = async (file: string) => (await stat(file)).size;

runScenario('variants', 30 * 60_000, async () => {
  const rounds = Math.max(1, envNumber('BENCH_VARIANTS_ROUNDS', 3));
  const perRound = scaled(envNumber('BENCH_VARIANTS_COVERS', 40), 4);
  const cores = os.availableParallelism();
  const report = new Report('variants', `Variants on demand against the same renders done by hand: ${PHOTO_WIDTH}×${PHOTO_HEIGHT} JPEG → ${VARIANTS.map((v) => `${v.w} w ${v.f}`).join(', ')}`, 'npm run bench:variants');

  const count = rounds * perRound;
  const started = performance.now();
  const { images, made } = await photoImages(count);
  const meanKb = images.reduce((sum, image) => sum + image.length, 0) / count / 1024;
  step(`${count} photo-like ${PHOTO_WIDTH}×${PHOTO_HEIGHT} JPEGs (mean ${num(meanKb, 1)} KB): ${made} made now, ${num(performance.now() - started)} ms`);
  const origin = await serveImages(images);
  const dir = await tempDir('variants');
  const coversDir = path.join(dir, 'covers');
  const service = await startBenchService({ dataDir: path.join(dir, 'data'), coversDir, resize: '320x200', profileName: 'variants' });
  try {
    const t0 = performance.now();
    const covers = await storeAll(
      service,
      Array.from({ length: count }, (_, i) => origin.imageUrl('v', i)),
    );
    step(`${count} covers stored through POST /api/check in ${num(performance.now() - t0)} ms (service pid ${service.child.pid}, ${cores} cores)`);

    const firsts = new Map<string, Buffer>();
    const served: Run[] = [];
    const script: Run[] = [];
    for (let round = 0; round < rounds; round++) {
      const renders: Render[] = covers.slice(round * perRound, (round + 1) * perRound).flatMap((cover) => VARIANTS.map((variant) => ({ cover, variant })));
      const a = await viaService(service, renders, firsts);
      served.push(a);
      step(`round ${round + 1} coverhelper: ${num(rate(a), 1)} renders/s, ${num(cpuMs(a), 1)} ms CPU/render (main thread ${num((a.mainCpu / a.renders) * 1000, 1)}; bench process ${num((a.benchCpu / a.renders) * 1000, 1)}), ${num(a.ms)} ms; load ${num(os.loadavg()[0]!, 1)}`);
      const b = await viaScript(path.join(dir, `script-${round}`), coversDir, renders, cores);
      script.push(b);
      step(`round ${round + 1} same-work script: ${num(rate(b), 1)} renders/s, ${num(cpuMs(b), 1)} ms CPU/render (main thread ${num((b.mainCpu / b.renders) * 1000, 1)}), ${num(b.ms)} ms; load ${num(os.loadavg()[0]!, 1)}`);
    }

    // Every answer was checked as it came; one of each format is decoded here, out of the timed runs.
    for (const variant of VARIANTS) {
      const meta = await sharp(firsts.get(variant.f)).metadata();
      const height = Math.round((PHOTO_HEIGHT * variant.w) / PHOTO_WIDTH);
      if (meta.format !== variant.format || meta.width !== variant.w || Math.abs((meta.height ?? 0) - height) > 1) {
        throw new Error(`?w=${variant.w}&f=${variant.f}: answered ${meta.format} ${meta.width}×${meta.height}, expected ${variant.format} ${variant.w}×${height}`);
      }
    }

    // Disk per cover: the covers of every round were rendered by the service.
    const disk = { cover: 0, original: 0, variants: new Map<string, number>() };
    for (const cover of covers) {
      disk.cover += await sizeOf(path.join(coversDir, cover));
      disk.original += await sizeOf(path.join(coversDir, originalPathOf(cover)));
      const files = await listVariantFiles(coversDir, cover);
      if (files.length !== VARIANTS.length) throw new Error(`${cover}: ${files.length} variant files, expected ${VARIANTS.length} (was each request a render?)`);
      for (const file of files) {
        const ext = path.extname(file.path).slice(1);
        disk.variants.set(ext, (disk.variants.get(ext) ?? 0) + file.bytes);
      }
    }

    const rateRatios = served.map((s, i) => rate(s) / rate(script[i]!));
    const cpuRatios = served.map((s, i) => cpuMs(s) / cpuMs(script[i]!));
    const rounded = (runs: Run[], f: (run: Run) => number, digits: number) => runs.map((run) => num(f(run), digits)).join(', ');
    report.figure('originals', `${num(count)} × ${num(meanKb, 1)} KB`, `photo-like ${PHOTO_WIDTH}×${PHOTO_HEIGHT} JPEGs, ${perRound} covers (${perRound * VARIANTS.length} renders) per round, ${rounds} rounds`);
    report.figure('coverhelper', `${num(median(served.map(rate)), 1)} renders/s`, `median of ${rounds}; rounds: ${rounded(served, rate, 1)}; ${IN_FLIGHT} requests in flight`);
    report.figure('coverhelper CPU per render', `${num(median(served.map(cpuMs)), 1)} ms`, `service process, all threads; rounds: ${rounded(served, cpuMs, 1)}; bench process (asker) ${num(median(served.map((r) => (r.benchCpu / r.renders) * 1000)), 1)} ms`);
    report.figure('same-work script', `${num(median(script.map(rate)), 1)} renders/s`, `median of ${rounds}; rounds: ${rounded(script, rate, 1)}; ${cores} at a time`);
    report.figure('same-work script CPU per render', `${num(median(script.map(cpuMs)), 1)} ms`, `script process, all threads; rounds: ${rounded(script, cpuMs, 1)}`);
    const rateRatio = median(rateRatios);
    const cpuRatio = median(cpuRatios);
    report.goal('coverhelper / script, renders/s', ratio(rateRatio), `≥ ${ratio(GOAL_RATE)}`, rateRatio >= GOAL_RATE, `median of the rounds' ratios: ${rateRatios.map(ratio).join(', ')}`);
    report.goal('coverhelper / script, CPU per render', ratio(cpuRatio), `≤ ${ratio(GOAL_CPU)}`, cpuRatio <= GOAL_CPU, `median of the rounds' ratios: ${cpuRatios.map(ratio).join(', ')}`);
    const kb = (bytes: number) => `${num(bytes / count / 1024, 1)} KB`;
    const variantBytes = [...disk.variants.values()].reduce((a, b) => a + b, 0);
    report.figure(
      'disk per cover, original kept',
      kb(disk.cover + disk.original + variantBytes),
      `cover 320×200 ${kb(disk.cover)} + original ${kb(disk.original)} + variants ${kb(variantBytes)} (${VARIANTS.map((v) => `${v.w} w ${v.f} ${kb(disk.variants.get(v.f === 'jpeg' ? 'jpg' : v.f) ?? 0)}`).join(', ')}); mean of ${count}`,
    );
    report.note('CPU per render is the contender\'s own process, utime + stime of /proc/<pid>/stat over the timed run (all threads). coverhelper is asked over HTTP by the bench process, whose CPU is not in coverhelper\'s figure.');
    report.finish();
  } finally {
    await stopService(service);
    await origin.close();
  }
});

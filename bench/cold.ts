/**
 * Cold downloads: distinct images, none cached, against the same work done by
 * hand with no service around it.
 *
 *   npm run bench:cold       (node --import tsx bench/cold.ts)
 *
 * Two kinds of image, each from an origin on 127.0.0.1 that makes every URL's
 * bytes distinct (bench/lib/bulkOrigin.ts):
 * - 640×400 JPEGs of ~50 KB (16 base images);
 * - 1920×1080 JPEGs of ~300 KB, the size bilibili serves, each URL of a run
 *   with its own pixels (bench/lib/coverImages.ts, made once and kept on disk).
 *
 * For each, with `--resize off` and with `--resize 320x200`, rounds alternate:
 * - coverhelper `--workers 16`: one WebSocket sends the URLs as checks of 1,000
 *   at once; timed until the `done` frames;
 * - the same-work script (bench/lib/coldScript.ts `same`): 16 at a time, undici
 *   fetch, the service's own `processImage` and `writeCoverFile`.
 * Goals, on the median of the round-by-round ratios: coverhelper ≥ 0.95× the
 * script's images/s, and its CPU per image ≤ 1.05× the script's. CPU per image
 * is utime + stime of the contender's own process (/proc/<pid>/stat, all
 * threads) over the run; the WebSocket asker runs in the bench process and is
 * not in the service's figure (the bench process's CPU is shown beside it).
 * Each contender's CPU is also shown by thread: the main thread (JavaScript),
 * libvips' workers (named `libvips worker`), and the other threads (libuv's
 * pool, V8's compilers and collector helpers), from /proc/<pid>/task/; each
 * part is the median of its own rounds, so the parts need not add up to the
 * total's median.
 *
 * Each contender first does BENCH_COLD_WARMUP URLs of a set of their own (200,
 * fewer at BENCH_SCALE < 1; 0 for none), untimed, in the same process: the timed run is then of code V8
 * has compiled, as in a service that has been running (the process's first
 * downloads also pay for compiling the code they run, and the service has more
 * of it than the script; the warm-up's connections to the origin are kept
 * for the timed run, alike for both). The bench reports the warm-up's size
 * beside the figures. aria2c, native, is not warmed, nor the plain script.
 *
 * At least BENCH_COLD_ROUNDS rounds (3); more, up to BENCH_COLD_MAX_ROUNDS (7;
 * at BENCH_SCALE < 1 no more than the minimum), while any of the four figures
 * (images/s and CPU per image of either) moves more than 20 % between rounds.
 *
 * Reference lines, each in its own rounds: the plain undici script (fetch and
 * `writeFile`, no decode) and the peer `aria2c -j16 -i LIST` (Debian's aria2;
 * skipped with BENCH_NO_PEERS=1).
 *
 * Every run gets URLs nobody has fetched before and a fresh folder.
 */
import os from 'node:os';
import { serveImages, startBulkOrigin } from './lib/bulkOrigin.js';
import type { BulkOrigin } from './lib/bulkOrigin.js';
import { viaAria2, viaScript, viaService } from './lib/coldRuns.js';
import type { Run, RunTarget } from './lib/coldRuns.js';
import { COVER_HEIGHT, COVER_WIDTH, coverCacheDir, coverImages } from './lib/coverImages.js';
import { ensureTool, toolVersion } from './lib/install.js';
import { num, ratio, Report, step } from './lib/report.js';
import { envNumber, scale, scaled } from './lib/scale.js';
import { runScenario, tempDir } from './lib/service.js';
import { median } from './lib/stats.js';

const GOAL_RATE = 0.95;
const GOAL_CPU = 1.05;
/** A figure whose largest round is more than this much above its smallest asks for another round. */
const MOVES = 0.2;
const RESIZES = ['off', '320x200'] as const;

interface ImageClass {
  name: string;
  origin: BulkOrigin;
  count: number;
  width: number;
  height: number;
  about: string;
}

const rate = (run: Run) => run.files / (run.ms / 1000);
const cpuMs = (run: Run) => (run.cpu / run.files) * 1000;
const mainMs = (run: Run) => (run.mainCpu / run.files) * 1000;
const vipsMs = (run: Run) => (run.vipsCpu / run.files) * 1000;
/** libuv's pool and V8's own threads: what is neither the main thread nor libvips' workers. */
const otherMs = (run: Run) => cpuMs(run) - mainMs(run) - vipsMs(run);
/** `main thread M; libvips V; other threads O` (ms per image, each the median of its own rounds: they need not add up to the total's median). */
const threads = (runs: Run[]) =>
  `main thread ${num(median(runs.map(mainMs)), 2)} ms; libvips' workers ${num(median(runs.map(vipsMs)), 2)} ms; other threads (libuv's pool, V8's) ${num(median(runs.map(otherMs)), 2)} ms`;
const benchMs = (run: Run) => (run.benchCpu / run.files) * 1000;
const moves = (values: number[]) => Math.max(...values) / Math.min(...values) - 1;

/** `min–max A–B (+spread %); rounds: a, b, c`: how far the largest round is above the smallest. */
function spread(values: number[], digits: number): string {
  return `min–max ${num(Math.min(...values), digits)}–${num(Math.max(...values), digits)} (+${num(moves(values) * 100)} %); rounds: ${values.map((v) => num(v, digits)).join(', ')}`;
}

/** Runs rounds of `contenders` in turn until at least `min` are done and no figure moves more than MOVES, or `max` are done. */
async function rounds(
  label: string,
  contenders: { name: string; run: (round: number) => Promise<Run> }[],
  min: number,
  max: number,
): Promise<Run[][]> {
  const runs: Run[][] = contenders.map(() => []);
  for (let round = 1; round <= max; round++) {
    for (const [k, contender] of contenders.entries()) {
      const run = await contender.run(round);
      runs[k]!.push(run);
      step(
        `${label} round ${round} ${contender.name}: ${num(rate(run))} images/s, ${num(cpuMs(run), 2)} ms CPU/image (${Number.isFinite(run.mainCpu) ? `main thread ${num(mainMs(run), 2)}, libvips ${num(vipsMs(run), 2)}, other threads ${num(otherMs(run), 2)}; ` : ''}bench process ${num(benchMs(run), 2)}), ${num(run.ms)} ms, ${run.files} files; load ${num(os.loadavg()[0]!, 1)}`,
      );
    }
    const moving = runs.flatMap((series, k) => [
      { name: `${contenders[k]!.name} images/s`, by: moves(series.map(rate)) },
      { name: `${contenders[k]!.name} CPU/image`, by: moves(series.map(cpuMs)) },
    ]).filter((figure) => figure.by > MOVES);
    if (round >= min && moving.length === 0) break;
    if (round >= min && round < max) step(`${label}: ${moving.map((f) => `${f.name} moved ${num(f.by * 100)} %`).join(', ')}; another round`);
  }
  return runs;
}

runScenario('cold', 30 * 60_000, async () => {
  const minRounds = envNumber('BENCH_COLD_ROUNDS', 3);
  const warm = envNumber('BENCH_COLD_WARMUP', scaled(200, 20));
  if (!Number.isInteger(warm) || warm < 0) throw new Error(`BENCH_COLD_WARMUP must be a whole number of URLs, 0 or more; got ${warm}`);
  const maxRounds = Math.max(minRounds, envNumber('BENCH_COLD_MAX_ROUNDS', scale() < 1 ? minRounds : 7));
  const report = new Report('cold', 'Cold downloads against the same work done by hand', 'npm run bench:cold');
  const dir = await tempDir('cold');
  const tool = process.env.BENCH_NO_PEERS ? { skip: 'BENCH_NO_PEERS is set' } : ensureTool('aria2c', 'aria2');

  const coverCount = scaled(300, 30);
  const started = performance.now();
  const covers = await coverImages(coverCount);
  step(`${coverCount} covers of ${COVER_WIDTH}×${COVER_HEIGHT} (JPEG quality ${covers.quality}) from ${coverCacheDir}: ${covers.made} made now, ${num(performance.now() - started)} ms`);
  const classes: ImageClass[] = [
    { name: '640×400', origin: await startBulkOrigin('large'), count: scaled(1000, 100), width: 640, height: 400, about: 'noise JPEGs, 16 base images' },
    {
      name: `${COVER_WIDTH}×${COVER_HEIGHT}`,
      origin: await serveImages(covers.images),
      count: coverCount,
      width: COVER_WIDTH,
      height: COVER_HEIGHT,
      about: `noise JPEGs at quality ${covers.quality}, each URL of a run its own pixels`,
    },
  ];

  let setNo = 0;
  report.figure('warm-up before each timed run', `${num(warm)} URLs`, warm > 0 ? 'coverhelper and the same-work script (not the reference lines): a set of its own, untimed, in the same process (BENCH_COLD_WARMUP; 0 times each process from its first download)' : 'none: each timed run starts with its process (BENCH_COLD_WARMUP=0)');
  const target = (c: ImageClass, label: string, resize: string, warmUp = warm): RunTarget => {
    const [width, height] = resize === 'off' ? [c.width, c.height] : resize.split('x').map(Number);
    return { dir, origin: c.origin, set: `${label}${++setNo}`, count: c.count, resize, expect: { width: width!, height: height! }, warm: warmUp };
  };

  for (const c of classes) {
    const kb = c.origin.meanBytes / 1024;
    step(`--- ${c.name}: ${num(c.count)} images of ${num(kb, 1)} KB per run, origin ${c.origin.url} ---`);
    report.figure(`${c.name}: images per run`, `${num(c.count)} × ${num(kb, 1)} KB`, `${c.about}; distinct bytes per URL, from one origin on 127.0.0.1`);
    const serviceOff: number[] = [];
    for (const resize of RESIZES) {
      const label = `[${c.name} --resize ${resize}]`;
      const [service, script] = await rounds(
        label,
        [
          { name: 'coverhelper', run: () => viaService(target(c, 'svc', resize), `cold-${c.width}-${resize}`) },
          { name: 'same-work script', run: () => viaScript(target(c, 'same', resize), 'same', `cold-${c.width}-${resize}`) },
        ],
        minRounds,
        maxRounds,
      ) as [Run[], Run[]];
      if (resize === 'off') serviceOff.push(...service.map(rate));
      const rateRatios = service.map((s, i) => rate(s) / rate(script[i]!));
      const cpuRatios = service.map((s, i) => cpuMs(s) / cpuMs(script[i]!));
      const name = `${c.name} --resize ${resize}`;
      report.figure(`${name}: coverhelper`, `${num(median(service.map(rate)))} images/s`, `median of ${service.length}, ${spread(service.map(rate), 0)}`);
      report.figure(
        `${name}: coverhelper CPU per image`,
        `${num(median(service.map(cpuMs)), 2)} ms`,
        `service process, all threads; ${spread(service.map(cpuMs), 2)}; ${threads(service)}; bench process (origin + WebSocket asker) ${num(median(service.map(benchMs)), 2)} ms`,
      );
      report.figure(`${name}: same-work script`, `${num(median(script.map(rate)))} images/s`, `median of ${script.length}, ${spread(script.map(rate), 0)}`);
      report.figure(
        `${name}: same-work script CPU per image`,
        `${num(median(script.map(cpuMs)), 2)} ms`,
        `script process, all threads; ${spread(script.map(cpuMs), 2)}; ${threads(script)}; bench process (origin) ${num(median(script.map(benchMs)), 2)} ms`,
      );
      const rateRatio = median(rateRatios);
      const cpuRatio = median(cpuRatios);
      report.goal(`${name}: coverhelper / script, images/s`, ratio(rateRatio), `≥ ${ratio(GOAL_RATE)}`, rateRatio >= GOAL_RATE, `median of the rounds' ratios: ${rateRatios.map(ratio).join(', ')}`);
      report.goal(`${name}: coverhelper / script, CPU per image`, ratio(cpuRatio), `≤ ${ratio(GOAL_CPU)}`, cpuRatio <= GOAL_CPU, `median of the rounds' ratios: ${cpuRatios.map(ratio).join(', ')}`);
    }

    const references: { name: string; run: () => Promise<Run> }[] = [
      { name: 'plain undici script', run: () => viaScript(target(c, 'plain', 'off', 0), 'plain', `cold-${c.width}-plain`) },
    ];
    if ('skip' in tool) report.skip(`${c.name}: peer aria2c -j16 -i list`, tool.skip);
    else references.push({ name: 'aria2c -j16', run: () => viaAria2(tool.path, target(c, 'aria2', 'off', 0)) });
    for (const reference of references) {
      const [runs] = (await rounds(`[${c.name} reference]`, [reference], minRounds, maxRounds)) as [Run[]];
      const refRate = median(runs.map(rate));
      const version = reference.name.startsWith('aria2c') && 'path' in tool ? `${toolVersion(tool.path)}; ` : '';
      report.figure(
        `${c.name}: ${reference.name === 'plain undici script' ? 'reference: plain undici script (no decode)' : `peer: ${reference.name}`}`,
        `${num(refRate)} images/s`,
        `${version}median of ${runs.length}, ${spread(runs.map(rate), 0)}; CPU per image ${num(median(runs.map(cpuMs)), 2)} ms (${spread(runs.map(cpuMs), 2)})`,
      );
      report.figure(`${c.name}: coverhelper --resize off / ${reference.name}`, ratio(median(serviceOff) / refRate), 'medians of their rounds (not alternated)');
    }
    await c.origin.close();
  }
  report.note(
    "CPU per image is the contender's own process, utime + stime of /proc/<pid>/stat over the timed run (all threads). coverhelper is driven by a WebSocket asker in the bench process, which is not in coverhelper's figure; the bench process's CPU (origin, and for coverhelper the asker) is in the notes.",
  );
  report.note(
    "The same-work script fetches through a plain undici Agent; the service's Agent has its guarded connector, which with --allow-private-network (the origin is on 127.0.0.1) is undici's own buildConnector.",
  );
  report.finish();
});

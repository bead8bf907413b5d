/**
 * The service's main thread per cold download, side by side for two checkouts:
 * a focused driver for changes to the per-download bookkeeping (supervisor,
 * download actors, task rows, logs), where bench:cold's libvips work and its
 * four cases are noise.
 *
 *   node --import tsx bench/coldMain.ts [ROOT ...]      (default: this checkout)
 *
 * Each ROOT is a checkout with its node_modules. Rounds take the roots in turn
 * (the order flips every round, A B, B A, …): each starts the service from that
 * root (`node --import tsx ROOT/src/main.ts`, the bench's flags, `--workers 16`,
 * `--resize off`), one WebSocket asks COUNT new URLs in checks of 1,000, and the
 * run is timed until the `done` frames. Printed per run and, at the end, as the
 * median per root: images/s, CPU per image of the whole process and of its main
 * thread (/proc/<pid>/stat and /proc/<pid>/task/<pid>/stat).
 *
 *   BENCH_MAIN_ROUNDS   rounds (5)
 *   BENCH_MAIN_COUNT    URLs per run (1,000)
 *   BENCH_MAIN_SIZE     `small` (64×40 JPEGs of ~1 KB: the bookkeeping is most of
 *                       the work) or `large` (bench:cold's 640×400 of ~50 KB); small
 *   BENCH_MAIN_SCRIPT=1 the same-work script of bench:cold (this checkout's) in turn too, as a control
 *   BENCH_MAIN_PERF=DIR    perf record of each contender's main thread over its timed run (perf report -i DIR/…)
 *   BENCH_MAIN_STRACE=DIR  strace -c -f of each contender over its timed run
 *   BENCH_MAIN_LOGS=FILE   every service's log lines appended to FILE
 *   BENCH_MAIN_STDERR=1    every service's stderr passed through
 *   BENCH_SERVICE_NODE_OPTIONS  Node flags for every service started (not the script), on
 *                       its command line: any flag, also those NODE_OPTIONS refuses
 *   BENCH_PROFILE=1     CPU-profiles each service into bench/profiles/coldMain-<root name>/
 */
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import type { SizeClass } from './lib/bulkOrigin.js';
import { benchRoot, repoRoot } from './lib/paths.js';
import { framesOf, lineOf } from './lib/coldRuns.js';
import { clockNow, mainThreadCpuSeconds, procCpuSeconds, serviceArgs } from './lib/service.js';
import { log } from './lib/report.js';
import { median } from './lib/stats.js';
import { closeSocket, openSocket } from './lib/wsLoad.js';
import { relaxedLimits } from '../test/helpers/service.js';

const roots = process.argv.slice(2).length > 0 ? process.argv.slice(2).map((r) => path.resolve(r)) : [repoRoot];
const rounds = Number(process.env.BENCH_MAIN_ROUNDS ?? 5);
const count = Number(process.env.BENCH_MAIN_COUNT ?? 1000);
const size = (process.env.BENCH_MAIN_SIZE ?? 'small') as SizeClass;

/** The monotonic clock V8 stamps profiles with, in seconds (bench/profileTop.ts --clock). */

interface Figures {
  rate: number;
  cpuMs: number;
  mainMs: number;
}

async function startFrom(root: string, dataDir: string, coversDir: string) {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (process.env.BENCH_PROFILE === '1') {
    env.NODE_OPTIONS = `--import tsx --import ${pathToFileURL(path.join(benchRoot, 'lib/cpuProfile.ts')).href}`;
    env.BENCH_CPU_PROFILE_DIR = path.join(benchRoot, 'profiles', `coldMain-${path.basename(root)}`);
  }
  const perf = process.env.BENCH_MAIN_PERF ? ['--perf-basic-prof'] : [];
  const extra = (process.env.BENCH_SERVICE_NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean);
  const args = [...perf, ...extra, '--import', 'tsx', path.join(root, 'src/main.ts'), '--port', '0', '--log-format', 'json', ...relaxedLimits, ...serviceArgs({ dataDir, coversDir, workers: 16, resize: 'off' })];
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (process.env.BENCH_MAIN_STDERR) process.stderr.write(d);
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buffer = '';
    let found = false;
    child.stdout.on('data', (chunk: Buffer) => {
      // Every line is read (as the bench's helper does), so the pipe never fills.
      if (process.env.BENCH_MAIN_LOGS) appendFileSync(process.env.BENCH_MAIN_LOGS, chunk);
      if (found) return;
      buffer += chunk.toString();
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(buffer);
      if (m) {
        found = true;
        buffer = '';
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`service from ${root} exited (${code}): ${stderr.slice(-500)}`)));
  });
  return { child, port };
}

async function run(root: string, origin: Awaited<ReturnType<typeof startBulkOrigin>>, set: string): Promise<Figures> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'coldMain-'));
  const { child, port } = await startFrom(root, path.join(dir, 'data'), path.join(dir, 'covers'));
  const pid = child.pid!;
  const urls = Array.from({ length: count }, (_, i) => origin.imageUrl(set, i));
  const frames = framesOf(urls, 'h');
  const ws = await openSocket(`ws://127.0.0.1:${port}/ws`);
  const stop = await trace(pid, path.basename(root));
  const cpu0 = procCpuSeconds(pid);
  const main0 = mainThreadCpuSeconds(pid);
  const clock = clockNow();
  const start = performance.now();
  const ok = await new Promise<number>((resolve, reject) => {
    let done = 0;
    let okCount = 0;
    // Never a hang: an error frame, the service's exit or ten minutes end the run.
    const timer = setTimeout(() => reject(new Error(`${root}: not done after 10 minutes`)), 600_000);
    const exited = (code: number | null) => reject(new Error(`service from ${root} exited (${code}) during the run`));
    child.once('exit', exited);
    const finish = (outcome: () => void) => {
      clearTimeout(timer);
      child.off('exit', exited);
      outcome();
    };
    ws.on('message', (data: Buffer) => {
      const head = data.toString('latin1', 0, 60);
      if (head.startsWith('{"type":"error"')) finish(() => reject(new Error(`${root}: ${data.toString('utf8', 0, 300)}`)));
      if (!head.startsWith('{"type":"done"')) return;
      okCount += Number(/"ok":(\d+)/.exec(head)?.[1] ?? 0);
      if (++done === frames.length) finish(() => resolve(okCount));
    });
    for (const frame of frames) ws.send(frame, { binary: false });
  });
  const ms = performance.now() - start;
  const cpu = procCpuSeconds(pid) - cpu0;
  const main = mainThreadCpuSeconds(pid) - main0;
  await stop();
  if (process.env.BENCH_PROFILE === '1') log(`${path.basename(root)} pid ${pid}: profile window --clock ${clock.toFixed(3)}-${clockNow().toFixed(3)}`);
  await closeSocket(ws);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
  await rm(dir, { recursive: true, force: true });
  if (ok !== count) throw new Error(`${root}: ${ok} of ${count} ok`);
  return { rate: count / (ms / 1000), cpuMs: (cpu / count) * 1000, mainMs: (main / count) * 1000 };
}

/**
 * Attaches a tracer to `pid` for the timed run, when asked: BENCH_MAIN_PERF=DIR
 * (`perf record -g` of the main thread alone, on-CPU samples; node runs with
 * --perf-basic-prof so JavaScript frames have names) or BENCH_MAIN_STRACE=DIR
 * (`strace -c -f`: system calls of every thread, counted).
 */
async function trace(pid: number, name: string): Promise<() => Promise<void>> {
  const perfDir = process.env.BENCH_MAIN_PERF;
  const straceDir = process.env.BENCH_MAIN_STRACE;
  if (!perfDir && !straceDir) return async () => {};
  const args = perfDir
    ? ['record', '-F', '2999', '-g', '-t', String(pid), '-o', path.join(perfDir, `${name}-${pid}.data`)]
    : ['-c', '-f', '-p', String(pid), '-o', path.join(straceDir!, `${name}-${pid}.txt`)];
  const tracer = spawn(perfDir ? 'perf' : 'strace', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return async () => {
    const exited = new Promise<void>((resolve) => tracer.once('exit', () => resolve()));
    tracer.kill('SIGINT');
    await exited;
  };
}

/** The same-work script of bench:cold (this checkout's), as a control: `script` among the contenders. */
async function script(origin: Awaited<ReturnType<typeof startBulkOrigin>>, set: string): Promise<Figures> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'coldMain-'));
  const out = path.join(dir, 'out');
  await mkdir(out, { recursive: true });
  const list = path.join(dir, 'urls.txt');
  await writeFile(list, `${Array.from({ length: count }, (_, i) => origin.imageUrl(set, i)).join('\n')}\n`);
  const env = { ...process.env, ...(process.env.BENCH_MAIN_PERF ? { NODE_OPTIONS: '--perf-basic-prof' } : {}) };
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(benchRoot, 'lib/coldScript.ts'), 'same', list, out, 'off', '16'], { stdio: ['pipe', 'pipe', 'inherit'], env });
  const pid = child.pid!;
  await lineOf(child, /^ready$/m, 30_000, 'script');
  const stop = await trace(pid, 'script');
  const cpu0 = procCpuSeconds(pid);
  const main0 = mainThreadCpuSeconds(pid);
  const start = performance.now();
  child.stdin.write('go\n');
  const done = await lineOf(child, /^done (\d+)$/m, 600_000, 'script');
  const ms = performance.now() - start;
  const cpu = procCpuSeconds(pid) - cpu0;
  const main = mainThreadCpuSeconds(pid) - main0;
  await stop();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stdin.end();
  await exited;
  await rm(dir, { recursive: true, force: true });
  if (Number(done[1]) !== count) throw new Error(`script: ${done[1]} of ${count} ok`);
  return { rate: count / (ms / 1000), cpuMs: (cpu / count) * 1000, mainMs: (main / count) * 1000 };
}

const origin = await startBulkOrigin(size);
if (process.env.BENCH_MAIN_SCRIPT === '1') roots.push('script');
const results = new Map<string, Figures[]>(roots.map((root) => [root, []]));
let set = 0;
for (let round = 1; round <= rounds; round++) {
  const order = round % 2 === 1 ? roots : [...roots].reverse();
  for (const root of order) {
    const figures = root === 'script' ? await script(origin, `m${process.pid}x${++set}`) : await run(root, origin, `m${process.pid}x${++set}`);
    results.get(root)!.push(figures);
    log(`round ${round} ${path.basename(root)}: ${figures.rate.toFixed(0)} images/s, CPU ${figures.cpuMs.toFixed(3)} ms/image, main thread ${figures.mainMs.toFixed(3)} ms/image; load ${os.loadavg()[0]!.toFixed(1)}`);
  }
}
for (const [root, runs] of results) {
  const fmt = (values: number[], digits: number) => `${median(values).toFixed(digits)} [${values.map((v) => v.toFixed(digits)).join(' ')}]`;
  log(`${path.basename(root)} (${size}, ${count} URLs): images/s ${fmt(runs.map((r) => r.rate), 0)}; CPU ms/image ${fmt(runs.map((r) => r.cpuMs), 3)}; main ms/image ${fmt(runs.map((r) => r.mainMs), 3)}`);
}
await origin.close();

/**
 * The real service process for the benchmarks, started by the test helper
 * (`test/helpers/service.ts`: `node --import tsx src/main.ts`, exactly what
 * `npm start` runs, waiting for the `listening on` line).
 *
 * Node flags the helper does not take (`--inspect`, `--heapsnapshot-signal`)
 * reach the process through NODE_OPTIONS, so the command line stays the
 * helper's own. `BENCH_PROFILE=1` CPU-profiles every service a scenario starts
 * into bench/profiles/<name>/ (Node 20 refuses `--cpu-prof` in NODE_OPTIONS, so
 * bench/lib/cpuProfile.ts is preloaded instead; same profiler, same format); the
 * profile is written when the service stops (SIGTERM). `BENCH_GC_TRACE=1`
 * writes each service's garbage collections (start, pause, kind) beside it
 * (bench/lib/gcTrace.ts), and `BENCH_SERVICE_NODE_OPTIONS` adds Node flags of
 * your own to every service (blank-separated), through `NODE_OPTIONS`: only the
 * flags Node allows there (bench/coldMain.ts passes them on the command line,
 * where any flag goes).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startService } from '../../test/helpers/service.js';
import type { Service } from '../../test/helpers/service.js';
import { benchRoot } from './paths.js';
import { step } from './report.js';

export type { Service };

export interface BenchServiceOptions {
  dataDir: string;
  coversDir: string;
  workers?: number;
  /** `off` or `WxH`. */
  resize?: string;
  /** More service flags (they come last and win). */
  args?: string[];
  /** Node flags, passed through NODE_OPTIONS. */
  nodeOptions?: string[];
  /** A name for the CPU profile folder when BENCH_PROFILE=1. */
  profileName?: string;
}

/** Every process a benchmark started, killed if the benchmark exits early. */
const children = new Set<{ pid: number | undefined; exitCode: number | null; signalCode: NodeJS.Signals | null }>();
process.on('exit', () => {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
});

/** Keeps a child process on the list of what is killed at exit. */
export function track(child: { pid?: number | undefined; exitCode: number | null; signalCode: NodeJS.Signals | null }): void {
  children.add(child as { pid: number | undefined; exitCode: number | null; signalCode: NodeJS.Signals | null });
}

/** The flags every benchmark passes: loopback origins allowed, resource guard out of the way. */
export function serviceArgs(options: BenchServiceOptions): string[] {
  return [
    '--data-dir',
    options.dataDir,
    '--covers-dir',
    options.coversDir,
    '--allow-private-network',
    '--allow-hosts',
    '127.0.0.1',
    // `listening on` is an info line: at warn the helper would never see it.
    '--log-level',
    'info',
    '--max-batch',
    '1000',
    '--workers',
    String(options.workers ?? 16),
    '--resize',
    options.resize ?? 'off',
    ...(options.args ?? []),
  ];
}

export function profiling(): boolean {
  return process.env.BENCH_PROFILE === '1';
}

export async function startBenchService(options: BenchServiceOptions): Promise<Service> {
  const nodeOptions = [...(options.nodeOptions ?? [])];
  const env: NodeJS.ProcessEnv = {};
  if (profiling()) {
    const dir = path.join(benchRoot, 'profiles', options.profileName ?? 'service');
    await mkdir(dir, { recursive: true });
    nodeOptions.push('--import', 'tsx', '--import', pathToFileURL(path.join(benchRoot, 'lib/cpuProfile.ts')).href);
    env.BENCH_CPU_PROFILE_DIR = dir;
  }
  if (process.env.BENCH_SERVICE_NODE_OPTIONS) nodeOptions.push(...process.env.BENCH_SERVICE_NODE_OPTIONS.split(/\s+/).filter(Boolean));
  if (process.env.BENCH_GC_TRACE === '1') {
    nodeOptions.push('--import', 'tsx', '--import', pathToFileURL(path.join(benchRoot, 'lib/gcTrace.ts')).href);
    env.BENCH_GC_TRACE_DIR = path.join(benchRoot, 'profiles', options.profileName ?? 'service');
  }
  if (nodeOptions.length > 0) env.NODE_OPTIONS = [process.env.NODE_OPTIONS ?? '', ...nodeOptions].join(' ').trim();
  const service = await startService(serviceArgs(options), env);
  track(service.child);
  return service;
}

/** SIGTERM and wait; SIGKILL if it has not exited within `ms`. */
export async function stopService(service: Service, ms = 15_000): Promise<void> {
  const timer = setTimeout(() => void service.kill(), ms);
  try {
    await service.stop();
  } finally {
    clearTimeout(timer);
  }
}

export interface ProcMemory {
  /** Resident set now, bytes. */
  rss: number;
  /** Peak resident set since the process started (VmHWM), bytes. */
  peak: number;
}

/** RSS and peak RSS of a process, from /proc/<pid>/status (Linux). */
export function procMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

export async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

export interface Health {
  status: string;
  queued: number;
  downloading: number;
}

export const health = (service: Service) => getJson<Health>(`${service.url}/healthz`);

/** The unlabelled samples of /metrics, by name. */
export async function metrics(service: Service): Promise<Map<string, number>> {
  const text = await (await fetch(`${service.url}/metrics`)).text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) samples.set(m[1]!, Number(m[2]));
  }
  return samples;
}

/** Waits until /healthz says nothing is queued or downloading. */
export async function waitIdle(service: Service, timeoutMs: number): Promise<Health> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const h = await health(service);
    if (h.queued === 0 && h.downloading === 0) return h;
    if (Date.now() > deadline) throw new Error(`service not idle after ${timeoutMs} ms: ${JSON.stringify(h)}`);
    await sleep(100);
  }
}

export const sleep = (msecs: number) => new Promise<void>((resolve) => setTimeout(resolve, msecs));

/** Temp folders of this run, removed by `cleanup()` unless BENCH_KEEP=1. */
const temps: string[] = [];
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `coverhelper-bench-${prefix}-`));
  temps.push(dir);
  return dir;
}

export async function cleanup(): Promise<void> {
  if (process.env.BENCH_KEEP === '1') {
    step(`kept temp folders: ${temps.join(' ')}`);
    return;
  }
  for (const dir of temps.splice(0)) await rm(dir, { recursive: true, force: true });
}

/**
 * Runs a scenario: a watchdog ends it (and every process it started) after
 * `limitMs`, temp folders are removed, an error exits 1.
 */
export function runScenario(name: string, limitMs: number, body: () => Promise<void>): void {
  const watchdog = setTimeout(() => {
    process.stderr.write(`${name}: still running after ${Math.round(limitMs / 1000)} s; stopping\n`);
    process.exit(1);
  }, limitMs);
  watchdog.unref();
  body()
    .then(async () => {
      await cleanup();
      clearTimeout(watchdog);
      process.exit(0);
    })
    .catch(async (error: unknown) => {
      process.stderr.write(`${name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      await cleanup().catch(() => undefined);
      process.exit(1);
    });
}

/** Write system calls (write, writev, …) a process has made so far: `syscw` of /proc/PID/io. */
export function procWriteCalls(pid: number): number {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return Number(/^syscw: (\d+)$/m.exec(io)?.[1] ?? NaN);
}

/** The machine's monotonic clock in seconds (`process.hrtime`, the clock V8 stamps CPU profiles with). */
export const clockNow = () => Number(process.hrtime.bigint() / 1000n) / 1e6;

/** Under BENCH_PROFILE=1, where a timed run sits in its process's profile (bench/profileTop.ts --clock). */
export function profileWindow(what: string, from: number): void {
  if (profiling()) step(`${what}: profile window --clock ${from.toFixed(3)}-${clockNow().toFixed(3)}`);
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat (Linux, 100 ticks a second). */
export function procCpuSeconds(pid: number): number {
  return cpuOfStat(`/proc/${pid}/stat`);
}

/** CPU seconds of a process's main thread alone (the JavaScript thread of a Node process): /proc/<pid>/task/<pid>/stat. */
export function mainThreadCpuSeconds(pid: number): number {
  return cpuOfStat(`/proc/${pid}/task/${pid}/stat`);
}

/** CPU seconds of each of a process's threads whose name starts with `prefix` (libvips' workers are `libvips worker`), by thread id. */
export function namedThreadsCpu(pid: number, prefix: string): Map<string, number> | undefined {
  const byThread = new Map<string, number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      if (!stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).startsWith(prefix)) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
      byThread.set(tid, (fields[11]! + fields[12]!) / 100);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return byThread;
}

/**
 * CPU seconds the threads of a `namedThreadsCpu` reading used since `before`: a thread new since
 * counts from 0; one gone since is not counted (its time stays in the process's total). NaN when
 * either reading could not be taken.
 */
export function threadsCpuSince(before: Map<string, number> | undefined, after: Map<string, number> | undefined): number {
  if (before === undefined || after === undefined) return NaN;
  let sum = 0;
  for (const [tid, seconds] of after) sum += seconds - (before.get(tid) ?? 0);
  return sum;
}

/** A process's CPU seconds: all threads (utime + stime), the kernel's share (stime: system calls, and on loopback the receiver's side of its socket writes), its main thread's. */
export interface CpuSplit {
  total: number;
  kernel: number;
  main: number;
}

export function cpuSplit(pid: number): CpuSplit {
  const fields = statFields(`/proc/${pid}/stat`);
  return { total: (fields[11]! + fields[12]!) / 100, kernel: fields[12]! / 100, main: mainThreadCpuSeconds(pid) };
}

/** Adds to `sum` what `pid` used since `from` (a `cpuSplit` taken before). */
export function addCpuSince(sum: CpuSplit, pid: number, from: CpuSplit): void {
  const now = cpuSplit(pid);
  sum.total += now.total - from.total;
  sum.kernel += now.kernel - from.kernel;
  sum.main += now.main - from.main;
}

function cpuOfStat(file: string): number {
  const fields = statFields(file);
  return (fields[11]! + fields[12]!) / 100;
}

/** The fields after the command, as numbers: state is [0]; utime and stime (fields 14 and 15 of stat) are [11] and [12]. */
function statFields(file: string): number[] {
  const stat = readFileSync(file, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
}

/**
 * CPU seconds (user + system) of this process's children that have exited and
 * been waited for: cutime + cstime of /proc/self/stat. For a tool that cannot be
 * read before it exits (aria2c): the delta across its run, when no other child
 * exits meanwhile.
 */
export function childrenCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // cutime and cstime are fields 16 and 17.
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

/**
 * One timed run of each contender in the cold scenario, each on its own set of
 * URLs nobody has fetched before and into its own fresh folder, measured the
 * same way: wall time from the start signal to the last answer, and the CPU of
 * the contender's own process (utime + stime of /proc/<pid>/stat, all threads)
 * over that time, and of its main thread alone (/proc/<pid>/task/<pid>/stat:
 * where JavaScript runs) and of libvips' worker threads (the rest is libuv's
 * pool and V8's helpers). Start-up is outside all of them.
 *
 * - `viaService`: the real service (`--workers 16`), asked by one WebSocket
 *   that sends checks of 1,000 at once; timed until their `done` frames. The
 *   asker runs in the bench process, not in the service, so its CPU is not in
 *   the service's figure; it is in `benchCpu` (with the origin's).
 * - `viaScript`: bench/lib/coldScript.ts in its own process (`same` or `plain`).
 * - `viaAria2`: `aria2c -j16 -i LIST`; its CPU is read after it exits, from
 *   this process's cutime + cstime (`childrenCpuSeconds`).
 */
import { spawn } from 'node:child_process';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import type { BulkOrigin } from './bulkOrigin.js';
import { benchRoot } from './paths.js';
import { childrenCpuSeconds, clockNow, mainThreadCpuSeconds, namedThreadsCpu, procCpuSeconds, threadsCpuSince, profileWindow, profiling, startBenchService, stopService, track } from './service.js';
import type WebSocket from 'ws';
import { checkFrame, closeSocket, openSocket } from './wsLoad.js';

export const CONCURRENCY = 16;

/** What libvips names its worker threads (/proc/<pid>/task/<tid>/comm). */
const VIPS_THREADS = 'libvips worker';

export interface Run {
  /** Wall time, ms. */
  ms: number;
  /** Covers stored (images, not files: an original kept beside a cover is not counted). */
  files: number;
  /** CPU of the contender's process over the run, s. */
  cpu: number;
  /** Of which its main thread's (Node's JavaScript thread; NaN for aria2c), s. */
  mainCpu: number;
  /**
   * Of which libvips' worker threads' (decoding, resizing, encoding; NaN for aria2c), s. The rest
   * (`cpu - mainCpu - vipsCpu`) is libuv's pool and V8's own threads (compilers, the collector's
   * helpers), and any libvips worker that ended during the run (its time is not read apart).
   */
  vipsCpu: number;
  /** CPU of the bench process over the run (the origin; for the service also the asker), s. */
  benchCpu: number;
}

export interface RunTarget {
  dir: string;
  origin: BulkOrigin;
  /** A set name not used before: its URLs are new to everyone. */
  set: string;
  count: number;
  /** `off` or `WxH`. */
  resize: string;
  /** Size every stored image must have. */
  expect: { width: number; height: number };
  /**
   * URLs of a set of their own done before the timed run, untimed, by the same
   * process (0: none): the service and the script then run code V8 has compiled,
   * as a long-running service does, and the figures are of the downloads, not of
   * a fresh process's first ones.
   */
  warm: number;
}

const urlsOf = (t: RunTarget) => Array.from({ length: t.count }, (_, i) => t.origin.imageUrl(t.set, i));
const warmUrlsOf = (t: RunTarget) => Array.from({ length: t.warm }, (_, i) => t.origin.imageUrl(`${t.set}w`, i));

/** Check frames of 1,000 URLs each, their ids `tag` and a number. */
export const framesOf = (urls: readonly string[], tag: string) =>
  Array.from({ length: Math.ceil(urls.length / 1000) }, (_, k) => checkFrame(`${tag}${String(k).padStart(8, '0')}`, urls.slice(k * 1000, (k + 1) * 1000)));

/** Sends `frames` on `ws` and resolves with the URLs answered ok once every frame's `done` came. */
function askAll(ws: WebSocket, frames: readonly Buffer[], what: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let done = 0;
    let okCount = 0;
    const timer = setTimeout(() => {
      ws.off('message', onMessage);
      reject(new Error(`${what}: not done after 10 minutes`));
    }, 600_000);
    const onMessage = (data: Buffer) => {
      const head = data.toString('latin1', 0, 60);
      if (!head.startsWith('{"type":"done"')) return;
      okCount += Number(/"ok":(\d+)/.exec(head)?.[1] ?? 0);
      if (++done === frames.length) {
        clearTimeout(timer);
        ws.off('message', onMessage);
        resolve(okCount);
      }
    };
    ws.on('message', onMessage);
    for (const frame of frames) ws.send(frame, { binary: false });
  });
}
const benchCpuSeconds = () => {
  const used = process.cpuUsage();
  return (used.user + used.system) / 1e6;
};

/**
 * Counts the covers in `folder` (files ending in `.jpg`, not the originals kept
 * beside them, `*.orig.jpg`), checks one cover's size and, where `originals` is
 * set, that each cover has its original beside it; then removes the run's folder
 * unless BENCH_KEEP=1. Images, not files: with a resize the service writes two
 * files a cover, and a rate of files would count each cover twice.
 */
async function stored(runDir: string, folder: string, t: RunTarget, label: string, originals = false): Promise<number> {
  // The warm-up's covers are in the same folder: they are counted out below. The
  // size checked may be a warm-up cover's: same image class, same --resize.
  const all = (await readdir(folder)).filter((name) => name.endsWith('.jpg'));
  const names = all.filter((name) => !name.endsWith('.orig.jpg'));
  if (names.length > 0) {
    const meta = await sharp(path.join(folder, names[0]!)).metadata();
    if (meta.width !== t.expect.width || meta.height !== t.expect.height) {
      throw new Error(`${label}: stored ${meta.width}×${meta.height}, expected ${t.expect.width}×${t.expect.height}`);
    }
  }
  const kept = all.length - names.length;
  if (originals && t.resize !== 'off' && kept !== names.length) throw new Error(`${label}: ${kept} originals kept for ${names.length} covers`);
  if (process.env.BENCH_KEEP !== '1') await rm(runDir, { recursive: true, force: true });
  if (names.length < t.warm) throw new Error(`${label}: ${names.length} covers stored, fewer than the warm-up's ${t.warm}`);
  return names.length - t.warm;
}

export async function viaService(t: RunTarget, profileName: string): Promise<Run> {
  const runDir = path.join(t.dir, t.set);
  const service = await startBenchService({ dataDir: `${runDir}/data`, coversDir: `${runDir}/covers`, workers: CONCURRENCY, resize: t.resize, profileName });
  const ws = await openSocket(service.wsUrl);
  if (t.warm > 0) {
    let failure: Error | undefined;
    try {
      const warmed = await askAll(ws, framesOf(warmUrlsOf(t), 'w'), 'cold warm-up');
      if (warmed !== t.warm) failure = new Error(`coverhelper --resize ${t.resize}: warm-up ${warmed} of ${t.warm} ok`);
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error));
    }
    if (failure) {
      await closeSocket(ws);
      await stopService(service);
      throw failure;
    }
  }
  const frames = framesOf(urlsOf(t), 'h');
  const cpu = procCpuSeconds(service.child.pid!);
  const mainCpu = mainThreadCpuSeconds(service.child.pid!);
  const vips = namedThreadsCpu(service.child.pid!, VIPS_THREADS);
  const benchCpu = benchCpuSeconds();
  const clock = clockNow();
  const start = performance.now();
  const ok = await askAll(ws, frames, 'cold');
  const ms = performance.now() - start;
  const run = {
    ms,
    cpu: procCpuSeconds(service.child.pid!) - cpu,
    mainCpu: mainThreadCpuSeconds(service.child.pid!) - mainCpu,
    vipsCpu: threadsCpuSince(vips, namedThreadsCpu(service.child.pid!, VIPS_THREADS)),
    benchCpu: benchCpuSeconds() - benchCpu,
  };
  profileWindow(`coverhelper ${t.set} (pid ${service.child.pid})`, clock);
  await closeSocket(ws);
  await stopService(service);
  if (ok !== t.count) throw new Error(`coverhelper --resize ${t.resize}: ${ok} of ${t.count} ok`);
  return { ...run, files: await stored(runDir, `${runDir}/covers/127.0.0.1`, t, `coverhelper --resize ${t.resize}`, true) };
}

/** Waits for a stdout line of `child` matching `pattern`. */
export function lineOf(child: { stdout: NodeJS.ReadableStream }, pattern: RegExp, timeoutMs: number, what: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => {
      child.stdout.off('data', onData);
      reject(new Error(`${what}: no ${pattern} within ${timeoutMs} ms; got ${JSON.stringify(text.slice(-300))}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      const m = pattern.exec(text);
      const failed = /^failed (.*)$/m.exec(text);
      if (m || failed) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        if (m) resolve(m);
        else reject(new Error(`${what}: ${failed![1]}`));
      }
    };
    child.stdout.on('data', onData);
  });
}

export async function viaScript(t: RunTarget, mode: 'same' | 'plain', profileName: string): Promise<Run> {
  const runDir = path.join(t.dir, t.set);
  const out = path.join(runDir, 'out');
  await mkdir(out, { recursive: true });
  const list = path.join(runDir, 'urls.txt');
  await writeFile(list, `${urlsOf(t).join('\n')}\n`);
  const warmList = path.join(runDir, 'warm.txt');
  if (t.warm > 0) await writeFile(warmList, `${warmUrlsOf(t).join('\n')}\n`);
  // BENCH_PROFILE=1 profiles the script as it does the service (bench/lib/cpuProfile.ts).
  const profile = profiling() ? ['--import', pathToFileURL(path.join(benchRoot, 'lib/cpuProfile.ts')).href] : [];
  const env = profiling() ? { ...process.env, BENCH_CPU_PROFILE_DIR: path.join(benchRoot, 'profiles', profileName), BENCH_CPU_PROFILE_NAME: `${mode}-script` } : process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', ...profile, path.join(benchRoot, 'lib/coldScript.ts'), mode, list, out, t.resize, String(CONCURRENCY), ...(t.warm > 0 ? [warmList] : [])], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env,
  });
  track(child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const what = `${mode} script`;
  const died = exited.then((code) => Promise.reject(new Error(`${what} exited with ${code} before it was done`)));
  died.catch(() => undefined);
  // Loading, and the warm-up when there is one (10 minutes at most, as a run).
  await Promise.race([lineOf(child, /^ready$/m, t.warm > 0 ? 600_000 : 30_000, what), died]);
  const cpu = procCpuSeconds(child.pid!);
  const mainCpu = mainThreadCpuSeconds(child.pid!);
  const vips = namedThreadsCpu(child.pid!, VIPS_THREADS);
  const benchCpu = benchCpuSeconds();
  const clock = clockNow();
  const start = performance.now();
  child.stdin.write('go\n');
  const done = await Promise.race([lineOf(child, /^done (\d+)$/m, 600_000, what), died]);
  const ms = performance.now() - start;
  const run = {
    ms,
    cpu: procCpuSeconds(child.pid!) - cpu,
    mainCpu: mainThreadCpuSeconds(child.pid!) - mainCpu,
    vipsCpu: threadsCpuSince(vips, namedThreadsCpu(child.pid!, VIPS_THREADS)),
    benchCpu: benchCpuSeconds() - benchCpu,
  };
  profileWindow(`${what} ${t.set} (pid ${child.pid})`, clock);
  child.stdin.end();
  const code = await exited;
  if (code !== 0) throw new Error(`${what} exited with ${code}`);
  if (Number(done[1]) !== t.count) throw new Error(`${what}: ${done[1]} of ${t.count} ok`);
  return { ...run, files: await stored(runDir, mode === 'same' ? path.join(out, '127.0.0.1') : out, t, what, mode === 'same') };
}

/** The peer: `aria2c -j16 -i LIST`, quiet, into a fresh folder. */
export async function viaAria2(binary: string, t: RunTarget): Promise<Run> {
  const runDir = path.join(t.dir, t.set);
  const out = path.join(runDir, 'out');
  await mkdir(out, { recursive: true });
  const list = urlsOf(t)
    .map((url, i) => `${url}\n  out=${i}.jpg`)
    .join('\n');
  await writeFile(path.join(runDir, 'list'), `${list}\n`);
  const args = ['-j16', '-i', path.join(runDir, 'list'), '-d', out, '--console-log-level=warn', '--summary-interval=0', '--download-result=hide', '--auto-file-renaming=false', '--allow-overwrite=true'];
  const cpu = childrenCpuSeconds();
  const benchCpu = benchCpuSeconds();
  const start = performance.now();
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    track(child);
    const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    child.once('exit', (exitCode) => {
      clearTimeout(timer);
      resolve(exitCode);
    });
  });
  const ms = performance.now() - start;
  const run = { ms, cpu: childrenCpuSeconds() - cpu, mainCpu: NaN, vipsCpu: NaN, benchCpu: benchCpuSeconds() - benchCpu };
  if (code !== 0) throw new Error(`aria2c exited with ${code}`);
  return { ...run, files: await stored(runDir, out, t, 'aria2c') };
}

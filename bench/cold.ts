/**
 * Cold downloads: 5,000 distinct 50 KB JPEGs, none cached.
 *
 *   npm run bench:cold       (node --import tsx bench/cold.ts)
 *
 * - coverhelper `--workers 16 --resize off`: one WebSocket sends the 5,000 URLs
 *   as five checks of 1,000 at once; timed until the five `done` frames.
 * - Baseline: a plain undici script, 16 requests at a time, writing each body to
 *   its own file (no fsync: a plain script does not). Goal: coverhelper ≥ 0.8× its rate.
 * - Peer: `aria2c -j16 -i LIST` (Debian's aria2) on the same kind of list.
 * - Also coverhelper with `--resize 320x200` (its default).
 *
 * Every run gets URLs nobody has fetched before (a new set on the origin) and
 * writes into a fresh folder; baseline and coverhelper run twice, alternating.
 */
import { spawn } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Agent, request } from 'undici';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import type { BulkOrigin } from './lib/bulkOrigin.js';
import { ensureTool, toolVersion } from './lib/install.js';
import { num, ratio, Report, step } from './lib/report.js';
import { envNumber, scaled } from './lib/scale.js';
import { procCpuSeconds, runScenario, startBenchService, stopService, tempDir } from './lib/service.js';
import { median } from './lib/stats.js';
import { checkFrame, closeSocket, openSocket } from './lib/wsLoad.js';

const CONCURRENCY = 16;
const GOAL_SHARE = 0.8;

interface Run {
  ms: number;
  files: number;
  cpu?: number;
}

let runNo = 0;
const nextSet = (label: string) => `${label}${++runNo}`;

/** coverhelper, fresh data and covers folders, all URLs asked at once in checks of 1,000. */
async function viaService(dir: string, origin: BulkOrigin, count: number, resize: string): Promise<Run> {
  const set = nextSet(resize === 'off' ? 'svc' : 'rsz');
  const service = await startBenchService({ dataDir: `${dir}/${set}/data`, coversDir: `${dir}/${set}/covers`, workers: CONCURRENCY, resize, profileName: `cold-${resize}` });
  const urls = Array.from({ length: count }, (_, i) => origin.imageUrl(set, i));
  const ws = await openSocket(service.wsUrl);
  const frames = Array.from({ length: Math.ceil(count / 1000) }, (_, k) => checkFrame(`h${String(k).padStart(8, '0')}`, urls.slice(k * 1000, (k + 1) * 1000)));
  const cpu = procCpuSeconds(service.child.pid!);
  const start = performance.now();
  const ok = await new Promise<number>((resolve, reject) => {
    let done = 0;
    let okCount = 0;
    const timer = setTimeout(() => reject(new Error(`cold: not done after 10 minutes`)), 600_000);
    ws.on('message', (data: Buffer) => {
      const head = data.toString('latin1', 0, 60);
      if (!head.startsWith('{"type":"done"')) return;
      okCount += Number(/"ok":(\d+)/.exec(head)?.[1] ?? 0);
      if (++done === frames.length) {
        clearTimeout(timer);
        resolve(okCount);
      }
    });
    for (const frame of frames) ws.send(frame, { binary: false });
  });
  const elapsed = performance.now() - start;
  const used = procCpuSeconds(service.child.pid!) - cpu;
  await closeSocket(ws);
  await stopService(service);
  if (ok !== count) throw new Error(`coverhelper --resize ${resize}: ${ok} of ${count} ok`);
  const files = (await readdir(`${dir}/${set}/covers/127.0.0.1`)).length;
  return { ms: elapsed, files, cpu: used };
}

/** The baseline: undici `request`, 16 at a time, each body written to its own file. */
async function viaUndici(dir: string, origin: BulkOrigin, count: number): Promise<Run> {
  const set = nextSet('undici');
  const out = `${dir}/${set}`;
  await mkdir(out, { recursive: true });
  const agent = new Agent({ connections: CONCURRENCY });
  let next = 0;
  const start = performance.now();
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const { statusCode, body } = await request(origin.imageUrl(set, i), { dispatcher: agent });
      const data = Buffer.from(await body.arrayBuffer());
      if (statusCode !== 200) throw new Error(`undici baseline: HTTP ${statusCode}`);
      await writeFile(path.join(out, `${i}.jpg`), data);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const elapsed = performance.now() - start;
  await agent.close();
  return { ms: elapsed, files: (await readdir(out)).length };
}

/** The peer: `aria2c -j16 -i LIST`, quiet, into a fresh folder. */
async function viaAria2(binary: string, dir: string, origin: BulkOrigin, count: number): Promise<Run> {
  const set = nextSet('aria2');
  const out = `${dir}/${set}`;
  await mkdir(out, { recursive: true });
  const list = Array.from({ length: count }, (_, i) => `${origin.imageUrl(set, i)}\n  out=${i}.jpg`).join('\n');
  await writeFile(`${dir}/${set}.list`, `${list}\n`);
  const args = ['-j16', '-i', `${dir}/${set}.list`, '-d', out, '--console-log-level=warn', '--summary-interval=0', '--download-result=hide', '--auto-file-renaming=false', '--allow-overwrite=true'];
  const start = performance.now();
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    child.once('exit', (exitCode) => {
      clearTimeout(timer);
      resolve(exitCode);
    });
  });
  const elapsed = performance.now() - start;
  if (code !== 0) throw new Error(`aria2c exited with ${code}`);
  return { ms: elapsed, files: (await readdir(out)).filter((name) => name.endsWith('.jpg')).length };
}

const perSecond = (count: number, run: Run) => count / (run.ms / 1000);

runScenario('cold', 15 * 60_000, async () => {
  const count = scaled(5000, 200);
  const rounds = envNumber('BENCH_COLD_ROUNDS', 2);
  const report = new Report('cold', 'Cold downloads: 5,000 distinct 50 KB images', 'npm run bench:cold');
  const dir = await tempDir('cold');
  const origin = await startBulkOrigin('large');
  step(`origin on ${origin.url}: distinct JPEGs of ${num(origin.meanBytes / 1024, 1)} KB (640×400)`);

  const services: Run[] = [];
  const baselines: Run[] = [];
  for (let round = 1; round <= rounds; round++) {
    const b = await viaUndici(dir, origin, count);
    baselines.push(b);
    step(`round ${round} undici baseline: ${num(perSecond(count, b))} images/s (${num(b.ms)} ms, ${b.files} files)`);
    const s = await viaService(dir, origin, count, 'off');
    services.push(s);
    step(`round ${round} coverhelper --resize off: ${num(perSecond(count, s))} images/s (${num(s.ms)} ms, ${s.files} files, ${num(s.cpu!, 1)} s CPU)`);
  }
  const resized = await viaService(dir, origin, count, '320x200');
  step(`coverhelper --resize 320x200: ${num(perSecond(count, resized))} images/s (${num(resized.ms)} ms, ${num(resized.cpu!, 1)} s CPU)`);

  const serviceRate = median(services.map((r) => perSecond(count, r)));
  const baseRate = median(baselines.map((r) => perSecond(count, r)));
  const mbps = (rate: number) => `${num((rate * origin.meanBytes) / 2 ** 20, 1)} MB/s`;
  report.figure('images', `${num(count)} × ${num(origin.meanBytes / 1024, 1)} KB`, 'distinct JPEGs, 640×400, from one origin on 127.0.0.1');
  report.figure('coverhelper --workers 16 --resize off', `${num(serviceRate)} images/s`, `${mbps(serviceRate)}; median of ${rounds}: ${services.map((r) => num(perSecond(count, r))).join(', ')}`);
  report.figure('baseline: undici, 16 at a time', `${num(baseRate)} images/s`, `${mbps(baseRate)}; median of ${rounds}: ${baselines.map((r) => num(perSecond(count, r))).join(', ')}`);
  report.goal('coverhelper / baseline', ratio(serviceRate / baseRate), `≥ ${ratio(GOAL_SHARE)}`, serviceRate / baseRate >= GOAL_SHARE);
  report.figure('coverhelper CPU per image (--resize off)', `${num((median(services.map((r) => r.cpu!)) / count) * 1000, 2)} ms`, 'user + system, all threads');
  report.figure('coverhelper --resize 320x200', `${num(perSecond(count, resized))} images/s`, `${ratio(perSecond(count, resized) / baseRate)} the baseline; ${num((resized.cpu! / count) * 1000, 2)} ms CPU per image`);

  const tool = process.env.BENCH_NO_PEERS ? { skip: 'BENCH_NO_PEERS is set' } : ensureTool('aria2c', 'aria2');
  if ('skip' in tool) {
    report.skip('aria2c -j16 -i list', tool.skip);
  } else {
    const a = await viaAria2(tool.path, dir, origin, count);
    step(`${toolVersion(tool.path)}: ${num(perSecond(count, a))} images/s (${num(a.ms)} ms, ${a.files} files)`);
    report.figure('peer: aria2c -j16 -i list', `${num(perSecond(count, a))} images/s`, `${toolVersion(tool.path)}; ${a.files} files`);
    report.figure('coverhelper / aria2c', ratio(serviceRate / perSecond(count, a)));
  }
  await origin.close();
  report.finish();
});

/**
 * Start and restore.
 *
 *   npm run bench:start      (node --import tsx bench/startRestore.ts)
 *
 * 1. A store with 1,000,000 covers (and their 1,000,000 `ok` task rows) starts
 *    to its `listening` line in under 2 s. The schema is the service's own (it
 *    runs once on an empty folder and is stopped); the rows are then written
 *    straight into the SQLite file with better-sqlite3 in one transaction. The
 *    cover files themselves are not written: nothing at start reads them (the
 *    start sweeps `.tmp/` only), so they would change nothing measured here.
 *    Time = spawn of `node --import tsx src/main.ts` to the `listening` line,
 *    median of three; the same for an empty store and for a bare
 *    `node --import tsx -e 0` (what any tsx process takes to start), the
 *    three kinds of start alternating.
 * 2. 10,000 tasks left unfinished by a SIGKILL: the origin holds every request,
 *    the service is sent 10 checks of 1,000 URLs, killed once the task table
 *    has all 10,000 rows `queued`/`downloading`, and started again on the same
 *    folders with the origin answering. Goal: every task `ok`; the time from the
 *    restart to the last `ok` row is reported (read from the SQLite file,
 *    read-only, as test/helpers/db.ts does).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { readTable, waitUntil } from '../test/helpers/db.js';
import { connect } from '../test/helpers/wsClient.js';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import { repoRoot } from './lib/paths.js';
import { mb, ms, num, Report, step } from './lib/report.js';
import { envNumber, scaled } from './lib/scale.js';
import { health, runScenario, startBenchService, stopService, tempDir } from './lib/service.js';
import type { BenchServiceOptions } from './lib/service.js';
import { median, timed } from './lib/stats.js';
import { checkFrame, closeSocket, openSocket } from './lib/wsLoad.js';

const GOAL_START_MS = 2000;

const hex = (text: string) => createHash('sha256').update(text).digest('hex');

/** Writes `count` covers (and their `ok` tasks) into the service's SQLite file, in one transaction. */
function fillStore(file: string, count: number): { ms: number; sampleUrl: string } {
  const start = performance.now();
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  const cover = db.prepare(
    'INSERT INTO covers (url, path, source, bytes, content_type, width, height, sha256, created_at, last_asked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const task = db.prepare(
    'INSERT INTO tasks (url, status, attempts, error_code, error_message, bytes_done, bytes_total, created_at, updated_at, started_at, finished_at) VALUES (?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?)',
  );
  const now = Date.now();
  const year = 365 * 24 * 3600 * 1000;
  let sampleUrl = '';
  db.transaction(() => {
    for (let i = 0; i < count; i++) {
      const name = hex(`cover-${i}`).slice(0, 32);
      const host = `i${i % 3}.hdslb.com`;
      const url = `https://${host}/bfs/archive/${name}.jpg`;
      const content = hex(`content-${i}`);
      const path = `${host}/${name}-${hex(url).slice(0, 12)}-${content.slice(0, 12)}.jpg`;
      const bytes = 20_000 + ((i * 7919) % 40_000);
      const created = now - ((i * 104_729) % year);
      const asked = created + ((i * 15_485_863) % Math.max(1, now - created));
      cover.run(url, path, 'download', bytes, 'image/jpeg', 320, 200, content, created, asked);
      task.run(url, 'ok', 1, bytes, bytes, created, created + 300, created + 10, created + 300);
      if (i === Math.floor(count / 2)) sampleUrl = url;
    }
  })();
  db.close();
  return { ms: performance.now() - start, sampleUrl };
}

/** Spawn-to-listening of one start of the service, which is then stopped again. */
async function startTime(options: BenchServiceOptions, then?: (service: Awaited<ReturnType<typeof startBenchService>>) => Promise<void>): Promise<number> {
  const { ms: took, value: service } = await timed(() => startBenchService(options));
  if (then) await then(service);
  await stopService(service);
  return took;
}

/** `node --import tsx -e 0`: the floor of any start through tsx. */
async function tsxFloor(): Promise<number> {
  const { ms: took } = await timed(
    () =>
      new Promise<void>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', '-e', '0'], { cwd: repoRoot, stdio: 'ignore' });
        child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`node --import tsx -e 0 exited with ${code}`))));
      }),
  );
  return took;
}

const countTasks = (file: string, where: string) => readTable<{ n: number }>(file, `SELECT COUNT(*) AS n FROM tasks WHERE ${where}`)[0]!.n;

runScenario('startRestore', 12 * 60_000, async () => {
  const covers = scaled(1_000_000, 10_000);
  const tasks = scaled(10_000, 1000);
  const reps = envNumber('BENCH_START_REPS', 3);
  const report = new Report('startRestore', 'Start and restore', 'npm run bench:start');
  const dir = await tempDir('start');

  // 1. Start with a big store.
  const empty = { dataDir: `${dir}/empty/data`, coversDir: `${dir}/empty/covers`, profileName: 'start-empty' };
  await stopService(await startBenchService(empty)); // the schema, so that every timed start finds it made
  const big = { dataDir: `${dir}/big/data`, coversDir: `${dir}/big/covers`, profileName: 'start-big' };
  await stopService(await startBenchService(big)); // the service's schema, by its own migrations
  const file = `${big.dataDir}/coverhelper.sqlite`;
  step(`writing ${num(covers)} covers and their tasks into ${file}`);
  const filled = fillStore(file, covers);
  const size = statSync(file).size;
  step(`written in ${ms(filled.ms, 0)}; ${mb(size)}`);
  let sampleOk = false;
  const checkSample = async (service: Awaited<ReturnType<typeof startBenchService>>) => {
    const client = await connect(service.wsUrl);
    const { done } = await client.check('sample', [filled.sampleUrl]);
    sampleOk = done.ok === 1 && (done.results as { source?: string }[])[0]?.source === 'cache';
    await client.close();
  };
  // Alternating, so that both see the machine in the same state.
  const emptyTimes: number[] = [];
  const bigTimes: number[] = [];
  const floors: number[] = [];
  for (let i = 0; i < reps; i++) {
    floors.push(await tsxFloor());
    emptyTimes.push(await startTime(empty));
    bigTimes.push(await startTime(big, i === 0 ? checkSample : undefined));
  }
  step(`start, ${num(covers)} covers: ${bigTimes.map((t) => ms(t, 0)).join(', ')}; empty store: ${emptyTimes.map((t) => ms(t, 0)).join(', ')}`);
  const bigStart = median(bigTimes);
  report.goal(`start to listening, ${num(covers)} covers`, ms(bigStart, 0), `< ${ms(GOAL_START_MS, 0)}`, bigStart < GOAL_START_MS, `median of ${reps}: ${bigTimes.map((t) => ms(t, 0)).join(', ')}; database ${mb(size)} (files not written)`);
  const added = bigStart - median(emptyTimes);
  report.figure('start to listening, empty store', ms(median(emptyTimes), 0), `runs: ${emptyTimes.map((t) => ms(t, 0)).join(', ')}; ${added > 50 ? `${num(covers)} covers add ${ms(added, 0)}` : `${num(covers)} covers add nothing measurable`}`);
  report.figure('node --import tsx -e 0', ms(median(floors), 0), 'the floor of any process started through tsx');
  report.figure('a stored URL answered after the start', sampleOk ? 'yes, from the cache' : 'NO', 'one check of a URL in the middle of the store');

  // 2. Restore after SIGKILL.
  const origin = await startBulkOrigin('small');
  origin.hold = true;
  const held = { dataDir: `${dir}/restore/data`, coversDir: `${dir}/restore/covers`, workers: 16, resize: 'off', profileName: 'restore' };
  const db = `${held.dataDir}/coverhelper.sqlite`;
  const first = await startBenchService(held);
  const urls = Array.from({ length: tasks }, (_, i) => origin.imageUrl('restore', i));
  const ws = await openSocket(first.wsUrl);
  for (let k = 0; k * 1000 < tasks; k++) ws.send(checkFrame(`h${String(k).padStart(8, '0')}`, urls.slice(k * 1000, (k + 1) * 1000)), { binary: false });
  await waitUntil(() => countTasks(db, "status IN ('queued', 'downloading')") === tasks && origin.requests >= 16, `${tasks} unfinished task rows`, 60_000);
  await first.kill();
  ws.terminate();
  await closeSocket(ws);
  const leftQueued = countTasks(db, "status = 'queued'");
  const leftDownloading = countTasks(db, "status = 'downloading'");
  step(`killed with SIGKILL: ${num(leftQueued)} queued and ${num(leftDownloading)} downloading left in the task table`);
  const before = origin.requests;
  origin.release();

  const restartAt = performance.now();
  const second = await startBenchService(held);
  const listeningMs = performance.now() - restartAt;
  await waitUntil(() => countTasks(db, "status = 'ok'") === tasks || countTasks(db, "status IN ('error', 'tle')") > 0, `${tasks} tasks ok`, 300_000);
  const finishedMs = performance.now() - restartAt;
  const okCount = countTasks(db, "status = 'ok'");
  const failed = countTasks(db, "status IN ('error', 'tle')");
  const h = await health(second);
  await stopService(second);
  await origin.close();
  step(`restarted: listening after ${ms(listeningMs, 0)}, all ${num(okCount)} ok after ${ms(finishedMs, 0)}`);

  report.figure('tasks left unfinished by SIGKILL', num(leftQueued + leftDownloading), `${num(leftQueued)} queued, ${num(leftDownloading)} downloading`);
  report.goal('tasks ok after the restart', `${num(okCount)} of ${num(tasks)}`, `all ${num(tasks)}`, okCount === tasks && failed === 0, `${failed} failed; in flight afterwards: ${h.queued + h.downloading}`);
  report.figure('restart to listening, with them queued', ms(listeningMs, 0));
  report.figure('restart to the last task ok', ms(finishedMs, 0), `${num(tasks / (finishedMs / 1000))} tasks/s; --workers 16 --resize off, small JPEGs`);
  report.figure('origin requests after the restart', num(origin.requests - before), `${num(before)} before the kill (held)`);
  report.finish();
});

/**
 * The 2019 TCP protocol against `/ws`, and the import of a 2019 folder.
 *
 *   npm run bench:legacy        (node --import tsx bench/legacy.ts)
 *
 * 1. Import: a coverHub.db and coverFiles/ of N small JPEGs (made from the
 *    bulk origin's images) imported with `npm run import-legacy` as a real
 *    process, into the store of the running service; against the same number
 *    of new covers downloaded through the service from a loopback origin.
 *    Both resize to 320x200. Figures: rows/s, covers/s, ratio.
 * 2. Cached checks: the 2N cached URLs asked in batches of 100 by C clients at
 *    once, closed loop (each asks again when answered), for S s, three rounds
 *    alternating the 2019 TCP port (one connection per conversation: C<n>, G,
 *    the URLs, W…OK, R, L<len>, C, the results, O, as a 2019 blog speaks it,
 *    each step after the server's answer) and `/ws` (C sockets, one check in
 *    flight each). Figures: URLs/s each, ratio TCP / `/ws`.
 *
 * Before anything is timed, one TCP conversation's results are checked against
 * the `/ws` answers for the same URLs (the same cover URLs, in input order).
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { root } from '../test/helpers/service.js';
import type { Service } from '../test/helpers/service.js';
import { connect } from '../test/helpers/wsClient.js';
import type { Frame } from '../test/helpers/wsClient.js';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import { num, ratio, Report, step } from './lib/report.js';
import { envNumber, scaled } from './lib/scale.js';
import { runScenario, startBenchService, stopService, tempDir, waitIdle } from './lib/service.js';
import { median } from './lib/stats.js';
import { checkFrame, closeSocket, DONE_PREFIX, idFor, openSocket, pipelined } from './lib/wsLoad.js';

const BATCH = 100;

/** One whole 2019 conversation on a new connection; resolves with the result string. */
function conversation(port: number, urlString: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    let step = 0;
    let chunks: Buffer[] = [];
    let have = 0;
    let resultLength = -1;
    const text = () => Buffer.concat(chunks).toString('latin1');
    socket.on('connect', () => socket.write(`C${Buffer.byteLength(urlString)}`));
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      have += chunk.length;
      if (step === 0 && have >= 1) {
        if (text() !== 'G') return reject(new Error(`expected G, got ${text().slice(0, 40)}`));
        chunks = [];
        have = 0;
        step = 1;
        socket.write(urlString);
      } else if (step === 1 && text().endsWith('OK')) {
        chunks = [];
        have = 0;
        step = 2;
        socket.write('R');
      } else if (step === 2) {
        const m = /^L(\d+)$/.exec(text());
        if (!m) return;
        resultLength = Number(m[1]);
        chunks = [];
        have = 0;
        step = 3;
        socket.write('C');
      } else if (step === 3 && have >= resultLength) {
        const results = Buffer.concat(chunks).toString('utf8');
        step = 4;
        socket.end('O');
        resolve(results);
      }
    });
    socket.once('error', reject);
  });
}

/** C clients, each conversing again as soon as answered, for `ms`: URLs answered per second. */
async function tcpLoad(port: number, urlStrings: string[], clients: number, ms: number): Promise<number> {
  const stopAt = performance.now() + ms;
  const start = performance.now();
  let urls = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < stopAt) {
        const urlString = urlStrings[next++ % urlStrings.length]!;
        await conversation(port, urlString);
        urls += BATCH;
      }
    }),
  );
  return urls / ((performance.now() - start) / 1000);
}

/** C sockets, one check in flight each, for `ms`: URLs answered per second. */
async function wsLoad(service: Service, requests: Buffer[], clients: number, ms: number, expect: Buffer): Promise<number> {
  const sockets = await Promise.all(Array.from({ length: clients }, () => openSocket(service.wsUrl)));
  const start = performance.now();
  const results = await Promise.all(
    sockets.map((ws, i) => pipelined(ws, [...requests.slice(i), ...requests.slice(0, i)], { window: 1, durationMs: ms, maxBatches: Number.MAX_SAFE_INTEGER, expect })),
  );
  const elapsed = (performance.now() - start) / 1000;
  await Promise.all(sockets.map(closeSocket));
  const unexpected = results.reduce((sum, r) => sum + r.unexpected, 0);
  if (unexpected > 0) throw new Error(`/ws: ${unexpected} unexpected frames, first: ${results.find((r) => r.firstUnexpected)?.firstUnexpected}`);
  return (results.reduce((sum, r) => sum + r.batches, 0) * BATCH) / elapsed;
}

function runImport(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; seconds: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/tools/importLegacy.ts'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) => resolve({ code, stdout, stderr, seconds: (performance.now() - started) / 1000 }));
  });
}

runScenario('legacy', 15 * 60_000, async () => {
  const count = scaled(2000, 200);
  const seconds = envNumber('BENCH_LEGACY_SECONDS', scaled(8, 2));
  const clients = envNumber('BENCH_LEGACY_CLIENTS', 8);
  const rounds = envNumber('BENCH_LEGACY_ROUNDS', 3);
  const report = new Report('legacy', 'The 2019 TCP protocol against /ws, and the import', 'npm run bench:legacy');

  const dir = await tempDir('legacy');
  const origin = await startBulkOrigin('large');
  const folders = ['--data-dir', `${dir}/data`, '--covers-dir', `${dir}/covers`];
  const service = await startBenchService({ dataDir: `${dir}/data`, coversDir: `${dir}/covers`, workers: 16, resize: '320x200', args: ['--legacy-port', '0'], profileName: 'legacy' });
  const line = await service.waitForLog((l) => /^legacy protocol listening on tcp:\/\//.test(l.message));
  const port = Number(/:(\d+)$/.exec(line.message)![1]);
  step(`service on ${service.url}, legacy port ${port}`);

  // 1. A 2019 folder of `count` covers, imported while the service runs.
  const old = path.join(dir, 'old');
  const host = new URL(origin.url).host.replace(':', '_');
  await mkdir(path.join(old, 'coverFiles', host), { recursive: true });
  const imported = Array.from({ length: count }, (_, i) => origin.imageUrl('old', i));
  for (let i = 0; i < count; i++) {
    const body = Buffer.from(await (await fetch(imported[i]!)).arrayBuffer());
    await writeFile(path.join(old, 'coverFiles', host, `${i}.jpg`), body);
  }
  const legacyDb = new Database(path.join(old, 'coverHub.db'));
  legacyDb.exec('CREATE TABLE url2Path (url text primary key, path text)');
  const insert = legacyDb.prepare('INSERT INTO url2Path VALUES (?, ?)');
  legacyDb.transaction(() => imported.forEach((url, i) => insert.run(url, `coverFiles/${host}/${i}.jpg`)))();
  legacyDb.close();
  step(`a 2019 folder of ${num(count)} covers (${num(origin.meanBytes / 1024, 1)} KB JPEGs, 640x400) made`);
  const run = await runImport([path.join(old, 'coverHub.db'), old, ...folders, '--resize', '320x200']);
  if (run.code !== 0 || !run.stdout.startsWith(`imported ${count},`)) throw new Error(`import failed (${run.code}): ${run.stdout} ${run.stderr.slice(-500)}`);
  // The summary's own time (rows only), and the whole process (node, tsx, sharp and the store opened too).
  const importSeconds = Number(/ in (\d+(?:\.\d+)?)s$/.exec(run.stdout.trim())?.[1]);
  const importRate = count / importSeconds;
  step(`import: ${run.stdout.trim()} (${num(run.seconds, 1)} s with the process start)`);

  // The same number of new covers downloaded through the service.
  const downloaded = Array.from({ length: count }, (_, i) => origin.imageUrl('new', i));
  const ws = await connect(service.wsUrl);
  const downloadStart = performance.now();
  const seeded = await Promise.all(Array.from({ length: Math.ceil(count / 1000) }, (_, k) => ws.check(`seed-${k}`, downloaded.slice(k * 1000, (k + 1) * 1000), 600_000)));
  const downloadSeconds = (performance.now() - downloadStart) / 1000;
  const seededOk = seeded.reduce((sum, { done }) => sum + Number(done.ok), 0);
  if (seededOk !== count) throw new Error(`downloads: ${seededOk} of ${count} ok`);
  await waitIdle(service, 60_000);
  const downloadRate = count / downloadSeconds;
  step(`downloads through the service: ${num(count)} in ${num(downloadSeconds, 1)} s`);

  // 2. Cached checks: every URL must be a cache hit, and TCP must answer what /ws answers.
  const urls = [...imported, ...downloaded];
  const batches = Array.from({ length: urls.length / BATCH }, (_, k) => urls.slice(k * BATCH, (k + 1) * BATCH));
  const requestsBefore = origin.requests;
  for (const [k, batch] of batches.entries()) {
    const answers = (await ws.check(`verify-${k}`, batch)).done.results as Frame[];
    if (answers.some((a) => a.source !== 'cache')) throw new Error(`batch ${k} is not all cache hits`);
    if (k % 10 === 0) {
      const tcp = (await conversation(port, batch.join(' '))).split(' ');
      if (tcp.join(' ') !== answers.map((a) => a.coverUrl).join(' ')) throw new Error(`batch ${k}: TCP answers differ from /ws: ${tcp.slice(0, 2).join(' ')}`);
    }
  }
  await ws.close();
  if (origin.requests !== requestsBefore) throw new Error('a cached check reached the origin');
  step(`${batches.length} batches of ${BATCH} verified: cache hits, TCP answers = /ws answers`);

  const urlStrings = batches.map((batch) => batch.join(' '));
  const requests = batches.map((batch) => checkFrame(idFor(0), batch));
  const expect = Buffer.from(`${DONE_PREFIX}${idFor(0)}","ok":${BATCH},"skipped":0,"failed":0,`);
  const rates: { tcp: number[]; ws: number[] } = { tcp: [], ws: [] };
  for (let round = 1; round <= rounds; round++) {
    for (const target of ['tcp', 'ws'] as const) {
      // A short warm-up of the same load.
      if (target === 'tcp') await tcpLoad(port, urlStrings, clients, 1000);
      else await wsLoad(service, requests, clients, 1000, expect);
      const rate = target === 'tcp' ? await tcpLoad(port, urlStrings, clients, seconds * 1000) : await wsLoad(service, requests, clients, seconds * 1000, expect);
      rates[target].push(rate);
      step(`round ${round} ${target.padEnd(3)}: ${num(rate)} URLs/s`);
    }
  }
  const tcpRate = median(rates.tcp);
  const wsRate = median(rates.ws);

  report.figure('import (npm run import-legacy)', `${num(importRate)} rows/s`, `${num(count)} rows of 640x400 JPEGs resized to 320x200 in ${num(importSeconds, 1)} s (the summary's time; ${num(run.seconds, 1)} s with the process start), while the service ran`);
  report.figure('downloads through the service', `${num(downloadRate)} covers/s`, `the same count and size from a loopback origin, 16 workers, in ${num(downloadSeconds, 1)} s`);
  report.figure('import / downloads', ratio(importRate / downloadRate));
  report.figure('cached checks over the 2019 TCP port', `${num(tcpRate)} URLs/s`, `${clients} clients, batches of ${BATCH}, one connection per conversation; median of ${rounds} × ${seconds} s; runs: ${rates.tcp.map((r) => num(r)).join(', ')}`);
  report.figure('cached checks over /ws', `${num(wsRate)} URLs/s`, `${clients} sockets, one check of ${BATCH} in flight each; runs: ${rates.ws.map((r) => num(r)).join(', ')}`);
  report.figure('TCP / ws', ratio(tcpRate / wsRate), `round by round: ${rates.tcp.map((r, i) => ratio(r / rates.ws[i]!)).join(', ')}; the 2019 protocol pays a connection and five round trips per batch`);

  await stopService(service);
  await origin.close();
  report.finish();
});

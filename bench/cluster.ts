/**
 * Several nodes on one PostgreSQL database, side by side with one node on SQLite.
 *
 *   npm run bench:cluster    (node --import tsx bench/cluster.ts)
 *
 * Needs a PostgreSQL server: COVERHELPER_BENCH_PG, else COVERHELPER_TEST_PG (for
 * example postgres://postgres@127.0.0.1:5432/test). Without one, or when it does
 * not answer, every row is SKIP with the reason and the scenario exits 0. Each
 * part makes a fresh database on it (bench/lib/pg.ts) and drops it after; the
 * nodes of a part share one covers folder and have a data folder each.
 *
 * 1. Cached checks. One SQLite node, and nodes A and B on one PostgreSQL
 *    database. 1,000 new small images (bench/lib/bulkOrigin.ts) are cached through
 *    the SQLite node and through node A (the write path, timed on both stores);
 *    the rest of the set is written straight into both databases, the same rows
 *    in each, as bench/startRestore.ts fills its store (caching 30,000 through a
 *    PostgreSQL node would take minutes here). Every URL is checked to be answered
 *    from the cache on every node. Then checked as bench/hotPath.ts does (batches of 100,
 *    `BENCH_CLUSTER_WINDOW` (16) in flight per socket, `BENCH_CLUSTER_SECONDS` (5) s
 *    after 1 s of warm-up): SQLite 1 node, PostgreSQL 1 node (A), PostgreSQL 2
 *    nodes (one socket on A and one on B at the same time: total URLs/s), in
 *    `BENCH_CLUSTER_ROUNDS` (3) rounds of the three. Two sets: memory-warm (10,000
 *    URLs, which each node's cover memory holds: no database read) and memory-cold
 *    (30,000 URLs cycled in order, more than the 20,000 rows the cover memory
 *    keeps, so every URL is read from the database; each node's cycle goes on
 *    where it stopped, so a warm-up never leaves hits behind).
 * 2. Cross-node herd. 500 sockets × the same 200 new URLs (the origin in its own
 *    process, +20 ms per image): all 500 on node A, and 250 on A with 250 on B;
 *    for reference all 500 on one SQLite node. Fresh URLs each time,
 *    `BENCH_CLUSTER_HERD_REPS` (3) repetitions, each starting with another of the
 *    three. Goal: exactly 200 origin requests each time on PostgreSQL.
 * 3. Takeover. Nodes with `--lease 5`: node A downloads 20 URLs whose origin
 *    responses stop half-way (`/half/`), 10 askers on node B wait on A for the
 *    same 20; A is SIGKILLed and the origin released. Goal: every asker on B
 *    answered ok within lease + 3 s of the kill. `BENCH_CLUSTER_TAKEOVER_REPS` (3),
 *    each with a new node A.
 *
 * `BENCH_CLUSTER_ONLY=checks,herd,takeover` runs some of the parts.
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import Database from 'better-sqlite3';
import { coverPath } from '../src/store/coverFiles.js';
import { waitUntil } from '../test/helpers/db.js';
import { connect } from '../test/helpers/wsClient.js';
import type { Frame } from '../test/helpers/wsClient.js';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import { askAll, openMany } from './lib/herdLoad.js';
import type { HerdRun } from './lib/herdLoad.js';
import { startOriginProcess } from './lib/originProcess.js';
import { benchPgServer, freshPgDatabase, pgUnreachable } from './lib/pg.js';
import type { PgDatabase } from './lib/pg.js';
import { ms, num, ratio, Report, step } from './lib/report.js';
import { envNumber, scaled } from './lib/scale.js';
import { health, metrics, procCpuSeconds, runScenario, startBenchService, stopService, tempDir, waitIdle } from './lib/service.js';
import type { Service } from './lib/service.js';
import { median } from './lib/stats.js';
import { checkFrame, closeSocket, DONE_PREFIX, idFor, openSocket, pipelined } from './lib/wsLoad.js';
import type WebSocket from 'ws';
import { maskSecrets } from '../src/secrets.js';

const BATCH = 100;
/** Rows each node's cover memory keeps: CoverIndex's default (src/store/coverIndex.ts); no option changes it. */
const MEMORY_ROWS = 20_000;
/** Every node hands out the same cover URLs, as behind a load balancer. */
const PUBLIC_URL = 'http://covers.example/';
const HERD_URLS = 200;
const HERD_DELAY_MS = 20;
const LEASE_S = 5;
const TAKEOVER_URLS = 20;
const TAKEOVER_ASKERS = 10;
const TAKEOVER_SLACK_S = 3;
const TAKEOVER_LOG = 'taking over unfinished downloads that no live node holds';

/** The flags of a node on `db` (nodes of one database share their secrets: a node whose secrets differ is refused). */
const nodeArgs = (db: PgDatabase, id: string, more: string[] = []) => [
  '--db', db.url, '--node-id', id, '--public-url', PUBLIC_URL,
  '--admin-token', 'bench-cluster-admin-token', '--callback-secret', 'bench-cluster-callback-secret-0123',
  ...more,
];

/** The per-URL answers of a `done` frame. */
const answersOf = (done: Frame) => done.results as { status: string; source?: string }[];

// ---------------------------------------------------------------------------
// 1. Cached checks

type Config = 'sqlite' | 'pg1' | 'pg2';
const CONFIGS: Config[] = ['sqlite', 'pg1', 'pg2'];
const LABEL: Record<Config, string> = { sqlite: 'SQLite, 1 node', pg1: 'PostgreSQL, 1 node', pg2: 'PostgreSQL, 2 nodes' };

/** Caches `urls` through `service` (checks of 1,000, all at once); the time it took. */
async function seed(service: Service, urls: string[]): Promise<number> {
  const client = await connect(service.wsUrl);
  const start = performance.now();
  const answers = await Promise.all(Array.from({ length: Math.ceil(urls.length / 1000) }, (_, k) => client.check(`seed-${k}`, urls.slice(k * 1000, (k + 1) * 1000), 600_000)));
  const took = performance.now() - start;
  await client.close();
  const ok = answers.reduce((sum, { done }) => sum + Number(done.ok), 0);
  if (ok !== urls.length) throw new Error(`seeding: ${ok} of ${urls.length} ok`);
  await waitIdle(service, 60_000);
  return took;
}

/** Checks every batch on `service` and throws unless every URL is answered from the cache. */
async function verifyCached(service: Service, name: string, batches: string[][]): Promise<void> {
  const client = await connect(service.wsUrl);
  for (const [k, batch] of batches.entries()) {
    const { done, results } = await client.check(`verify-${k}`, batch, 60_000);
    if (done.ok !== batch.length || results.length !== 0 || answersOf(done).some((r) => r.source !== 'cache')) {
      throw new Error(`${name}: batch ${k} is not all cache hits: ${JSON.stringify(done).slice(0, 300)}`);
    }
  }
  await client.close();
}

/** `list` starting at `offset` (a cycle that goes on where it stopped). */
const rotated = <T>(list: T[], offset: number) => [...list.slice(offset), ...list.slice(0, offset)];

interface Run {
  /** URLs/s, summed over the sockets. */
  rate: number;
  /** CPU seconds of the service processes measured. */
  serviceCpu: number;
  /** CPU seconds of this process (the measuring client). */
  clientCpu: number;
  seconds: number;
}

/**
 * One socket per node in `nodes`, all at once, each sending `requests` from
 * where that node's cycle stopped (`cursors`), for `durationMs`.
 */
async function measure(nodes: Service[], requests: Buffer[], cursors: Map<Service, number>, durationMs: number, window: number, expect: Buffer): Promise<Run> {
  const sockets = await Promise.all(nodes.map((node) => openSocket(node.wsUrl)));
  const cpuBefore = nodes.map((node) => procCpuSeconds(node.child.pid!));
  const client = process.cpuUsage();
  const start = performance.now();
  const results = await Promise.all(
    nodes.map((node, i) => pipelined(sockets[i]!, rotated(requests, cursors.get(node) ?? 0), { window, durationMs, maxBatches: Math.ceil((10_000_000 * durationMs) / 1000 / BATCH), expect })),
  );
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(client);
  const serviceCpu = nodes.reduce((sum, node, i) => sum + procCpuSeconds(node.child.pid!) - cpuBefore[i]!, 0);
  await Promise.all(sockets.map(closeSocket));
  let rate = 0;
  for (const [i, result] of results.entries()) {
    if (result.unexpected > 0) throw new Error(`${result.unexpected} unexpected frames, first: ${result.firstUnexpected}`);
    const node = nodes[i]!;
    cursors.set(node, ((cursors.get(node) ?? 0) + result.batches) % requests.length);
    rate += (result.batches * BATCH) / (result.elapsedMs / 1000);
  }
  return { rate, serviceCpu, clientCpu: (used.user + used.system) / 1e6, seconds };
}

/** One stored cover row, as both databases keep it. */
interface CoverRowValues {
  url: string;
  path: string;
  bytes: number;
  contentType: string;
  width: number;
  height: number;
  sha256: string;
}

/**
 * Rows like the ones the service wrote for `template`, for `urls`, each with a
 * content hash of its own and its path made by the service's own rule
 * (`coverPath`); their files are not written (a check reads only the index).
 */
function bulkRows(template: CoverRowValues, urls: string[]): CoverRowValues[] {
  return urls.map((url) => {
    const sha256 = createHash('sha256').update(`bench-bulk ${url}`).digest('hex');
    return { ...template, url, sha256, path: coverPath(url, sha256, 'jpg') };
  });
}

const COVER_COLUMNS = 'url, path, source, bytes, content_type, width, height, sha256, created_at, last_asked_at';
const TASK_COLUMNS = 'url, status, attempts, bytes_done, bytes_total, created_at, updated_at, started_at, finished_at';

/** Writes `rows` (and their `ok` task rows) into the SQLite node's file, in one transaction (WAL: the running node keeps reading). */
function writeSqliteRows(file: string, rows: CoverRowValues[], now: number): void {
  const db = new Database(file);
  try {
    db.pragma('busy_timeout = 10000');
    const cover = db.prepare(`INSERT INTO covers (${COVER_COLUMNS}) VALUES (?, ?, 'download', ?, ?, ?, ?, ?, ?, ?)`);
    const task = db.prepare(`INSERT INTO tasks (${TASK_COLUMNS}) VALUES (?, 'ok', 1, ?, ?, ?, ?, ?, ?)`);
    db.transaction(() => {
      for (const row of rows) {
        cover.run(row.url, row.path, row.bytes, row.contentType, row.width, row.height, row.sha256, now, now);
        task.run(row.url, row.bytes, row.bytes, now, now, now, now);
      }
    })();
  } finally {
    db.close();
  }
}

/** The same rows into the PostgreSQL database, in one transaction of two array statements. */
async function writePgRows(db: PgDatabase, rows: CoverRowValues[], now: number): Promise<void> {
  const column = <K extends keyof CoverRowValues>(key: K) => rows.map((row) => row[key]);
  await db.query('BEGIN');
  await db.query(
    `INSERT INTO covers (${COVER_COLUMNS}) SELECT u, p, 'download', b, c, w, h, s, $8, $8 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::int[], $6::int[], $7::text[]) AS t(u, p, b, c, w, h, s)`,
    [column('url'), column('path'), column('bytes'), column('contentType'), column('width'), column('height'), column('sha256'), now],
  );
  await db.query(`INSERT INTO tasks (${TASK_COLUMNS}) SELECT u, 'ok', 1, b, b, $3, $3, $3, $3 FROM unnest($1::text[], $2::bigint[]) AS t(u, b)`, [column('url'), column('bytes'), now]);
  await db.query('COMMIT');
}

async function cachedChecks(report: Report, server: string, dir: string): Promise<void> {
  const warmCount = scaled(10_000, 1000);
  const coldCount = scaled(30_000, 3000);
  const coldMeasured = coldCount > MEMORY_ROWS;
  const seedCount = coldMeasured ? coldCount : warmCount;
  const throughService = Math.min(seedCount, scaled(1000, 200));
  const seconds = envNumber('BENCH_CLUSTER_SECONDS', scaled(5, 2));
  const window = envNumber('BENCH_CLUSTER_WINDOW', 16);
  const rounds = envNumber('BENCH_CLUSTER_ROUNDS', 3);

  const db = await freshPgDatabase(server, 'checks');
  const origin = await startBulkOrigin('small');
  const services: Service[] = [];
  try {
    const sqliteData = `${dir}/sqlite/data`;
    const sqlite = await startBenchService({ dataDir: sqliteData, coversDir: `${dir}/sqlite/covers`, args: ['--public-url', PUBLIC_URL], profileName: 'cluster-sqlite' });
    services.push(sqlite);
    const [a, b] = await Promise.all(['a', 'b'].map((id) => startBenchService({ dataDir: `${dir}/pg/data-${id}`, coversDir: `${dir}/pg/covers`, args: nodeArgs(db, id), profileName: `cluster-${id}` })));
    services.push(a!, b!);
    const nodesOf: Record<Config, Service[]> = { sqlite: [sqlite], pg1: [a!], pg2: [a!, b!] };
    step(`SQLite node on ${sqlite.url}; PostgreSQL nodes a on ${a!.url} and b on ${b!.url} (database ${db.name})`);

    // The first URLs are cached through the service itself (the write path, timed
    // on both stores); the rest are written straight into both databases, the same rows.
    const urls = Array.from({ length: seedCount }, (_, i) => origin.imageUrl('cluster', i));
    const seeded = urls.slice(0, throughService);
    step(`caching ${num(throughService)} small images through the SQLite node, then through node a`);
    const sqliteCpu = procCpuSeconds(sqlite.child.pid!);
    const seedSqlite = await seed(sqlite, seeded);
    const seedSqliteCpu = procCpuSeconds(sqlite.child.pid!) - sqliteCpu;
    const pgCpu = procCpuSeconds(a!.child.pid!);
    const seedPg = await seed(a!, seeded);
    const seedPgCpu = procCpuSeconds(a!.child.pid!) - pgCpu;
    step(`cached: SQLite ${ms(seedSqlite, 0)}, PostgreSQL (node a) ${ms(seedPg, 0)}; ${num(origin.requests)} origin requests`);
    const bulk = urls.length - throughService;
    if (bulk > 0) {
      const [template] = await db.query<{ path: string; bytes: string; content_type: string; width: number; height: number; sha256: string }>('SELECT path, bytes, content_type, width, height, sha256 FROM covers WHERE url = $1', [seeded[0]]);
      if (!template) throw new Error(`no cover row for ${seeded[0]} after seeding`);
      const rows = bulkRows({ url: '', path: '', bytes: Number(template.bytes), contentType: template.content_type, width: template.width, height: template.height, sha256: '' }, urls.slice(throughService));
      const now = Date.now();
      writeSqliteRows(`${sqliteData}/coverhelper.sqlite`, rows, now);
      await writePgRows(db, rows, now);
      step(`${num(bulk)} more cover rows (and their ok tasks) written straight into both databases`);
    }
    const batches = Array.from({ length: seedCount / BATCH }, (_, k) => urls.slice(k * BATCH, (k + 1) * BATCH));
    for (const [name, node] of [['SQLite', sqlite], ['node a', a!], ['node b', b!]] as const) await verifyCached(node, name, batches);
    step(`${num(batches.length)} batches of ${BATCH} verified on every node: every URL answered from the cache`);

    const id = idFor(0);
    const expect = Buffer.from(`${DONE_PREFIX}${id}","ok":${BATCH},"skipped":0,"failed":0,`);
    const variants = [{ name: 'memory-warm', count: warmCount }, ...(coldMeasured ? [{ name: 'memory-cold', count: coldCount }] : [])];
    for (const variant of variants) {
      const requests = batches.slice(0, variant.count / BATCH).map((batch) => checkFrame(id, batch));
      const cursors = new Map<Service, number>();
      const runs: Record<Config, Run[]> = { sqlite: [], pg1: [], pg2: [] };
      for (let round = 1; round <= rounds; round++) {
        for (const config of CONFIGS) {
          await measure(nodesOf[config], requests, cursors, 1000, window, expect);
          const run = await measure(nodesOf[config], requests, cursors, seconds * 1000, window, expect);
          runs[config].push(run);
          step(`${variant.name} round ${round} ${LABEL[config].padEnd(19)}: ${num(run.rate)} URLs/s (services ${num((run.serviceCpu / run.seconds) * 100)} % of a core, client ${num((run.clientCpu / run.seconds) * 100)} %)`);
        }
      }
      const rate = (config: Config) => median(runs[config].map((run) => run.rate));
      const list = (config: Config) => runs[config].map((run) => num(run.rate)).join(', ');
      const cpuPerUrl = (config: Config) => {
        const cpu = runs[config].reduce((sum, run) => sum + run.serviceCpu, 0);
        const served = runs[config].reduce((sum, run) => sum + run.rate * run.seconds, 0);
        return `${num((cpu * 1e6) / served, 2)} µs of service CPU per URL`;
      };
      const clientShare = (config: Config) => {
        const cpu = runs[config].reduce((sum, run) => sum + run.clientCpu, 0);
        const time = runs[config].reduce((sum, run) => sum + run.seconds, 0);
        return `the measuring client used ${num((cpu / time) * 100)} % of a core`;
      };
      const perRound = (top: Config, bottom: Config) => runs[top].map((run, i) => ratio(run.rate / runs[bottom][i]!.rate)).join(', ');
      const what = variant.name === 'memory-warm' ? `${num(variant.count)} URLs, held in each node's memory` : `${num(variant.count)} URLs cycled, more than the ${num(MEMORY_ROWS)} rows a node's memory keeps: every URL read from the database`;
      for (const config of CONFIGS) {
        report.figure(`${variant.name}: ${LABEL[config]}`, `${num(rate(config))} URLs/s`, `${config === 'sqlite' ? `${what}; ` : ''}median of ${rounds} × ${seconds} s; runs: ${list(config)}; ${cpuPerUrl(config)}; ${clientShare(config)}`);
      }
      report.figure(`${variant.name}: PostgreSQL 1 node / SQLite`, ratio(rate('pg1') / rate('sqlite')), `round by round: ${perRound('pg1', 'sqlite')}`);
      report.figure(`${variant.name}: PostgreSQL 2 nodes / 1 node`, ratio(rate('pg2') / rate('pg1')), `round by round: ${perRound('pg2', 'pg1')}`);
    }
    if (!coldMeasured) report.skip('memory-cold', `at this scale the set (${num(coldCount)} URLs) fits in the ${num(MEMORY_ROWS)} rows of a node's memory: only memory-warm is measured`);
    const rate = (took: number) => `${num(throughService / (took / 1000))} images/s`;
    const cpuEach = (cpu: number) => `${num((cpu * 1000) / throughService, 2)} ms of CPU per image`;
    report.figure('cold writes, SQLite node', rate(seedSqlite), `${num(throughService)} new small images cached through the node (checks of 1,000 at once, --workers 16) in ${ms(seedSqlite, 0)}; ${cpuEach(seedSqliteCpu)}`);
    report.figure('cold writes, PostgreSQL node', rate(seedPg), `the same ${num(throughService)} through node a in ${ms(seedPg, 0)}; ${cpuEach(seedPgCpu)}`);
    report.figure('cold writes, PostgreSQL / SQLite time', ratio(seedPg / seedSqlite));
    report.figure('cached covers in each store', num(seedCount), `${num(throughService)} cached through the service, ${num(bulk)} rows (with their ok tasks) written straight into both databases, the same rows in each, as bench/startRestore.ts fills its store (their files are not written: a check reads only the index)`);
  } finally {
    for (const service of services) await stopService(service);
    await origin.close();
    await db.drop();
  }
}

// ---------------------------------------------------------------------------
// 2. Cross-node herd

type HerdKind = 'sqlite' | 'one' | 'two';
const HERD_LABEL: Record<HerdKind, string> = { sqlite: '1 SQLite node', one: '1 PostgreSQL node', two: '2 PostgreSQL nodes' };

async function crossNodeHerd(report: Report, server: string, dir: string): Promise<void> {
  const socketCount = scaled(500, 10);
  const onA = Math.ceil(socketCount / 2);
  const reps = envNumber('BENCH_CLUSTER_HERD_REPS', 3);
  const workers = 16;
  const kinds: HerdKind[] = ['sqlite', 'one', 'two'];
  const names = (set: string) => Array.from({ length: HERD_URLS }, (_, i) => `${set}-${i}`);
  const plan = Object.fromEntries(kinds.map((kind) => [kind, Array.from({ length: reps }, (_, rep) => names(`${kind}${rep}`))])) as Record<HerdKind, string[][]>;
  step(`making ${num(kinds.length * reps * HERD_URLS)} origin images (origin in its own process, +${HERD_DELAY_MS} ms)`);
  const origin = await startOriginProcess({ delayMs: HERD_DELAY_MS, images: Object.values(plan).flat(2) });
  const db = await freshPgDatabase(server, 'herd');
  const services: Service[] = [];
  const sockets: WebSocket[] = [];
  try {
    const sqlite = await startBenchService({ dataDir: `${dir}/sqlite/data`, coversDir: `${dir}/sqlite/covers`, workers, args: ['--public-url', PUBLIC_URL], profileName: 'cluster-herd-sqlite' });
    services.push(sqlite);
    const [a, b] = await Promise.all(['a', 'b'].map((id) => startBenchService({ dataDir: `${dir}/data-${id}`, coversDir: `${dir}/covers`, workers, args: nodeArgs(db, id), profileName: `cluster-herd-${id}` })));
    services.push(a!, b!);
    const onSqlite = await openMany(sqlite.wsUrl, socketCount);
    const allOnA = await openMany(a!.wsUrl, socketCount);
    const onB = await openMany(b!.wsUrl, socketCount - onA);
    sockets.push(...onSqlite, ...allOnA, ...onB);
    const groups: Record<HerdKind, WebSocket[]> = { sqlite: onSqlite, one: allOnA, two: [...allOnA.slice(0, onA), ...onB] };
    const measured: Record<HerdKind, Service[]> = { sqlite: [sqlite], one: [a!], two: [a!, b!] };
    step(`a SQLite node, and nodes a and b on one database (--workers ${workers}); ${socketCount} sockets on the SQLite node, ${socketCount} on a, ${socketCount - onA} on b`);

    const urlsOf = (set: string[]) => set.map((name) => `${origin.url}/img/${name}.jpg`);
    const times: Record<HerdKind, number[]> = { sqlite: [], one: [], two: [] };
    const hits: Record<HerdKind, number[]> = { sqlite: [], one: [], two: [] };
    const cpu: Record<HerdKind, number> = { sqlite: 0, one: 0, two: 0 };
    const cpuOf = (nodes: Service[]) => nodes.reduce((sum, node) => sum + procCpuSeconds(node.child.pid!), 0);
    const run = async (kind: HerdKind, rep: number): Promise<HerdRun> => {
      const group = groups[kind];
      const before = cpuOf(measured[kind]);
      const result = await askAll(group, urlsOf(plan[kind][rep]!), 180_000);
      cpu[kind] += cpuOf(measured[kind]) - before;
      if (result.ok !== group.length) throw new Error(`herd (${HERD_LABEL[kind]}): ${result.ok} of ${group.length} sockets had every URL ok`);
      times[kind].push(result.ms);
      hits[kind].push(await origin.hits(plan[kind][rep]!));
      return result;
    };
    for (let rep = 0; rep < reps; rep++) {
      // Each repetition starts with another kind.
      const order = [...kinds.slice(rep % kinds.length), ...kinds.slice(0, rep % kinds.length)];
      const took: Partial<Record<HerdKind, HerdRun>> = {};
      for (const kind of order) took[kind] = await run(kind, rep);
      step(`rep ${rep + 1}: ${kinds.map((kind) => `${HERD_LABEL[kind]} ${ms(took[kind]!.ms, 0)} (${hits[kind][rep]} origin requests)`).join(', ')}`);
    }
    const time = (kind: HerdKind) => median(times[kind]);
    const exact = (list: number[]) => list.every((n) => n === HERD_URLS);
    report.goal('herd origin requests, 1 PostgreSQL node', hits.one.join(', '), `exactly ${HERD_URLS} each`, exact(hits.one));
    report.goal('herd origin requests, 2 PostgreSQL nodes', hits.two.join(', '), `exactly ${HERD_URLS} each`, exact(hits.two), `${onA} sockets on node a, ${socketCount - onA} on node b`);
    report.figure('herd origin requests, 1 SQLite node', hits.sqlite.join(', '));
    for (const kind of kinds) {
      report.figure(`herd time, ${socketCount} sockets, ${HERD_LABEL[kind]}`, ms(time(kind), 0), `median of ${reps}: ${times[kind].map((v) => ms(v, 0)).join(', ')}; service CPU ${num(cpu[kind] / reps, 2)} s per herd${kind === 'two' ? ' (both nodes)' : ''}`);
    }
    const byRep = (top: HerdKind, bottom: HerdKind) => `round by round: ${times[top].map((v, i) => ratio(v / times[bottom][i]!)).join(', ')}`;
    report.figure('herd time, 2 PostgreSQL nodes / 1', ratio(time('two') / time('one')), byRep('two', 'one'));
    report.figure('herd time, 1 PostgreSQL node / 1 SQLite node', ratio(time('one') / time('sqlite')), byRep('one', 'sqlite'));
  } finally {
    await Promise.all(sockets.map(closeSocket));
    for (const service of services) await stopService(service);
    await origin.close();
    await db.drop();
  }
}

// ---------------------------------------------------------------------------
// 3. Takeover after SIGKILL

interface Takeover {
  /** Kill to the last asker's answer, ms. */
  ms: number;
  /** Kill to node b's "taking over" log line, ms. */
  takeoverMs: number;
  /** URL answers on node b that were ok, of `answers`. */
  ok: number;
  answers: number;
  /** Origin requests for the URLs after the takeover (the victim's cut-off ones included). */
  originRequests: number;
  /** Task rows that ended ok with no claim left. */
  rowsDone: number;
}

async function takeoverOnce(db: PgDatabase, b: Service, dir: string, rep: number): Promise<Takeover> {
  const victimId = `a${rep + 1}`;
  const origin = await startOriginProcess({ delayMs: 0, images: [] });
  const victim = await startBenchService({ dataDir: `${dir}/data-${victimId}`, coversDir: `${dir}/covers`, workers: 32, args: nodeArgs(db, victimId, ['--lease', String(LEASE_S)]), profileName: `cluster-${victimId}` });
  const names = Array.from({ length: TAKEOVER_URLS }, (_, i) => `take${rep}-${i}`);
  const urls = names.map((name) => `${origin.url}/half/${name}.jpg`);
  const clients = [await connect(victim.wsUrl)];
  try {
    void clients[0]!.check('victim', urls, 120_000).catch(() => undefined);
    await waitUntil(
      async () => (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM tasks WHERE claimed_by = $1 AND status = 'downloading' AND bytes_done > 0 AND url = ANY($2)", [victimId, urls]))[0]!.n === urls.length,
      `node ${victimId} downloading all ${urls.length}, held half-way by the origin`,
      30_000,
    );
    const missesBefore = (await metrics(b)).get('coverhelper_cache_misses_total') ?? 0;
    const askers = await Promise.all(Array.from({ length: TAKEOVER_ASKERS }, () => connect(b.wsUrl)));
    clients.push(...askers);
    const waiting = askers.map((asker, i) => asker.check(`wait-${i}`, urls, 120_000));
    // Every asker's URLs wait on node b, none queued or downloading there: they wait on the victim.
    await waitUntil(
      async () => {
        const [m, h] = await Promise.all([metrics(b), health(b)]);
        return (m.get('coverhelper_cache_misses_total') ?? 0) - missesBefore === TAKEOVER_ASKERS * urls.length && h.queued === 0 && h.downloading === 0;
      },
      `every asker on node b waiting on node ${victimId}`,
      20_000,
    );
    const fetched = await origin.hits(names, 'half');
    if (fetched !== urls.length) throw new Error(`before the kill the origin had ${fetched} requests, not ${urls.length}: node b fetched`);

    const earlier = new Set(b.logs);
    const killedAt = performance.now();
    const takeoverSeen = b.waitForLog((line) => !earlier.has(line) && line.message === TAKEOVER_LOG, 60_000).then(() => performance.now() - killedAt);
    await victim.kill();
    await origin.release();
    const answered = await Promise.all(waiting);
    const took = performance.now() - killedAt;
    const takeoverMs = await takeoverSeen;
    const answers = answered.flatMap(({ done }) => answersOf(done));
    const ok = answers.filter((answer) => answer.status === 'ok').length;
    const originRequests = await origin.hits(names, 'half');
    // The askers are answered when the download ends; its row is written in the writer's next turn.
    const rowsDoneNow = async () => (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM tasks WHERE url = ANY($1) AND status = 'ok' AND claimed_by IS NULL", [urls]))[0]!.n;
    await waitUntil(async () => (await rowsDoneNow()) === urls.length, 'task rows ok and unclaimed', 10_000).catch(async () => {
      const rows = await db.query('SELECT url, status, claimed_by, claim_expires, updated_at FROM tasks WHERE url = ANY($1) ORDER BY url', [urls]);
      step(`  task rows 10 s after the answers: ${JSON.stringify(rows.slice(0, 4))} …`);
    });
    const rowsDone = await rowsDoneNow();
    step(
      `takeover ${rep + 1}: node ${victimId} killed with ${urls.length} downloads half-way; node b took over after ${ms(takeoverMs, 0)}; ` +
        `${ok} of ${answers.length} answers ok ${ms(took, 0)} after the kill; ${originRequests} origin requests (${urls.length} cut off); ${rowsDone} task rows ok and unclaimed`,
    );
    if (ok !== answers.length) step(`  first answer not ok: ${JSON.stringify(answers.find((answer) => answer.status !== 'ok'))}`);
    return { ms: took, takeoverMs, ok, answers: answers.length, originRequests, rowsDone };
  } finally {
    await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
    await victim.kill();
    await origin.close();
  }
}

async function takeover(report: Report, server: string, dir: string): Promise<void> {
  const reps = envNumber('BENCH_CLUSTER_TAKEOVER_REPS', 3);
  const db = await freshPgDatabase(server, 'takeover');
  let b: Service | undefined;
  try {
    b = await startBenchService({ dataDir: `${dir}/data-b`, coversDir: `${dir}/covers`, workers: 32, args: nodeArgs(db, 'b', ['--lease', String(LEASE_S)]), profileName: 'cluster-takeover-b' });
    step(`node b on ${b.url} (--lease ${LEASE_S}); a new node a for each of ${reps} repetitions`);
    const runs: Takeover[] = [];
    for (let rep = 0; rep < reps; rep++) runs.push(await takeoverOnce(db, b, dir, rep));
    const goalMs = (LEASE_S + TAKEOVER_SLACK_S) * 1000;
    const worst = Math.max(...runs.map((run) => run.ms));
    report.goal(
      'takeover: kill to every asker answered',
      `${ms(median(runs.map((run) => run.ms)), 0)} (worst ${ms(worst, 0)})`,
      `≤ lease + ${TAKEOVER_SLACK_S} s = ${num(goalMs / 1000)} s, every run`,
      worst <= goalMs,
      `median of ${reps}: ${runs.map((run) => ms(run.ms, 0)).join(', ')}; --lease ${LEASE_S}: claims renewed every ${num(LEASE_S / 3, 2)} s, so they run out ${num((LEASE_S * 2) / 3, 1)}–${LEASE_S} s after the kill, then the next takeover tick (every 1 s) claims them`,
    );
    report.figure('takeover: kill to node b taking over', ms(median(runs.map((run) => run.takeoverMs)), 0), `median of ${reps}: ${runs.map((run) => ms(run.takeoverMs, 0)).join(', ')} (node b's "${TAKEOVER_LOG}" line)`);
    report.figure('takeover: taking over to the last answer', ms(median(runs.map((run) => run.ms - run.takeoverMs)), 0), `${TAKEOVER_URLS} downloads of a 1200×900 JPEG, ${TAKEOVER_ASKERS} askers on node b`);
    const ok = runs.reduce((sum, run) => sum + run.ok, 0);
    const answers = runs.reduce((sum, run) => sum + run.answers, 0);
    report.goal('takeover: answers ok on node b', `${num(ok)} of ${num(answers)}`, 'all', ok === answers && answers === reps * TAKEOVER_ASKERS * TAKEOVER_URLS, `${reps} runs × ${TAKEOVER_ASKERS} askers × ${TAKEOVER_URLS} URLs`);
    report.goal(
      'takeover: origin requests per run',
      runs.map((run) => run.originRequests).join(', '),
      `${2 * TAKEOVER_URLS} each (${TAKEOVER_URLS} cut off by the kill, ${TAKEOVER_URLS} by node b)`,
      runs.every((run) => run.originRequests === 2 * TAKEOVER_URLS && run.rowsDone === TAKEOVER_URLS),
      `task rows ok with no claim left after each run: ${runs.map((run) => run.rowsDone).join(', ')}`,
    );
  } finally {
    if (b) await stopService(b);
    await db.drop();
  }
}

// ---------------------------------------------------------------------------

runScenario('cluster', 15 * 60_000, async () => {
  const report = new Report('cluster', 'Several nodes on PostgreSQL, against one node on SQLite', 'npm run bench:cluster');
  const server = benchPgServer();
  const unusable = server
    ? await pgUnreachable(server.url).then((why) => (why ? `PostgreSQL at ${maskSecrets(server.url)} (${server.from}) does not answer: ${why}` : undefined))
    : 'no PostgreSQL named: set COVERHELPER_BENCH_PG or COVERHELPER_TEST_PG (for example postgres://postgres@127.0.0.1:5432/test)';
  if (!server || unusable) {
    step(`skipped: ${unusable}`);
    for (const part of ['cached checks', 'cross-node herd', 'takeover after SIGKILL']) report.skip(part, unusable!);
    report.finish();
    return;
  }
  step(`PostgreSQL at ${maskSecrets(server.url)} (${server.from})`);
  const loadBefore = os.loadavg()[0]!;
  const dir = await tempDir('cluster');
  for (const part of ['checks', 'herd', 'takeover']) await mkdir(`${dir}/${part}`, { recursive: true });
  const only = (process.env.BENCH_CLUSTER_ONLY ?? '').split(',').filter(Boolean);
  const parts = [
    { name: 'checks', title: '1. cached checks', run: cachedChecks },
    { name: 'herd', title: '2. cross-node herd', run: crossNodeHerd },
    { name: 'takeover', title: '3. takeover after SIGKILL', run: takeover },
  ];
  for (const part of parts) {
    if (only.length > 0 && !only.includes(part.name)) continue;
    step(`--- ${part.title} ---`);
    await part.run(report, server.url, `${dir}/${part.name}`);
  }
  report.note(`1-minute load average ${num(loadBefore, 1)} at the start and ${num(os.loadavg()[0]!, 1)} at the end, on ${os.availableParallelism()} cores (the nodes, PostgreSQL, the origin and this client all run here)`);
  report.finish();
});

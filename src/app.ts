/**
 * Builds the whole service from a config: store, fetcher, supervisor, servers.
 * `main.ts` runs it as a process; tests may run it in process on port 0 with a
 * fresh data folder.
 */
import os from 'node:os';
import path from 'node:path';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CoverChecks } from './checks/index.js';
import { systemClock } from './clock.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { createDownloads } from './downloads/index.js';
import type { Downloads } from './downloads/index.js';
import { createHttpClient } from './fetch/index.js';
import type { Logger } from './logger.js';
import { CacheLimits, ColorPass, DeletionRunner, ResourceGuard } from './maintenance/index.js';
import { ADMIN_TOKEN_FILE, createAdminFeed, resolveAdminToken, resolveSecret } from './admin/index.js';
import { JobCallbacks, JobRunner, removeArchive } from './jobs/index.js';
import { preparePlaceholder, ProxyRateLimiter, SuffixChecks, TrustedProxies } from './proxy/index.js';
import { createHttpServer, createMetrics, Door, FrameMemo, homePage, ProxyRoute } from './servers/index.js';
import { SharedChecks } from './sessions/index.js';
import { startLegacyServer } from './legacy/index.js';
import type { LegacyServer } from './legacy/index.js';
import { Stats } from './stats.js';
import { openStore, sweepTemp, TEMP_DIR, touchPrecisionFor } from './store/index.js';
import type { OpenStore, Store } from './store/index.js';
import { StartError } from './errors.js';
import { bindPort, checkWritable, databaseError, joinError, readApiCookie } from './preflight.js';
import { Reresolver } from './downloads/reresolve.js';
import { userAgent, version } from './version.js';
import { HostGates } from './upstream/hostGates.js';
import { Renders } from './images/renders.js';
import { upstreamHealth } from './upstream/shown.js';

export interface App {
  /** `http://HOST:PORT` as bound. */
  url: string;
  port: number;
  /** Base of the cover URLs handed to clients. */
  publicUrl: string;
  /** This node's id (`--node-id`, or the host name and the bound port). */
  node: string;
  downloads: Downloads;
  store: Store;
  deletionRunner: DeletionRunner;
  cacheLimits: CacheLimits;
  /** The background pass giving covers stored before colours were kept their colour (started at start). */
  colorPass: ColorPass;
  guard: ResourceGuard;
  stats: Stats;
  /** Archive jobs running on this node. */
  jobs: JobRunner;
  /** The per-host gates of outbound requests (their state: `status()`, `counts()`, `onChange`). */
  gates: HostGates;
  /** Variants made on demand (`/covers/<path>?w=`, the proxy): one render per missing variant, on a bounded pool. */
  renders: Renders;
  adminToken: string;
  /** Open admin streams (socket → pending changes), for tests. */
  adminSockets: Map<import('ws').WebSocket, { pending: () => number }>;
  /** Graceful stop: no new connections, downloads finish within `graceMs`, everything closed. */
  stop(graceMs?: number): Promise<void>;
}

/** How often disk, memory and load are sampled. */
const GUARD_INTERVAL_MS = 5000;
/** On a shared covers folder, a temp file older than the time limit and this is a dead node's leftover. */
const TEMP_SWEEP_MARGIN_MS = 10 * 60_000;
const TEMP_SWEEP_INTERVAL_MS = 10 * 60_000;
/** How often deletion records are looked for besides when one is written. */
const DELETION_INTERVAL_MS = 30_000;

/** Cache limits are checked every minute, or four times per max age if that is shorter (at least every second). */
function cacheLimitsInterval(maxAgeHours: number): number {
  return maxAgeHours > 0 ? Math.max(1000, Math.min(60_000, (maxAgeHours * 3_600_000) / 4)) : 60_000;
}

function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/**
 * `clock` is the one clock of the service (default the system's): everything that reads time,
 * sets a timer or draws a random number is given it. Tests pass a `TestClock`.
 */
export async function startApp(config: Config, logger: Logger, clock: Clock = systemClock): Promise<App> {
  // Before the database: the folders take files, and the port is ours.
  await checkWritable(config.coversDir, 'covers folder', '--covers-dir', [TEMP_DIR]);
  await checkWritable(config.dataDir, 'data folder', '--data-dir');
  // The API identity: read once, refused (exit 2) unless only its owner may read it.
  const cookie = config.bilibiliCookie === undefined ? undefined : await readApiCookie(config.bilibiliCookie);
  const bound = await bindPort(config.host, config.port);
  const opened: { close(): Promise<void> }[] = [{ close: () => new Promise<void>((resolve) => bound.close(() => resolve())) }];
  try {
    return await startOnPort(config, logger, clock, bound, opened, cookie);
  } catch (error) {
    for (const thing of opened.reverse()) await thing.close().catch(() => undefined);
    throw error;
  }
}

/** What a start opens before anything is built: the store, the secrets, this node's place in the cluster. */
interface Opened {
  config: Config;
  logger: Logger;
  clock: Clock;
  node: string;
  port: number;
  store: OpenStore;
  adminToken: string;
  callbackSecret: string;
  cookie: string | undefined;
  /** Removes temp files a run left (on a shared folder, only old ones). */
  sweep: () => Promise<void>;
}

/** The service's parts, built and wired, before any of them runs. */
interface Parts extends Opened {
  /** The cover URLs' base and the service's URL: known once the port is bound and the start line is near. */
  urls: { publicUrl: string; serviceUrl: string };
  stats: Stats;
  deletionRunner: DeletionRunner;
  cacheLimits: CacheLimits;
  client: ReturnType<typeof createHttpClient>;
  gates: HostGates;
  reresolver: Reresolver;
  downloads: Downloads;
  guard: ResourceGuard;
  checks: CoverChecks;
  callbacks: JobCallbacks;
  jobs: JobRunner;
  renders: Renders;
  startLimiter: ProxyRateLimiter;
  suffixChecks: SuffixChecks;
  door: Door;
}

/** What runs once the parts are built: the background work and the servers. */
interface Running {
  colorPass: ColorPass;
  sweeper: ReturnType<Clock['setInterval']> | undefined;
  http: ReturnType<typeof createHttpServer>;
  legacy: LegacyServer | undefined;
}

async function startOnPort(config: Config, logger: Logger, clock: Clock, bound: Server, opened: { close(): Promise<void> }[], cookie: string | undefined): Promise<App> {
  const parts = buildParts(await openAll(config, logger, clock, bound, opened, cookie));
  const { colorPass, sweeper } = await resumeWork(parts, opened);
  const { http, legacy } = await serve(parts, bound, opened);
  const running: Running = { colorPass, sweeper, http, legacy };
  const url = `http://${hostForUrl(config.host)}:${parts.port}`;
  parts.urls.publicUrl ||= `${url}/covers/`;
  parts.urls.serviceUrl = url;
  await resumeJobs(parts);
  logStart(parts, url, legacy);
  let stopping: Promise<void> | undefined;
  const { store, downloads, deletionRunner, cacheLimits, guard, stats, jobs, gates, renders, adminToken, node } = parts;
  return {
    url,
    port: parts.port,
    publicUrl: parts.urls.publicUrl,
    node,
    downloads,
    store,
    deletionRunner,
    cacheLimits,
    colorPass,
    guard,
    stats,
    jobs,
    gates,
    renders,
    adminToken,
    adminSockets: http.adminSockets,
    stop(graceMs = 5000) {
      stopping ??= stopAll(parts, running, graceMs);
      return stopping;
    },
  };
}

/** Opens the store (migrated), reads or makes the secrets, and joins the cluster (refused: exit 2). */
async function openAll(config: Config, logger: Logger, clock: Clock, bound: Server, opened: { close(): Promise<void> }[], cookie: string | undefined): Promise<Opened> {
  const { port } = bound.address() as AddressInfo;
  const node = config.nodeId ?? `${os.hostname()}:${port}`;

  let store: OpenStore;
  try {
    store = await openStore({
      db: config.db,
      node,
      leaseMs: config.lease * 1000,
      onTaskWriteError: (error) => logger.error('task write failed', { error }),
      onSchemaFinished: (outcome) => {
        if ('error' in outcome) logger.warn('could not finish the task list\'s host column and indexes in the background; the next start tries again', { error: outcome.error });
        else if (outcome.rows > 0) logger.info('task rows given their host (for the admin list\'s host filter)', { rows: outcome.rows });
      },
      clock,
      covers: { touchPrecisionMs: touchPrecisionFor(config.maxAgeHours) },
    });
  } catch (error) {
    throw databaseError(error, config.db);
  }
  opened.push(store);
  if (store.migrated.length > 0) logger.info('database migrated', { migrations: store.migrated });
  // Other nodes write temp files into a shared covers folder: only old ones are leftovers there.
  const tempAgeMs = store.claims.shared ? config.timeLimit * 1000 + TEMP_SWEEP_MARGIN_MS : 0;
  const sweep = async () => {
    const swept = await sweepTemp(config.coversDir, tempAgeMs, clock.now());
    if (swept > 0) logger.info('removed temp files left by an earlier run', { count: swept });
  };
  await sweep();

  const adminToken = await resolveAdminToken(config, logger).catch((error: unknown) => {
    throw new StartError(
      `could not read or write the admin token file in ${config.dataDir} (${(error as { code?: string }).code ?? 'error'}: ${(error as Error).message})`,
      'make the data folder writable by the user running coverhelper, or give --admin-token',
      { cause: error },
    );
  });

  const callbackSecret = await resolveSecret(config.callbackSecret, config.dataDir, 'callback-secret', 'callback secret', logger).catch((error: unknown) => {
    throw new StartError(
      `could not read or write the callback secret file in ${config.dataDir} (${(error as { code?: string }).code ?? 'error'}: ${(error as Error).message})`,
      'make the data folder writable by the user running coverhelper, or give --callback-secret',
      { cause: error },
    );
  });

  // Several nodes: refused when a live node holds this id or a shared secret differs (exit 2).
  const joined = await store.cluster.join(
    { 'admin-token': adminToken, 'client-token': config.clientToken, 'callback-secret': callbackSecret, 'url-key': config.urlKey },
    config.lease * 1000,
    (lastSeen) => logger.info('a node with this --node-id was seen less than a lease ago: waiting for its next heartbeat (then this start is refused) or for the lease to run out (it died)', { node, lastSeen: new Date(lastSeen).toISOString(), leaseS: config.lease }),
  );
  const refused = joinError(joined, node, config.lease * 1000, clock.now());
  if (refused) throw refused;
  if (joined.joined && joined.replaced.length > 0) logger.warn('shared secrets changed: no other node was live, so this node’s are recorded for the nodes that start next', { secrets: joined.replaced });
  // A start that fails from here frees the id at once.
  opened.push({ close: () => store.cluster.leave() });

  return { config, logger, clock, node, port, store, adminToken, callbackSecret, cookie, sweep };
}

/** Builds every part and wires them to each other; nothing runs yet. */
function buildParts(opened: Opened): Parts {
  const { config, logger, clock, store, node, cookie, callbackSecret } = opened;
  const urls = { publicUrl: config.publicUrl ?? '', serviceUrl: '' };
  const publicUrl = () => urls.publicUrl;
  const serviceUrl = () => urls.serviceUrl;
  const { covers, tasks, deletions } = store;
  const stats = new Stats();
  // The job runner is made once the checks are; expiries the deletion runner meets before that are written directly.
  const made: { jobs?: JobRunner } = {};
  const deletionRunner = new DeletionRunner({
    deletions,
    covers,
    tasks,
    coversDir: config.coversDir,
    logger,
    fileGraceMs: store.fileGraceMs,
    jobs: {
      markExpired: async (id) => {
        if (made.jobs) await made.jobs.markExpired(id);
        else await store.jobs.update(id, { status: 'expired', archiveBytes: null });
      },
      removeArchive: (id) => removeArchive(config.coversDir, id),
    },
    clock,
  });
  const cacheLimits = new CacheLimits({ covers, deletions, runner: deletionRunner, logger, maxAgeHours: config.maxAgeHours, maxCacheBytes: config.maxCacheBytes, clock });
  const client = createHttpClient({ allowPrivateNetwork: config.allowPrivateNetwork, userAgent });
  // Every request to an upstream passes its host's gate (--host-limits); limits are per node.
  const gates = new HostGates({ limits: config.hostLimits, clock, logger });
  // Video pages asked again after --resolve-ttl: answered from the store, re-resolved in the background at bulk priority.
  const reresolver = new Reresolver({
    ttlMs: config.resolveTtl * 3_600_000,
    allowHosts: config.allowHosts,
    ask: (urls, asker) => downloads.askMany(urls, asker),
    clock,
    onDone: (url, output) => {
      if (output.status === 'ok' && output.source === 'download') {
        logger.info('video cover changed upstream: the new cover replaces the stored one', { url, path: output.cover.path });
        // The old file was recorded for deletion with the new row.
        deletionRunner.kick();
      }
      else if (output.status === 'ok') logger.debug('video re-resolved: cover unchanged', { url });
      else logger.info('could not re-resolve a video page: its stored cover stays', { url, code: output.error.code, error: output.error.message });
    },
  });
  const identity = { ...(cookie === undefined ? {} : { cookie }), ...(config.apiUserAgent === undefined ? {} : { userAgent: config.apiUserAgent }) };
  const downloads = createDownloads({
    config,
    store,
    client,
    logger,
    stats,
    onStored: () => cacheLimits.kick(),
    orphanGraceMs: config.resumeGrace * 1000,
    fetch: { identity, reresolve: reresolver },
    gates,
    clock,
  });
  const guard = new ResourceGuard({
    coversDir: config.coversDir,
    limits: config,
    report: (reasons) => {
      const was = downloads.status();
      downloads.setTardy(reasons);
      if (was !== 'tardy' && reasons.length > 0) logger.warn('tardy: new downloads wait', { reasons });
      if (was === 'tardy' && reasons.length === 0) logger.info('resources back under their limits: downloads resume');
    },
    onError: (error) => logger.error('resource sample failed', { error }),
    clock,
  });

  const checks = new CoverChecks({ config, covers, downloads, stats, publicUrl, reresolve: reresolver });
  const callbacks = new JobCallbacks({ secret: callbackSecret, allowPrivateNetwork: config.allowPrivateNetwork, callbackHosts: config.callbackHosts, userAgent, logger, clock });
  const jobs = new JobRunner({
    jobs: store.jobs,
    deletions,
    deletionRunner,
    checks,
    callbacks,
    coversDir: config.coversDir,
    logger,
    node,
    ttlMs: config.jobTtl * 3_600_000,
    leaseMs: config.lease * 1000,
    serviceUrl: serviceUrl,
    shared: store.claims.shared,
    clock,
  });
  made.jobs = jobs;
  const renders = new Renders({ coversDir: config.coversDir, covers, shared: store.claims.shared, workers: config.renderWorkers, clock, logger, timeLimitMs: config.timeLimit * 1000 });
  // /ws and the door read bilibili suffixes: checked as the URL without, answered with the rendered variant.
  // One count per client address of the downloads and renders it starts (--proxy-rate): the proxy, /covers variants, suffixes.
  const startLimiter = new ProxyRateLimiter({ limit: config.proxyRate, clock });
  const suffixChecks = new SuffixChecks({ checks, covers, renders, publicUrl, logger, limiter: startLimiter, clock });
  const door = new Door({ checks: suffixChecks, logger, urlKey: config.urlKey, waitMs: config.timeLimit * 1000, maxBatch: config.maxBatch, clock });
  return { ...opened, urls, stats, deletionRunner, cacheLimits, client, gates, reresolver, downloads, guard, checks, callbacks, jobs, renders, startLimiter, suffixChecks, door };
}

/** Before anything is served: the guard's first verdict, what the last run left, then the background work. */
async function resumeWork(parts: Parts, opened: { close(): Promise<void> }[]): Promise<Pick<Running, 'colorPass' | 'sweeper'>> {
  const { config, logger, clock, store, guard, deletionRunner, downloads, cacheLimits, sweep } = parts;
  const { covers, tasks, deletions } = store;
  opened.push({ close: () => parts.callbacks.close() });
  // Before anything runs: the guard's first verdict, then what the last run left.
  await guard.sample();
  // One process per SQLite file: no claim can be alive. Several nodes: claims run out by themselves.
  if (!store.claims.shared) await deletions.releaseClaims();
  const done = await deletionRunner.runOnce();
  if (done > 0) logger.info('finished deletions left by an earlier run', { count: done });
  await downloads.join();
  if (downloads.status() === 'paused') logger.warn('downloads are paused by the administrator (resume in the dashboard or POST /admin/api/resume)');
  const unfinished = await tasks.unfinished();
  const failures = config.failTtl > 0 ? await tasks.failedSince(clock.now() - config.failTtl * 1000) : [];
  const resumed = downloads.restore(unfinished, failures);
  if (resumed > 0) logger.info('resuming unfinished downloads', { count: resumed });
  guard.start(GUARD_INTERVAL_MS);
  deletionRunner.start(DELETION_INTERVAL_MS);
  cacheLimits.start(cacheLimitsInterval(config.maxAgeHours));
  cacheLimits.kick(0);
  // Covers stored before colours were kept get theirs in the background, one at a time.
  const colorPass = new ColorPass({ covers, coversDir: config.coversDir, logger, clock, maxFileBytes: Math.max(config.maxBytes, 20 * 1024 * 1024) });
  void colorPass.start();
  opened.push({ close: () => colorPass.stop() });
  // A node that died leaves its temp files in the shared folder: swept once they are old.
  const sweeper = store.claims.shared ? clock.setInterval(() => void sweep().catch(() => undefined), TEMP_SWEEP_INTERVAL_MS).unref() : undefined;

  return { colorPass, sweeper };
}

/** The HTTP server (every route) and the 2019 port, on the bound port. */
async function serve(parts: Parts, bound: Server, opened: { close(): Promise<void> }[]): Promise<Pick<Running, 'http' | 'legacy'>> {
  const { config, logger, clock, store, node, adminToken, urls, stats, downloads, guard, gates, jobs, renders, startLimiter, door, reresolver, suffixChecks, checks, deletionRunner, callbacks } = parts;
  const { covers, tasks, deletions } = store;
  const publicUrl = () => urls.publicUrl;
  const serviceUrl = () => urls.serviceUrl;
  const proxy = new ProxyRoute({
    config,
    covers,
    wouldStart: (url) => downloads.wouldStart(url),
    limiter: startLimiter,
    door,
    variants: { renders, widths: config.widths, formats: config.formats },
    // Read and checked before the start (src/main.ts): here it is the image kept then.
    placeholder: config.proxy === 'off' ? null : await preparePlaceholder(config),
    home: homePage(version, serviceUrl, config.proxy),
    logger,
    clock,
    reresolve: reresolver,
  });
  const http = createHttpServer(
    {
      metrics: createMetrics({
        stats,
        version,
        status: () => downloads.status(),
        counts: () => downloads.counts(),
        resources: () => guard.latest,
        jobs: { outcomes: jobs.outcomes, countByStatus: () => store.jobs.countByStatus() },
        upstream: { counts: () => gates.counts(), status: () => gates.status() },
        renders: () => renders.counts(),
      }),
      admin: {
        token: adminToken,
        feed: createAdminFeed({ store, downloads, stats, serviceUrl: serviceUrl, upstream: () => gates.status() }),
        api: { config, covers, tasks, deletions, cluster: store.cluster, deletionRunner, downloads, logger, publicUrl, jobs: store.jobs, serviceUrl: serviceUrl, clock },
      },
      checks: suffixChecks,
      frames: new FrameMemo(),
      shared: new SharedChecks({ checks: suffixChecks, stats }),
      door,
      proxy,
      variants: {
        coversDir: config.coversDir,
        covers,
        renders,
        widths: config.widths,
        formats: config.formats,
        logger,
        limiter: startLimiter,
        trusted: new TrustedProxies(config.trustProxy),
        rate: config.proxyRate,
      },
      jobs: { runner: jobs, jobs: store.jobs, callbacks, coversDir: config.coversDir, maxBatch: config.maxBatch, serviceUrl: serviceUrl, clock },
      version,
      maxBatch: config.maxBatch,
      logger,
      coversDir: config.coversDir,
      clientToken: config.clientToken,
      stats,
      clock,
      health: async () => {
        const sample = guard.latest ?? (await guard.sample());
        const counts = downloads.counts();
        const status = downloads.status();
        // Hosts that cooled within the hour (absent when none, like `reasons`). A cooling host
        // does not change the status nor the 200: the node itself is fine.
        const upstream = upstreamHealth(gates.status());
        return {
          status,
          ...(status === 'tardy' ? { reasons: downloads.tardyReasons() } : {}),
          version,
          node,
          ...sample,
          queued: counts.queued,
          downloading: counts.downloading,
          ...(Object.keys(upstream).length > 0 ? { upstream } : {}),
        };
      },
    },
    bound,
  );

  let legacy: LegacyServer | undefined;
  if (config.legacyPort !== undefined) {
    try {
      legacy = await startLegacyServer(config.host, config.legacyPort, { checks, logger, stats, maxBatch: config.maxBatch, clock });
    } catch (error) {
      const code = (error as { code?: string }).code ?? 'error';
      throw new StartError(
        code === 'EADDRINUSE' ? `--legacy-port ${config.legacyPort} on ${config.host} is already in use` : `could not listen on --legacy-port ${config.legacyPort} (${code}: ${(error as Error).message})`,
        'stop the other process (the 2019 coverHelper?) or choose another --legacy-port',
        { cause: error },
      );
    }
    opened.push({ close: () => legacy!.close(0) });
  }

  return { http, legacy };
}

/** Jobs a kill cut off (or a dead node left) go on; finished ones past --job-ttl expire. */
async function resumeJobs({ jobs, logger }: Parts): Promise<void> {
  const resumedJobs = await jobs.resume();
  if (resumedJobs > 0) logger.info('resuming unfinished archive jobs', { count: resumedJobs });
  const redelivered = await jobs.redeliver();
  if (redelivered > 0) logger.info('sending job callbacks a stop cut off', { count: redelivered });
  await jobs.expire();
  jobs.start();
}

/** The start lines: what an operator checks first. */
function logStart({ config, logger, node, store, cookie, urls }: Parts, url: string, legacy: LegacyServer | undefined): void {
  const publicUrl = urls.publicUrl;
  // The start line names what an operator checks first: the version and the settings that decide what is fetched and who may ask.
  logger.info(`listening on ${url}`, {
    version,
    node,
    publicUrl,
    covers: config.coversDir,
    db: store.location,
    shared: store.claims.shared,
    workers: config.workers,
    allowHosts: config.allowHosts,
    allowPrivateNetwork: config.allowPrivateNetwork,
    bilibiliCookie: cookie === undefined ? 'none' : 'set',
    resolveTtl: config.resolveTtl,
    resize: config.resize === null ? 'off' : `${config.resize.width}x${config.resize.height}`,
    clientToken: config.clientToken === undefined ? 'none (anyone may ask)' : 'set',
    urlKey: config.urlKey === undefined ? 'none (/c/ is off)' : 'set',
    legacyPort: legacy?.port ?? 'off',
  });
  // Where the dashboard is and where its token is: what a new operator looks for first.
  const tokenAt = config.adminToken === undefined ? `its token is in ${path.join(config.dataDir, ADMIN_TOKEN_FILE)}` : 'its token is the one given (--admin-token)';
  logger.info(`dashboard at ${url}/admin/ (${tokenAt})`, { proxy: config.proxy === 'off' ? 'off' : `${url}/?url= and ${url}/proxy/` });
  if (config.allowPrivateNetwork) logger.warn('--allow-private-network is on: the service fetches from loopback and private addresses (for tests; never in production)');

}

/** Graceful stop: no new connections, downloads finish within `graceMs`, everything closed. */
async function stopAll(parts: Parts, { colorPass, sweeper, http, legacy }: Running, graceMs: number): Promise<void> {
  const { clock, guard, cacheLimits, jobs, deletionRunner, downloads, renders, gates, client, callbacks, store } = parts;
  // Stop taking connections first, then let downloads end, then close the rest.
  http.server.close();
  legacy?.stopAccepting();
  guard.stop();
  clock.clearInterval(sweeper);
  await cacheLimits.stop();
  await colorPass.stop();
  await jobs.stop();
  await deletionRunner.stop();
  await downloads.shutdown(graceMs);
  await renders.close();
  gates.close();
  await Promise.all([http.close(), legacy?.close()]);
  await client.close();
  await callbacks.close();
  await store.close();
}

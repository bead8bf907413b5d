/**
 * Builds the whole service from a config: database, stores, fetcher,
 * supervisor, servers. `main.ts` runs it as a process; tests may run it in
 * process on port 0 with a fresh data folder.
 */
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createDataSource } from '../ormconfig.js';
import { CoverChecks } from './checks/index.js';
import type { Config } from './config.js';
import { sqlitePath } from './config.js';
import { createDownloads } from './downloads/index.js';
import type { Downloads } from './downloads/index.js';
import { createHttpClient } from './fetch/index.js';
import type { Logger } from './logger.js';
import { sampleResources } from './maintenance/index.js';
import { createHttpServer } from './servers/index.js';
import { Stats } from './stats.js';
import { CoverStore, sweepTemp, TaskStore } from './store/index.js';
import { userAgent, version } from './version.js';

export interface App {
  /** `http://HOST:PORT` as bound. */
  url: string;
  port: number;
  /** Base of the cover URLs handed to clients. */
  publicUrl: string;
  downloads: Downloads;
  covers: CoverStore;
  tasks: TaskStore;
  stats: Stats;
  /** Graceful stop: no new connections, downloads finish within `graceMs`, everything closed. */
  stop(graceMs?: number): Promise<void>;
}

function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export async function startApp(config: Config, logger: Logger): Promise<App> {
  await mkdir(config.dataDir, { recursive: true });
  await mkdir(config.coversDir, { recursive: true });
  const swept = await sweepTemp(config.coversDir);
  if (swept > 0) logger.info('removed temp files left by an earlier run', { count: swept });

  const dataSource = createDataSource({ db: sqlitePath(config) });
  await dataSource.initialize();
  const ran = await dataSource.runMigrations({ transaction: 'each' });
  if (ran.length > 0) logger.info('database migrated', { migrations: ran.map((m) => m.name) });

  const stats = new Stats();
  const covers = new CoverStore(dataSource);
  const tasks = new TaskStore(dataSource, (error) => logger.error('task write failed', { error }));
  const client = createHttpClient({ allowPrivateNetwork: config.allowPrivateNetwork, userAgent });
  const downloads = createDownloads({ config, covers, tasks, client, logger, stats });

  let publicUrl = config.publicUrl ?? '';
  const checks = new CoverChecks({ config, covers, downloads, stats, publicUrl: () => publicUrl });
  const http = createHttpServer({
    checks,
    maxBatch: config.maxBatch,
    logger,
    coversDir: config.coversDir,
    clientToken: config.clientToken,
    stats,
    health: async () => {
      const sample = await sampleResources(config.coversDir);
      const counts = downloads.counts();
      const status = downloads.status();
      return {
        status,
        ...(status === 'tardy' ? { reasons: downloads.tardyReasons() } : {}),
        version,
        ...sample,
        queued: counts.queued,
        downloading: counts.downloading,
      };
    },
  });

  await new Promise<void>((resolve, reject) => {
    http.server.once('error', reject);
    http.server.listen(config.port, config.host, () => {
      http.server.off('error', reject);
      resolve();
    });
  });
  const { port } = http.server.address() as AddressInfo;
  const url = `http://${hostForUrl(config.host)}:${port}`;
  publicUrl ||= `${url}/covers/`;
  logger.info(`listening on ${url}`, { publicUrl, covers: config.coversDir, db: sqlitePath(config), workers: config.workers });

  let stopping: Promise<void> | undefined;
  return {
    url,
    port,
    publicUrl,
    downloads,
    covers,
    tasks,
    stats,
    stop(graceMs = 5000) {
      stopping ??= (async () => {
        // Stop taking connections first, then let downloads end, then close the rest.
        http.server.close();
        await downloads.shutdown(graceMs);
        await http.close();
        await client.close();
        await tasks.flush();
        await dataSource.destroy();
      })();
      return stopping;
    },
  };
}

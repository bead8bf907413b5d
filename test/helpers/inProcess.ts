/**
 * The service in this test's process (for tests that must look at server-side
 * state, such as a socket's buffer): real HTTP and WebSocket servers on port 0,
 * a real SQLite file in a fresh folder, the same `startApp` that `main` runs.
 */
import { startApp } from '../../src/app.js';
import { CoverChecks } from '../../src/checks/index.js';
import { systemClock } from '../../src/clock.js';
import type { Clock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { relaxedLimits } from './service.js';
import { tempDir } from './tempDir.js';

type TestContext = Parameters<typeof tempDir>[0];

/** `clock`: the service's one clock (a `TestClock` moves its time only when the test says so). */
export async function startInProcess(t: TestContext, args: string[] = [], clock: Clock = systemClock) {
  const dir = await tempDir(t);
  const config = loadConfig({
    argv: ['--port', '0', '--data-dir', `${dir}/data`, '--covers-dir', `${dir}/covers`, '--allow-private-network', '--allow-hosts', '127.0.0.1', ...relaxedLimits, ...args],
    env: {},
    isTTY: false,
    cwd: dir,
  });
  const app = await startApp(config, createLogger({ logLevel: 'error', logFormat: 'json' }), clock);
  t.after(() => app.stop(1000));
  /** Checks as a client's check would run them, without a socket. */
  const checks = new CoverChecks({ config, covers: app.store.covers, downloads: app.downloads, stats: app.stats, publicUrl: () => app.publicUrl });
  return { dir, config, app, checks };
}

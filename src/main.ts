/**
 * The service process: `npm start -- [flags]`.
 *
 * Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 1 when the start fails
 * (port taken, database unreadable), 2 for a bad configuration value.
 */
import { startApp } from './app.js';
import { loadConfig } from './config.js';
import type { Config } from './config.js';
import { ConfigError } from './errors.js';
import { closeLogger, createLogger } from './logger.js';

/** How long running downloads may take to finish after SIGTERM. */
const GRACE_MS = 5000;

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig({ argv: process.argv.slice(2), env: process.env, isTTY: Boolean(process.stdout.isTTY), cwd: process.cwd() });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`coverhelper: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config);

  let app: Awaited<ReturnType<typeof startApp>>;
  try {
    app = await startApp(config, logger);
  } catch (error) {
    logger.error('coverhelper could not start', { error });
    await closeLogger(logger);
    process.exit(1);
  }

  let signalled = false;
  const stop = (signal: NodeJS.Signals) => {
    if (signalled) return;
    signalled = true;
    logger.info('stopping', { signal, graceMs: GRACE_MS });
    app
      .stop(GRACE_MS)
      .then(() => logger.info('stopped'))
      .catch((error: unknown) => logger.error('error while stopping', { error }))
      .finally(() => {
        void closeLogger(logger).then(() => process.exit(0));
      });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

await main();

/**
 * The service process: `npm start -- [flags]`, or `node dist/src/main.js [flags]`
 * once built (`npm run build`).
 *
 * `--help`, `--version` and `--print-config` print to stdout and exit 0 without
 * starting anything (no folder made, no port bound).
 *
 * SIGHUP is ignored with a log line (the log is standard output: nothing to reopen).
 *
 * Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 1 when the start fails
 * (port taken, database unreadable), 2 for a bad configuration value or command line
 * (a `--placeholder` file that is no image included),
 * or a node that disagrees with the other nodes of its database (its --node-id
 * held by a live node, a shared secret that differs).
 */
import { helpText, printableConfig, versionText } from './cli.js';
import { parseCommandLine, resolveConfig } from './config.js';
import type { Config, Origin, UnknownVariable } from './config.js';
import { ConfigError, StartError } from './errors.js';
import { maskSecrets } from './secrets.js';

/** How long running downloads may take to finish after SIGTERM. */
const GRACE_MS = 5000;

/** The `code` of an error or of its cause, if it has one. */
function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code ?? (error as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof code === 'string' ? code : undefined;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let config: Config;
  let placeholderOrigin: Origin;
  let unknownEnv: UnknownVariable[];
  try {
    const { action } = parseCommandLine(argv);
    if (action === 'help' || action === 'version') {
      process.stdout.write(action === 'help' ? helpText() : versionText());
      return;
    }
    const resolved = resolveConfig({ argv, env: process.env, isTTY: Boolean(process.stdout.isTTY), cwd: process.cwd() });
    if (resolved.action === 'print-config') {
      process.stdout.write(printableConfig(resolved));
      return;
    }
    config = resolved.config;
    placeholderOrigin = resolved.origins.placeholder;
    unknownEnv = resolved.unknownEnv;
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`coverhelper: ${maskSecrets(error.message)}\n`);
      process.exit(2);
    }
    throw error;
  }
  // Loaded only to run the service: --help, --version and --print-config answer
  // without loading the database drivers, sharp and the servers.
  const [{ startApp }, { closeLogger, createLogger }, { preparePlaceholder }] = await Promise.all([
    import('./app.js'),
    import('./logger.js'),
    import('./proxy/index.js'),
  ]);
  // --placeholder FILE is read and decoded once, here: a bad file is a bad value (exit 2).
  if (config.proxy !== 'off') {
    try {
      await preparePlaceholder(config, placeholderOrigin);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      process.stderr.write(`coverhelper: ${maskSecrets(error.message)}\n`);
      process.exit(2);
    }
  }
  const logger = createLogger(config);
  // SIGHUP (a closed terminal, or logrotate's habit) would end the process at once by default,
  // even while it starts. The log goes to standard output, so there is no file to reopen:
  // it is ignored, and said.
  process.on('SIGHUP', () => {
    logger.info('SIGHUP received: ignored (the log goes to standard output; there is no file to reopen). Stop with SIGTERM.');
  });
  // A misspelt variable is ignored, as --print-config says; a real start says it too, once each.
  for (const { variable, suggestion } of unknownEnv) {
    logger.warn(`${variable} is set but is not an option: ignored${suggestion ? `; did you mean ${suggestion}?` : ''}`, { variable });
  }

  let app: Awaited<ReturnType<typeof startApp>>;
  try {
    app = await startApp(config, logger);
  } catch (error) {
    // One line: what failed, where, and what to do.
    const code = codeOf(error);
    const line =
      error instanceof StartError
        ? `coverhelper cannot start: ${error.message}`
        : `coverhelper cannot start: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}${code ? ` (${code})` : ''}; this is unexpected: please report it with this line`;
    logger.error(line, code ? { code } : {});
    await closeLogger(logger);
    process.exit(error instanceof StartError ? error.exitCode : 1);
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

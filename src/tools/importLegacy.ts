/**
 * `npm run import-legacy -- DB DIR [service flags]`: imports the 2019
 * coverHelper's covers (DB: its `coverHub.db`; DIR: the folder it ran in, which
 * holds `coverFiles/`) into the store and covers folder the service uses with
 * the same flags, environment and `--config` file (`--data-dir`, `--db`,
 * `--covers-dir`, `--resize`, `--original-max`, `--max-bytes`, `--workers`).
 *
 * Prints each skipped row and the progress on stderr, and one summary line on
 * stdout. Safe while the service runs on the same database (see
 * src/legacyImport/importCovers.ts and docs/MIGRATING.md).
 *
 * Exit codes: 0 done (skipped rows are reported, not failures), 1 the DB, DIR
 * or the store cannot be used, or the run stopped on a storage failure (run it
 * again: nothing is imported twice), 2 a bad command line or option,
 * 130 interrupted (SIGINT/SIGTERM: rows begun are finished first).
 */
import os from 'node:os';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { printableConfig, versionText } from '../cli.js';
import { systemClock } from '../clock.js';
import { isBooleanWord, options, parseArgsOptions, parseCommandLine, resolveConfig } from '../config.js';
import type { Config, OptionSpec } from '../config.js';
import { ConfigError } from '../errors.js';
import { ImportProgress, importLegacy, LegacyDbError, openLegacyDb, summaryLine } from '../legacyImport/index.js';
import { maskSecrets } from '../secrets.js';
import { checkWritable, databaseError } from '../preflight.js';
import { TEMP_DIR } from '../store/coverFiles.js';

const NAME = 'import-legacy';

const usage = `Usage: npm run import-legacy -- DB DIR [options]

Imports the covers of the 2019 coverHelper into coverhelper's store.
  DB    its database, coverHub.db (opened read-only)
  DIR   the folder it ran in: the paths in DB (coverFiles/<host>/<name>) are relative to it
  (relative DB and DIR are taken from the folder npm was run in)

Takes the service's options, environment variables and --config file (see
npm start -- --help); those that matter here: --data-dir, --db, --covers-dir,
--resize, --original-max, --max-bytes, --workers (rows imported at once, at most one per core).
Skipped rows and progress go to stderr, one summary line to stdout.
Exit codes: 0 done, 1 DB, DIR or the store unusable or a storage failure, 2 bad
command line, 130 interrupted. Running it again imports nothing twice.
`;

/** One line on stderr, its credentials masked. */
function say(line: string): void {
  process.stderr.write(`${maskSecrets(line)}\n`);
}

function fail(message: string, code: number): never {
  say(`${NAME}: ${message}`);
  process.exit(code);
}

const optionList = Object.values(options) as OptionSpec[];

/**
 * The two positional arguments apart from the service's options, which are
 * handed to the service's own parser as they were given. A word after a lone
 * boolean flag is that flag's value only if it is a boolean word, as the
 * service reads it.
 */
function splitArguments(argv: readonly string[]): { positionals: string[]; rest: string[] } {
  const { tokens } = parseArgs({ args: [...argv], options: parseArgsOptions, strict: false, allowPositionals: true, tokens: true });
  const positionals: string[] = [];
  const taken = new Set<number>();
  let afterTerminator = false;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.kind === 'option-terminator') {
      afterTerminator = true;
      taken.add(token.index);
      continue;
    }
    if (token.kind !== 'positional') continue;
    const previous = tokens[i - 1];
    const isBooleanValue =
      !afterTerminator &&
      previous?.kind === 'option' &&
      previous.value === undefined &&
      optionList.some((o) => o.boolean && o.flag === previous.name) &&
      isBooleanWord(token.value);
    if (isBooleanValue) continue;
    positionals.push(token.value);
    taken.add(token.index);
  }
  return { positionals, rest: argv.filter((_, index) => !taken.has(index)) };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const { positionals, rest } = splitArguments(argv);
  let config: Config;
  try {
    const { action } = parseCommandLine(rest);
    if (action === 'help' || action === 'version') {
      process.stdout.write(action === 'help' ? usage : versionText());
      return;
    }
    const resolved = resolveConfig({ argv: rest, env: process.env, isTTY: false, cwd: process.cwd() });
    if (resolved.action === 'print-config') {
      process.stdout.write(printableConfig(resolved));
      return;
    }
    config = resolved.config;
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message, 2);
    throw error;
  }
  if (positionals.length !== 2) fail(`expected DB and DIR, got ${positionals.length} argument${positionals.length === 1 ? '' : 's'} (usage: npm run import-legacy -- DB DIR [options]; --help for more)`, 2);
  // `npm run` works in the project folder; INIT_CWD is where it was run from, which DB and DIR are relative to.
  const from = process.env.INIT_CWD ?? process.cwd();
  const dbFile = path.resolve(from, positionals[0]!);
  const dir = path.resolve(from, positionals[1]!);
  const dirInfo = await stat(dir).catch((error: NodeJS.ErrnoException) => fail(`DIR ${dir} cannot be read (${error.code ?? error.message})`, 1));
  if (!dirInfo.isDirectory()) fail(`DIR ${dir} is not a folder`, 1);

  let legacy;
  try {
    legacy = openLegacyDb(dbFile);
  } catch (error) {
    if (error instanceof LegacyDbError) fail(error.message, 1);
    throw error;
  }

  // The store as the service opens it (made and migrated if new), after the same folder checks.
  const [{ openStore }] = await Promise.all([import('../store/index.js')]);
  let store;
  try {
    await checkWritable(config.coversDir, 'covers folder', '--covers-dir', [TEMP_DIR]);
    if (!/^postgres(ql)?:\/\//i.test(config.db)) await checkWritable(config.dataDir, 'data folder', '--data-dir');
    try {
      store = await openStore({
        db: config.db,
        node: `${NAME}@${os.hostname()}:${process.pid}`,
        leaseMs: config.lease * 1000,
        onTaskWriteError: (error) => say(`${NAME}: a task row could not be written: ${(error as Error).message}`),
      });
    } catch (error) {
      throw databaseError(error, config.db);
    }
  } catch (error) {
    legacy.close();
    fail(error instanceof Error ? error.message : String(error), 1);
  }

  // The tool is an edge: its one clock is the system's.
  const clock = systemClock;
  const started = clock.now();
  const progress = new ImportProgress({ total: legacy.count, stream: process.stderr, clock });
  const stop = new AbortController();
  const onSignal = () => {
    if (!stop.signal.aborted) progress.line(`${NAME}: stopping: the rows begun are finished first`);
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Said once a stop is handled: a SIGINT from here on finishes the rows begun (exit 130).
  say(`${NAME}: ${legacy.count} rows of ${dbFile}, files under ${dir}, into ${store.location} and ${config.coversDir}`);
  const labels = { missing: 'missing file', notImage: 'not an image', refused: 'refused' } as const;
  const clip = (text: string) => JSON.stringify(text.length > 300 ? `${text.slice(0, 300)}…` : text);
  let result;
  try {
    result = await importLegacy({
      db: legacy,
      dir,
      store,
      config,
      concurrency: Math.max(1, Math.min(config.workers, 2 * os.availableParallelism())),
      signal: stop.signal,
      clock,
      onRow: (counts) => progress.update(counts.imported + counts.present + counts.missing + counts.notImage + counts.refused + counts.failed),
      onReport: (report) => progress.line(maskSecrets(`skipped ${clip(report.url)}: ${labels[report.outcome]}: ${report.reason} (path ${clip(report.path)})`)),
    });
  } finally {
    progress.finish();
    legacy.close();
    await store.close().catch(() => undefined);
  }
  process.stdout.write(`${summaryLine(result.counts, (clock.now() - started) / 1000)}\n`);
  if (result.stopped === 'interrupted') process.exit(130);
  if (result.stopped !== undefined) fail(`stopped: ${result.stopped}; run it again to go on (nothing is imported twice)`, 1);
}

await main();

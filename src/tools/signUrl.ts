/**
 * `npm run sign-url -- URL [--base BASE] [service flags]`: prints the signed door
 * URL (`BASE/c/<signature>/<base64url>`) of URL, signed with the service's
 * `--url-key` (given as a flag, COVERHELPER_URL_KEY or the config file, as the
 * service takes it). BASE is where readers reach the service: `--base`, else the
 * origin of `--public-url`, else `http://HOST:PORT`.
 *
 * Exit codes: 0 printed, 2 a bad command line or no `--url-key`.
 */
import { signCoverUrl } from '@coverhelper/client/sign';
import { loadConfig } from '../config.js';
import { ConfigError } from '../errors.js';

function fail(message: string): never {
  process.stderr.write(`sign-url: ${message}\n`);
  process.exit(2);
}

const args = process.argv.slice(2).filter((arg) => arg !== '--');
let base: string | undefined;
const rest: string[] = [];
const targets: string[] = [];
for (let i = 0; i < args.length; i++) {
  const arg = args[i]!;
  if (arg === '--base') base = args[++i] ?? fail('--base needs a value');
  else if (arg.startsWith('--base=')) base = arg.slice('--base='.length);
  else if (arg.startsWith('-')) {
    rest.push(arg);
    // A flag's value that follows it.
    if (!arg.includes('=') && args[i + 1] !== undefined && !args[i + 1]!.startsWith('-')) rest.push(args[++i]!);
  } else targets.push(arg);
}
if (targets.length !== 1) fail('usage: npm run sign-url -- URL [--base BASE] [service flags such as --url-key]');

let config;
try {
  config = loadConfig({ argv: rest, env: process.env, isTTY: false, cwd: process.cwd() });
} catch (error) {
  if (error instanceof ConfigError) fail(error.message);
  throw error;
}
if (config.urlKey === undefined) fail('no --url-key (flag, COVERHELPER_URL_KEY or the config file): signed URLs need the service’s key');
const host = config.host.includes(':') ? `[${config.host}]` : config.host;
const where = base ?? (config.publicUrl ? new URL(config.publicUrl).origin : `http://${host}:${config.port}`);
try {
  new URL(where);
} catch {
  fail(`--base is not a URL: ${where}`);
}
process.stdout.write(`${signCoverUrl(targets[0]!, config.urlKey, where)}\n`);

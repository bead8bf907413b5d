import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { defaultText, helpText, printableConfig, versionText } from '../src/cli.js';
import { commandOptions, defaults, envName, loadConfig, options, parseCommandLine, resolveConfig } from '../src/config.js';
import type { OptionSpec } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { root, runService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';

const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => loadConfig({ argv, env, isTTY: false, cwd: '/srv/app' });
const resolve = (argv: string[], env: NodeJS.ProcessEnv = {}) => resolveConfig({ argv, env, isTTY: false, cwd: '/srv/app' });
const specs = Object.values(options) as OptionSpec[];
const packageVersion = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;

/** The error line `load` throws for these sources. */
function errorOf(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    load(argv, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `a ConfigError, not ${String(error)}`);
    assert.equal(error.message.split('\n').length, 1, 'one line');
    return error.message;
  }
  assert.fail(`no error for ${argv.join(' ')} ${JSON.stringify(env)}`);
}

describe('configuration', () => {
  it('has the documented defaults', () => {
    const config = load([]);
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, 8080);
    assert.equal(config.dataDir, '/srv/app/data');
    assert.equal(config.coversDir, '/srv/app/covers');
    assert.equal(config.db, '/srv/app/data/coverhelper.sqlite');
    assert.deepEqual(config.allowHosts, ['*.hdslb.com', '*.biliimg.com']);
    assert.equal(config.bilibiliApi, 'https://api.bilibili.com');
    assert.equal(config.allowPrivateNetwork, false);
    assert.deepEqual(
      [config.workers, config.timeLimit, config.maxBytes, config.retries, config.failTtl, config.maxBatch],
      [10, 60, 10485760, 2, 300, 1000],
    );
    assert.deepEqual(config.resize, { width: 320, height: 200 });
    assert.equal(config.publicUrl, undefined);
    assert.equal(config.logFormat, 'json', 'json when not on a terminal');
    assert.equal(loadConfig({ argv: [], env: {}, isTTY: true, cwd: '/' }).logFormat, 'pretty');
    assert.equal(config.logLevel, defaults.logLevel);
  });

  it('takes a flag over the environment over the config file over the default', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'config.json');
    await writeFile(file, JSON.stringify({ workers: 3, 'time-limit': 9, resize: 'off', allowHosts: ['a.com', '*.b.com'] }));
    const fromFile = load(['--config', file]);
    assert.deepEqual([fromFile.workers, fromFile.timeLimit, fromFile.resize], [3, 9, null]);
    assert.deepEqual(fromFile.allowHosts, ['a.com', '*.b.com']);
    const fromEnv = load(['--config', file], { COVERHELPER_WORKERS: '4' });
    assert.equal(fromEnv.workers, 4);
    const fromFlag = load(['--config', file, '--workers=5'], { COVERHELPER_WORKERS: '4' });
    assert.equal(fromFlag.workers, 5);
    assert.equal(load([], { COVERHELPER_CONFIG: file }).workers, 3);
  });

  it('reads lone boolean flags, key=value flags and public URLs', () => {
    assert.equal(load(['--allow-private-network']).allowPrivateNetwork, true);
    assert.equal(load(['--allow-private-network', '--port', '0']).port, 0);
    assert.equal(load(['--allow-private-network=false']).allowPrivateNetwork, false);
    assert.equal(load([], { COVERHELPER_ALLOW_PRIVATE_NETWORK: 'true' }).allowPrivateNetwork, true);
    assert.equal(load(['--public-url', 'https://cdn.example.com/c']).publicUrl, 'https://cdn.example.com/c/');
    assert.deepEqual(load(['--resize', '100x50']).resize, { width: 100, height: 50 });
    assert.equal(load([]).originalMax, 1920);
    assert.equal(load(['--original-max', '800']).originalMax, 800);
    assert.equal(load([], { COVERHELPER_ORIGINAL_MAX: '1280' }).originalMax, 1280);
    assert.equal(load(['--legacy-port', 'off']).legacyPort, undefined);
    assert.equal(load(['--legacy-port', '25005']).legacyPort, 25005);
  });

  it('names the option of every bad value', () => {
    const bad: [string[], string][] = [
      [['--port', '70000'], 'port'],
      [['--port', 'abc'], 'port'],
      [['--workers', '0'], 'workers'],
      [['--workers', '2.5'], 'workers'],
      [['--time-limit', '-1'], 'time-limit'],
      [['--max-bytes', 'x'], 'max-bytes'],
      [['--resize', '320'], 'resize'],
      [['--resize', '0x10'], 'resize'],
      [['--original-max', '8'], 'original-max'],
      [['--original-max', '1.5'], 'original-max'],
      [['--allow-hosts', 'a b'], 'allow-hosts'],
      [['--public-url', 'ftp://x'], 'public-url'],
      [['--bilibili-api', 'nope'], 'bilibili-api'],
      [['--allow-private-network', 'maybe'], 'allow-private-network'],
      [['--log-level', 'loud'], 'log-level'],
      [['--log-format', 'xml'], 'log-format'],
      [['--max-batch', '0'], 'max-batch'],
      [['--db', 'mysql://x'], 'db'],
      [['--host'], 'host'],
      [['--nope', '1'], 'nope'],
      [['--config', '/does/not/exist.json'], 'config'],
    ];
    for (const [argv, option] of bad) {
      assert.throws(
        () => load(argv),
        (error: unknown) => error instanceof ConfigError && error.option === option && error.message.includes(`--${option}`),
        argv.join(' '),
      );
    }
    assert.throws(() => load([], { COVERHELPER_WORKERS: 'many' }), /COVERHELPER_WORKERS/);
  });

  it('stops the real process with one line naming the option and exit code 2', async () => {
    const result = await runService(['--workers', 'lots']);
    assert.equal(result.code, 2);
    assert.equal(result.stderr.trim().split('\n').length, 1);
    assert.match(result.stderr, /--workers/);
    const unknown = await runService(['--colour', 'blue']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown option --colour/);
  });
  it('has the new options with their defaults, validated like the others', () => {
    const config = load([]);
    assert.equal(config.jobTtl, 12);
    assert.deepEqual(config.callbackHosts, []);
    assert.equal(config.callbackSecret, undefined);
    assert.equal(config.urlKey, undefined);
    const set = load(['--job-ttl', '0.5', '--callback-hosts', 'Blog.Local, *.internal.example', '--callback-secret', 'c'.repeat(16), '--url-key', 'k'.repeat(32)]);
    assert.equal(set.jobTtl, 0.5);
    assert.deepEqual(set.callbackHosts, ['blog.local', '*.internal.example']);
    assert.equal(set.callbackSecret, 'c'.repeat(16));
    assert.equal(set.urlKey, 'k'.repeat(32));
    assert.deepEqual(load([], { COVERHELPER_CALLBACK_HOSTS: '127.0.0.1' }).callbackHosts, ['127.0.0.1']);
    assert.equal(load([], { COVERHELPER_JOB_TTL: '48' }).jobTtl, 48);
    const bad: [string[], RegExp][] = [
      [['--job-ttl', '0'], /^invalid --job-ttl \(flag\): must be between/],
      [['--job-ttl', 'soon'], /^invalid --job-ttl \(flag\): expected a number/],
      [['--callback-hosts', '*'], /^invalid --callback-hosts \(flag\): "\*" would let callbacks reach any private address/],
      [['--callback-hosts', 'a b'], /^invalid --callback-hosts \(flag\): not a host pattern/],
      [['--callback-secret', 'short'], /^invalid --callback-secret \(flag\): must be at least 16 characters \(it is 5\)/],
      [['--url-key', 'x'.repeat(15)], /^invalid --url-key \(flag\): must be at least 16 characters/],
      [['--url-key', `${'x'.repeat(16)} y`], /^invalid --url-key \(flag\): must not contain spaces/],
    ];
    for (const [argv, expected] of bad) assert.match(errorOf(argv), expected, argv.join(' '));
  });

  it('has --host-limits: entries in order, each default entry not named before the first given one that covers it (else at the end); bad values refused with what to write', () => {
    assert.deepEqual(load([]).hostLimits, [
      { pattern: 'api.bilibili.com', rate: 2, burst: 4, concurrency: 2 },
      { pattern: '*', rate: 20, burst: 40, concurrency: 16 },
    ]);
    assert.deepEqual(load(['--host-limits', ' 127.0.0.1=5/s:5:2 , *.HDSLB.com=0.5/s:1:1']).hostLimits, [
      { pattern: '127.0.0.1', rate: 5, burst: 5, concurrency: 2 },
      { pattern: '*.hdslb.com', rate: 0.5, burst: 1, concurrency: 1 },
      { pattern: 'api.bilibili.com', rate: 2, burst: 4, concurrency: 2 },
      { pattern: '*', rate: 20, burst: 40, concurrency: 16 },
    ]);
    // Naming `*` (or `*.bilibili.com`) does not lift the API's default: it stays before them, and first match wins.
    assert.deepEqual(load([], { COVERHELPER_HOST_LIMITS: '*=1/s:2:3' }).hostLimits.map((l) => l.pattern), ['api.bilibili.com', '*']);
    assert.deepEqual(load(['--host-limits', 'a.example=3/s:6:1,*.bilibili.com=9/s:9:9,*=10/s:20:8']).hostLimits.map((l) => l.pattern), [
      'a.example',
      'api.bilibili.com',
      '*.bilibili.com',
      '*',
    ]);
    assert.deepEqual(load(['--host-limits', 'api.bilibili.com=1/s:1:1,*=10/s:20:8']).hostLimits.map((l) => l.pattern), ['api.bilibili.com', '*'], 'named: as given');
    assert.deepEqual(load(['--host-limits', '*=10/s:20:8,api.bilibili.com=1/s:1:1']).hostLimits.map((l) => l.pattern), ['*', 'api.bilibili.com'], 'named: as given, first match wins');
    assert.match(printableConfig(resolve(['--host-limits', 'a.example=3/s:6:1'])), /^--host-limits\s+a\.example=3\/s:6:1,api\.bilibili\.com=2\/s:4:2,\*=20\/s:40:16\s+flag --host-limits$/m);
    const bad: [string[], RegExp][] = [
      [['--host-limits', 'a.com=2:4'], /^invalid --host-limits \(flag\): "a\.com=2:4" has 2 parts after "="; expected pattern=RATE\/s:BURST:CONCURRENCY/],
      [['--host-limits', 'a.com=120/m:4:2'], /^invalid --host-limits \(flag\): "a\.com=120\/m:4:2": the rate is written per second; did you mean 2\/s\?$/],
      [['--host-limits', 'a.com=2:4:2:1'], /has 4 parts after "="/],
      [['--host-limits', 'a.com=2/s:0:2'], /the burst must be between 1 and 100000, got 0$/],
      [['--host-limits', 'a.com=2/s:4:x'], /the concurrency must be a whole number, got "x"/],
      [['--host-limits', 'a.com=0/s:4:2'], /the rate must be more than 0/],
      [['--host-limits', 'a b=2/s:4:2'], /not a host pattern: "a b"/],
      [['--host-limits', 'a.com 2/s:4:2'], /has no "="; expected pattern=RATE\/s:BURST:CONCURRENCY \(such as api\.bilibili\.com=2\/s:4:2\)$/],
      [['--host-limits', 'a.com=1/s:1:1,A.com=2/s:2:2'], /the pattern "a\.com" is given twice/],
      [['--host-limits', ' , '], /expected comma-separated pattern=RATE\/s:BURST:CONCURRENCY/],
    ];
    for (const [argv, expected] of bad) assert.match(errorOf(argv), expected, argv.join(' '));
    assert.match(errorOf(['--host-limits', 'a.com=2:4:2']), /the rate needs its unit; did you mean 2\/s\?$/);
  });

  it('has the variant options (--widths, --formats, --render-workers) with their defaults, validated like the others', () => {
    const config = load([]);
    assert.deepEqual(config.widths, [160, 240, 320, 480, 640, 960, 1280, 1920]);
    assert.deepEqual(config.formats, ['avif', 'webp']);
    assert.equal(config.renderWorkers, Math.max(1, os.availableParallelism()));
    const set = load(['--widths', '640, 320,1000', '--formats', 'WEBP,jpg', '--render-workers', '3']);
    assert.deepEqual([set.widths, set.formats, set.renderWorkers], [[320, 640, 1000], ['webp', 'jpeg'], 3]);
    assert.deepEqual(load([], { COVERHELPER_WIDTHS: '100' }).widths, [100]);
    assert.deepEqual(load([], { COVERHELPER_FORMATS: 'avif' }).formats, ['avif']);
    assert.equal(load([], { COVERHELPER_RENDER_WORKERS: '1' }).renderWorkers, 1);
    const bad: [string[], RegExp][] = [
      [['--widths', '320,abc'], /^invalid --widths \(flag\): not a width in pixels: "abc"$/],
      [['--widths', '0'], /^invalid --widths \(flag\): widths must be between 1 and 10000, got 0$/],
      [['--widths', '320,320'], /^invalid --widths \(flag\): a width is given twice$/],
      [['--widths', ','], /^invalid --widths \(flag\): expected a comma-separated list of widths/],
      [['--widths', Array.from({ length: 33 }, (_, i) => i + 1).join(',')], /^invalid --widths \(flag\): at most 32 widths, got 33$/],
      [['--formats', 'gif'], /^invalid --formats \(flag\): not a format: "gif" \(use jpeg, png, webp, avif\)$/],
      [['--formats', 'webp,webp'], /^invalid --formats \(flag\): a format is given twice$/],
      [['--render-workers', '0'], /^invalid --render-workers \(flag\): must be between 1 and 256, got 0$/],
      [['--render-workers', '1.5'], /^invalid --render-workers \(flag\): expected a whole number/],
    ];
    for (const [argv, expected] of bad) assert.match(errorOf(argv), expected, argv.join(' '));
  });

  it('has the proxy prefix options with their defaults, validated like the others', () => {
    const config = load([]);
    assert.deepEqual([config.proxy, config.proxyMaxAge, config.proxyRate, config.trustProxy, config.placeholder], ['on', 2592000, 600, [], 'built-in']);
    const set = load(['--proxy', 'OFF', '--proxy-max-age', '60', '--proxy-rate', '5', '--trust-proxy', '127.0.0.1, 10.1.2.3/8,[::1],2001:DB8::/32,::ffff:192.168.0.0/112', '--placeholder', 'img/box.png']);
    assert.deepEqual([set.proxy, set.proxyMaxAge, set.proxyRate], ['off', 60, 5]);
    assert.deepEqual(set.trustProxy, ['127.0.0.1', '10.0.0.0/8', '::1', '2001:db8::/32', '192.168.0.0/16']);
    assert.equal(set.placeholder, '/srv/app/img/box.png', 'a file is made absolute');
    assert.equal(load(['--placeholder', 'none']).placeholder, 'none');
    assert.equal(load(['--placeholder', 'Built-In']).placeholder, 'built-in');
    assert.deepEqual(load(['--trust-proxy', 'none']).trustProxy, []);
    assert.equal(load([], { COVERHELPER_PROXY: 'open' }).proxy, 'open');
    assert.equal(load([], { COVERHELPER_PROXY_RATE: '1' }).proxyRate, 1);
    assert.deepEqual(load([], { COVERHELPER_TRUST_PROXY: '::ffff:127.0.0.1' }).trustProxy, ['127.0.0.1']);
    const bad: [string[], RegExp][] = [
      [['--proxy', 'yes'], /^invalid --proxy \(flag\): expected one of on, off, open, got "yes"$/],
      [['--proxy-max-age', '-1'], /^invalid --proxy-max-age \(flag\): must be between 0 and/],
      [['--proxy-max-age', '1.5'], /^invalid --proxy-max-age \(flag\): expected a whole number/],
      [['--proxy-rate', '0'], /^invalid --proxy-rate \(flag\): must be between 1 and/],
      [['--proxy-rate', 'lots'], /^invalid --proxy-rate \(flag\): expected a number/],
      [['--trust-proxy', '10.0.0.0/33'], /^invalid --trust-proxy \(flag\): not an address or CIDR: "10.0.0.0\/33"$/],
      [['--trust-proxy', '127.1'], /^invalid --trust-proxy \(flag\): not an address or CIDR: "127.1"$/],
      [['--trust-proxy', 'proxy.local'], /^invalid --trust-proxy \(flag\): not an address or CIDR/],
      [['--trust-proxy', '10.0.0.1/8/9'], /^invalid --trust-proxy \(flag\): not an address or CIDR/],
      [['--trust-proxy', ','], /^invalid --trust-proxy \(flag\): expected a comma-separated list/],
      [['--placeholder', ' '], /^invalid --placeholder \(flag\): must not be empty$/],
    ];
    for (const [argv, expected] of bad) assert.match(errorOf(argv), expected, argv.join(' '));
  });

  it('has the upstream identity and re-resolve options with their defaults, validated like the others', () => {
    const config = load([]);
    assert.deepEqual([config.bilibiliCookie, config.apiUserAgent, config.resolveTtl], [undefined, undefined, 24]);
    const set = load(['--bilibili-cookie', 'secrets/cookie', '--api-user-agent', 'MyBlog/1.0 (+https://blog.example)', '--resolve-ttl', '0.5']);
    assert.deepEqual([set.bilibiliCookie, set.apiUserAgent, set.resolveTtl], ['/srv/app/secrets/cookie', 'MyBlog/1.0 (+https://blog.example)', 0.5], 'the cookie file is made absolute');
    assert.equal(load(['--resolve-ttl', '0']).resolveTtl, 0, '0 = never');
    assert.equal(load([], { COVERHELPER_BILIBILI_COOKIE: '/etc/coverhelper/cookie' }).bilibiliCookie, '/etc/coverhelper/cookie');
    assert.equal(load([], { COVERHELPER_RESOLVE_TTL: '48' }).resolveTtl, 48);
    const bad: [string[], RegExp][] = [
      [['--api-user-agent', 'a\r\nX-Injected: 1'], /^invalid --api-user-agent \(flag\): must not contain control characters/],
      [['--api-user-agent', 'tab\there'], /^invalid --api-user-agent \(flag\): must not contain control characters/],
      [['--api-user-agent', 'x'.repeat(513)], /^invalid --api-user-agent \(flag\): must be at most 512 characters/],
      [['--resolve-ttl', '-1'], /^invalid --resolve-ttl \(flag\): must be between 0 and/],
      [['--resolve-ttl', 'daily'], /^invalid --resolve-ttl \(flag\): expected a number/],
      [['--bilibili-cookie', ' '], /^invalid --bilibili-cookie \(flag\): must not be empty$/],
    ];
    for (const [argv, expected] of bad) assert.match(errorOf(argv), expected, argv.join(' '));
  });

  it('refuses --allow-hosts * with --proxy on (an open image proxy) unless --proxy open or off', () => {
    const line = '--allow-hosts * with --proxy on is an open image proxy; set --proxy open to mean it, or --proxy off';
    assert.equal(errorOf(['--allow-hosts', '*']), line);
    assert.equal(errorOf(['--allow-hosts', 'i0.hdslb.com,*', '--proxy', 'on']), line);
    assert.equal(errorOf([], { COVERHELPER_ALLOW_HOSTS: '*' }), line);
    assert.throws(() => load(['--allow-hosts', '*']), (error: unknown) => error instanceof ConfigError && error.option === 'proxy');
    assert.equal(load(['--allow-hosts', '*', '--proxy', 'open']).proxy, 'open');
    assert.equal(load(['--allow-hosts', '*', '--proxy', 'off']).proxy, 'off');
    assert.deepEqual(load(['--allow-hosts', '*', '--proxy', 'off']).allowHosts, ['*']);
    assert.equal(load(['--proxy', 'open']).proxy, 'open', 'open without * is simply on');
  });

  it('the real process refuses an open image proxy with one line naming both options and exit code 2', async () => {
    const result = await runService(['--allow-hosts', '*']);
    assert.deepEqual([result.code, result.stdout, result.stderr], [2, '', 'coverhelper: --allow-hosts * with --proxy on is an open image proxy; set --proxy open to mean it, or --proxy off\n']);
    const printed = await runService(['--print-config', '--allow-hosts', '*', '--proxy', 'open', '--trust-proxy', '10.0.0.0/8']);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, /^--proxy\s+open\s+flag --proxy$/m);
    assert.match(printed.stdout, /^--trust-proxy\s+10\.0\.0\.0\/8\s+flag --trust-proxy$/m);
    assert.match(printed.stdout, /^--placeholder\s+built-in\s+default$/m);
    assert.match(printed.stdout, /^--proxy-rate\s+600\s+default$/m);
  });

  it('names where a bad value came from: flag, environment variable or config file key', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'config.json');
    await writeFile(file, JSON.stringify({ timeLimit: 'forever', workers: 2 }));
    assert.equal(errorOf(['--workers', 'lots']), 'invalid --workers (flag): expected a number, got "lots"');
    assert.equal(errorOf(['--workers=0']), 'invalid --workers (flag): must be between 1 and 1000, got 0');
    assert.equal(errorOf([], { COVERHELPER_WORKERS: 'many' }), 'invalid COVERHELPER_WORKERS (environment): expected a number, got "many"');
    assert.equal(errorOf(['--config', file]), `invalid "timeLimit" in ${file}: expected a number, got "forever"`);
    // The config file's path is made absolute, and named so whichever way it was given.
    assert.equal(loadConfig({ argv: ['--config', 'config.json', '--time-limit', '5'], env: {}, isTTY: false, cwd: dir }).workers, 2);
    assert.match(errorOf([], { COVERHELPER_CONFIG: file }), new RegExp(`^invalid "timeLimit" in ${file}:`));
    assert.equal(errorOf([], { COVERHELPER_CONFIG: '/does/not/exist.json' }), 'invalid COVERHELPER_CONFIG (environment): cannot read /does/not/exist.json (ENOENT)');
    assert.equal(errorOf(['--config', '/does/not/exist.json']), 'invalid --config (flag): cannot read /does/not/exist.json (ENOENT)');
    // A value checked after the others (the database) still names its source, and hides a password.
    assert.equal(
      errorOf([], { COVERHELPER_DB: 'mysql://app:hunter2@db/x' }),
      'invalid COVERHELPER_DB (environment): unsupported database URL "mysql://app:****@db/x" (use postgres://… or a SQLite file path)',
    );
    assert.match(errorOf(['--db', 'postgres://u@h']), /^invalid --db \(flag\): a postgres:\/\/ URL needs a database name/);
    // A flag still wins over a bad value from the environment or the file, which is then not read.
    assert.equal(load(['--workers', '3'], { COVERHELPER_WORKERS: 'many' }).workers, 3);
    await writeFile(file, JSON.stringify({ workers: 'x' }));
    assert.equal(load(['--config', file], { COVERHELPER_WORKERS: '4' }).workers, 4);
  });

  it('answers an unknown option with the closest known one', async (t) => {
    assert.equal(errorOf(['--alow-hosts', 'a.com']), 'unknown option --alow-hosts; did you mean --allow-hosts?');
    assert.equal(errorOf(['--worker', '3']), 'unknown option --worker; did you mean --workers?');
    assert.equal(errorOf(['--print-confg']), 'unknown option --print-confg; did you mean --print-config?');
    assert.equal(errorOf(['--max-cache', '1']), 'unknown option --max-cache; did you mean --max-cache-bytes?');
    assert.equal(errorOf(['--colour', 'blue']), 'unknown option --colour (see --help)');
    assert.equal(errorOf(['-x']), 'unknown option -x (see --help)');
    const dir = await tempDir(t);
    const file = path.join(dir, 'config.json');
    await writeFile(file, JSON.stringify({ alowHosts: 'a.com' }));
    assert.equal(errorOf(['--config', file]), `unknown option "alowHosts" in ${file}; did you mean "allowHosts"?`);
    await writeFile(file, JSON.stringify({ 'time-limt': 3 }));
    assert.equal(errorOf(['--config', file]), `unknown option "time-limt" in ${file}; did you mean "time-limit"?`);
  });

  it('refuses a bare argument and a flag with no value, in words a user can act on', () => {
    assert.equal(errorOf(['x']), 'unexpected argument "x" (flags look like --name value)');
    assert.equal(errorOf(['--port', '8080', '9090']), 'unexpected argument "9090" (flags look like --name value)');
    assert.equal(errorOf(['--', '--port']), 'unexpected argument "--port" (flags look like --name value)');
    assert.equal(errorOf(['---h']), 'unknown option ---h (see --help)');
    assert.equal(errorOf(['--host']), 'invalid --host (flag): needs a value');
    assert.equal(errorOf(['--host', '--port', '1']), 'invalid --host (flag): needs a value (for a value starting with "-" write --host=VALUE)');
    assert.equal(load(['--client-token=--odd']).clientToken, '--odd');
    assert.equal(errorOf(['--print-config=yes']), 'invalid --print-config (flag): takes no value');
    // Booleans: alone, with =, or followed by their value.
    assert.equal(load(['--allow-private-network', 'false']).allowPrivateNetwork, false);
    assert.equal(load(['--allow-private-network', 'on', '--port', '1']).allowPrivateNetwork, true);
    assert.equal(load(['--allow-private-network', '--port', '1']).allowPrivateNetwork, true);
    assert.equal(errorOf(['--allow-private-network', 'x']), 'invalid --allow-private-network (flag): expected true or false, got "x"');
    // A word that names a property of every object is not a boolean either.
    assert.equal(errorOf(['--allow-private-network=constructor']), 'invalid --allow-private-network (flag): expected true or false, got "constructor"');
    // Negative numbers are values, and checked as such.
    assert.equal(errorOf(['--retries', '-1']), 'invalid --retries (flag): must be between 0 and 20, got -1');
  });

  it('reads --help, -h, --version and -v before anything else on the line', () => {
    assert.equal(parseCommandLine(['--help']).action, 'help');
    assert.equal(parseCommandLine(['--workers', 'lots', '-h']).action, 'help');
    assert.equal(parseCommandLine(['--nope', '--version']).action, 'version');
    assert.equal(parseCommandLine(['-v']).action, 'version');
    assert.equal(parseCommandLine(['--print-config', '--port', '1']).action, 'print-config');
    assert.equal(parseCommandLine(['--port', '1']).action, 'run');
    assert.equal(versionText(), `coverhelper ${packageVersion}\n`);
  });

  it('--help lists every option under its group, with its environment variable and default', () => {
    const help = helpText();
    assert.ok(help.startsWith(`coverhelper ${packageVersion}`));
    const lines = help.split('\n');
    for (const line of lines) assert.ok(line.length <= 100, `short line: ${line}`);
    for (const spec of specs) {
      const at = lines.findIndex((line) => line.startsWith(`  --${spec.flag} `));
      assert.notEqual(at, -1, `--${spec.flag} is listed`);
      const block = lines.slice(at + 1, lines.findIndex((line, i) => i > at && !line.startsWith('      ')));
      assert.ok(block.join(' ').includes(spec.help.split(' ').slice(0, 3).join(' ')), `--${spec.flag} says what it does`);
      assert.equal(block.at(-1), `      env ${envName(spec.flag)}; default ${defaultText(spec)}`);
      const heading = lines.slice(0, at).reverse().find((line) => /^\S.*:$/.test(line));
      assert.equal(heading, `${spec.group}:`, `--${spec.flag} is under ${spec.group}`);
    }
    assert.match(help, /default 10485760/);
    assert.match(help, /env COVERHELPER_WORKERS; default 10\n/);
    assert.match(help, /env COVERHELPER_RESIZE; default 320x200\n/);
    assert.match(help, /env COVERHELPER_ALLOW_HOSTS; default \*\.hdslb\.com,\*\.biliimg\.com\n/);
    assert.match(help, /env COVERHELPER_JOB_TTL; default 12\n/);
    assert.match(help, /env COVERHELPER_PROXY; default on\n/);
    assert.match(help, /env COVERHELPER_PROXY_MAX_AGE; default 2592000\n/);
    assert.match(help, /env COVERHELPER_PROXY_RATE; default 600\n/);
    assert.match(help, /env COVERHELPER_TRUST_PROXY; default none\n/);
    assert.match(help, /env COVERHELPER_PLACEHOLDER; default built-in\n/);
    for (const flag of Object.keys(commandOptions)) assert.match(help, new RegExp(`--${flag}\\b`));
    assert.match(help, /--config FILE\n.*\n {6}env COVERHELPER_CONFIG; default none\n/);
  });

  it('--print-config shows every effective value and where it came from, secrets masked', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'config.json');
    const secrets = ['callback-secret-from-the-file', 'client-token-from-env', 'admin-token-on-the-line', 'url-key-on-the-line-0123', 'pg-password'];
    await writeFile(file, JSON.stringify({ callbackSecret: secrets[0], 'max-age-hours': 24 }));
    const resolved = resolveConfig({
      argv: ['--config', file, '--admin-token', secrets[2]!, `--url-key=${secrets[3]}`, '--db', `postgres://app:${secrets[4]}@db.internal:5432/covers`, '--workers', '7'],
      env: { COVERHELPER_CLIENT_TOKEN: secrets[1], COVERHELPER_WORKERS: '3', COVERHELPER_LOG_LEVEL: 'debug' },
      isTTY: false,
      cwd: dir,
    });
    const text = printableConfig(resolved);
    for (const secret of secrets) assert.ok(!text.includes(secret), `${secret} is not shown`);
    const row = (flag: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${flag} `));
      assert.ok(line, `${flag} has a line`);
      return line.replace(/\s+/g, ' ');
    };
    assert.equal(row('--workers'), '--workers 7 flag --workers');
    assert.equal(row('--log-level'), '--log-level debug environment COVERHELPER_LOG_LEVEL');
    assert.equal(row('--max-age-hours'), `--max-age-hours 24 file ${file} ("max-age-hours")`);
    assert.equal(row('--callback-secret'), `--callback-secret **** file ${file} ("callbackSecret")`);
    assert.equal(row('--client-token'), '--client-token **** environment COVERHELPER_CLIENT_TOKEN');
    assert.equal(row('--admin-token'), '--admin-token **** flag --admin-token');
    assert.equal(row('--url-key'), '--url-key **** flag --url-key');
    assert.equal(row('--db'), '--db postgres://app:****@db.internal:5432/covers flag --db');
    assert.equal(row('--port'), '--port 8080 default');
    assert.equal(row('--resize'), '--resize 320x200 default');
    assert.equal(row('--data-dir'), `--data-dir ${path.join(dir, 'data')} default`);
    assert.equal(row('--config'), `--config ${file} flag --config`);
    for (const spec of specs) row(`--${spec.flag}`);
    // Unset secrets say so, and where a generated one is kept.
    const plain = printableConfig(resolve(['--db', 'postgres://app@db/covers?sslmode=require&password=pw-in-query']));
    assert.ok(!plain.includes('pw-in-query'));
    assert.match(plain, /--db\s+postgres:\/\/app@db\/covers\?sslmode=require&password=\*{4}\s+flag --db/);
    assert.match(plain, /--admin-token\s+none: read from \/srv\/app\/data\/admin-token \(made at first start\)\s+default/);
    assert.match(plain, /--client-token\s+none\s+default/);
    // A misspelt environment variable is no option: it is named, not silently lost.
    const typo = printableConfig(resolve([], { COVERHELPER_WORKRES: '3', COVERHELPER_SOMETHING_ELSE: 'x', HOME: '/root' }));
    assert.match(typo, /^# COVERHELPER_WORKRES is set but is not an option: ignored; did you mean COVERHELPER_WORKERS\?$/m);
    assert.match(typo, /^# COVERHELPER_SOMETHING_ELSE is set but is not an option: ignored$/m);
    assert.doesNotMatch(typo, /HOME/);
    assert.doesNotMatch(printableConfig(resolve([], { COVERHELPER_WORKERS: '3', COVERHELPER_CONFIG: file })), /not an option/);
  });

  it('the real process prints --help, --version and --print-config to stdout and exits 0 without starting', async (t) => {
    const help = await runService(['--help']);
    assert.equal(help.code, 0);
    assert.equal(help.stdout, helpText());
    assert.equal(help.stderr, '');
    const version = await runService(['-v']);
    assert.deepEqual([version.code, version.stdout], [0, `coverhelper ${packageVersion}\n`]);
    // A port this test holds, and folders that do not exist: a start would fail on
    // the port (exit 1) and make the folders.
    const held = createServer();
    await new Promise<void>((done) => held.listen(0, '127.0.0.1', done));
    t.after(() => held.close());
    const port = (held.address() as AddressInfo).port;
    const dir = await tempDir(t);
    const printed = await runService(['--print-config', '--port', String(port), '--data-dir', `${dir}/data`, '--covers-dir', `${dir}/covers`, '--admin-token', 'very-secret-admin'], {
      COVERHELPER_CLIENT_TOKEN: 'very-secret-client',
    });
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, new RegExp(`^--port\\s+${port}\\s+flag --port$`, 'm'));
    assert.match(printed.stdout, /^--client-token\s+\*{4}\s+environment COVERHELPER_CLIENT_TOKEN$/m);
    assert.ok(!printed.stdout.includes('very-secret'));
    assert.equal(existsSync(`${dir}/data`) || existsSync(`${dir}/covers`), false, 'no folder made');
    // A bad value is still refused, so --print-config also checks a configuration.
    const bad = await runService(['--print-config', '--workers', '0']);
    assert.deepEqual([bad.code, bad.stdout, bad.stderr], [2, '', 'coverhelper: invalid --workers (flag): must be between 1 and 1000, got 0\n']);
  });

  it('the real process names the source of a bad value on one line and exits 2', async () => {
    const fromEnv = await runService([], { COVERHELPER_RESIZE: 'big' });
    assert.deepEqual([fromEnv.code, fromEnv.stderr], [2, 'coverhelper: invalid COVERHELPER_RESIZE (environment): expected WxH (such as 320x200) or off, got "big"\n']);
    const typo = await runService(['--alow-hosts', 'a.com']);
    assert.deepEqual([typo.code, typo.stderr], [2, 'coverhelper: unknown option --alow-hosts; did you mean --allow-hosts?\n']);
    const bare = await runService(['x']);
    assert.deepEqual([bare.code, bare.stderr], [2, 'coverhelper: unexpected argument "x" (flags look like --name value)\n']);
  });

  it("the README's configuration tables list every option with its environment variable and default", () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 1));
    const rows = new Map(
      section
        .split('\n')
        .filter((line) => line.startsWith('| `-'))
        .map((line) => {
          const cells = line.split(' | ').map((cell) => cell.replace(/^\|\s*|\s*\|$/g, '').replaceAll('`', '').trim());
          return [cells[0]!, cells] as const;
        }),
    );
    for (const spec of specs) {
      const cells = rows.get(`--${spec.flag}`);
      assert.ok(cells, `README lists --${spec.flag}`);
      assert.equal(cells[1], envName(spec.flag), `README: env of --${spec.flag}`);
      assert.equal(cells[2], defaultText(spec), `README: default of --${spec.flag}`);
    }
    const documented = [...specs.map((s) => `--${s.flag}`), ...Object.keys(commandOptions).map((f) => `--${f}`)];
    assert.deepEqual([...rows.keys()].map((k) => k.split(',').at(-1)!.trim()).sort(), documented.sort(), 'nothing else in the tables');
    for (const group of ['Network', 'Storage', 'Downloads', 'Access', 'Proxy prefix', 'Limits and expiry', 'Archive jobs', 'Several nodes', 'Logging']) {
      assert.ok(section.includes(`\n### ${group}\n`), `README has the group ${group}`);
    }
  });
});

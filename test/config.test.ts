import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { defaults, loadConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { runService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';

const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => loadConfig({ argv, env, isTTY: false, cwd: '/srv/app' });

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
    assert.throws(() => load([], { COVERHELPER_WORKERS: 'many' }), /--workers/);
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
});

/**
 * What an operator reads in the log, from the real service process: the start
 * line, levels that match severity, and at `debug` the tries and retries,
 * connections, refused input and an access line per HTTP request; admin actions
 * at `info`.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { startOrigin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import { execFile } from 'node:child_process';
import { PassThrough, Writable } from 'node:stream';
import { promisify } from 'node:util';
import { createLogger, closeLogger } from '../src/logger.js';
import { version } from '../src/version.js';

const TOKEN = 'logs-test-admin-token';

describe('the log', () => {
  it('names the version and the settings that decide what is fetched, and at debug shows tries, retries, connections, refusals and requests', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const dir = await tempDir(t);
    const service = await startService([
      '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'),
      '--allow-private-network', '--allow-hosts', '127.0.0.1', '--admin-token', TOKEN,
      '--retries', '1', '--log-level', 'debug',
    ]);
    t.after(async () => void (await service.stop()));
    const start = service.logs.find((l) => l.message.startsWith('listening on '))!;
    // The next line says where the dashboard is and where its token is (here: given on the command line).
    await service.waitForLog((l) => l.message === `dashboard at ${service.url}/admin/ (its token is the one given (--admin-token))`, 5000);
    assert.equal(start.version, version);
    assert.deepEqual(start.allowHosts, ['127.0.0.1']);
    assert.equal(start.allowPrivateNetwork, true);
    assert.equal(start.resize, '320x200');
    assert.equal(start.clientToken, 'none (anyone may ask)');
    await service.waitForLog((l) => l.level === 'warn' && /--allow-private-network is on/.test(l.message));

    const ws = await connect(service.wsUrl);
    t.after(() => ws.close());
    await service.waitForLog((l) => l.message === 'client socket connected');
    ws.ws.send('not json');
    await service.waitForLog((l) => l.message === 'bad frame refused' && l.code === 'bad_request');
    const flaky = `${origin.url}/flaky/logged.jpg`;
    assert.equal((await ws.check('f', [flaky])).done.ok, 1);
    const tries = service.logs.filter((l) => l.message === 'download try' && l.url === flaky).map((l) => l.attempt);
    assert.deepEqual(tries, [1, 2]);
    const retry = service.logs.find((l) => l.message === 'download try failed; trying again after a backoff' && l.url === flaky)!;
    assert.deepEqual([retry.level, retry.code, retry.attempt], ['debug', 'http_status', 1]);

    await fetch(`${service.url}/healthz?token=secret-in-a-query`);
    const access = await service.waitForLog((l) => l.message === 'http' && l.path === '/healthz');
    assert.deepEqual([access.level, access.method, access.status], ['debug', 'GET', 200]);
    assert.ok(!JSON.stringify(service.logs).includes('secret-in-a-query'), 'no query string (it may hold a token) is logged');

    assert.equal((await fetch(`${service.url}/admin/api/pause`, { method: 'POST', headers: { authorization: 'Bearer wrong' } })).status, 401);
    await service.waitForLog((l) => l.message === 'admin call refused: wrong or missing admin token' && l.path === '/admin/api/pause');
    assert.equal((await fetch(`${service.url}/admin/api/pause`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
    assert.equal((await service.waitForLog((l) => l.message === 'downloads paused by the administrator')).level, 'info');
    assert.ok(!JSON.stringify(service.logs).includes(TOKEN), 'the admin token is never logged');
  });

  it('at info, says nothing of tries, connections or requests', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const dir = await tempDir(t);
    const service = await startService(['--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--allow-private-network', '--allow-hosts', '127.0.0.1']);
    t.after(async () => void (await service.stop()));
    const ws = await connect(service.wsUrl);
    t.after(() => ws.close());
    await ws.check('a', [`${origin.url}/img/quiet.jpg`]);
    await fetch(`${service.url}/healthz`);
    await service.waitForLog((l) => l.message === 'download finished');
    assert.deepEqual(service.logs.filter((l) => l.level === 'debug'), []);
  });

  it('writes the lines of one turn as one write at its end; a warn or error line at once, with those before it; closeLogger what is held', async () => {
    const writes: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        writes.push(chunk.toString());
        callback();
      },
    });
    const messages = (text: string | undefined) => (text ?? '').trim().split('\n').map((line) => (JSON.parse(line) as { message: string }).message);
    const logger = createLogger({ logLevel: 'info', logFormat: 'json' }, stream);
    logger.info('one');
    logger.info('two');
    assert.equal(writes.length, 0, 'held for the turn\'s end');
    logger.warn('three');
    assert.deepEqual(writes.map(messages), [['one', 'two', 'three']]);
    logger.info('four');
    logger.info('five');
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.deepEqual(writes.map(messages), [['one', 'two', 'three'], ['four', 'five']]);
    logger.info('six');
    await closeLogger(logger);
    assert.deepEqual(writes.map(messages), [['one', 'two', 'three'], ['four', 'five'], ['six']]);
    // Ending the logger alone (winston's end, not closeLogger) writes what is held too.
    const ended: string[] = [];
    const other = createLogger({ logLevel: 'info', logFormat: 'json' }, new Writable({ write: (chunk: Buffer, _encoding, callback) => void (ended.push(chunk.toString()), callback()) }));
    other.info('seven');
    const finished = new Promise<void>((resolve) => other.once('finish', () => resolve()));
    other.end();
    await finished;
    assert.deepEqual(ended.map(messages), [['seven']], 'written by the time the logger has finished');
  });

  it('a process that exits in the turn it logged still writes the line', async () => {
    const script = `import { createLogger } from ${JSON.stringify(path.resolve('src/logger.ts'))}; createLogger({ logLevel: 'info', logFormat: 'json' }).info('last words'); process.exit(3);`;
    const run = promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
    const failed = await run.then(() => undefined, (error: { code: number; stdout: string }) => error);
    assert.equal(failed?.code, 3);
    assert.equal((JSON.parse(failed.stdout.trim()) as { message: string }).message, 'last words');
  });

  it('drops a line below the level before building it, follows a level changed later, and keeps a child logger\'s fields', async () => {
    const stream = new PassThrough();
    let text = '';
    stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const logger = createLogger({ logLevel: 'info', logFormat: 'json' }, stream);
    let built = 0;
    // A getter the format would read: a line that is built reads it.
    const probe = { get url() { built++; return 'http://127.0.0.1/a.jpg'; } };
    logger.debug('below the level', probe);
    assert.equal(built, 0);
    logger.info('at the level', probe);
    assert.equal(built > 0, true);
    logger.level = 'debug';
    logger.debug('now shown', { n: 1 });
    logger.level = 'warn';
    logger.info('hidden again', { n: 2 });
    logger.child({ session: 's1' }).warn('from a child', { n: 3 });
    const { debug } = logger;
    debug('detached, below the level');
    await closeLogger(logger);
    const lines = text.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(lines.map((l) => [l.level, l.message]), [['info', 'at the level'], ['debug', 'now shown'], ['warn', 'from a child']]);
    assert.equal(lines[2]!.session, 's1');
  });
});

/**
 * The 2019 TCP protocol on `--legacy-port`, against the real service process:
 * real TCP clients that speak it as the 2019 blogs do (and as clients that do
 * not wait), a real origin, the real `/ws` beside it.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger } from '../src/logger.js';
import { startLegacyServer } from '../src/legacy/index.js';
import { Stats } from '../src/stats.js';
import { waitUntil } from './helpers/db.js';
import { startOrigin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];
const TOKEN = 'legacy-test-admin-token';

async function setup(t: TestContext, extra: string[] = []) {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const dir = await tempDir(t);
  const service = await startService([
    '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'),
    '--allow-private-network', '--allow-hosts', '127.0.0.1', '--retries', '0',
    '--admin-token', TOKEN, '--legacy-port', '0', ...extra,
  ]);
  t.after(async () => void (await service.stop()));
  const line = await service.waitForLog((l) => /^legacy protocol listening on tcp:\/\//.test(l.message));
  const port = Number(/:(\d+)$/.exec(line.message)![1]);
  return { origin, service, port };
}

/** A TCP connection that collects every byte it receives. */
async function tcp(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let received = '';
  const waiters: { until: (text: string) => boolean; resolve: () => void }[] = [];
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('utf8');
    for (const waiter of [...waiters]) {
      if (!waiter.until(received)) continue;
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  });
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    ended,
    received: () => received,
    /** Resolves once what was received satisfies `until`. */
    when: (until: (text: string) => boolean, timeoutMs = 20_000) =>
      until(received)
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no such answer within ${timeoutMs} ms; got ${JSON.stringify(received)}`)), timeoutMs);
            waiters.push({
              until,
              resolve: () => {
                clearTimeout(timer);
                resolve();
              },
            });
          }),
  };
}

/** The whole conversation as a 2019 blog speaks it: each step after the server's answer. */
async function converse(port: number, urls: string[]): Promise<{ bytes: string; results: string[] }> {
  const client = await tcp(port);
  const urlString = urls.join(' ');
  client.socket.write(`C${Buffer.byteLength(urlString)}`);
  await client.when((text) => text === 'G');
  client.socket.write(urlString);
  await client.when((text) => text.endsWith('OK'));
  client.socket.write('R');
  await client.when((text) => /L(\d+)$/.test(text));
  const length = Number(/L(\d+)$/.exec(client.received())![1]);
  const before = Buffer.byteLength(client.received());
  client.socket.write('C');
  await client.when((text) => Buffer.byteLength(text) === before + length);
  client.socket.write('O');
  await client.ended;
  const bytes = client.received();
  const results = Buffer.from(bytes).subarray(before).toString('utf8');
  return { bytes, results: results.split(' ') };
}

async function metric(service: Service, name: string): Promise<number> {
  const text = await (await fetch(`${service.url}/metrics`)).text();
  return Number(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
}

const legacyGauge = 'coverhelper_connections{kind="legacy"}';

describe('the 2019 TCP protocol', () => {
  it('answers a 2019 blog byte for byte: W per URL, OK, L<bytes>, the results in input order', async (t) => {
    const { origin, service, port } = await setup(t);
    const image = `${origin.url}/img/legacy-a.jpg`;
    const urls = [image, '', 'https://example.com/not-allowed.jpg', `${origin.url}/status/404`, `${origin.url}/img/漢字.jpg`, image];
    const { bytes, results } = await converse(port, urls);
    // The same URLs over /ws: the cover URLs the legacy answer must carry.
    const ws = await connect(service.wsUrl);
    t.after(() => ws.close());
    const answers = (await ws.check('same', urls)).done.results as Frame[];
    const expected = answers.map((r) => (r.status === 'ok' ? (r.coverUrl as string) : r.status === 'skipped' ? (r.url as string) : ''));
    assert.deepEqual(results, expected);
    assert.equal(results[1], '', 'the empty URL of a double space is answered with itself');
    assert.equal(results[2], 'https://example.com/not-allowed.jpg', 'not fetched: the URL itself');
    assert.equal(results[3], '', 'a failure is empty');
    const resultString = expected.join(' ');
    assert.equal(bytes, `G${'W'.repeat(urls.length)}OKL${Buffer.byteLength(resultString)}${resultString}`);
    assert.equal(origin.hits.get('/img/legacy-a.jpg'), 1);
  });

  it('copes with a client that sends everything at once, and with one that sends a byte at a time', async (t) => {
    const { origin, port } = await setup(t);
    const urls = [`${origin.url}/img/merged-1.jpg`, `${origin.url}/img/merged-2.jpg`];
    const urlString = urls.join(' ');
    const whole = Buffer.from(`C${Buffer.byteLength(urlString)}${urlString}RCO`);
    const reference = await converse(port, urls);

    const merged = await tcp(port);
    merged.socket.write(whole);
    await merged.ended;
    assert.equal(merged.received(), reference.bytes, 'all in one write');

    const trickle = await tcp(port);
    for (const byte of whole) trickle.socket.write(Buffer.from([byte]));
    await trickle.ended;
    assert.equal(trickle.received(), reference.bytes, 'byte by byte');
  });

  it('shares downloads with /ws: a herd over both makes one origin request per URL; the port counts in statistics and the admin stream', async (t) => {
    const { origin, service, port } = await setup(t);
    origin.delayMs = 200;
    const urls = Array.from({ length: 10 }, (_, i) => `${origin.url}/img/shared-${i}.jpg`);
    const admin = await connect(`${service.url.replace('http:', 'ws:')}/admin/ws?token=${TOKEN}`);
    t.after(() => admin.close());
    await admin.next((f) => f.type === 'snapshot');
    const sockets = await Promise.all(Array.from({ length: 5 }, () => connect(service.wsUrl)));
    t.after(() => Promise.all(sockets.map((s) => s.close())));
    const checksBefore = await metric(service, 'coverhelper_checks_total');
    const [legacyAnswers, wsAnswers] = await Promise.all([
      Promise.all(Array.from({ length: 5 }, () => converse(port, urls))),
      Promise.all(sockets.map((s, i) => s.check(`w${i}`, urls, 30_000))),
    ]);
    for (const url of urls) assert.equal(origin.hits.get(new URL(url).pathname), 1, `${url}: one request for TCP and /ws askers together`);
    for (const { results } of legacyAnswers) assert.ok(results.every((r) => r.startsWith(service.url)), 'cover URLs');
    for (const { done } of wsAnswers) assert.equal(done.ok, urls.length);
    assert.equal((await metric(service, 'coverhelper_checks_total')) - checksBefore, 10, 'five TCP checks and five /ws checks counted');
    await admin.next((f) => f.type === 'task' && f.url === urls[0] && f.status === 'ok');
  });

  it('a client that hangs up at any step leaves nothing behind, and its downloads finish and are stored', async (t) => {
    const { origin, service, port } = await setup(t);
    origin.delayMs = 300;
    const steps = ['after C', 'in the URL string', 'while it works', 'after OK', 'after L', 'after the results'];
    for (const [i, step] of steps.entries()) {
      const url = `${origin.url}/img/hangup-${i}.jpg`;
      const client = await tcp(port);
      await waitUntil(async () => (await metric(service, legacyGauge)) === 1, 'counted as a legacy connection');
      const s = client.socket;
      const n = Buffer.byteLength(url);
      if (step === 'after C') s.write(`C${n}`);
      else if (step === 'in the URL string') s.write(`C${n}${url.slice(0, 10)}`);
      else {
        s.write(`C${n}${url}`);
        if (step !== 'while it works') await client.when((text) => text.endsWith('OK'));
        if (step === 'after L' || step === 'after the results') {
          s.write('R');
          await client.when((text) => /L\d+$/.test(text));
        }
        if (step === 'after the results') {
          s.write('C');
          await client.when((text) => text.endsWith('.jpg'));
        }
      }
      s.destroy();
      await client.ended;
      await waitUntil(async () => (await metric(service, legacyGauge)) === 0, `${step}: the connection is gone`);
      if (step !== 'after C' && step !== 'in the URL string') {
        await waitUntil(() => origin.hits.get(`/img/hangup-${i}.jpg`) === 1, `${step}: the download went on`);
        const ws = await connect(service.wsUrl);
        await waitUntil(async () => ((await ws.check(`s${i}-${Date.now()}`, [url])).done.results as Frame[])[0]!.source === 'cache', `${step}: stored`);
        await ws.close();
        assert.equal(origin.hits.get(`/img/hangup-${i}.jpg`), 1);
      }
    }
  });

  it('closes a connection with bad input, with a log line, and leaves the others alone', async (t) => {
    const { origin, service, port } = await setup(t, ['--max-batch', '3']);
    origin.delayMs = 500;
    const healthy = converse(port, [`${origin.url}/img/healthy.jpg`]);
    const bad: [string, string | Buffer][] = [
      ['a bad first command', 'X12'],
      ['a length that does not match', 'C5https://i0.hdslb.com/a.jpg'],
      ['more URLs than --max-batch', `C${'a b c d'.length}a b c d`],
      ['a URL string over 8 MiB', `C${8 * 1024 * 1024 + 1}`],
    ];
    for (const [what, bytes] of bad) {
      const client = await tcp(port);
      client.socket.write(bytes);
      await client.ended;
      assert.doesNotMatch(client.received(), /OK/, `${what}: no answer`);
    }
    assert.equal((await healthy).results[0]!.startsWith(service.url), true, 'the healthy conversation is answered');
    const closedLines = service.logs.filter((l) => /^legacy connection closed: /.test(l.message));
    assert.equal(closedLines.length, bad.length, JSON.stringify(closedLines.map((l) => l.message)));
  });

  it('closes a connection that sends the wrong command in its turn (after OK, after L, after the results), and only that one', async (t) => {
    const { origin, service, port } = await setup(t);
    const url = `${origin.url}/img/turns.jpg`;
    const n = Buffer.byteLength(url);
    const turns: [string, string, RegExp][] = [
      ['after OK', 'R', /expected R after OK/],
      ['after L', 'C', /expected C after L/],
      ['after the results', 'O', /expected O after the results/],
    ];
    for (const [i, [step, expected, logged]] of turns.entries()) {
      const client = await tcp(port);
      client.socket.write(`C${n}${url}`);
      await client.when((text) => text.endsWith('OK'));
      if (step !== 'after OK') {
        client.socket.write('R');
        await client.when((text) => /L\d+$/.test(text));
      }
      if (step === 'after the results') {
        client.socket.write('C');
        await client.when((text) => text.endsWith('.jpg'));
      }
      client.socket.write(`X${expected}`);
      await client.ended;
      await waitUntil(() => service.logs.filter((l) => /^legacy connection closed: /.test(l.message)).length === i + 1, `${step}: logged`);
      assert.match(service.logs.filter((l) => /^legacy connection closed: /.test(l.message))[i]!.message, logged);
    }
    // The port still answers.
    assert.ok((await converse(port, [url])).results[0]!.startsWith(service.url));
    assert.equal(origin.hits.get('/img/turns.jpg'), 1);
  });
});

describe('the legacy port binding', () => {
  it('warns when it listens on an address that is not loopback (it has no authentication)', async () => {
    const lines: { level: string; message: string }[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        // The lines of one turn come as one write.
        for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as { level: string; message: string });
        done();
      },
    });
    const logger = createLogger({ logLevel: 'info', logFormat: 'json' }, stream);
    const checks = { check: async () => [], leave: () => {} };
    const loopback = await startLegacyServer('127.0.0.1', 0, { checks, logger, stats: new Stats(), maxBatch: 10 });
    await loopback.close();
    assert.equal(lines.filter((l) => l.level === 'warn').length, 0);
    const open = await startLegacyServer('0.0.0.0', 0, { checks, logger, stats: new Stats(), maxBatch: 10 });
    await open.close();
    assert.match(lines.find((l) => l.level === 'warn')?.message ?? '', /no authentication/);
    assert.ok(lines.some((l) => /^legacy protocol listening on tcp:\/\/0\.0\.0\.0:\d+$/.test(l.message)));
  });
});

/**
 * Memory is bounded per client in both directions and in total, against the
 * real service process: a `/ws` client that stops reading and floods checks,
 * and the two floods of the 2019 port (bytes after `R` while a check runs; many
 * connections holding nearly full URL strings). The service's resident memory
 * (VmRSS of its process) stays within 100 MB of what it was before, and another
 * client is answered within 2 s meanwhile.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import { checkFrame } from '@coverhelper/client/protocol';
import { startLegacyServer } from '../src/legacy/index.js';
import { createLogger } from '../src/logger.js';
import { Stats } from '../src/stats.js';
import { startOrigin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];
const MB = 1024 * 1024;
const BOUND = 100 * MB;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The service process's resident memory, in bytes. */
function rss(service: Service): number {
  const status = readFileSync(`/proc/${service.child.pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) * 1024;
}

/** Samples the service's RSS every 100 ms until stopped; returns the highest seen. */
function watchRss(service: Service): { stop(): number } {
  let peak = rss(service);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rss(service));
    } catch {
      // the process is gone: the test fails elsewhere
    }
  }, 100);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

const mb = (bytes: number) => `${Math.round(bytes / MB)} MB`;

async function setup(t: TestContext, extra: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const dir = await tempDir(t);
  const service = await startService(['--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--admin-token', 'memory-test-token', ...extra], env);
  t.after(async () => void (await service.kill()));
  return service;
}

/** A fresh `/ws` client's check of a URL answered at once (`skipped`), timed. */
async function probe(service: Service, name: string): Promise<number> {
  const client = await connect(service.wsUrl);
  try {
    const started = performance.now();
    const { done } = await client.check(name, [`ftp://example.com/${name}.jpg`], 20_000);
    assert.equal(done.type, 'done');
    return performance.now() - started;
  } finally {
    client.ws.terminate();
  }
}

/** Warms the service up (a few checks) and reads its RSS. */
async function baseline(service: Service): Promise<number> {
  for (let i = 0; i < 3; i++) await probe(service, `warm${i}`);
  await sleep(500);
  return rss(service);
}

describe('memory per client is bounded', () => {
  it('a /ws client that stops reading: read no further past 4 MiB unsent, closed 1008 when it stays over, RSS bounded, others answered', { timeout: 120_000 }, async (t) => {
    // A long grace after the close frame: a loaded machine may take a while to read what is unsent before it.
    const service = await setup(t, [], { COVERHELPER_TEST_MAX_OVERFULL_MS: '3000', COVERHELPER_TEST_OVERFULL_CLOSE_GRACE_MS: '20000' });
    const before = await baseline(service);
    const watch = watchRss(service);

    const flood = new WebSocket(service.wsUrl, { perMessageDeflate: false });
    await new Promise((resolve, reject) => flood.once('open', resolve).once('error', reject));
    flood.on('error', () => undefined);
    const closed = new Promise<number>((resolve) => flood.once('close', (code) => resolve(code)));
    // Stops reading: what the service sends stays in its buffers (and the kernel's).
    flood.pause();
    // 400 checks × 1000 URLs answered at once (`skipped`: not a cover URL), each answer
    // about 330 KB: some 130 MB of output if nothing bounds it.
    const padding = 'p'.repeat(250);
    for (let k = 0; k < 400; k++) {
      flood.send(checkFrame(`flood${k}`, Array.from({ length: 1000 }, (_, i) => `ftp://example.com/${padding}/${k}/${i}.jpg`)));
    }

    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      await sleep(700);
      waits.push(await probe(service, `during${i}`));
    }
    // The service closes the socket once it stays over the bound (3 s here); old code never does.
    const closing = await service
      .waitForLog((line) => /client socket closed: it does not read/.test(line.message), 20_000)
      .catch(() => undefined);
    const peak = watch.stop();
    flood.resume();
    const code = await Promise.race([closed, sleep(25_000).then(() => undefined)]);
    flood.terminate();
    await sleep(1000);
    const after = rss(service);
    t.diagnostic(`RSS before ${mb(before)}, peak ${mb(peak)}, after ${mb(after)}; other client's checks answered in ${waits.map(Math.round).join(', ')} ms`);

    assert.ok(peak - before < BOUND, `RSS grew from ${mb(before)} to ${mb(peak)} during the flood`);
    assert.ok(after - before < BOUND, `RSS ${mb(after)} after the client left (before: ${mb(before)})`);
    for (const wait of waits) assert.ok(wait < 2000, `another client's check took ${Math.round(wait)} ms during the flood`);
    assert.ok(closing, 'the service logs that it closed the socket that does not read');
    assert.equal(code, 1008, 'the socket that does not read is closed with 1008 (policy)');
  });

  /** A TCP connection to the 2019 port; write errors (a connection the service closed) are kept, not thrown. */
  async function legacyConnection(port: number) {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    let isEnded = false;
    void ended.then(() => (isEnded = true));
    /** Writes, waiting for the kernel to take it; false once the connection is gone. */
    const write = (data: Buffer | string) =>
      new Promise<boolean>((resolve) => {
        if (socket.destroyed) return resolve(false);
        socket.write(data, (error) => resolve(!error));
      });
    return { socket, ended, isEnded: () => isEnded, received: () => received, write };
  }

  /** A whole 2019 conversation of URLs answered at once, timed. */
  async function legacyProbe(port: number, url: string): Promise<number> {
    const started = performance.now();
    const client = await legacyConnection(port);
    const until = async (test: (text: string) => boolean) => {
      for (let i = 0; i < 2000 && !test(client.received()); i++) await sleep(5);
      assert.ok(test(client.received()), `legacy answer so far: ${JSON.stringify(client.received())}`);
    };
    await client.write(`C${Buffer.byteLength(url)}`);
    await until((text) => text === 'G');
    await client.write(url);
    await until((text) => text.endsWith('OK'));
    await client.write('RC');
    await until((text) => text.endsWith(url));
    await client.write('O');
    await client.ended;
    return performance.now() - started;
  }

  async function legacySetup(t: TestContext) {
    const origin = await startOrigin();
    t.after(() => {
      origin.release();
      return origin.close();
    });
    const service = await setup(t, ['--allow-private-network', '--allow-hosts', '127.0.0.1', '--retries', '0', '--legacy-port', '0']);
    const line = await service.waitForLog((l) => /^legacy protocol listening on tcp:\/\//.test(l.message));
    return { origin, service, port: Number(/:(\d+)$/.exec(line.message)![1]) };
  }

  it('2019 port: bytes sent while a check runs are not kept (the connection is closed), parsing stays linear, RSS bounded, others answered', { timeout: 120_000 }, async (t) => {
    const { origin, service, port } = await legacySetup(t);
    const before = await baseline(service);
    const watch = watchRss(service);

    // A check that runs until the end of the test (the origin holds its image), then R and 1 MB chunks.
    const flood = await legacyConnection(port);
    const urls = `${origin.url}/half/flood-running.jpg`;
    await flood.write(`C${Buffer.byteLength(urls)}`);
    await flood.write(urls);
    await flood.write('R');
    const chunk = Buffer.alloc(MB, 0x52);
    let sent = 0;
    const sending = (async () => {
      const until = performance.now() + 15_000;
      while (sent < 200 * MB && performance.now() < until && (await flood.write(chunk))) sent += MB;
    })();

    const waits: number[] = [];
    for (let i = 0; i < 3; i++) {
      await sleep(700);
      waits.push(await probe(service, `during${i}`));
      waits.push(await legacyProbe(port, `ftp://example.com/legacy-during${i}.jpg`));
    }
    await sending;
    const closedByService = await Promise.race([flood.ended.then(() => true), sleep(2000).then(() => false)]);
    const peak = watch.stop();
    flood.socket.destroy();
    await sleep(1000);
    const after = rss(service);
    t.diagnostic(`sent ${mb(sent)} after R; RSS before ${mb(before)}, peak ${mb(peak)}, after ${mb(after)}; others answered in ${waits.map(Math.round).join(', ')} ms`);

    assert.ok(peak - before < BOUND, `RSS grew from ${mb(before)} to ${mb(peak)} during the flood`);
    assert.ok(after - before < BOUND, `RSS ${mb(after)} after the client left (before: ${mb(before)})`);
    for (const wait of waits) assert.ok(wait < 2000, `another client was answered in ${Math.round(wait)} ms during the flood`);
    assert.ok(closedByService, 'the service closes a connection that sends more than R, C and O while its check runs');
  });

  it('2019 port: many connections holding nearly whole 8 MiB URL strings are bounded in total (the largest closed), RSS bounded, others answered', { timeout: 120_000 }, async (t) => {
    const { service, port } = await legacySetup(t);
    const before = await baseline(service);
    const watch = watchRss(service);

    // 20 connections each announcing 8 MiB and sending all but 64 bytes of it (160 MiB
    // if each were kept), then kept alive by a byte every half second.
    const declared = 8 * MB;
    const floods = await Promise.all(Array.from({ length: 20 }, () => legacyConnection(port)));
    const piece = Buffer.alloc(MB, 0x61);
    const sending = floods.map(async (flood) => {
      if (!(await flood.write(`C${declared}`))) return;
      await flood.write(piece.subarray(0, 1));
      for (let sent = 1; sent + MB <= declared - 64; sent += MB) if (!(await flood.write(piece))) return;
    });
    let trickling = true;
    const trickle = (async () => {
      while (trickling) {
        await sleep(500);
        for (const flood of floods) if (!flood.isEnded()) void flood.write('a');
      }
    })();

    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      await sleep(700);
      waits.push(await probe(service, `during${i}`));
      waits.push(await legacyProbe(port, `ftp://example.com/legacy-during${i}.jpg`));
    }
    await Promise.all(sending);
    await sleep(1500);
    const peak = watch.stop();
    const open = floods.filter((flood) => !flood.isEnded()).length;
    trickling = false;
    await trickle;
    for (const flood of floods) flood.socket.destroy();
    await sleep(1000);
    const after = rss(service);
    t.diagnostic(`${open} of 20 flood connections still open; RSS before ${mb(before)}, peak ${mb(peak)}, after ${mb(after)}; others answered in ${waits.map(Math.round).join(', ')} ms`);

    assert.ok(peak - before < BOUND, `RSS grew from ${mb(before)} to ${mb(peak)} during the flood`);
    assert.ok(after - before < BOUND, `RSS ${mb(after)} after the clients left (before: ${mb(before)})`);
    for (const wait of waits) assert.ok(wait < 2000, `another client was answered in ${Math.round(wait)} ms during the flood`);
    assert.ok(open <= 8, `${open} connections still hold nearly 8 MiB each: at most 8 fit in the total of 64 MiB`);
    assert.ok(
      service.logs.some((line) => /legacy connection closed: the URL strings announced on the legacy port are over their total/.test(line.message)),
      'the service logs the connections it closed for the total',
    );
  });
});

describe('request bodies are bounded in time and in total', () => {
  /** An HTTP request whose body is sent by the test, and its answer once one comes. */
  async function postPart(service: Service, route: string, declared: number, part: Buffer) {
    const socket = net.connect(service.port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.on('error', () => undefined);
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(`POST ${route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n\r\n`);
    if (part.length > 0) socket.write(part);
    return { socket, ended, status: () => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0), answer: () => answer };
  }

  it('a body that trickles is answered 408 at its deadline and its connection closed', { timeout: 60_000 }, async (t) => {
    const service = await setup(t, [], { COVERHELPER_TEST_BODY_DEADLINE_MS: '1500' });
    const request = await postPart(service, '/api/check', 1000, Buffer.from('{"urls":['));
    const trickle = setInterval(() => request.socket.write(' '), 200);
    t.after(() => clearInterval(trickle));
    const closed = await Promise.race([request.ended.then(() => true), sleep(10_000).then(() => false)]);
    clearInterval(trickle);
    request.socket.destroy();
    assert.equal(request.status(), 408, `answer: ${JSON.stringify(request.answer().slice(0, 200))}`);
    assert.ok(closed, 'the connection is closed after the 408');
  });

  it('bodies being read hold at most 64 MiB together: past it a request gets 503 busy, RSS bounded', { timeout: 120_000 }, async (t) => {
    const service = await setup(t);
    const before = await baseline(service);
    const watch = watchRss(service);
    // 10 job bodies of 12 MiB each (of 16 MiB announced): 120 MiB if each were kept.
    const part = Buffer.alloc(12 * MB, 0x20);
    part.write('{"urls":[', 0);
    const requests: Awaited<ReturnType<typeof postPart>>[] = [];
    for (let i = 0; i < 10; i++) requests.push(await postPart(service, '/api/jobs', 16 * MB - 1, part));
    await sleep(3000);
    // On a loaded machine the refusals may take longer to come back than the 3 s the bodies are watched for.
    const refusedSoFar = () => requests.filter((request) => request.status() === 503).length;
    for (const deadline = Date.now() + 30_000; refusedSoFar() < 6 && Date.now() < deadline; ) await sleep(50);
    const probeMs = await probe(service, 'during-bodies');
    const peak = watch.stop();
    const statuses = requests.map((request) => request.status());
    for (const request of requests) request.socket.destroy();
    t.diagnostic(`statuses ${statuses.join(' ')}; RSS before ${mb(before)}, peak ${mb(peak)}; another client answered in ${Math.round(probeMs)} ms`);
    assert.ok(peak - before < BOUND, `RSS grew from ${mb(before)} to ${mb(peak)}`);
    assert.ok(statuses.filter((status) => status === 503).length >= 4, `the bodies past the total are refused 503 busy: ${statuses.join(' ')}`);
    assert.ok(probeMs < 2000, `another client's check took ${Math.round(probeMs)} ms`);
  });
});

describe('the 2019 port: a URL string that trickles', () => {
  it('is closed when its URL string is not whole within the deadline, though it never falls silent', { timeout: 30_000 }, async (t) => {
    const lines: { message: string }[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        for (const text of chunk.toString().split('\n')) if (text.trim()) lines.push(JSON.parse(text) as { message: string });
        callback();
      },
    });
    const logger = createLogger({ logLevel: 'info', logFormat: 'json' }, stream);
    const checks = { check: async (urls: readonly string[]) => urls.map((url) => ({ url, status: 'skipped' as const })), leave: () => {} };
    // The idle rule (1 s of silence) never fires: a byte comes every 200 ms.
    const server = await startLegacyServer('127.0.0.1', 0, { checks, logger, stats: new Stats(), maxBatch: 10, idleTimeoutMs: 1000, urlStringDeadlineMs: 1500 });
    t.after(() => server.close(0));
    const socket = net.connect(server.port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write('C1000');
    const trickle = setInterval(() => socket.write('a'), 200);
    t.after(() => clearInterval(trickle));
    const started = performance.now();
    const closed = await Promise.race([ended.then(() => true), sleep(8000).then(() => false)]);
    clearInterval(trickle);
    socket.destroy();
    assert.ok(closed, 'the trickling connection is closed');
    assert.ok(performance.now() - started < 5000, 'at its deadline, not later');
    assert.ok(lines.some((line) => /did not arrive whole within 1\.5 s/.test(line.message)), JSON.stringify(lines));
  });
});

import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import type { CheckResult } from '../src/checks/index.js';
import { createLogger } from '../src/logger.js';
import { serveClientSocket } from '../src/servers/clientSocket.js';
import { ResultRounds } from '../src/servers/resultRounds.js';

const quiet = createLogger({ logLevel: 'error', logFormat: 'json' });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('flow control on a client socket', () => {
  it('stops reading a connection while its checks hold the limit of URLs, answers everything, and reads on at half', { timeout: 20_000 }, async (t) => {
    // The checks are replaced by promises this test settles: what is under test is
    // the socket's reading, and holding URLs "in progress" for real would take
    // 10,000 held downloads. The socket, the server and the client are real.
    const calls: { urls: readonly string[]; settle: () => void }[] = [];
    const checks = {
      check: (urls: readonly string[]) =>
        new Promise<CheckResult[]>((resolve) => {
          calls.push({ urls, settle: () => resolve(urls.map((url) => ({ url, status: 'skipped' as const }))) });
        }),
      leave: () => {},
    };
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    server.on('connection', (socket) => serveClientSocket(socket, { checks, maxBatch: 100, logger: quiet, version: '0.0.0-test', maxUrlsInProgress: 10 }, new ResultRounds()));
    await new Promise((resolve) => server.once('listening', resolve));
    const sockets: WebSocket[] = [];
    t.after(async () => {
      for (const socket of sockets) socket.terminate();
      for (const socket of server.clients) socket.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await new Promise((resolve, reject) => client.once('open', resolve).once('error', reject));
    sockets.push(client);
    const done: string[] = [];
    client.on('message', (data: Buffer) => {
      const frame = JSON.parse(data.toString()) as { type: string; id: string; results?: unknown[] };
      if (frame.type === 'done') done.push(frame.id);
    });
    const waitFor = async (what: string, test: () => boolean) => {
      // Up to 15 s: a loaded CI machine may take seconds; a pass takes milliseconds.
      const deadline = Date.now() + 15_000;
      while (!test() && Date.now() < deadline) await sleep(10);
      assert.ok(test(), what);
    };

    const checkOf = (k: number) => JSON.stringify({ type: 'check', id: `c${k}`, urls: Array.from({ length: 5 }, (_, i) => `https://example.com/${k}/${i}`) });
    /** Sends and resolves once the frame is written to the kernel (on loopback: in the server's receive buffer). */
    const sendFrom = (ws: WebSocket, frame: string) => new Promise<void>((resolve, reject) => ws.send(frame, (error) => (error ? reject(error) : resolve())));
    const readIds = () => calls.map((call) => call.urls[0]!.split('/')[3]);

    // Another connection: a check sent on it after a frame of the paused one is
    // read only after that frame would have been, so once the server has read it,
    // what the paused connection sent before is known to have been left unread.
    const other = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await new Promise((resolve, reject) => other.once('open', resolve).once('error', reject));
    sockets.push(other);
    let probes = 0;
    const probe = async () => {
      const id = `other${++probes}`;
      await sendFrom(other, JSON.stringify({ type: 'check', id, urls: [`https://example.com/${id}`] }));
      await waitFor(`the other connection's ${id} is read (not held back by the paused one)`, () => calls.some((call) => call.urls[0] === `https://example.com/${id}`));
      calls.find((call) => call.urls[0] === `https://example.com/${id}`)!.settle();
    };

    // Two checks of 5 URLs fill the limit of 10.
    for (const k of [0, 1]) {
      await sendFrom(client, checkOf(k));
      await waitFor(`check c${k} is read`, () => readIds().includes(String(k)));
    }
    await sendFrom(client, checkOf(2));
    await probe();
    assert.ok(!readIds().includes('2'), 'nothing more is read while 10 URLs are in progress');

    // Answering one check leaves 5 in progress, half the limit: reading resumes, and
    // the next check (5 more URLs) fills the limit again.
    calls.find((call) => call.urls[0] === 'https://example.com/0/0')!.settle();
    await waitFor('the next check is read once half the limit is free', () => readIds().includes('2'));
    await sendFrom(client, checkOf(3));
    await probe();
    assert.ok(!readIds().includes('3'), 'full again: nothing more is read');
    for (const k of [4, 5]) await sendFrom(client, checkOf(k));

    // Settle whatever has been read until all six are answered.
    await waitFor('every check is answered', () => {
      for (const call of calls) call.settle();
      return done.length === 6;
    });
    assert.deepEqual([...done].sort(), ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'], 'every check of the paused connection is answered, none dropped');
  });
});

import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import type { CheckResult } from '../src/checks/index.js';
import { createLogger } from '../src/logger.js';
import { serveClientSocket } from '../src/servers/clientSocket.js';

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
    };
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    server.on('connection', (socket) => serveClientSocket(socket, { checks, maxBatch: 100, logger: quiet, maxUrlsInProgress: 10 }));
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
      for (let i = 0; i < 200 && !test(); i++) await sleep(10);
      assert.ok(test(), what);
    };

    // Six checks of 5 URLs, each in its own write: the first two fill the limit of 10.
    for (let k = 0; k < 6; k++) {
      client.send(JSON.stringify({ type: 'check', id: `c${k}`, urls: Array.from({ length: 5 }, (_, i) => `https://example.com/${k}/${i}`) }));
      await sleep(20);
    }
    await waitFor('the first two checks were read', () => calls.length >= 2);
    await sleep(200);
    assert.equal(calls.length, 2, 'nothing more is read while 10 URLs are in progress');

    // A cached check from another connection is not held back by this one.
    const other = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await new Promise((resolve, reject) => other.once('open', resolve).once('error', reject));
    sockets.push(other);
    other.send(JSON.stringify({ type: 'check', id: 'other', urls: ['https://example.com/other'] }));
    await waitFor('the other connection is read', () => calls.length === 3);
    calls[2]!.settle();

    // Answering one check leaves 5 in progress, half the limit: reading resumes, and
    // the next check (5 more URLs) fills the limit again.
    calls[0]!.settle();
    await waitFor('the next check is read once half the limit is free', () => calls.length === 4);
    assert.deepEqual(calls[3]!.urls[0], 'https://example.com/2/0', 'checks are read in the order sent');
    await sleep(200);
    assert.equal(calls.length, 4, 'full again: nothing more is read');

    // Settle whatever has been read until all six are answered (bounded).
    for (let i = 0; i < 200 && done.length < 6; i++) {
      for (const call of calls) call.settle();
      await sleep(10);
    }
    assert.deepEqual([...done].sort(), ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'], 'every check of the paused connection is answered, none dropped');
  });
});

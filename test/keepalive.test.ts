/**
 * Keepalive on real sockets: a `ws` server on 127.0.0.1 port 0 and real `ws`
 * clients; the ticks come from the test clock, so each test moves time by whole
 * ping intervals (the service's 30 s) and sees exactly what each tick did.
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { TestClock } from '../src/clock.js';
import { Keepalive, PING_INTERVAL_MS } from '../src/servers/keepalive.js';
import { waitUntil } from './helpers/db.js';

async function setup(t: { after: (fn: () => unknown) => void }) {
  const clock = new TestClock();
  const keepalive = new Keepalive(PING_INTERVAL_MS, clock);
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  /** Frames and pongs the server heard, in all. */
  const heard = { messages: 0, pongs: 0 };
  server.on('connection', (socket) => {
    keepalive.add(socket);
    socket.on('message', () => heard.messages++);
    socket.on('pong', () => heard.pongs++);
  });
  t.after(() => {
    keepalive.close();
    for (const client of server.clients) client.terminate();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const open = async () => {
    const client = new WebSocket(url);
    await new Promise((resolve) => client.once('open', resolve));
    await waitUntil(() => server.clients.size > 0, 'the server has the socket');
    t.after(() => client.terminate());
    return client;
  };
  return { open, clock, heard };
}

describe('keepalive', () => {
  it('pings an idle socket once per interval after a quiet one, and keeps it while it answers', async (t) => {
    const { open, clock, heard } = await setup(t);
    const client = await open();
    let pings = 0;
    client.on('ping', () => pings++);
    // The first tick only notes that nothing was heard since the socket opened.
    await clock.advance(PING_INTERVAL_MS - 1);
    await clock.advance(1);
    assert.equal(pings, 0, 'no ping at the first tick');
    for (let tick = 1; tick <= 3; tick++) {
      await clock.advance(PING_INTERVAL_MS);
      await waitUntil(() => heard.pongs === tick, `pong ${tick} heard`);
      // Its pong makes the socket busy at the next tick; the one after pings again.
      await clock.advance(PING_INTERVAL_MS);
    }
    assert.equal(pings, 3);
    assert.equal(client.readyState, WebSocket.OPEN, 'answered with pongs (ws does that by itself): still open');
  });

  it('does not ping a socket that sends something every interval', async (t) => {
    const { open, clock, heard } = await setup(t);
    const client = await open();
    let pings = 0;
    client.on('ping', () => pings++);
    for (let tick = 1; tick <= 10; tick++) {
      client.send('x');
      await waitUntil(() => heard.messages === tick, `frame ${tick} heard`);
      await clock.advance(PING_INTERVAL_MS);
    }
    assert.equal(pings, 0);
    assert.equal(client.readyState, WebSocket.OPEN);
  });

  it('cuts off a peer that stopped answering at the tick after its unanswered ping, not before', async (t) => {
    const { open, clock } = await setup(t);
    const client = await open();
    // A peer that answers no ping (ws answers through the instance's `pong`, silenced here).
    (client as unknown as { pong: () => void }).pong = () => {};
    let pinged = 0;
    client.on('ping', () => pinged++);
    const closed = new Promise<number>((resolve) => client.once('close', (code) => resolve(code)));
    await clock.advance(PING_INTERVAL_MS); // quiet since it opened
    await clock.advance(PING_INTERVAL_MS); // pinged
    await waitUntil(() => pinged === 1, 'the ping arrived');
    assert.equal(client.readyState, WebSocket.OPEN, 'still open while its ping may be answered');
    await clock.advance(PING_INTERVAL_MS); // silent since the ping: terminated
    assert.equal(await closed, 1006, 'terminated (no closing handshake)');
  });
});

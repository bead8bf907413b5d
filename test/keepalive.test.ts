/**
 * Keepalive on real sockets: a `ws` server on 127.0.0.1 port 0 with a short
 * ping interval (the service's is 30 s), and real `ws` clients.
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { Keepalive } from '../src/servers/keepalive.js';

async function setup(t: { after: (fn: () => unknown) => void }, intervalMs: number) {
  const keepalive = new Keepalive(intervalMs);
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  server.on('connection', (socket) => keepalive.add(socket));
  t.after(() => {
    keepalive.close();
    for (const client of server.clients) client.terminate();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const open = async () => {
    const client = new WebSocket(url);
    await new Promise((resolve) => client.once('open', resolve));
    t.after(() => client.terminate());
    return client;
  };
  return { open };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('keepalive', () => {
  it('pings an idle socket and keeps it while it answers', async (t) => {
    const { open } = await setup(t, 40);
    const client = await open();
    let pings = 0;
    client.on('ping', () => pings++);
    await sleep(400);
    assert.ok(pings >= 2, `${pings} pings`);
    assert.equal(client.readyState, WebSocket.OPEN, 'answered with pongs (ws does that by itself): still open');
  });

  it('does not ping a socket that keeps sending', async (t) => {
    const { open } = await setup(t, 40);
    const client = await open();
    let pings = 0;
    client.on('ping', () => pings++);
    const chatter = setInterval(() => client.send('x'), 10);
    await sleep(300);
    clearInterval(chatter);
    assert.equal(pings, 0);
  });

  it('cuts off a peer that stopped answering', async (t) => {
    const { open } = await setup(t, 40);
    const client = await open();
    // A peer that answers no ping (ws answers through the instance's `pong`, silenced here).
    (client as unknown as { pong: () => void }).pong = () => {};
    const closed = new Promise<number>((resolve) => client.once('close', (code) => resolve(code)));
    const code = await Promise.race([closed, sleep(2000).then(() => -1)]);
    assert.notEqual(code, -1, 'terminated within a few intervals');
  });
});

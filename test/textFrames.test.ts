/**
 * The result frames written straight to the TCP socket under a `ws` server
 * socket (src/servers/textFrames.ts, as clientSocket.ts writes them) must be
 * frames any WebSocket client reads: here a real `ws` client reads them over a
 * real connection on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { textFramePairs, textFrameStart } from '../src/servers/textFrames.js';

/** Writes `bytes` to the TCP socket under a server-side WebSocket, `chunk` bytes per write; resolves with the `count` messages a `ws` client read. */
async function deliver(bytes: Buffer, count: number, chunk = bytes.length): Promise<{ messages: string[]; binary: boolean[] }> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  server.on('connection', (socket) => {
    const tcp = (socket as unknown as { _socket: { write(data: Buffer): boolean } })._socket;
    for (let at = 0; at < bytes.length; at += chunk) tcp.write(bytes.subarray(at, at + chunk));
  });
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const messages: string[] = [];
  const binary: boolean[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      client.on('error', reject);
      client.on('close', (code) => reject(new Error(`closed with ${code} after ${messages.length} messages`)));
      client.on('message', (data: Buffer, isBinary: boolean) => {
        messages.push(data.toString('utf8'));
        binary.push(isBinary);
        if (messages.length === count) resolve();
      });
    });
  } finally {
    client.removeAllListeners('close');
    client.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  return { messages, binary };
}

describe('text frames built for one write', () => {
  it('frames a head and a rest written after it as one text message, at every length class', async () => {
    const head = Buffer.from('{"type":"done","id":"\u6f22",');
    const rests = ['', 'x', 'y'.repeat(100), 'w'.repeat(126), 'v'.repeat(65_535), 'u'.repeat(70_000)].map((rest) => Buffer.from(rest));
    const bytes = Buffer.concat(rests.flatMap((rest) => [textFrameStart(head, rest.length), rest]));
    const { messages } = await deliver(bytes, rests.length);
    assert.deepEqual(messages, rests.map((rest) => head.toString() + rest.toString()));
  });

  it('frames each pair as one text message, at every length class (7-bit, 16-bit and 64-bit lengths)', async () => {
    const heads = ['', '{"type":"result","id":"a",', '{"id":"\u6f22\u5b57",'];
    const tails = ['', 'x', 'y'.repeat(124), 'z'.repeat(125), 'w'.repeat(126), '\u00e9'.repeat(40_000), 'v'.repeat(65_535), 'u'.repeat(70_000)];
    const parts: Buffer[] = [];
    const expected: string[] = [];
    for (const head of heads) {
      for (const tail of tails) {
        parts.push(Buffer.from(head), Buffer.from(tail));
        expected.push(head + tail);
      }
    }
    const bytes = textFramePairs(parts);
    const { messages, binary } = await deliver(bytes, expected.length);
    assert.deepEqual(messages, expected);
    assert.ok(binary.every((b) => !b), 'text frames, not binary');
    // The same bytes arriving a few at a time read the same.
    const small = textFramePairs(parts.slice(0, 10));
    assert.deepEqual((await deliver(small, 5, 3)).messages, expected.slice(0, 5));
  });

  it('makes nothing of nothing, and refuses an odd number of parts', () => {
    assert.equal(textFramePairs([]).length, 0);
    assert.throws(() => textFramePairs([Buffer.from('a')]), /pairs/);
  });
});

/**
 * A `ws` server on 127.0.0.1 port 0 serving each connection with
 * `serveClientSocket` over the checks given, and one real client on it, open:
 * the frames it gets, as they come.
 */
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { createLogger } from '../../src/logger.js';
import { serveClientSocket } from '../../src/servers/clientSocket.js';
import type { ClientSocketDeps } from '../../src/servers/clientSocket.js';
import { ResultRounds } from '../../src/servers/resultRounds.js';

const quiet = createLogger({ logLevel: 'error', logFormat: 'json' });

export async function servedPair(
  t: TestContext,
  checks: ClientSocketDeps['checks'],
  onConnection: (socket: WebSocket) => void = () => {},
  deps: Partial<ClientSocketDeps> = {},
): Promise<{ client: WebSocket; frames: string[] }> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  server.on('connection', (socket) => {
    onConnection(socket);
    serveClientSocket(socket, { checks, maxBatch: 1000, logger: quiet, version: '0.0.0-test', ...deps }, new ResultRounds());
  });
  await new Promise((resolve) => server.once('listening', resolve));
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`, { perMessageDeflate: false });
  t.after(async () => {
    client.terminate();
    for (const socket of server.clients) socket.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const frames: string[] = [];
  client.on('message', (data: Buffer) => frames.push(data.toString()));
  await new Promise((resolve, reject) => client.once('open', resolve).once('error', reject));
  return { client, frames };
}

/**
 * One blog's WebSocket on `/ws`: parse each frame, ask the checks, write answers.
 * Many checks may be in flight on one connection. A bad frame is answered with
 * an error frame and the connection stays open; nothing here touches an actor.
 */
import type { RawData, WebSocket } from 'ws';
import type { CoverChecks } from '../checks/index.js';
import type { Logger } from '../logger.js';
import { doneFrame, parseClientFrame, resultFrame, shortAnswer } from './protocol.js';
import type { ServerFrame } from './protocol.js';

export interface ClientSocketDeps {
  checks: CoverChecks;
  maxBatch: number;
  logger: Logger;
}

/** The TCP socket under a `ws` WebSocket (a field `ws` keeps for itself). */
function tcpOf(socket: WebSocket): { cork(): void; uncork(): void } | undefined {
  return (socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
}

export function serveClientSocket(socket: WebSocket, deps: ClientSocketDeps): void {
  let corked = false;
  const send = (frame: ServerFrame | string) => {
    if (socket.readyState !== socket.OPEN) return;
    // Frames sent in one turn of the event loop leave in one write, not a write each
    // (a herd of answers is thousands of frames at once).
    const tcp = tcpOf(socket);
    if (!corked && tcp) {
      corked = true;
      tcp.cork();
      setImmediate(() => {
        corked = false;
        tcp.uncork();
      });
    }
    socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  };

  socket.on('message', (data: RawData, isBinary: boolean) => {
    if (isBinary) {
      send({ type: 'error', id: null, code: 'bad_request', message: 'send text frames' });
      return;
    }
    const text = (Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)).toString('utf8');
    const parsed = parseClientFrame(text, deps.maxBatch);
    if (!parsed.ok) {
      send({ type: 'error', id: parsed.id, code: parsed.code, message: parsed.message });
      return;
    }
    const { message } = parsed;
    const answer =
      message.type === 'short'
        ? deps.checks.check(message.urls).then((results) => send(shortAnswer(results)))
        : deps.checks
            .check(message.urls, (_index, result) => send(resultFrame(message.id, result)))
            .then((results) => send(doneFrame(message.id, results)));
    answer.catch((error: unknown) => {
      deps.logger.error('check failed', { error });
      send({ type: 'error', id: message.type === 'check' ? message.id : null, code: 'internal_error', message: 'the check failed inside coverhelper; see its log' });
    });
  });

  socket.on('error', (error) => deps.logger.debug('client socket error', { error: error.message }));
}

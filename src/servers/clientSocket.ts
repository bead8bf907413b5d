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
  checks: Pick<CoverChecks, 'check'>;
  maxBatch: number;
  logger: Logger;
  /** Flow control's limit (MAX_URLS_IN_PROGRESS unless a test sets a small one). */
  maxUrlsInProgress?: number;
}

/** The TCP socket under a `ws` WebSocket (a field `ws` keeps for itself). */
function tcpOf(socket: WebSocket): { cork(): void; uncork(): void } | undefined {
  return (socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
}

/**
 * The shortest time between two writes of `result` frames to one socket. A
 * socket hearing of one URL now and then gets each `result` at once; a socket
 * hearing of many (a herd: 500 sockets waiting on the same 200 downloads) gets
 * them gathered into one write per interval instead of a system call per
 * download per socket. A `done` or any other frame first sends what is gathered,
 * so frames keep their order.
 */
export const RESULT_WRITE_INTERVAL_MS = 10;

/**
 * Flow control: while a connection's checks in progress hold this many URLs, the
 * connection is read no further (TCP backpressure reaches the sender); reading
 * resumes once they are down to half. Nothing is dropped or refused: a client
 * that sends 100,000 uncached URLs in one go gets them all answered, while the
 * service holds at most about this many of its URLs in flight, so its memory
 * stays bounded (docs/BENCHMARKS.md, Memory). Checks already read when the
 * limit is reached are still taken, so the bound is soft by one read's worth.
 */
export const MAX_URLS_IN_PROGRESS = 10_000;

export function serveClientSocket(socket: WebSocket, deps: ClientSocketDeps): void {
  let corked = false;
  const write = (frame: string) => {
    if (socket.readyState !== socket.OPEN) return;
    // Frames sent in one turn of the event loop leave in one write, not a write each.
    const tcp = tcpOf(socket);
    if (!corked && tcp) {
      corked = true;
      tcp.cork();
      setImmediate(() => {
        corked = false;
        tcp.uncork();
      });
    }
    socket.send(frame);
  };

  let gathered: string[] = [];
  let lastResultWrite = -Infinity;
  /** Cancels the scheduled write of the gathered results, if one is scheduled. */
  let cancelScheduled: (() => void) | undefined;
  const writeResults = () => {
    cancelScheduled?.();
    cancelScheduled = undefined;
    lastResultWrite = performance.now();
    const frames = gathered;
    gathered = [];
    for (const frame of frames) write(frame);
  };
  const sendResult = (frame: string) => {
    gathered.push(frame);
    if (cancelScheduled !== undefined) return;
    const wait = lastResultWrite + RESULT_WRITE_INTERVAL_MS - performance.now();
    if (wait <= 0) {
      // Not written to lately: this turn's results leave together at the end of the turn.
      const immediate = setImmediate(writeResults);
      cancelScheduled = () => clearImmediate(immediate);
    } else {
      const timer = setTimeout(writeResults, wait);
      cancelScheduled = () => clearTimeout(timer);
    }
  };
  const send = (frame: ServerFrame | string) => {
    if (gathered.length > 0) writeResults();
    write(typeof frame === 'string' ? frame : JSON.stringify(frame));
  };
  socket.on('close', () => {
    cancelScheduled?.();
    cancelScheduled = undefined;
    gathered = [];
  });

  const limit = deps.maxUrlsInProgress ?? MAX_URLS_IN_PROGRESS;
  let urlsInProgress = 0;
  const started = (count: number) => {
    urlsInProgress += count;
    if (urlsInProgress >= limit && !socket.isPaused) socket.pause();
  };
  const finished = (count: number) => {
    urlsInProgress -= count;
    if (urlsInProgress <= limit / 2 && socket.isPaused) socket.resume();
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
    started(message.urls.length);
    const answer =
      message.type === 'short'
        ? deps.checks.check(message.urls).then((results) => send(shortAnswer(results)))
        : deps.checks
            .check(message.urls, (_index, result) => sendResult(resultFrame(message.id, result)))
            .then((results) => send(doneFrame(message.id, results)));
    answer
      .catch((error: unknown) => {
        deps.logger.error('check failed', { error });
        send({ type: 'error', id: message.type === 'check' ? message.id : null, code: 'internal_error', message: 'the check failed inside coverhelper; see its log' });
      })
      .finally(() => finished(message.urls.length));
  });

  socket.on('error', (error) => deps.logger.debug('client socket error', { error: error.message }));
}

/**
 * One blog's WebSocket on `/ws`: parse each frame, ask the checks, write answers.
 * Many checks may be in flight on one connection. A bad frame is answered with
 * an error frame and the connection stays open; nothing here touches an actor.
 */
import type { RawData, WebSocket } from 'ws';
import type { CheckResult, CoverChecks } from '../checks/index.js';
import type { Logger } from '../logger.js';
import { doneFrame, parseClientFrame, resultHead, resultTail, shortAnswer } from './protocol.js';
import type { ServerFrame } from './protocol.js';
import type { ResultRounds } from './resultRounds.js';
import { textFramePairs } from './textFrames.js';

export interface ClientSocketDeps {
  checks: Pick<CoverChecks, 'check'>;
  maxBatch: number;
  logger: Logger;
  /** Flow control's limit (MAX_URLS_IN_PROGRESS unless a test sets a small one). */
  maxUrlsInProgress?: number;
}

interface TcpSocket {
  cork(): void;
  uncork(): void;
  write(data: Buffer): boolean;
}

/** The TCP socket under a `ws` WebSocket (a field `ws` keeps for itself). */
function tcpOf(socket: WebSocket): TcpSocket | undefined {
  return (socket as unknown as { _socket?: TcpSocket })._socket;
}

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

/** What the server keeps of a client socket it serves. */
export interface ServedClient {
  /** Resolves when every check read so far has been answered (at shutdown, before the socket is closed). */
  drained(): Promise<void>;
}

/** Serves one client WebSocket; `rounds` is shared by all of a server's client sockets. */
export function serveClientSocket(socket: WebSocket, deps: ClientSocketDeps, rounds: ResultRounds): ServedClient {
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

  /**
   * The gathered `result` frames' payloads, two buffers each: the check's head and
   * the answer's tail. They leave in `rounds` (resultRounds.ts), framed together in
   * one write to the TCP socket (`textFramePairs`), not through `ws.send` each; a
   * `done` or any other frame first writes what is gathered, so frames keep their order.
   */
  let gathered: Buffer[] = [];
  const writeGathered = () => {
    const parts = gathered;
    gathered = [];
    if (parts.length === 0 || socket.readyState !== socket.OPEN) return;
    const tcp = tcpOf(socket);
    if (tcp) tcp.write(textFramePairs(parts));
    else for (let i = 0; i < parts.length; i += 2) socket.send(Buffer.concat([parts[i]!, parts[i + 1]!]), { binary: false });
  };
  const gatherer = { writeGathered };
  const sendResult = (head: Buffer, result: CheckResult) => {
    gathered.push(head, resultTail(result));
    if (gathered.length === 2) rounds.add(gatherer);
  };
  const send = (frame: ServerFrame | string) => {
    if (gathered.length > 0) {
      rounds.remove(gatherer);
      writeGathered();
    }
    write(typeof frame === 'string' ? frame : JSON.stringify(frame));
  };
  socket.on('close', () => {
    rounds.remove(gatherer);
    gathered = [];
  });

  const limit = deps.maxUrlsInProgress ?? MAX_URLS_IN_PROGRESS;
  let urlsInProgress = 0;
  /** Checks read and not yet answered. */
  const inProgress = new Set<Promise<void>>();
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
    let head: Buffer | undefined;
    const answer =
      message.type === 'short'
        ? deps.checks.check(message.urls).then((results) => send(shortAnswer(results)))
        : deps.checks
            .check(message.urls, (_index, result) => sendResult((head ??= resultHead(message.id)), result))
            .then((results) => send(doneFrame(message.id, results)));
    const answered = answer
      .catch((error: unknown) => {
        deps.logger.error('check failed', { error });
        send({ type: 'error', id: message.type === 'check' ? message.id : null, code: 'internal_error', message: 'the check failed inside coverhelper; see its log' });
      })
      .finally(() => {
        finished(message.urls.length);
        inProgress.delete(answered);
      });
    inProgress.add(answered);
  });

  socket.on('error', (error) => deps.logger.debug('client socket error', { error: error.message }));
  return {
    drained: async () => {
      while (inProgress.size > 0) await Promise.all(inProgress);
    },
  };
}

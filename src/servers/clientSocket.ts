/**
 * One blog's WebSocket on `/ws`: the WebSocket adapter of a `CheckSession`. It
 * sends `hello` on connect, parses each frame with the protocol module, hands
 * checks to the session and frames its answers. A bad frame is answered with an
 * error frame and the connection stays open.
 *
 * One `ReadGate` (outbound.ts) stops reading the socket for either reason: flow
 * control (the session's checks in progress hold too many URLs) or output the
 * peer does not take (more than MAX_UNSENT_BYTES unsent). A socket that stays
 * over that bound for MAX_OVERFULL_MS is closed with 1008 and a log line.
 *
 * The transport's own tricks stay here: `result` frames are gathered per socket
 * and written in rounds (resultRounds.ts), framed by coverhelper into one buffer
 * and one write to the TCP socket (textFrames.ts); frames of one turn leave in
 * one write (cork).
 */
import type { RawData, WebSocket } from 'ws';
import type { CheckResult, HeldCheck, KeptCheck, WrappedChecks } from '../checks/index.js';
import type { Logger } from '../logger.js';
import { CheckSession } from '../sessions/index.js';
import type { SharedChecks } from '../sessions/index.js';
import { doneFrameBytes, doneHead, errorFrame, helloFrame, MAX_FRAME_BYTES, parseClientFrame, resultHead, resultTail, sameDoneTail, shortAnswer } from '@coverhelper/client/protocol';
import type { MessageId } from '@coverhelper/client/protocol';
import type { ResultRounds } from './resultRounds.js';
import { textFramePairs, textFrameStart } from './textFrames.js';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { ReadGate, UnsentGuard, unsentLimits } from './outbound.js';
import { plainIdEnd } from './frameMemo.js';
import type { FrameMemo } from './frameMemo.js';
import type { UnsentLimits } from './outbound.js';

export interface ClientSocketDeps {
  checks: WrappedChecks;
  /** Check frames answered from memory, kept to answer the same frame again (shared by a server's client sockets). */
  frames?: FrameMemo;
  /** Checks in progress that the same frame from other sockets joins (shared by a server's client sockets). */
  shared?: SharedChecks;
  maxBatch: number;
  logger: Logger;
  /** The service's version, for `hello`. */
  version: string;
  /** Flow control's limit (the session's default unless a test sets a small one). */
  maxUrlsInProgress?: number;
  /** The bound on unsent output (outbound.ts's, unless a test sets others). */
  unsentLimits?: UnsentLimits;
  /** The one clock (default the system's): the unsent-output bound's timers, result rounds' timing is the server's. */
  clock?: Clock;
}

/**
 * Below this much unsent output a `done` frame may be cut from a shared slab
 * (`doneFrameBytes`): a slab lives while any frame cut from it is unsent, so the
 * slabs a client that stops reading can hold stay within about 8× this (the
 * frames ahead of the first one not pooled), beside its unsent bound.
 */
const POOLED_BELOW_UNSENT = 512 * 1024;

interface TcpSocket {
  cork(): void;
  uncork(): void;
  write(data: Buffer): boolean;
  once(event: 'drain', listener: () => void): void;
}

/** The TCP socket under a `ws` WebSocket (a field `ws` keeps for itself). */
function tcpOf(socket: WebSocket): TcpSocket | undefined {
  return (socket as unknown as { _socket?: TcpSocket })._socket;
}

/** What the server keeps of a client socket it serves. */
export interface ServedClient {
  /** Resolves when every check read so far has been answered (at shutdown, before the socket is closed). */
  drained(): Promise<void>;
}

/** A check as the session carries it: its id and the head of its `result` frames (or the short form). */
type Tag = { id: MessageId; head: Buffer | undefined } | { id: null; head: undefined };

/**
 * The guard of a socket's unsent output: a peer that leaves more than the limit
 * unread for too long is closed (1008), read again so its close frame can end
 * the handshake, and cut off if it still reads nothing.
 */
function unsentGuardOf(socket: WebSocket, gate: ReadGate, deps: ClientSocketDeps): UnsentGuard {
  const limits = deps.unsentLimits ?? unsentLimits();
  const clock = deps.clock ?? systemClock;
  return new UnsentGuard(
    {
      // ws counts its own queue and the TCP socket's write buffer, where textFrames' writes go too.
      unsent: () => socket.bufferedAmount,
      onceDrained: (listener) => {
        const tcp = tcpOf(socket);
        if (tcp) tcp.once('drain', listener);
      },
    },
    gate,
    limits,
    (unsent) => {
      deps.logger.warn('client socket closed: it does not read what it is sent', { unsent, limitBytes: limits.maxUnsentBytes, forMs: limits.maxOverfullMs });
      socket.close(1008, 'too much unsent output: read the socket');
      // Read again, so the peer's close frame can end the handshake; its other frames are dropped unread (serveClientSocket's message handler).
      gate.release('unsent');
      gate.release('urls');
      // The close frame waits behind what is unsent: a peer that still reads nothing is cut off.
      clock.setTimeout(() => socket.terminate(), limits.closeGraceMs).unref();
    },
    clock,
  );
}

/** Whether a kept check's answer holds again (false, and logged, should asking throw: then the frame is parsed as always). */
function againOf({ checks, logger }: ClientSocketDeps): (kept: HeldCheck) => boolean {
  return (kept) => {
    try {
      return checks.checkAgain?.(kept) ?? false;
    } catch (error) {
      logger.error('check from memory failed', { error });
      return false;
    }
  };
}

/**
 * A check frame's key among the checks in progress that other sockets join:
 * its text after a plain id (the same bytes there say the same URLs, whatever
 * that id), or none for another form. Only for frames with no `@` (no suffix
 * to render: a render counts against its client address's limit).
 */
function sharedBy(shared: SharedChecks | undefined, bytes: Buffer, text: string): { shared?: { checks: SharedChecks; key: string } } {
  if (shared === undefined) return {};
  const end = plainIdEnd(bytes);
  // Up to the id's end the frame is ASCII: its byte and character offsets agree.
  return end < 0 ? {} : { shared: { checks: shared, key: text.slice(end) } };
}

/**
 * How a client socket's frames leave, in order: frames sent in one turn of the
 * event loop in one write (cork); `result` frames gathered and written in
 * `rounds`, framed together in one write to the TCP socket, not through
 * `ws.send` each; any other frame first writes what is gathered.
 */
function frameWriter(socket: WebSocket, guard: UnsentGuard, rounds: ResultRounds) {
  let corked = false;
  /** The TCP socket, corked until the end of this turn; undefined when there is none (then through `ws`). */
  const corkedTcp = (): TcpSocket | undefined => {
    const tcp = tcpOf(socket);
    if (!corked && tcp) {
      corked = true;
      tcp.cork();
      setImmediate(() => {
        corked = false;
        tcp.uncork();
      });
    }
    return tcp;
  };
  /** A frame's payload: a string, or its UTF-8 bytes (sent as a text frame all the same). */
  const write = (frame: string | Buffer) => {
    if (socket.readyState !== socket.OPEN) return;
    corkedTcp();
    socket.send(frame, { binary: false });
    guard.wrote();
  };

  /** The gathered `result` frames' payloads, two buffers each: the check's head and the answer's tail. */
  let gathered: Buffer[] = [];
  const writeGathered = () => {
    const parts = gathered;
    gathered = [];
    if (parts.length === 0 || socket.readyState !== socket.OPEN) return;
    const tcp = tcpOf(socket);
    if (tcp) tcp.write(textFramePairs(parts));
    else for (let i = 0; i < parts.length; i += 2) socket.send(Buffer.concat([parts[i]!, parts[i + 1]!]), { binary: false });
    guard.wrote();
  };
  const gatherer = { writeGathered };
  const flushGathered = () => {
    if (gathered.length === 0) return;
    rounds.remove(gatherer);
    writeGathered();
  };
  return {
    sendResult: (head: Buffer, result: CheckResult) => {
      gathered.push(head, resultTail(result));
      if (gathered.length === 2) rounds.add(gatherer);
    },
    send: (frame: string | Buffer) => {
      flushGathered();
      write(frame);
    },
    /**
     * One text frame whose payload is `head` then `tail` (a buffer other sockets
     * are sent too): written to the TCP socket as two parts, the tail not copied.
     */
    sendParts: (head: Buffer, tail: Buffer) => {
      flushGathered();
      if (socket.readyState !== socket.OPEN) return;
      const tcp = corkedTcp();
      if (tcp === undefined) return write(Buffer.concat([head, tail]));
      tcp.write(textFrameStart(head, tail.length));
      tcp.write(tail);
      guard.wrote();
    },
    /** The socket closed: nothing gathered is written. */
    close: () => {
      rounds.remove(gatherer);
      gathered = [];
    },
  };
}

/** Serves one client WebSocket; `rounds` is shared by all of a server's client sockets. */
export function serveClientSocket(socket: WebSocket, deps: ClientSocketDeps, rounds: ResultRounds, address?: string): ServedClient {
  const gate = new ReadGate(socket);
  const guard = unsentGuardOf(socket, gate, deps);
  const out = frameWriter(socket, guard, rounds);
  const { send, sendResult } = out;

  const session = new CheckSession<Tag>(
    deps.checks,
    {
      result: (tag, _index, result) => {
        if (tag.id !== null) sendResult((tag.head ??= resultHead(tag.id)), result);
      },
      // A frame cut from a shared slab keeps the slab alive while unsent: pooled only while little is unsent.
      done: (tag, results) => {
        if (tag.id === null) return send(shortAnswer(results));
        // The same answers as the frame before (a shared check's members): their tail sent as it is.
        const tail = sameDoneTail(results);
        if (tail !== undefined) out.sendParts(doneHead(tag.id), tail);
        else send(doneFrameBytes(tag.id, results, socket.bufferedAmount < POOLED_BELOW_UNSENT));
      },
      failed: (tag) => send(errorFrame(tag.id, 'internal_error', 'the check failed inside coverhelper; see its log')),
      hold: () => gate.hold('urls'),
      release: () => gate.release('urls'),
    },
    deps.logger,
    { kind: 'socket', address, answerNow: true, ...(deps.maxUrlsInProgress === undefined ? {} : { maxUrlsInProgress: deps.maxUrlsInProgress }) },
  );

  socket.on('close', () => {
    guard.close();
    session.close();
    out.close();
  });

  const { frames } = deps;
  const again = againOf(deps);

  socket.on('message', (data: RawData, isBinary: boolean) => {
    // A socket being closed takes no more checks.
    if (socket.readyState !== socket.OPEN) return;
    if (isBinary) {
      send(errorFrame(null, 'bad_request', 'send text frames'));
      return;
    }
    const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    // The same check frame as one answered from memory before: its kept answer, when that still holds.
    const answered = frames?.answer(bytes, again);
    if (answered !== undefined) {
      out.sendParts(answered.head, answered.tail);
      return;
    }
    const text = bytes.toString('utf8');
    const parsed = parseClientFrame(text, deps.maxBatch);
    if (!parsed.ok) {
      deps.logger.debug('bad frame refused', { code: parsed.code, reason: parsed.message });
      send(errorFrame(parsed.id, parsed.code, parsed.message));
      return;
    }
    const { message } = parsed;
    // One search of the frame: with no `@` in it, no URL has a suffix to read.
    // An escape (`\u0040`) can spell an '@' the text does not show.
    const noAt = !text.includes('@') && !text.includes('\\u');
    if (message.type === 'short') session.check(message.urls, { id: null, head: undefined }, { noAt });
    else {
      const { id, urls } = message;
      // A check answered from memory is kept for the next frame that asks it in the same words.
      const keep = frames !== undefined && noAt && typeof id === 'string' && frames.keeps(urls.length) ? (kept: KeptCheck) => frames.keep(bytes, text, id, urls, kept) : undefined;
      session.check(urls, { id, head: undefined }, { results: true, noAt, ...(keep && { keep }), ...(noAt && sharedBy(deps.shared, bytes, text)) });
    }
  });

  socket.on('error', (error) => deps.logger.debug('client socket error', { error: error.message }));
  send(helloFrame({ version: deps.version, maxBatch: deps.maxBatch, maxFrameBytes: MAX_FRAME_BYTES }));
  return { drained: () => session.drained() };
}

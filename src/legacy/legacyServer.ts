/**
 * The 2019 TCP protocol on `--legacy-port`: the TCP adapter of a `CheckSession`.
 * Each connection is one `LegacyConversation` (the protocol's state machine)
 * whose check runs in the connection's session, so its downloads, limits,
 * statistics and the admin stream are the same as `/ws`'s.
 *
 * A bad command, a length that does not match or a URL string over the limits
 * closes that connection only, with a log line. A client that hangs up at any
 * step leaves nothing behind: its session drops the answers, and the downloads it
 * started go on and are stored. A connection that says nothing for
 * IDLE_TIMEOUT_MS (outside a running check) is closed. The port has no
 * authentication, as in 2019.
 *
 * Memory: one connection holds at most its announced URL string (8 MiB at most)
 * and a few bytes sent ahead while its check runs (conversation.ts). All of them
 * together announce at most MAX_LEGACY_BUFFERED_BYTES of unfinished URL strings
 * (each counts from its `C<n>` until its check starts, for its n): when an
 * announcement would pass the total, the connection with the largest one is
 * closed (with a log line), the newest of equals, before its bytes are read. So
 * the small strings of honest blogs go on, and a flood of large announcements is
 * cut at its `C`. A URL string must also arrive whole within
 * URL_STRING_DEADLINE_MS of its `C`, however it trickles.
 */
import net from 'node:net';
import type { CoverChecks } from '../checks/index.js';
import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';
import type { Logger } from '../logger.js';
import { CheckSession } from '../sessions/index.js';
import type { Stats } from '../stats.js';
import { LegacyConversation, MAX_URL_STRING_BYTES } from './conversation.js';
import { listenOn } from '../startChecks.js';
import type { CheckResult } from '../../client/src/protocol.js';

/** How long a connection may stay silent while no check of it runs. */
export const IDLE_TIMEOUT_MS = 60_000;
/** How long a refused or finished connection has to close its side before it is cut. */
const CLOSE_GRACE_MS = 2000;
/** The most bytes of unfinished URL strings all connections together announce: 64 MiB (eight strings of the largest size). */
export const MAX_LEGACY_BUFFERED_BYTES = 64 * 1024 * 1024;
/** How long a connection has from its `C` to the last byte of its URL string. */
export const URL_STRING_DEADLINE_MS = 60_000;

export interface LegacyServerDeps {
  checks: Pick<CoverChecks, 'check' | 'leave'>;
  logger: Logger;
  stats: Stats;
  maxBatch: number;
  idleTimeoutMs?: number;
  /** MAX_LEGACY_BUFFERED_BYTES unless a test sets another. */
  maxBufferedBytes?: number;
  /** URL_STRING_DEADLINE_MS unless a test sets another. */
  urlStringDeadlineMs?: number;
  /** The one clock (default the system's): the URL string's deadline and the close graces (the idle timeout is the socket's own). */
  clock?: Clock;
}

/** States in which a connection is sending its command and URL string. */
const SENDING = new Set(['digits', 'length', 'urls']);

/** What the 2019 service answered for a URL: the cover URL, the URL itself when not fetched, nothing when it failed. */
export function legacyAnswer(result: CheckResult): string {
  if (result.status === 'ok') return result.coverUrl ?? '';
  return result.status === 'skipped' ? result.url : '';
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\./.test(host);
}

export interface LegacyServer {
  port: number;
  /** Takes no more connections (the first step of a shutdown). */
  stopAccepting(): void;
  /** Stops taking connections, lets every check in progress be answered (up to `graceMs`), then closes every connection. */
  close(graceMs?: number): Promise<void>;
}

export async function startLegacyServer(host: string, port: number, deps: LegacyServerDeps): Promise<LegacyServer> {
  const { logger, stats } = deps;
  const open = new Map<net.Socket, CheckSession<null>>();
  const maxBuffered = deps.maxBufferedBytes ?? MAX_LEGACY_BUFFERED_BYTES;
  const clock = deps.clock ?? systemClock;
  /** Bytes of unfinished URL strings each connection announced, and their sum. */
  const held = new Map<net.Socket, { bytes: number; remote: string }>();
  let heldTotal = 0;
  const setHeld = (socket: net.Socket, bytes: number) => {
    const entry = held.get(socket);
    if (!entry) return;
    heldTotal += bytes - entry.bytes;
    entry.bytes = bytes;
  };
  /** Over the total: the connections with the largest announcements (the newest of equals) are closed until it fits. */
  const keepWithinTotal = () => {
    while (heldTotal > maxBuffered) {
      let largest: net.Socket | undefined;
      let most = 0;
      for (const [socket, entry] of held) {
        if (entry.bytes > 0 && entry.bytes >= most) {
          most = entry.bytes;
          largest = socket;
        }
      }
      if (largest === undefined) return;
      logger.warn('legacy connection closed: the URL strings announced on the legacy port are over their total, and this one is the largest', {
        remote: held.get(largest)!.remote,
        bytes: most,
        totalBytes: heldTotal,
        limitBytes: maxBuffered,
      });
      setHeld(largest, 0);
      held.delete(largest);
      largest.destroy();
    }
  };

  const server = net.createServer((socket) => {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    stats.connected('legacy', (closed) => socket.once('close', closed));
    socket.setNoDelay(true);
    logger.debug('legacy connection', { remote });

    const closeSoon = () => {
      socket.end();
      clock.setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
    };
    const conversation = new LegacyConversation(
      {
        write: (text) => {
          if (!socket.destroyed) socket.write(text);
        },
        check: (urls) => session.check(urls, null, { results: true }),
        over: closeSoon,
        refuse: (reason) => {
          logger.warn(`legacy connection closed: ${reason}`, { remote });
          closeSoon();
        },
      },
      { maxUrls: deps.maxBatch, maxBytes: MAX_URL_STRING_BYTES },
    );
    const session = new CheckSession<null>(
      deps.checks,
      {
        result: () => conversation.answeredOne(),
        done: (_tag, results) => conversation.answered(results.map(legacyAnswer)),
        failed: () => {
          logger.warn('legacy connection closed: the check failed inside coverhelper', { remote });
          socket.destroy();
        },
        hold: () => socket.pause(),
        release: () => socket.resume(),
      },
      logger,
      // The 2019 protocol's clients may hang up at any step and their downloads still finish and are stored.
      { kind: 'legacy', keepOnClose: true },
    );
    open.set(socket, session);
    held.set(socket, { bytes: 0, remote });
    let deadline: ClockTimer | undefined;

    socket.setTimeout(deps.idleTimeoutMs ?? IDLE_TIMEOUT_MS, () => {
      if (conversation.state === 'working') return;
      logger.info('legacy connection closed: silent for too long', { remote, state: conversation.state });
      socket.destroy();
    });
    socket.on('data', (chunk: Buffer) => {
      conversation.receive(chunk);
      setHeld(socket, conversation.urlStringBytes);
      keepWithinTotal();
      const sending = SENDING.has(conversation.state);
      if (sending && deadline === undefined && !socket.destroyed) {
        const ms = deps.urlStringDeadlineMs ?? URL_STRING_DEADLINE_MS;
        deadline = clock.setTimeout(() => {
          if (!SENDING.has(conversation.state)) return;
          logger.info(`legacy connection closed: its URL string did not arrive whole within ${ms / 1000} s`, { remote, state: conversation.state, bytes: conversation.urlStringBytes });
          socket.destroy();
        }, ms);
        deadline.unref();
      } else if (!sending && deadline !== undefined) {
        clock.clearTimeout(deadline);
        deadline = undefined;
      }
    });
    socket.on('error', (error) => logger.debug('legacy socket error', { remote, error: error.message }));
    socket.once('close', () => {
      clock.clearTimeout(deadline);
      setHeld(socket, 0);
      held.delete(socket);
      session.close();
      open.delete(socket);
      if (conversation.state !== 'over' && conversation.state !== 'refused') logger.debug('legacy client hung up', { remote, state: conversation.state });
    });
  });

  try {
    await listenOn(server, port, host);
  } catch (error) {
    server.close();
    throw error;
  }
  const bound = (server.address() as net.AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  logger.info(`legacy protocol listening on tcp://${shown}:${bound}`);
  if (!isLoopback(host)) {
    logger.warn('the legacy port has no authentication, as in 2019, and listens on a non-loopback address: anyone who reaches it can make the service fetch covers', { host, port: bound });
  }

  let accepting = true;
  const stopAccepting = () => {
    if (!accepting) return;
    accepting = false;
    server.close();
  };
  return {
    port: bound,
    stopAccepting,
    async close(graceMs = 1000) {
      stopAccepting();
      let waited: ClockTimer | undefined;
      await Promise.race([
        Promise.all([...open.values()].map((session) => session.drained())),
        new Promise<void>((resolve) => (waited = clock.setTimeout(resolve, graceMs))),
      ]);
      clock.clearTimeout(waited);
      for (const socket of open.keys()) socket.destroy();
    },
  };
}

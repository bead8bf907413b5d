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
import { listenOn } from '../preflight.js';
import type { CheckResult } from '@coverhelper/client/protocol';

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

/**
 * Bytes of unfinished URL strings each legacy connection announced, and their sum.
 * Over the total, the connections with the largest announcements (the newest of
 * equals) are closed until it fits.
 */
class AnnouncedBytes {
  private readonly held = new Map<net.Socket, { bytes: number; remote: string }>();
  private total = 0;

  constructor(
    private readonly maxTotal: number,
    private readonly logger: Logger,
  ) {}

  add(socket: net.Socket, remote: string): void {
    this.held.set(socket, { bytes: 0, remote });
  }

  remove(socket: net.Socket): void {
    this.update(socket, 0);
    this.held.delete(socket);
  }

  /** `socket` now announces `bytes`; closes the largest while the sum is over the total. */
  set(socket: net.Socket, bytes: number): void {
    this.update(socket, bytes);
    while (this.total > this.maxTotal) {
      let largest: net.Socket | undefined;
      let most = 0;
      for (const [each, entry] of this.held) {
        if (entry.bytes > 0 && entry.bytes >= most) {
          most = entry.bytes;
          largest = each;
        }
      }
      if (largest === undefined) return;
      this.logger.warn('legacy connection closed: the URL strings announced on the legacy port are over their total, and this one is the largest', {
        remote: this.held.get(largest)!.remote,
        bytes: most,
        totalBytes: this.total,
        limitBytes: this.maxTotal,
      });
      this.remove(largest);
      largest.destroy();
    }
  }

  private update(socket: net.Socket, bytes: number): void {
    const entry = this.held.get(socket);
    if (!entry) return;
    this.total += bytes - entry.bytes;
    entry.bytes = bytes;
  }
}

/** What every connection of one legacy server shares. */
interface LegacyShared {
  open: Map<net.Socket, CheckSession<null>>;
  held: AnnouncedBytes;
  clock: Clock;
}

/** One 2019-protocol connection: its conversation, its check session, its deadlines. */
function serveLegacySocket(socket: net.Socket, deps: LegacyServerDeps, { open, held, clock }: LegacyShared): void {
  const { logger, stats } = deps;
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
  held.add(socket, remote);
  let deadline: ClockTimer | undefined;

  socket.setTimeout(deps.idleTimeoutMs ?? IDLE_TIMEOUT_MS, () => {
    if (conversation.state === 'working') return;
    logger.info('legacy connection closed: silent for too long', { remote, state: conversation.state });
    socket.destroy();
  });
  socket.on('data', (chunk: Buffer) => {
    conversation.receive(chunk);
    held.set(socket, conversation.urlStringBytes);
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
    held.remove(socket);
    session.close();
    open.delete(socket);
    if (conversation.state !== 'over' && conversation.state !== 'refused') logger.debug('legacy client hung up', { remote, state: conversation.state });
  });
}

export async function startLegacyServer(host: string, port: number, deps: LegacyServerDeps): Promise<LegacyServer> {
  const { logger } = deps;
  const open = new Map<net.Socket, CheckSession<null>>();
  const clock = deps.clock ?? systemClock;
  const held = new AnnouncedBytes(deps.maxBufferedBytes ?? MAX_LEGACY_BUFFERED_BYTES, logger);
  const server = net.createServer((socket) => serveLegacySocket(socket, deps, { open, held, clock }));

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

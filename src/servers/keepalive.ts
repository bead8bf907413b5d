/**
 * Pings idle WebSockets (docs/PROTOCOL.md: every 30 s) and cuts off the ones that stopped
 * answering. One timer for all of a server's sockets, not one per socket.
 *
 * Each socket is, at each tick:
 *   busy     something arrived since the last tick (a frame or a pong): nothing to do
 *   idle     nothing arrived: it is pinged
 *   silent   it was pinged at the last tick and nothing arrived since: the peer is
 *            gone (a dropped network leaves no FIN) and the socket is terminated
 */
import type { WebSocket } from 'ws';
import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';

export const PING_INTERVAL_MS = 30_000;

export class Keepalive {
  /** Each socket and whether it was pinged at the last tick with no answer yet. */
  private readonly sockets = new Map<WebSocket, { heard: boolean; pinged: boolean }>();
  private readonly timer: ClockTimer;

  constructor(intervalMs = PING_INTERVAL_MS, private readonly clock: Clock = systemClock) {
    this.timer = clock.setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  /** Watches `socket` until it closes. */
  add(socket: WebSocket): void {
    const state = { heard: true, pinged: false };
    this.sockets.set(socket, state);
    const heard = () => {
      state.heard = true;
      state.pinged = false;
    };
    socket.on('message', heard);
    socket.on('pong', heard);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private tick(): void {
    for (const [socket, state] of this.sockets) {
      if (state.heard) {
        state.heard = false;
        continue;
      }
      if (state.pinged) {
        socket.terminate();
        continue;
      }
      state.pinged = true;
      socket.ping();
    }
  }

  close(): void {
    this.clock.clearInterval(this.timer);
    this.sockets.clear();
  }
}

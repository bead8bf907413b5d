/**
 * What a client socket may hold for a peer that does not read, and the one
 * switch that stops reading a socket.
 *
 * A socket is read no further while any reason holds its `ReadGate`:
 *   urls     its checks in progress hold too many URLs (flow control,
 *            sessions/checkSession.ts: 10,000, read again at 5,000)
 *   unsent   the bytes written to it and not yet taken by the kernel (the `ws`
 *            send queue and the TCP socket's write buffer, which the `result`
 *            frames of textFrames.ts go to directly) are over MAX_UNSENT_BYTES;
 *            read again once they are all taken (the TCP socket's `drain`)
 *
 * Reading no further means the peer's next checks wait in its own buffers, so
 * what the service holds for one socket is about MAX_UNSENT_BYTES plus the
 * answers of the checks already read. A socket that stays over the bound for
 * MAX_OVERFULL_MS is closed (1008, with a log line): its peer reads nothing.
 */
import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';

/** Unsent bytes past which a socket is read no further: 4 MiB. */
export const MAX_UNSENT_BYTES = 4 * 1024 * 1024;
/** How long a socket may stay over MAX_UNSENT_BYTES before it is closed. */
export const MAX_OVERFULL_MS = 30_000;
/** After the close frame (queued behind what is unsent), how long the peer has before the socket is cut off. */
export const OVERFULL_CLOSE_GRACE_MS = 5_000;

export interface UnsentLimits {
  maxUnsentBytes: number;
  maxOverfullMs: number;
  /** After the close frame, how long before the socket is cut off. */
  closeGraceMs: number;
}

/**
 * The limits: the constants above, unless the environment of a test process
 * sets COVERHELPER_TEST_MAX_UNSENT_BYTES, COVERHELPER_TEST_MAX_OVERFULL_MS or
 * COVERHELPER_TEST_OVERFULL_CLOSE_GRACE_MS (read once; unset in normal use).
 */
export function unsentLimits(env: NodeJS.ProcessEnv = process.env): UnsentLimits {
  const read = (name: string, fallback: number) => {
    const value = Number(env[name]);
    return env[name] !== undefined && Number.isSafeInteger(value) && value > 0 ? value : fallback;
  };
  return {
    maxUnsentBytes: read('COVERHELPER_TEST_MAX_UNSENT_BYTES', MAX_UNSENT_BYTES),
    maxOverfullMs: read('COVERHELPER_TEST_MAX_OVERFULL_MS', MAX_OVERFULL_MS),
    closeGraceMs: read('COVERHELPER_TEST_OVERFULL_CLOSE_GRACE_MS', OVERFULL_CLOSE_GRACE_MS),
  };
}

export type HoldReason = 'urls' | 'unsent';

/** Pauses a socket while any reason holds it; resumes it when the last one lets go. */
export class ReadGate {
  private readonly reasons = new Set<HoldReason>();

  constructor(private readonly socket: { pause(): void; resume(): void }) {}

  get held(): boolean {
    return this.reasons.size > 0;
  }

  hold(reason: HoldReason): void {
    if (this.reasons.has(reason)) return;
    this.reasons.add(reason);
    if (this.reasons.size === 1) this.socket.pause();
  }

  release(reason: HoldReason): void {
    if (!this.reasons.delete(reason)) return;
    if (this.reasons.size === 0) this.socket.resume();
  }
}

/** The socket an `UnsentGuard` watches. */
export interface WatchedOutput {
  /** Bytes written and not yet taken by the kernel. */
  unsent(): number;
  /** Calls `listener` once, when everything written has been taken. */
  onceDrained(listener: () => void): void;
}

/**
 * Holds the gate with `unsent` while the socket's unsent bytes are over the
 * bound, and calls `overfull` if they stay over it for `maxOverfullMs`.
 *
 * States:
 *   under   the unsent bytes are within the bound (as of the last `wrote`)
 *   over    past the bound: the gate is held, a timer runs; the socket's drain
 *           goes back to `under` (gate released), the timer to `closed`
 *   closed  `overfull` was called, or the socket closed (`close`): nothing more
 */
export class UnsentGuard {
  private state: 'under' | 'over' | 'closed' = 'under';
  private timer: ClockTimer | undefined;

  constructor(
    private readonly output: WatchedOutput,
    private readonly gate: ReadGate,
    private readonly limits: UnsentLimits,
    private readonly overfull: (unsent: number) => void,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Something was written: checks the bound. */
  wrote(): void {
    if (this.state !== 'under' || this.output.unsent() <= this.limits.maxUnsentBytes) return;
    this.state = 'over';
    this.gate.hold('unsent');
    this.timer = this.clock.setTimeout(() => {
      if (this.state !== 'over') return;
      this.state = 'closed';
      this.overfull(this.output.unsent());
    }, this.limits.maxOverfullMs);
    this.timer.unref();
    this.output.onceDrained(() => {
      if (this.state !== 'over') return;
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
      this.state = 'under';
      this.gate.release('unsent');
      // Whatever was written meanwhile is taken too, but check anyway.
      this.wrote();
    });
  }

  close(): void {
    this.state = 'closed';
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}

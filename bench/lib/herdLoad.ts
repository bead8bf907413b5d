/**
 * The herd's clients: many WebSockets opened a few dozen at a time, and one
 * check sent on all of them at once, timed until every socket has its `done`.
 * Used by bench/herd.ts (one node) and bench/cluster.ts (sockets spread over
 * nodes). A frame is recognised by its first bytes; nothing is parsed.
 */
import { checkFrame, openSocket } from './wsLoad.js';
import type WebSocket from 'ws';

/** Opens `count` sockets, a few dozen at a time. */
export async function openMany(url: string, count: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  while (sockets.length < count) {
    const chunk = Math.min(50, count - sockets.length);
    sockets.push(...(await Promise.all(Array.from({ length: chunk }, () => openSocket(url)))));
  }
  return sockets;
}

export interface HerdRun {
  /** From the first send to the last `done`. */
  ms: number;
  /** Sockets whose `done` said every URL was ok. */
  ok: number;
  /** `result` frames received in all. */
  results: number;
  /** CPU seconds the measuring client (this process) used meanwhile. */
  clientCpu: number;
}

/**
 * Sends the same check on every socket at once; resolves when every socket has
 * its `done`, with the time from the first send and how many answers were ok.
 * With `capture`, the first socket's frames are kept there as received.
 */
export function askAll(sockets: WebSocket[], urls: string[], timeoutMs: number, capture?: Buffer[]): Promise<HerdRun> {
  const frame = checkFrame('h00000000', urls);
  const okHead = `"ok":${urls.length},`;
  return new Promise((resolve, reject) => {
    let done = 0;
    let ok = 0;
    let results = 0;
    const listeners = new Map<WebSocket, (data: Buffer) => void>();
    const timer = setTimeout(() => {
      for (const [ws, listener] of listeners) ws.off('message', listener);
      reject(new Error(`herd: ${sockets.length - done} sockets without done after ${timeoutMs} ms`));
    }, timeoutMs);
    const start = performance.now();
    const cpu = process.cpuUsage();
    for (const ws of sockets) {
      const keep = capture !== undefined && ws === sockets[0];
      const listener = (data: Buffer) => {
        if (keep) capture.push(Buffer.from(data));
        const head = data.toString('latin1', 0, 60);
        if (head.startsWith('{"type":"result"')) {
          results++;
          return;
        }
        done++;
        if (head.startsWith('{"type":"done"') && head.includes(okHead)) ok++;
        if (done === sockets.length) {
          const elapsed = performance.now() - start;
          clearTimeout(timer);
          for (const [w, l] of listeners) w.off('message', l);
          const used = process.cpuUsage(cpu);
          resolve({ ms: elapsed, ok, results, clientCpu: (used.user + used.system) / 1e6 });
        }
      };
      listeners.set(ws, listener);
      ws.on('message', listener);
    }
    for (const ws of sockets) ws.send(frame, { binary: false });
  });
}

/**
 * A look inside the running service without changing it: the service is
 * started with `--inspect=127.0.0.1:0` (through NODE_OPTIONS), and this client
 * speaks the DevTools protocol to it over its loopback WebSocket.
 *
 * - `heap()`: forces a full GC, then V8's used and total heap.
 * - `liveActors()`: counts the XState actors still in the heap, by asking V8
 *   for every object whose prototype is xstate's `Actor.prototype`, grouped by
 *   machine id. The service loads xstate's CommonJS build (its `import` entry
 *   wraps `xstate.cjs.js`), so `require('xstate')` from the repository root
 *   hands back the very module instance the service uses. (A dynamic
 *   `import()` is not available to the inspector's evaluate.)
 *
 * Close it before stopping the service: a process with a debugger attached
 * waits for it to go at exit.
 */
import WebSocket from 'ws';
import { repoRoot } from './paths.js';

interface Pending {
  resolve: (value: Record<string, unknown>) => void;
  reject: (error: Error) => void;
}

export class Inspector {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { id?: number; result?: Record<string, unknown>; error?: { message: string } };
      if (message.id === undefined) return;
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.error) waiter.reject(new Error(message.error.message));
      else waiter.resolve(message.result ?? {});
    });
  }

  /** Attaches to the process whose stderr carried `Debugger listening on ws://…`. */
  static async attach(stderr: () => string, timeoutMs = 10_000): Promise<Inspector> {
    const deadline = Date.now() + timeoutMs;
    let url: string | undefined;
    while (!(url = /Debugger listening on (ws:\/\/127\.0\.0\.1:\d+\/\S+)/.exec(stderr())?.[1])) {
      if (Date.now() > deadline) throw new Error(`no inspector URL on the service's stderr: ${stderr()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new Inspector(ws);
  }

  call(method: string, params: Record<string, unknown> = {}, timeoutMs = 120_000): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Listens to the protocol's events (`HeapProfiler.addHeapSnapshotChunk`, …); returns the unsubscribe. */
  onEvent(listener: (method: string, params: Record<string, unknown>) => void): () => void {
    const handler = (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { method?: string; params?: Record<string, unknown> };
      if (message.method) listener(message.method, message.params ?? {});
    };
    this.ws.on('message', handler);
    return () => this.ws.off('message', handler);
  }

  async gc(): Promise<void> {
    await this.call('HeapProfiler.enable');
    await this.call('HeapProfiler.collectGarbage');
    await this.call('HeapProfiler.collectGarbage');
  }

  /** V8 heap in use and reserved after a full GC, bytes. */
  async heap(): Promise<{ used: number; total: number }> {
    await this.gc();
    const usage = (await this.call('Runtime.getHeapUsage')) as { usedSize: number; totalSize: number };
    return { used: usage.usedSize, total: usage.totalSize };
  }

  /** Live XState actors by machine id (`download`, `supervisor`, …). */
  async liveActors(): Promise<Record<string, number>> {
    await this.call('Runtime.enable');
    const proto = (await this.call('Runtime.evaluate', {
      expression: `process.getBuiltinModule('node:module').createRequire(${JSON.stringify(`${repoRoot}/package.json`)})('xstate').Actor.prototype`,
      objectGroup: 'bench',
    })) as { result: { objectId?: string }; exceptionDetails?: unknown };
    if (proto.exceptionDetails || !proto.result.objectId) throw new Error(`could not reach xstate's Actor from inside: ${JSON.stringify(proto.exceptionDetails ?? proto.result)}`);
    const found = (await this.call('Runtime.queryObjects', { prototypeObjectId: proto.result.objectId, objectGroup: 'bench' })) as {
      objects: { objectId: string };
    };
    const counted = (await this.call('Runtime.callFunctionOn', {
      objectId: found.objects.objectId,
      functionDeclaration:
        'function () { const by = {}; for (const a of this) { const id = (a.logic && a.logic.id) || "(other)"; by[id] = (by[id] || 0) + 1; } return JSON.stringify(by); }',
      returnByValue: true,
    })) as { result: { value: string } };
    await this.call('Runtime.releaseObjectGroup', { objectGroup: 'bench' });
    return JSON.parse(counted.result.value) as Record<string, number>;
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    const closed = new Promise<void>((resolve) => this.ws.once('close', () => resolve()));
    this.ws.close();
    await closed;
  }
}

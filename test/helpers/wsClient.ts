/**
 * A real `ws` client that queues what it receives, for tests. Frames are built
 * and the `hello` frame read with the protocol module the service uses.
 */
import WebSocket from 'ws';
import { checkFrame, parseServerFrame } from '@coverhelper/client/protocol';
import type { HelloFrame } from '@coverhelper/client/protocol';

export interface Frame {
  type: string;
  id?: unknown;
  [key: string]: unknown;
}

export interface TestClient {
  ws: WebSocket;
  /** The `hello` frame the service sent on connect (kept apart from `frames`), once it came. */
  hello: Promise<HelloFrame>;
  frames: Frame[];
  texts: string[];
  /** The next received frame (parsed JSON) matching `predicate`. */
  next(predicate?: (frame: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
  /** The next received text that is not JSON. */
  nextText(timeoutMs?: number): Promise<string>;
  /** Sends a check and resolves with its result frames and its done frame. */
  check(id: string, urls: string[], timeoutMs?: number): Promise<{ results: Frame[]; done: Frame }>;
  closed: Promise<{ code: number; reason: string }>;
  close(): Promise<void>;
}

export async function connect(url: string, options: WebSocket.ClientOptions = {}): Promise<TestClient> {
  const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
  const frames: Frame[] = [];
  const texts: string[] = [];
  const waiters: { test: (item: Frame | string) => boolean; resolve: (item: Frame | string) => void; reject: (error: Error) => void }[] = [];
  let isClosed = false;
  let gotHello!: (hello: HelloFrame) => void;
  const hello = new Promise<HelloFrame>((resolve) => (gotHello = resolve));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => {
      isClosed = true;
      // Nothing more can arrive: fail whoever still waits, so no timer outlives the socket.
      for (const waiter of waiters.splice(0)) waiter.reject(new Error(`socket closed (${code}) while waiting for a frame`));
      resolve({ code, reason: reason.toString() });
    }),
  );

  ws.on('message', (data: Buffer) => {
    const text = data.toString();
    if (text.startsWith('{"type":"hello"')) {
      const frame = parseServerFrame(text);
      if (frame?.type === 'hello') return gotHello(frame);
    }
    let item: Frame | string;
    try {
      item = JSON.parse(text) as Frame;
    } catch {
      item = text;
    }
    const waiter = waiters.find((w) => w.test(item));
    if (waiter) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(item);
    } else if (typeof item === 'string') texts.push(item);
    else frames.push(item);
  });

  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });

  const wait = <T extends Frame | string>(test: (item: Frame | string) => boolean, timeoutMs: number): Promise<T> => {
    const queue: (Frame | string)[] = [...frames, ...texts];
    const found = queue.find(test);
    if (found !== undefined) {
      if (typeof found === 'string') texts.splice(texts.indexOf(found), 1);
      else frames.splice(frames.indexOf(found), 1);
      return Promise.resolve(found as T);
    }
    if (isClosed) return Promise.reject(new Error('socket closed'));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching frame within ${timeoutMs} ms`)), timeoutMs);
      waiters.push({
        test,
        resolve: (item) => {
          clearTimeout(timer);
          resolve(item as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
    });
  };

  const client: TestClient = {
    ws,
    hello,
    frames,
    texts,
    next: (predicate = () => true, timeoutMs = 15_000) => wait<Frame>((item) => typeof item !== 'string' && predicate(item), timeoutMs),
    nextText: (timeoutMs = 15_000) => wait<string>((item) => typeof item === 'string', timeoutMs),
    async check(id, urls, timeoutMs = 30_000) {
      const results: Frame[] = [];
      const done = new Promise<Frame>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`check ${id}: no done within ${timeoutMs} ms`)), timeoutMs);
        const collect = (): void => {
          void wait<Frame>((item) => typeof item !== 'string' && item.id === id, timeoutMs).then((frame) => {
            if (frame.type === 'done' || frame.type === 'error') {
              clearTimeout(timer);
              resolve(frame);
            } else {
              results.push(frame);
              collect();
            }
          }, (error: Error) => {
            clearTimeout(timer);
            reject(error);
          });
        };
        collect();
      });
      ws.send(checkFrame(id, urls));
      return { results, done: await done };
    },
    closed,
    async close() {
      if (ws.readyState === WebSocket.CLOSED) return;
      ws.close();
      await closed;
    },
  };
  return client;
}

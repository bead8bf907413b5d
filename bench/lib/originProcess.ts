/**
 * test/helpers/origin.ts in a process of its own, for scenarios whose measuring
 * client is busy: in the bench process the origin would share an event loop with
 * the client (500 sockets receiving 100,000 frames), and its 20 ms responses
 * would wait for the client's work, so the bench would time itself rather than
 * the service. The child makes the images before the clock starts and answers
 * hit counts over IPC; `release()` lets its held `/half/<name>.jpg` responses
 * finish (and every later one at once), as the helper's own `release()` does.
 *
 *   const origin = await startOriginProcess({ delayMs: 20, images: ['a', 'b'] });
 *   origin.url; await origin.hits(['a']); await origin.hits(['x'], 'half');
 *   await origin.release(); await origin.close();
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { track } from './service.js';

/** The routes whose hits can be counted: `/img/NAME.jpg` and `/half/NAME.jpg`. */
export type Route = 'img' | 'half';
type Call = { type: 'hits'; names: string[]; route: Route } | { type: 'release' } | { type: 'close' };
type Request = Call & { id: number };
type Reply = { id: number; value: number } | { ready: string };

export interface OriginProcess {
  url: string;
  /** Requests the origin got for `/ROUTE/NAME.jpg` (route `img` unless given), summed over `names`. */
  hits(names: string[], route?: Route): Promise<number>;
  /** Lets every held `/half/` response finish; later ones are not held. */
  release(): Promise<void>;
  close(): Promise<void>;
  child: ChildProcess;
}

export async function startOriginProcess(options: { delayMs: number; images: string[] }): Promise<OriginProcess> {
  const child = fork(fileURLToPath(import.meta.url), ['child', String(options.delayMs)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  track(child);
  const pending = new Map<number, (value: number) => void>();
  let seq = 0;
  const url = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`origin process exited with ${code}`)));
    child.on('message', (message: Reply) => {
      if ('ready' in message) resolve(message.ready);
      else {
        pending.get(message.id)?.(message.value);
        pending.delete(message.id);
      }
    });
    child.send({ images: options.images });
  });
  const call = (request: Call) =>
    new Promise<number>((resolve) => {
      const id = ++seq;
      pending.set(id, resolve);
      child.send({ ...request, id });
    });
  return {
    url,
    child,
    hits: (names, route = 'img') => call({ type: 'hits', names, route }),
    release: async () => {
      await call({ type: 'release' });
    },
    close: async () => {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      await call({ type: 'close' });
      child.disconnect();
      await exited;
    },
  };
}

async function runChild(delayMs: number): Promise<void> {
  const { makeImage, startOrigin } = await import('../../test/helpers/origin.js');
  const origin = await startOrigin();
  origin.delayMs = delayMs;
  process.once('message', (setup: { images: string[] }) => {
    void (async () => {
      for (const name of setup.images) await makeImage(name);
      process.on('message', (request: Request) => {
        if (request.type === 'hits') {
          const value = request.names.reduce((sum, name) => sum + (origin.hits.get(`/${request.route}/${name}.jpg`) ?? 0), 0);
          process.send!({ id: request.id, value } satisfies Reply);
        } else if (request.type === 'release') {
          origin.release();
          process.send!({ id: request.id, value: 0 } satisfies Reply);
        } else void origin.close().then(() => process.send!({ id: request.id, value: 0 } satisfies Reply));
      });
      process.send!({ ready: origin.url } satisfies Reply);
    })();
  });
}

if (process.argv[2] === 'child') await runChild(Number(process.argv[3]));

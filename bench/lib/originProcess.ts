/**
 * test/helpers/origin.ts in a process of its own, for scenarios whose measuring
 * client is busy: in the bench process the origin would share an event loop with
 * the client (500 sockets receiving 100,000 frames), and its 20 ms responses
 * would wait for the client's work, so the bench would time itself rather than
 * the service. The child makes the images before the clock starts and answers
 * hit counts over IPC.
 *
 *   const origin = await startOriginProcess({ delayMs: 20, images: ['a', 'b'] });
 *   origin.url; await origin.hits(['a']); await origin.close();
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { track } from './service.js';

type Request = { id: number; type: 'hits'; names: string[] } | { id: number; type: 'close' };
type Reply = { id: number; value: number } | { ready: string };

export interface OriginProcess {
  url: string;
  /** Requests the origin got for `/img/NAME.jpg`, summed over `names`. */
  hits(names: string[]): Promise<number>;
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
  const call = (request: { type: 'hits'; names: string[] } | { type: 'close' }) =>
    new Promise<number>((resolve) => {
      const id = ++seq;
      pending.set(id, resolve);
      child.send({ ...request, id });
    });
  return {
    url,
    child,
    hits: (names) => call({ type: 'hits', names }),
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
          const value = request.names.reduce((sum, name) => sum + (origin.hits.get(`/img/${name}.jpg`) ?? 0), 0);
          process.send!({ id: request.id, value } satisfies Reply);
        } else void origin.close().then(() => process.send!({ id: request.id, value: 0 } satisfies Reply));
      });
      process.send!({ ready: origin.url } satisfies Reply);
    })();
  });
}

if (process.argv[2] === 'child') await runChild(Number(process.argv[3]));

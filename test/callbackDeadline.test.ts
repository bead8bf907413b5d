/**
 * A job callback's try has one whole deadline (headers and body): the real
 * service process (`node --import tsx src/main.ts`) calling a real receiver on
 * 127.0.0.1 that answers 200 with `content-length: 100000` and then sends one
 * byte a second. The try is cut at the deadline (10 s), recorded on the job as
 * failed, tried again after a backoff, and the `finished` callback still goes
 * out (and is treated the same way).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { waitUntil } from './helpers/db.js';
import { startOrigin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import type { CallbackBody, JobJson } from '../src/wire/jobs.js';

/** The job as the service answers it: the wire contract, not a copy. */
type Job = JobJson;

describe('job callbacks', () => {
  it('a receiver that answers 200 and then trickles its body is cut at the deadline, the try recorded and retried, and finished still goes out', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const dir = await tempDir(t);
    const service = await startService([
      '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'),
      '--allow-private-network', '--allow-hosts', '127.0.0.1', '--callback-hosts', '127.0.0.1', '--retries', '0',
    ]);
    t.after(async () => void (await service.stop()));

    // The first try of each event trickles; the next one is answered at once.
    const tries = new Map<string, { at: number; trickled: boolean; cutAfterMs?: number }[]>();
    const sockets = new Set<Socket>();
    const timers = new Set<NodeJS.Timeout>();
    const receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const { event } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as CallbackBody;
        const seen = tries.get(event) ?? [];
        tries.set(event, seen);
        const entry: { at: number; trickled: boolean; cutAfterMs?: number } = { at: Date.now(), trickled: seen.length === 0 };
        seen.push(entry);
        if (!entry.trickled) {
          res.writeHead(204).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' });
        res.write('x');
        const timer = setInterval(() => res.write('x'), 1000);
        timers.add(timer);
        res.once('close', () => {
          clearInterval(timer);
          entry.cutAfterMs = Date.now() - entry.at;
        });
      });
    });
    receiver.on('connection', (socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    t.after(async () => {
      for (const timer of timers) clearInterval(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    });
    const callback = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;

    const created = await fetch(`${service.url}/api/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ urls: [`${origin.url}/img/trickle.jpg`], callback, name: 'trickling receiver' }),
    });
    assert.equal(created.status, 201, await created.clone().text());
    const { id } = (await created.json()) as JobJson;
    const getJob = async () => (await (await fetch(`${service.url}/api/jobs/${id}`)).json()) as Job;

    // The cut try is recorded on the job while its retry waits.
    const firstTry = await waitUntil(async () => {
      const started = (await getJob()).callback?.started;
      return started && started.attempts >= 1 ? started : undefined;
    }, 'the first started try recorded', 40_000);
    if (firstTry.attempts === 1) {
      assert.equal(firstTry.ok, false, JSON.stringify(firstTry));
      assert.equal(firstTry.status, 200);
      assert.equal(firstTry.pending, true);
      assert.match(firstTry.error ?? '', /within 10000 ms/);
    }

    const job = await waitUntil(async () => {
      const current = await getJob();
      return current.callback?.finished?.ok ? current : undefined;
    }, 'the finished callback delivered', 90_000);
    assert.equal(job.status, 'ready');
    assert.deepEqual([job.callback?.started?.ok, job.callback?.started?.attempts], [true, 2], JSON.stringify(job.callback));
    assert.deepEqual([job.callback?.finished?.ok, job.callback?.finished?.attempts], [true, 2], JSON.stringify(job.callback));
    for (const event of ['started', 'finished']) {
      const [trickled, retried] = tries.get(event) ?? [];
      assert.ok(trickled?.trickled && retried && !retried.trickled, `${event}: one trickled try, then one more`);
      // Cut at the 10 s deadline (not at 100000 bytes), with room for a loaded machine.
      assert.ok(trickled.cutAfterMs !== undefined && trickled.cutAfterMs >= 9000 && trickled.cutAfterMs < 30_000, `${event} cut after ${trickled.cutAfterMs} ms`);
      assert.ok(retried.at - trickled.at >= 10_000, `${event} retried after the cut and a backoff`);
    }
  });
});

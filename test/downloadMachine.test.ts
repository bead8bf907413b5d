import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createActor, SimulatedClock, toPromise } from 'xstate';
import { backoffDelay, downloadMachine, toFailure } from '../machines/downloadMachine.js';
import type { DownloadOutput, TaskStatus } from '../machines/types.js';
import { controllableFetch, coverFor, flush } from './helpers/fakeFetch.js';

/** `random` given: the machine's own backoff (jitter drawn from it); otherwise a fixed 1 s retry delay. */
function setupDownload(options: { retries?: number; timeLimitMs?: number; transient?: string[]; random?: () => number } = {}) {
  const fetch = controllableFetch();
  const statuses: TaskStatus[] = [];
  const finished: DownloadOutput[] = [];
  const transient = new Set(options.transient ?? ['network']);
  const clock = new SimulatedClock();
  const logic = downloadMachine.provide({
    actors: { fetchCover: fetch.logic },
    actions: {
      reportStatus: (_, params) => statuses.push(params.status),
      reportFinished: (_, params) => finished.push(params.output),
    },
    guards: { isTransient: ({ context }) => context.error !== undefined && transient.has(context.error.code) },
    ...(options.random ? {} : { delays: { retryDelay: 1000 } }),
  });
  const actor = createActor(logic, {
    input: { url: 'https://i0.hdslb.com/a.jpg', timeLimitMs: options.timeLimitMs ?? 60_000, retries: options.retries ?? 2, random: options.random ?? (() => 0.5) },
    clock,
  });
  actor.start();
  return { actor, fetch, statuses, finished, clock };
}

describe('downloadMachine', () => {
  it('waits in idle until START, then fetches once and ends done with the cover', async () => {
    const { actor, fetch, statuses, finished } = setupDownload();
    assert.ok(actor.getSnapshot().matches('idle'));
    await flush();
    assert.equal(fetch.started.length, 0, 'nothing is fetched before START');

    actor.send({ type: 'START' });
    assert.ok(actor.getSnapshot().matches('running'));
    fetch.succeed();
    const output = await toPromise(actor);

    assert.deepEqual(output, { url: 'https://i0.hdslb.com/a.jpg', status: 'ok', cover: coverFor('https://i0.hdslb.com/a.jpg'), source: 'download' });
    assert.deepEqual(statuses, ['downloading', 'ok']);
    assert.deepEqual(finished, [output]);
    assert.equal(fetch.started.length, 1);
  });

  it('on ABORT stops the running fetch and ends as error cancelled; CANCEL (shutdown) ends without a final status', async () => {
    const aborted = setupDownload();
    aborted.actor.send({ type: 'START' });
    const signal = aborted.fetch.pending[0]!.signal;
    aborted.actor.send({ type: 'ABORT' });
    const output = await toPromise(aborted.actor);
    assert.equal(signal.aborted, true, 'the fetch is aborted');
    assert.deepEqual(output.status === 'error' && output.error.code, 'cancelled');
    assert.deepEqual(aborted.statuses, ['downloading', 'error'], 'the task ends');

    const shutdown = setupDownload();
    shutdown.actor.send({ type: 'START' });
    shutdown.actor.send({ type: 'CANCEL' });
    const cancelled = await toPromise(shutdown.actor);
    assert.deepEqual(cancelled.status === 'error' && cancelled.error.code, 'shutting_down');
    assert.deepEqual(shutdown.statuses, ['downloading'], 'the task stays resumable');
  });

  it('gives up at once on a permanent failure and keeps its code', async () => {
    const { actor, fetch, statuses } = setupDownload();
    actor.send({ type: 'START' });
    fetch.fail({ code: 'http_status', message: 'HTTP 404', detail: 404 });
    const output = await toPromise(actor);
    assert.deepEqual(output, { url: 'https://i0.hdslb.com/a.jpg', status: 'error', error: { code: 'http_status', message: 'HTTP 404', detail: 404 } });
    assert.equal(fetch.started.length, 1);
    assert.deepEqual(statuses, ['downloading', 'error']);
  });

  it('retries a transient failure after the backoff delay, up to the retry count', async () => {
    const { actor, fetch, clock } = setupDownload({ retries: 2 });
    actor.send({ type: 'START' });
    fetch.fail({ code: 'network', message: 'ECONNRESET' });
    await flush();
    assert.ok(actor.getSnapshot().matches('backoff'));
    assert.equal(fetch.started.length, 1, 'no second try before the delay');

    clock.increment(999);
    assert.equal(fetch.started.length, 1);
    clock.increment(1);
    assert.equal(fetch.started.length, 2, 'second try after the delay');
    assert.deepEqual(fetch.started[1], { url: 'https://i0.hdslb.com/a.jpg', attempt: 2 });

    fetch.fail({ code: 'network', message: 'ECONNRESET' });
    await flush();
    clock.increment(1000);
    assert.equal(fetch.started.length, 3);
    fetch.fail({ code: 'network', message: 'ECONNRESET again' });
    const output = await toPromise(actor);
    assert.equal(output.status, 'error');
    assert.equal(fetch.started.length, 3, '1 try + 2 retries');
    assert.deepEqual(output.status === 'error' && output.error, { code: 'network', message: 'ECONNRESET again' });
  });

  it('draws the backoff jitter from the random it is given (the clock\'s), nothing else', async () => {
    for (const draw of [0, 0.5, 0.999]) {
      const draws: number[] = [];
      const { actor, fetch, clock } = setupDownload({ retries: 1, random: () => (draws.push(draw), draw) });
      actor.send({ type: 'START' });
      fetch.fail({ code: 'network', message: 'reset' });
      await flush();
      assert.deepEqual(draws, [draw], 'one draw per backoff');
      const delay = backoffDelay(1, draw);
      clock.increment(delay - 1);
      assert.equal(fetch.started.length, 1, `draw ${draw}: not before ${delay} ms`);
      clock.increment(1);
      assert.equal(fetch.started.length, 2, `draw ${draw}: the second try at ${delay} ms`);
      actor.stop();
    }
  });

  it('succeeds on a retry after a transient failure', async () => {
    const { actor, fetch, clock } = setupDownload({ retries: 1 });
    actor.send({ type: 'START' });
    fetch.fail({ code: 'network', message: 'reset' });
    await flush();
    clock.increment(1000);
    fetch.succeed();
    const output = await toPromise(actor);
    assert.equal(output.status, 'ok');
  });

  it('ends as tle when the time limit passes, aborting the running fetch', async () => {
    const { actor, fetch, clock, statuses } = setupDownload({ timeLimitMs: 5000 });
    actor.send({ type: 'START' });
    const signal = fetch.pending[0]!.signal;
    clock.increment(4999);
    assert.ok(actor.getSnapshot().matches('running'));
    assert.equal(signal.aborted, false);
    clock.increment(1);
    const output = await toPromise(actor);
    assert.equal(output.status, 'error');
    assert.equal(output.status === 'error' && output.error.code, 'tle');
    assert.equal(signal.aborted, true, 'leaving running aborts the fetch');
    assert.deepEqual(statuses, ['downloading', 'tle']);
  });

  it('counts the time limit across retries', async () => {
    const { actor, fetch, clock } = setupDownload({ timeLimitMs: 1500, retries: 5 });
    actor.send({ type: 'START' });
    fetch.fail({ code: 'network', message: 'reset' });
    await flush();
    clock.increment(1000);
    assert.equal(fetch.started.length, 2);
    clock.increment(500);
    const output = await toPromise(actor);
    assert.equal(output.status === 'error' && output.error.code, 'tle');
  });

  it('starts the time limit at START, not at spawn', async () => {
    const { actor, fetch, clock } = setupDownload({ timeLimitMs: 5000 });
    clock.increment(10_000);
    assert.ok(actor.getSnapshot().matches('idle'), 'a download waiting for START is not timed');
    actor.send({ type: 'START' });
    clock.increment(4999);
    assert.ok(actor.getSnapshot().matches('running'));
    fetch.succeed();
    const output = await toPromise(actor);
    assert.equal(output.status, 'ok');
  });

  it('on ABORT during a backoff ends as cancelled without another try', async () => {
    const { actor, fetch, clock, statuses } = setupDownload({ retries: 3 });
    actor.send({ type: 'START' });
    fetch.fail({ code: 'network', message: 'reset' });
    await flush();
    assert.ok(actor.getSnapshot().matches('backoff'));
    actor.send({ type: 'ABORT' });
    const output = await toPromise(actor);
    assert.equal(output.status === 'error' && output.error.code, 'cancelled');
    clock.increment(60_000);
    assert.equal(fetch.started.length, 1, 'the backoff timer died with the download');
    assert.deepEqual(statuses, ['downloading', 'error']);
  });

  it('is cancelled from idle with shutting_down and reports no final status', async () => {
    const { actor, statuses, fetch } = setupDownload();
    actor.send({ type: 'CANCEL' });
    const output = await toPromise(actor);
    assert.equal(output.status === 'error' && output.error.code, 'shutting_down');
    assert.deepEqual(statuses, [], 'the row keeps its status for the next start');
    assert.equal(fetch.started.length, 0);
  });

  it('turns anything thrown into a code and a message', () => {
    assert.deepEqual(toFailure(new Error('boom')), { code: 'network', message: 'boom' });
    assert.deepEqual(toFailure('text'), { code: 'network', message: 'text' });
    assert.deepEqual(toFailure({ code: 'not_image', message: 'nope' }), { code: 'not_image', message: 'nope' });
  });

  it('backs off exponentially with jitter and a cap', () => {
    assert.equal(backoffDelay(1, 0, 500), 250);
    assert.equal(backoffDelay(1, 1, 500), 500);
    assert.equal(backoffDelay(3, 1, 500), 2000);
    assert.equal(backoffDelay(3, 0, 500), 1000);
    assert.equal(backoffDelay(20, 1, 500), 30_000);
  });
});

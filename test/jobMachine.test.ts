/**
 * jobMachine with its I/O swapped for controllable fakes: the order of its
 * states, what it persists and announces, and what it does when a step fails
 * or the service stops.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createActor, fromCallback, fromPromise } from 'xstate';
import { jobMachine } from '../machines/jobMachine.js';
import type { FetchUrlsInput, JobEntry, JobEvent, PackInput, PackOutput } from '../machines/jobMachine.js';

function setup(options: { pack?: (input: PackInput) => Promise<PackOutput> } = {}) {
  const persisted: [string, number, number][] = [];
  const announced: [string, string][] = [];
  let send: ((event: JobEvent) => void) | undefined;
  let fetchInput: FetchUrlsInput | undefined;
  let packed: PackInput | undefined;
  const logic = jobMachine.provide({
    actors: {
      fetchUrls: fromCallback<JobEvent, FetchUrlsInput>(({ input, sendBack }) => {
        fetchInput = input;
        send = sendBack;
      }),
      packArchive: fromPromise<PackOutput, PackInput>(async ({ input }) => {
        packed = input;
        return options.pack ? options.pack(input) : { bytes: 1024, missing: 0 };
      }),
    },
    actions: {
      persist: (_, { context }) => void persisted.push([context.status, context.ok, context.failed]),
      announce: (_, { event, context }) => void announced.push([event, context.status]),
    },
  });
  const actor = createActor(logic, { input: { id: 'job-1', urls: ['u1', 'u2', 'u3'] } });
  actor.start();
  return { actor, persisted, announced, sendBack: (event: JobEvent) => send!(event), fetchInput: () => fetchInput, packed: () => packed };
}

const entries: JobEntry[] = [
  { url: 'u1', path: 'h/1.jpg' },
  { url: 'u2', error: { code: 'http_status', message: 'HTTP 404' } },
  { url: 'u3', path: 'h/3.jpg' },
];

describe('jobMachine', () => {
  it('waits queued until START, then fetches, packs and ends ready, persisting each step and announcing started and finished', async () => {
    const { actor, persisted, announced, sendBack, fetchInput, packed } = setup();
    assert.equal(actor.getSnapshot().value, 'queued');
    assert.equal(fetchInput(), undefined, 'nothing is asked before START');
    actor.send({ type: 'START' });
    assert.deepEqual(fetchInput(), { id: 'job-1', urls: ['u1', 'u2', 'u3'] });
    sendBack({ type: 'PROGRESS', ok: 1, failed: 0 });
    sendBack({ type: 'PROGRESS', ok: 1, failed: 1 });
    sendBack({ type: 'FETCHED', entries });
    await new Promise((resolve) => setImmediate(resolve));
    const snapshot = actor.getSnapshot();
    assert.equal(snapshot.value, 'ready');
    assert.equal(snapshot.status, 'done');
    assert.deepEqual(packed()?.entries, entries);
    assert.deepEqual(persisted, [
      ['fetching', 0, 0],
      ['fetching', 1, 0],
      ['fetching', 1, 1],
      ['packing', 2, 1],
      ['ready', 2, 1],
    ]);
    assert.deepEqual(announced, [
      ['started', 'fetching'],
      ['finished', 'ready'],
    ]);
    assert.equal(snapshot.context.archiveBytes, 1024);
    assert.equal(snapshot.context.entries, undefined, 'the entries are dropped once packed');
  });

  it('carries the URLs waiting for a cooling host in its progress, and none once every URL is answered', async () => {
    const { actor, sendBack } = setup();
    actor.send({ type: 'START' });
    sendBack({ type: 'PROGRESS', ok: 1, failed: 0, waiting: 2 });
    assert.equal(actor.getSnapshot().context.waiting, 2);
    sendBack({ type: 'PROGRESS', ok: 2, failed: 0, waiting: 1 });
    assert.equal(actor.getSnapshot().context.waiting, 1);
    sendBack({ type: 'FETCHED', entries });
    assert.equal(actor.getSnapshot().context.waiting, 0);
  });

  it('counts a cover whose file was gone when packed as failed', async () => {
    const { actor, sendBack } = setup({ pack: async () => ({ bytes: 10, missing: 1 }) });
    actor.send({ type: 'START' });
    sendBack({ type: 'FETCHED', entries });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual([actor.getSnapshot().context.ok, actor.getSnapshot().context.failed], [1, 2]);
  });

  it('ends failed with the error when packing fails or the checks fail, and still announces finished', async () => {
    const packing = setup({ pack: async () => Promise.reject(Object.assign(new Error('disk full'), { code: 'disk_full' })) });
    packing.actor.send({ type: 'START' });
    packing.sendBack({ type: 'FETCHED', entries });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(packing.actor.getSnapshot().value, 'failed');
    assert.deepEqual(packing.actor.getSnapshot().context.error, { code: 'disk_full', message: 'disk full' });
    assert.deepEqual(packing.announced.at(-1), ['finished', 'failed']);

    const fetching = setup();
    fetching.actor.send({ type: 'START' });
    fetching.sendBack({ type: 'FETCH_FAILED', error: { code: 'internal_error', message: 'database gone' } });
    assert.equal(fetching.actor.getSnapshot().value, 'failed');
    assert.deepEqual(fetching.persisted.at(-1), ['failed', 0, 0]);
  });

  it('stops without persisting anything more when the service stops (the row keeps its status for the next start)', () => {
    const { actor, persisted, announced } = setup();
    actor.send({ type: 'START' });
    actor.send({ type: 'STOP' });
    assert.equal(actor.getSnapshot().value, 'stopped');
    assert.equal(actor.getSnapshot().status, 'done');
    assert.deepEqual(persisted, [['fetching', 0, 0]]);
    assert.deepEqual(announced, [['started', 'fetching']]);
  });
});

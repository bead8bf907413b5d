/**
 * Checks asked in the same words share one check (src/sessions/sharedChecks.ts),
 * through real sessions. The checks underneath are a test double: what is under
 * test is how many checks are asked and when each member hears what, which needs
 * answers settled at moments of the test's choosing (the whole path with real
 * sockets and a real origin is test/askers.test.ts and test/coalescing.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CheckResult } from '../src/checks/index.js';
import { createLogger } from '../src/logger.js';
import { CheckSession, SharedChecks } from '../src/sessions/index.js';
import { Stats } from '../src/stats.js';
import type { Asker } from '../machines/flights.js';

const quiet = createLogger({ logLevel: 'error', logFormat: 'json' });

const ok = (url: string): CheckResult => ({ url, status: 'ok', coverUrl: `http://covers.test/${url}`, path: url, source: 'download' });

/** Checks whose answers the test hands out: `answer(k, index)` tells the k-th check's waiter, `finish(k)` ends it. */
function heldChecks() {
  const asked: { urls: readonly string[]; asker: Asker; onWaited: (index: number, result: CheckResult) => void; resolve: (results: CheckResult[]) => void; reject: (error: Error) => void }[] = [];
  const left: Asker[] = [];
  const checks = {
    check: (urls: readonly string[], onWaited: (index: number, result: CheckResult) => void = () => {}, asker: Asker = { kind: 'check' }) =>
      new Promise<CheckResult[]>((resolve, reject) => void asked.push({ urls, asker, onWaited, resolve, reject })),
    leave: (asker: Asker) => void left.push(asker),
  };
  return {
    checks,
    asked,
    left,
    answer: (k: number, index: number) => asked[k]!.onWaited(index, ok(asked[k]!.urls[index]!)),
    finish: (k: number) => asked[k]!.resolve(asked[k]!.urls.map(ok)),
  };
}

/** A session whose sink records what it hears, by tag. */
function recordingSession(checks: ReturnType<typeof heldChecks>['checks'], heard: string[], options: { throwOnResult?: boolean } = {}) {
  const sink = {
    result: (tag: string, index: number) => {
      if (options.throwOnResult) throw new Error('a broken sink');
      heard.push(`${tag} result ${index}`);
    },
    done: (tag: string, results: CheckResult[]) => void heard.push(`${tag} done ${results.length}`),
    failed: (tag: string) => void heard.push(`${tag} failed`),
    hold: () => {},
    release: () => {},
  };
  return new CheckSession<string>(checks, sink, quiet);
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('checks shared by the sessions that ask them in the same words', () => {
  it('asks once for every member that joins before the first answer; each hears every answer, then done', async () => {
    const held = heldChecks();
    const stats = new Stats();
    const shared = new SharedChecks({ checks: held.checks, stats });
    const heard: string[] = [];
    const sessions = ['a', 'b', 'c'].map(() => recordingSession(held.checks, heard));
    const urls = ['u0', 'u1'];
    sessions.forEach((session, i) => session.check(urls, `s${i}`, { results: true, shared: { checks: shared, key: 'same' } }));
    recordingSession(held.checks, heard).check(urls, 'other', { results: true, shared: { checks: shared, key: 'another' } });
    assert.equal(held.asked.length, 2, 'one check for the three, one for the other key');
    assert.match(held.asked[0]!.asker.party ?? '', /^session#\d+$/, 'the group takes its first member\'s turn');
    assert.equal(stats.checks, 2, 'the two that joined are counted as checks');
    assert.equal(stats.coalesced, 4);

    held.answer(0, 1);
    // Joins no more: it has handed out an answer.
    recordingSession(held.checks, heard).check(urls, 'late', { results: true, shared: { checks: shared, key: 'same' } });
    assert.equal(held.asked.length, 3, 'a member after the first answer starts its own');
    held.answer(0, 0);
    held.finish(0);
    await flush();
    assert.deepEqual(
      heard.filter((line) => line.startsWith('s')),
      ['s0 result 1', 's1 result 1', 's2 result 1', 's0 result 0', 's1 result 0', 's2 result 0', 's0 done 2', 's1 done 2', 's2 done 2'],
    );
    assert.ok(!heard.some((line) => line.startsWith('late')), 'the late member hears only its own check');
    assert.equal(shared.size, 2, 'the other key and the late one are in progress');
  });

  it('leaves the shared asker only when its last member closes; a closed member hears nothing and is drained', async () => {
    const held = heldChecks();
    const shared = new SharedChecks({ checks: held.checks, stats: new Stats() });
    const heard: string[] = [];
    const [a, b] = [recordingSession(held.checks, heard), recordingSession(held.checks, heard)];
    a.check(['u0'], 'a', { results: true, shared: { checks: shared, key: 'k' } });
    b.check(['u0'], 'b', { results: true, shared: { checks: shared, key: 'k' } });
    const groupAsker = held.asked[0]!.asker;
    a.close();
    assert.equal(held.left.includes(groupAsker), false, 'one member left: the group keeps its work');
    await a.drained();
    b.close();
    assert.equal(held.left.includes(groupAsker), true, 'the last member left: the work only the group waited for is dropped');
    await b.drained();
    held.answer(0, 0);
    held.finish(0);
    await flush();
    assert.deepEqual(heard, [], 'closed sessions hear nothing');
    assert.equal(shared.size, 0);
  });

  it('one member whose sink throws does not keep the others from their answers; a failed check fails every member', async () => {
    const held = heldChecks();
    const shared = new SharedChecks({ checks: held.checks, stats: new Stats() });
    const heard: string[] = [];
    recordingSession(held.checks, heard, { throwOnResult: true }).check(['u0'], 'broken', { results: true, shared: { checks: shared, key: 'k' } });
    recordingSession(held.checks, heard).check(['u0'], 'fine', { results: true, shared: { checks: shared, key: 'k' } });
    held.answer(0, 0);
    held.finish(0);
    await flush();
    assert.deepEqual(heard, ['fine result 0', 'broken done 1', 'fine done 1']);

    heard.length = 0;
    recordingSession(held.checks, heard).check(['u1'], 'x', { shared: { checks: shared, key: 'f' } });
    recordingSession(held.checks, heard).check(['u1'], 'y', { shared: { checks: shared, key: 'f' } });
    held.asked[1]!.reject(new Error('the database went away'));
    await flush();
    assert.deepEqual(heard, ['x failed', 'y failed']);
  });
});

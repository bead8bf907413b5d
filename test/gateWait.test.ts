/**
 * A turn at a host's gate is waited for at most half of --time-limit: a host
 * whose limit is taken (here: one request at once, held by a hanging answer)
 * makes the URLs behind it `upstream_limited`, parked and fetched shortly
 * after, never `tle` remembered against them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { countingOrigin } from './helpers/countingOrigin.js';
import { waitUntil } from './helpers/db.js';
import { startInProcess } from './helpers/inProcess.js';
import { connect } from './helpers/wsClient.js';
import type { Frame } from './helpers/wsClient.js';

/** A check's one answer, whether it came on its own frame or in the done frame (answered at once). */
async function only(check: Promise<{ results: Frame[]; done: Frame }>): Promise<Frame> {
  const { results, done } = await check;
  const all = results.length > 0 ? results : ((done.results as Frame[] | undefined) ?? []);
  assert.equal(all.length, 1);
  return all[0]!;
}

describe('waiting at a host gate', () => {
  it('a URL that waits past half the time limit for its host is upstream_limited (not tle, not remembered) and is fetched after', async (t) => {
    let releaseSlow: () => void = () => {};
    const slowHeld = new Promise<void>((resolve) => (releaseSlow = resolve));
    t.after(() => releaseSlow());
    // The first request (slow.jpg) hangs until the test lets it go: it holds the host's only slot.
    const origin = await countingOrigin(t, { hold: (hit) => (hit === 1 ? slowHeld : undefined) });
    const { app } = await startInProcess(t, ['--host-limits', '127.0.0.1=1000/s:1000:1', '--time-limit', '2', '--retries', '0', '--workers', '2', '--resize', 'off']);
    const ws = await connect(`${app.url.replace('http:', 'ws:')}/ws`);
    t.after(() => ws.close());

    const slow = `${origin.url}/img/slow.jpg`;
    const fast = `${origin.url}/img/fast.jpg`;
    const slowCheck = ws.check('s', [slow]);
    await waitUntil(() => origin.hits.length === 1, 'the slow request holds the slot');
    const fastAnswer = await only(ws.check('f', [fast]));
    assert.equal(fastAnswer.status, 'error');
    const error = fastAnswer.error as { code: string; message: string };
    assert.equal(error.code, 'upstream_limited', `not tle: ${error.message}`);
    assert.match(error.message, /waited 1 s for a turn at 127\.0\.0\.1/);
    assert.equal(typeof fastAnswer.retryAt, 'string');
    assert.equal(fastAnswer.remembered, undefined);
    assert.equal(origin.hits.length, 1, 'nothing else was sent while the slot was held');
    assert.equal((await app.store.tasks.get(fast))?.status, 'queued', 'the task keeps its place');

    // The slow one ends at its own time limit; then the parked URL is fetched at its retryAt, once.
    const slowAnswer = await only(slowCheck);
    assert.equal((slowAnswer.error as { code: string } | undefined)?.code, 'tle');
    releaseSlow();
    await waitUntil(async () => (await app.store.covers.find(fast)) !== null, 'the parked URL stored after its retryAt', 15_000);
    assert.equal(origin.served.get('/img/fast.jpg'), 1, 'downloaded once');
    const again = await only(ws.check('f2', [fast]));
    assert.equal(again.status, 'ok');
  });
});

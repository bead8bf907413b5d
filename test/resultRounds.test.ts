/**
 * When gathered result frames are written (src/servers/resultRounds.ts). Real
 * timers; the tests rely only on their order (an immediate runs before any
 * timeout of 10 ms or more), never on how long anything took.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_ROUND_MS, MIN_ROUND_MS, ResultRounds, ROUND_MS_PER_SOCKET } from '../src/servers/resultRounds.js';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

function gatherers(count: number) {
  const written = new Array<number>(count).fill(0);
  return { written, all: written.map((_, i) => ({ writeGathered: () => void written[i]!++ })) };
}

/** Resolves once `check` holds, looking every turn (a round may be up to MAX_ROUND_MS away). */
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 1));
  assert.ok(check());
}

describe('result rounds', () => {
  it('writes a lone socket at the end of the turn its result became known in', async () => {
    const rounds = new ResultRounds();
    const { written, all } = gatherers(1);
    rounds.add(all[0]!);
    rounds.add(all[0]!); // more results for the same socket: still one write
    assert.equal(written[0], 0, 'not while the turn runs');
    await turn();
    assert.equal(written[0], 1);
  });

  it('writes every waiting socket once per round, and waits longer after a wide round', async () => {
    const rounds = new ResultRounds();
    const { written, all } = gatherers(500);
    for (const g of all) rounds.add(g);
    await turn();
    assert.deepEqual(new Set(written), new Set([1]), 'each of the 500 written once');
    assert.equal(rounds.interval(), 500 * ROUND_MS_PER_SOCKET);

    // Results right after that round wait for the next one: not at the end of this turn.
    rounds.add(all[0]!);
    rounds.add(all[1]!);
    await turn();
    await turn();
    assert.equal(written[0], 1, 'held for the next round');
    await until(() => written[0] === 2 && written[1] === 2);
    assert.equal(rounds.interval(), MIN_ROUND_MS, 'a round of 2 sockets sets the shortest interval again');
  });

  it('bounds the interval between the shortest and the longest', async () => {
    const rounds = new ResultRounds();
    assert.equal(rounds.interval(), MIN_ROUND_MS);
    const { all } = gatherers(5_000);
    for (const g of all) rounds.add(g);
    await turn();
    assert.equal(rounds.interval(), MAX_ROUND_MS);
  });

  it('does not write a socket that wrote its results itself or closed', async () => {
    const rounds = new ResultRounds();
    const { written, all } = gatherers(2);
    rounds.add(all[0]!);
    rounds.add(all[1]!);
    rounds.remove(all[0]!);
    await turn();
    assert.deepEqual(written, [0, 1]);
  });
});

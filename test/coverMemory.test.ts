/**
 * The cover memory's order on its own: least recently used first, a hit in the
 * older half moves to the newest end, forgotten and moved URLs leave stale queue
 * entries that eviction skips, and the queue stays bounded.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CoverMemory } from '../src/store/coverMemory.js';

const row = (url: string) => ({ url });
const kept = (memory: CoverMemory<{ url: string }>, urls: string[]) => urls.filter((url) => memory.get(url) !== undefined);

describe('cover memory', () => {
  it('drops the least recently used first; a hit in the older half moves to the newest end', () => {
    const memory = new CoverMemory<{ url: string }>(4);
    for (const url of ['a', 'b', 'c', 'd']) memory.put(row(url));
    memory.get('a'); // older half: moved to the newest end
    memory.put(row('e')); // drops b
    memory.put(row('f')); // drops c
    assert.equal(memory.size, 4);
    assert.deepEqual(
      ['a', 'b', 'c', 'd', 'e', 'f'].filter((url) => memory.get(url) !== undefined),
      ['a', 'd', 'e', 'f'],
    );
  });

  it('skips forgotten and replaced URLs when it evicts, and puts a replaced URL at the newest end', () => {
    const memory = new CoverMemory<{ url: string }>(3);
    for (const url of ['a', 'b', 'c']) memory.put(row(url));
    memory.forget('a');
    memory.put(row('b')); // b again: newest
    memory.put(row('d')); // room for it: a is gone already
    assert.equal(memory.size, 3);
    memory.put(row('e')); // drops c, the oldest live entry
    assert.deepEqual(kept(memory, ['a', 'b', 'c', 'd', 'e']), ['b', 'd', 'e']);
  });

  it('holds nothing while suspended and starts empty when resumed', () => {
    const memory = new CoverMemory<{ url: string }>(3);
    memory.put(row('a'));
    memory.suspend();
    assert.equal(memory.put(row('b')), undefined);
    assert.equal(memory.get('a'), undefined);
    memory.resume();
    assert.equal(memory.size, 0);
    memory.put(row('c'));
    assert.ok(memory.get('c'));
  });

  it('keeps its capacity and the right entries across many puts, moves and forgets', () => {
    const capacity = 100;
    const memory = new CoverMemory<{ url: string }>(capacity);
    const model: string[] = []; // least recently used first, as the memory should order them
    for (let i = 0; i < 50_000; i++) {
      const url = `u${i % 700}`;
      if (i % 7 === 0) {
        memory.forget(url);
        const at = model.indexOf(url);
        if (at !== -1) model.splice(at, 1);
        continue;
      }
      memory.put(row(url));
      const at = model.indexOf(url);
      if (at !== -1) model.splice(at, 1);
      model.push(url);
      if (model.length > capacity) model.shift();
    }
    assert.equal(memory.size, model.length);
    for (const url of model) assert.ok(memory.get(url), url);
  });
});

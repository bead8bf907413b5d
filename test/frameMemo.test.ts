/**
 * Check frames answered from memory are kept by their bytes after the id
 * (src/servers/frameMemo.ts): the same frame with another id is answered with
 * the kept `done` frame while memory holds every row it was made from, byte for
 * byte what parsing and checking it would answer; anything else, or a kept
 * answer whose rows changed, is answered as always.
 *
 * Real store (SQLite file), real CoverChecks behind SuffixChecks as the service
 * wires them, real `ws` server and client. The checks are wrapped only to count
 * which way each frame went.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import type { WebSocket } from 'ws';
import { CoverChecks } from '../src/checks/checkCovers.js';
import type { CheckDeps, HeldCheck, WrappedChecks } from '../src/checks/index.js';
import { createLogger } from '../src/logger.js';
import { SuffixChecks } from '../src/proxy/index.js';
import type { SuffixChecksDeps } from '../src/proxy/index.js';
import { FrameMemo, FRAME_MEMO_LIMITS } from '../src/servers/index.js';
import { plainIdEnd } from '../src/servers/frameMemo.js';
import { Stats } from '../src/stats.js';
import type { CoverRow } from '../src/store/index.js';
import { checkFrame, doneFrame } from '@coverhelper/client/protocol';
import { coverRow } from './helpers/coverRow.js';
import { servedPair } from './helpers/servedPair.js';
import { openTestStore } from './helpers/stores.js';

const quiet = createLogger({ logLevel: 'error', logFormat: 'json' });

/** Resolves with the next frame `frames` gets after `count` of them. */
async function nthFrame(frames: string[], count: number): Promise<string> {
  const deadline = Date.now() + 10_000;
  while (frames.length <= count) {
    if (Date.now() > deadline) throw new Error(`no frame ${count + 1} in 10 s (got ${frames.length})`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return frames[count]!;
}

/** Sends `frame` on `client` and resolves with the answer that comes. */
async function ask(client: WebSocket, frames: string[], frame: string): Promise<string> {
  const before = frames.length;
  client.send(frame);
  return nthFrame(frames, before);
}

/** A store holding `count` cover rows in memory, the service's checks over it, and a served client socket with a memo. */
async function served(t: TestContext, options: { count?: number; memoryRows?: number; memo?: FrameMemo; reresolve?: CheckDeps['reresolve']; wrap?: (checks: WrappedChecks) => WrappedChecks } = {}) {
  const { store } = await openTestStore(t, 'sqlite', options.memoryRows === undefined ? {} : { covers: { memoryRows: options.memoryRows } });
  const urls = Array.from({ length: options.count ?? 5 }, (_, i) => `https://i0.hdslb.com/bfs/archive/memo${i}.jpg`);
  for (const url of urls) await store.covers.save(coverRow(url, { path: `i0.hdslb.com/memo/${url.slice(-9)}` }));
  await store.covers.findMany(urls);
  const stats = new Stats();
  const base = { url: 'http://covers.test/' };
  const checks = new CoverChecks({
    config: { allowHosts: ['hdslb.com'] },
    covers: store.covers,
    // Nothing here is downloaded: every URL asked is stored.
    downloads: { inFlight: () => undefined, askMany: () => assert.fail('nothing is downloaded'), leave: () => {} },
    stats,
    publicUrl: () => base.url,
    ...(options.reresolve ? { reresolve: options.reresolve } : {}),
  });
  const suffixes = new SuffixChecks({ checks, logger: quiet } as unknown as SuffixChecksDeps);
  const ways = { now: 0, again: 0, againHeld: 0 };
  const counted: WrappedChecks = {
    check: (...args) => suffixes.check(...args),
    leave: (asker) => suffixes.leave(asker),
    checkNow: (...args) => suffixes.checkNow(...args),
    checkNowKept: (...args) => (ways.now++, suffixes.checkNowKept(...args)),
    checkAgain: (kept) => {
      ways.again++;
      const held = suffixes.checkAgain(kept);
      if (held) ways.againHeld++;
      return held;
    },
  };
  // One URL is enough to be kept here (the tests' frames are short); the default's bound has a test of its own.
  const memo = options.memo ?? new FrameMemo({ ...FRAME_MEMO_LIMITS, minUrls: 1 });
  const { client, frames } = await servedPair(t, options.wrap ? options.wrap(counted) : counted, () => {}, { frames: memo });
  await nthFrame(frames, 0); // hello
  return { store, urls, stats, base, checks, ways, memo, client, frames };
}

describe('check frames kept by their bytes', () => {
  it('answers the same frame with another id from the kept answer: the bytes a parse and a check would give, counted the same', async (t) => {
    const { urls, stats, checks, ways, memo, client, frames } = await served(t);
    const asked = [urls[3]!, urls[0]!, urls[3]!];
    const first = await ask(client, frames, checkFrame('first', asked));
    const results = await checks.check(asked);
    assert.equal(first, doneFrame('first', results));
    assert.deepEqual(ways, { now: 1, again: 0, againHeld: 0 });
    assert.equal(memo.size, 1, 'kept');
    const checksBefore = stats.checks;
    const hitsBefore = stats.hits;

    for (const id of ['second', '', 'x'.repeat(256), 'with @ and spaces {}[]:,']) {
      assert.equal(await ask(client, frames, checkFrame(id, asked)), doneFrame(id, results), `id ${JSON.stringify(id)}`);
    }
    assert.deepEqual(ways, { now: 1, again: 4, againHeld: 4 }, 'each answered from the kept answer');
    assert.equal(stats.checks - checksBefore, 4, 'counted as checks');
    assert.equal(stats.hits - hitsBefore, 12, 'each URL a hit, a repeat at each position');

    // Ids a plain scan cannot copy are parsed, and answered as always.
    for (const id of ['q"uote', 'back\\slash', 'ü', 'x'.repeat(257), 'tab\there']) {
      const answer = await ask(client, frames, checkFrame(id, asked));
      if (id.length > 256) assert.match(answer, /"code":"bad_request"/, 'an id too long is refused as before');
      else assert.equal(answer, doneFrame(id, results), `id ${JSON.stringify(id)}`);
    }
    assert.equal(ways.again, 4, 'none of them from the kept answer');
    // A number id is never kept nor copied.
    assert.equal(await ask(client, frames, JSON.stringify({ type: 'check', id: 7, urls: asked })), doneFrame(7, results));
    assert.equal(ways.again, 4);
  });

  it('keeps only the form checkFrame writes: a repeated key or other spacing is parsed, whatever was kept', async (t) => {
    const { urls, checks, ways, memo, client, frames } = await served(t);
    const asked = [urls[1]!, urls[2]!];
    const results = await checks.check(asked);
    const list = JSON.stringify(asked);
    // The last "id" is the one JSON.parse keeps: never the first, which a scan of the bytes would see.
    assert.equal(await ask(client, frames, `{"type":"check","id":"x","id":"y","urls":${list}}`), doneFrame('y', results));
    assert.equal(memo.size, 0, 'not in plain form: not kept');
    assert.equal(await ask(client, frames, `{"type":"check","id":"z","id":"y","urls":${list}}`), doneFrame('y', results));
    assert.equal(await ask(client, frames, `{"type":"check", "id":"s","urls":${list}}`), doneFrame('s', results));
    assert.equal(await ask(client, frames, `{"type":"check","id":"u","urls":${list},"type":"check"}`), doneFrame('u', results));
    assert.equal(memo.size, 0);
    assert.equal(ways.again, 0);

    // Kept from a plain frame, then the same bytes after a repeated id key: still answered with the last id.
    await ask(client, frames, checkFrame('plain', asked));
    assert.equal(memo.size, 1);
    assert.equal(await ask(client, frames, `{"type":"check","id":"a","urls":${list},"id":"b"}`), doneFrame('b', results));
    // An '@' escaped in a URL is a suffix to read: never answered from memory as it is.
    const escaped = `{"type":"check","id":"e","urls":["${urls[1]!}\\u0040220w.webp"]}`;
    const answer = JSON.parse(await ask(client, frames, escaped)) as { id: string; results: { url: string }[] };
    assert.equal(answer.results[0]!.url, `${urls[1]!}@220w.webp`);
    assert.equal(ways.againHeld, 0);
  });

  it('lets a kept answer go when one of its rows is written, evicted or re-based, and answers as the store says', async (t) => {
    const { store, urls, base, ways, memo, client, frames } = await served(t, { memoryRows: 6 });
    const asked = [urls[0]!, urls[1]!];
    const path = (frame: string, at: number) => (JSON.parse(frame) as { results: { path: string; coverUrl: string }[] }).results[at]!;
    await ask(client, frames, checkFrame('a', asked));
    assert.equal(path(await ask(client, frames, checkFrame('b', asked)), 1).path, 'i0.hdslb.com/memo/memo1.jpg');
    assert.equal(ways.againHeld, 1);

    // A custom cover replaces urls[1]'s row.
    await store.covers.save(coverRow(urls[1]!, { path: 'custom/new.png', source: 'custom' }));
    await store.covers.findMany([urls[1]!]);
    const after = await ask(client, frames, checkFrame('c', asked));
    assert.equal(path(after, 1).path, 'custom/new.png', 'the written row, not the kept answer');
    assert.deepEqual([ways.again, ways.againHeld], [2, 1], 'asked again, and let go');
    assert.equal(path(await ask(client, frames, checkFrame('d', asked)), 1).path, 'custom/new.png', 'kept anew');
    assert.equal(ways.againHeld, 2);

    // The cover URLs' base changes (the port known after listening on 0): answers are made again.
    base.url = 'http://elsewhere.test/';
    assert.equal(path(await ask(client, frames, checkFrame('e', asked)), 0).coverUrl, 'http://elsewhere.test/i0.hdslb.com/memo/memo0.jpg');
    assert.equal(ways.againHeld, 2);

    // Memory (6 rows here) evicts them for 6 others: answered from the database.
    const others = Array.from({ length: 6 }, (_, i) => `https://i0.hdslb.com/bfs/archive/other${i}.jpg`);
    for (const url of others) await store.covers.save(coverRow(url));
    await store.covers.findMany(others);
    assert.equal(store.covers.allInMemory(asked), undefined, 'evicted');
    const evicted = await ask(client, frames, checkFrame('f', asked));
    assert.equal(path(evicted, 1).path, 'custom/new.png');
    assert.equal(ways.againHeld, 2);
    assert.equal(memo.size, 0, 'a kept answer that no longer holds is let go');
  });

  it('hands the rows that may be re-resolved to re-resolving on every answer, and only those', async (t) => {
    const considered: string[] = [];
    const reresolve = {
      consider: (row: CoverRow) => (considered.push(row.url), false),
      mayBeDue: (row: CoverRow) => row.url.endsWith('memo2.jpg'),
      now: () => 0,
    };
    const { urls, ways, client, frames } = await served(t, { reresolve });
    const asked = [urls[1]!, urls[2]!, urls[3]!];
    await ask(client, frames, checkFrame('a', asked));
    await ask(client, frames, checkFrame('b', asked));
    await ask(client, frames, checkFrame('c', asked));
    assert.equal(ways.againHeld, 2);
    assert.deepEqual(considered, [urls[2], urls[2], urls[2]]);
  });

  it('a checkAgain that throws answers the frame as always; the connection and the next check are fine', async (t) => {
    let fail = false;
    const { urls, checks, client, frames } = await served(t, {
      wrap: (counted) => ({
        ...counted,
        checkAgain: (kept: HeldCheck) => {
          if (fail) throw new Error('broken memory');
          return counted.checkAgain!(kept);
        },
      }),
    });
    const asked = [urls[4]!];
    const results = await checks.check(asked);
    await ask(client, frames, checkFrame('a', asked));
    fail = true;
    assert.equal(await ask(client, frames, checkFrame('b', asked)), doneFrame('b', results));
    fail = false;
    assert.equal(await ask(client, frames, checkFrame('c', asked)), doneFrame('c', results));
  });

  it('is bounded: past its entries or its bytes it starts empty; a frame too large is never kept', async (t) => {
    const memo = new FrameMemo({ ...FRAME_MEMO_LIMITS, minUrls: 1, maxEntries: 3, maxFrameBytes: 1024 });
    const { urls, ways, client, frames } = await served(t, { memo, count: 40 });
    for (let i = 0; i < 3; i++) await ask(client, frames, checkFrame(`k${i}`, [urls[i]!]));
    assert.equal(memo.size, 3);
    await ask(client, frames, checkFrame('k3', [urls[3]!]));
    assert.equal(memo.size, 1, 'full: started empty, then kept the new one');
    await ask(client, frames, checkFrame('again', [urls[3]!]));
    assert.equal(ways.againHeld, 1);

    const large = urls.slice(10, 40);
    assert.ok(Buffer.byteLength(checkFrame('big', large)) > 1024);
    await ask(client, frames, checkFrame('big', large));
    await ask(client, frames, checkFrame('big2', large));
    assert.equal(memo.size, 1, 'too large: not kept');
    assert.equal(ways.againHeld, 1);

    // Bytes: a memo of 2,000 bytes keeps one answer of one URL (about 1,330 with its frame and its row's KiB) at a time, and none larger than itself.
    const tiny = new FrameMemo({ maxEntries: 100, maxBytes: 2000, maxFrameBytes: 64 * 1024, minUrls: 1 });
    const small = await served(t, { memo: tiny, count: 20 });
    await ask(small.client, small.frames, checkFrame('s1', [small.urls[0]!]));
    assert.equal(tiny.size, 1);
    await ask(small.client, small.frames, checkFrame('s2', [small.urls[1]!]));
    assert.equal(tiny.size, 1, 'two would pass its bytes: started empty');
    await ask(small.client, small.frames, checkFrame('s1 again', [small.urls[1]!]));
    assert.equal(small.ways.againHeld, 1, 'the one it holds is answered');
    await ask(small.client, small.frames, checkFrame('s4', small.urls.slice(0, 20)));
    assert.equal(tiny.size, 1, 'larger than the memo: not kept, nothing let go');
  });
});

describe('what the memo keeps by default', () => {
  it('keeps no frame of fewer than minUrls URLs (answered as always), and keeps one of minUrls', async (t) => {
    const memo = new FrameMemo();
    assert.deepEqual([memo.keeps(FRAME_MEMO_LIMITS.minUrls - 1), memo.keeps(FRAME_MEMO_LIMITS.minUrls)], [false, true]);
    const { urls, checks, ways, client, frames } = await served(t, { memo, count: FRAME_MEMO_LIMITS.minUrls });
    const few = urls.slice(0, FRAME_MEMO_LIMITS.minUrls - 1);
    const fewResults = await checks.check(few);
    for (const id of ['a', 'b', 'c']) assert.equal(await ask(client, frames, checkFrame(id, few)), doneFrame(id, fewResults));
    assert.equal(memo.size, 0, 'too few URLs: not kept');
    assert.equal(ways.again, 0);
    const enough = urls.slice(0, FRAME_MEMO_LIMITS.minUrls);
    const results = await checks.check(enough);
    for (const id of ['d', 'e']) assert.equal(await ask(client, frames, checkFrame(id, enough)), doneFrame(id, results));
    assert.equal(memo.size, 1, 'kept');
    assert.deepEqual([ways.again, ways.againHeld], [1, 1], 'the second answered from it');
  });
});

describe('plainIdEnd', () => {
  it('finds the closing quote of a plain id, and refuses anything else', () => {
    const at = (text: string) => plainIdEnd(Buffer.from(text));
    assert.equal(at('{"type":"check","id":"abc","urls":[]}'), 25);
    assert.equal(at('{"type":"check","id":"","urls":[]}'), 22);
    assert.equal(at('{"type":"check","id":"a\\"b","urls":[]}'), -1, 'an escape');
    assert.equal(at('{"type":"check","id":"ü","urls":[]}'), -1, 'not ASCII');
    assert.equal(at('{"type":"check","id":"a\nb","urls":[]}'), -1, 'a control byte');
    assert.equal(at('{"type":"check","id":7,"urls":[]}'), -1, 'a number');
    assert.equal(at('{"type":"check","id":"' + 'x'.repeat(257) + '","urls":[]}'), -1, 'too long');
    assert.equal(at('{"type":"check","id":"' + 'x'.repeat(256) + '","urls":[]}'), 22 + 256);
    assert.equal(at('{"type":"check","id":"abc'), -1, 'cut short');
    assert.equal(at('{"id":"abc","type":"check","urls":[]}'), -1, 'another order');
    assert.equal(at('C https://a/b.jpg'), -1);
  });
});

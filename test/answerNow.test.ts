/**
 * The hot path answers within the turn that read the check: a check whose every
 * URL the cover index holds in memory is answered inside `CheckSession.check`
 * (`CoverChecks.checkNow`), so a client socket has framed its answer before it
 * hands on the next frame of the same read; the answers of one turn still leave
 * in one write.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { WebSocket } from 'ws';
import { CoverChecks } from '../src/checks/checkCovers.js';
import type { CheckDeps, CheckResult } from '../src/checks/checkCovers.js';
import { createLogger } from '../src/logger.js';
import { SuffixChecks } from '../src/proxy/index.js';
import type { SuffixChecksDeps } from '../src/proxy/index.js';
import { CheckSession } from '../src/sessions/index.js';
import { Stats } from '../src/stats.js';
import { coverRow } from './helpers/coverRow.js';
import { servedPair } from './helpers/servedPair.js';
import { openTestStore } from './helpers/stores.js';

const quiet = createLogger({ logLevel: 'error', logFormat: 'json' });

describe('answered within the turn', () => {
  it('answers a check memory holds entirely inside the call, the same answers as `check`; any other check as always', async (t) => {
    const { store } = await openTestStore(t, 'sqlite');
    const urls = Array.from({ length: 5 }, (_, i) => `https://i0.hdslb.com/bfs/archive/now${i}.jpg`);
    for (const url of urls) await store.covers.save(coverRow(url, { path: `i0.hdslb.com/now/${url.slice(-8)}` }));
    // Read once through the index: memory holds the rows from then on.
    await store.covers.findMany(urls);
    const stats = new Stats();
    const asked: string[][] = [];
    const deps = {
      config: { allowHosts: ['hdslb.com'] },
      covers: store.covers,
      // Nothing here is downloaded: a stored URL is answered from the store, the page below is skipped.
      downloads: { inFlight: () => undefined, askMany: (list: readonly string[]) => (asked.push([...list]), []), leave: () => {} },
      stats,
      publicUrl: () => 'http://covers.test/',
    } as unknown as CheckDeps;
    const checks = new CoverChecks(deps);
    const done: { tag: string; results: CheckResult[] }[] = [];
    const sink = {
      result: () => {},
      done: (tag: string, results: CheckResult[]) => void done.push({ tag, results }),
      failed: (tag: string) => assert.fail(`check ${tag} failed`),
      hold: () => {},
      release: () => {},
    };
    const session = new CheckSession<string>(checks, sink, quiet, { answerNow: true });

    session.check([urls[3]!, urls[0]!, urls[3]!], 'memory');
    assert.deepEqual(
      done.map((d) => d.tag),
      ['memory'],
      'answered before check() returned',
    );
    assert.deepEqual(done[0]!.results, await checks.check([urls[3]!, urls[0]!, urls[3]!]), 'the answers `check` gives');
    assert.equal(done[0]!.results[0], done[0]!.results[2], 'a row answered twice is one answer object');
    assert.equal(stats.hits, 6);
    assert.equal(stats.checks, 2);

    // One URL memory does not hold: the check goes the usual way, answered later.
    session.check([urls[1]!, 'https://example.com/a/page'], 'mixed');
    assert.deepEqual(
      done.map((d) => d.tag),
      ['memory'],
      'not answered inside the call',
    );
    await session.drained();
    assert.deepEqual(
      done.map((d) => d.tag),
      ['memory', 'mixed'],
    );
    assert.deepEqual(
      done[1]!.results.map((r) => r.status),
      ['ok', 'skipped'],
    );
    assert.equal(stats.checks, 3, 'the check that could not be answered from memory is counted once');
    assert.deepEqual(asked, []);

    // A URL with a bilibili suffix is answered as its variant, never from memory as it is.
    const suffixes = new SuffixChecks({ checks, logger: quiet } as unknown as SuffixChecksDeps);
    const suffixed = `${urls[4]!}@220w_280h.webp`;
    assert.equal(suffixes.checkNow([urls[4]!, suffixed]), undefined, 'a suffix to read: asked the usual way');
    assert.deepEqual(suffixes.checkNow([urls[4]!], { noAt: true }), await checks.check([urls[4]!]), 'none: the wrapped checks answer now');

    // Without the option a session answers every check after the call, as before.
    const later = new CheckSession<string>(checks, sink, quiet);
    later.check([urls[2]!], 'later');
    assert.equal(done.length, 2);
    await later.drained();
    assert.equal(done.length, 3);
  });

  it('frames a check memory holds before the next frame of the same read is handed on, and holds the turn\'s answers for one write', { timeout: 20_000 }, async (t) => {
    // The checks are a test double: what is under test is when the socket's bytes
    // leave, seen from inside the next check the same read hands on.
    const memory = (url: string) => url.startsWith('https://mem.test/');
    const answer = (url: string): CheckResult => ({ url, status: 'ok', coverUrl: `http://covers.test/${url.slice(17)}.jpg`, path: `${url.slice(17)}.jpg`, source: 'cache', width: 640, height: 400 });
    const seen: { url: string; held: number; corked: number; made: number }[] = [];
    let tcp: { writableLength: number; writableCorked: number; bytesWritten: number } | undefined;
    const checks = {
      checkNow: (urls: readonly string[]) => (urls.every(memory) ? urls.map(answer) : undefined),
      check: (urls: readonly string[]) => {
        seen.push({ url: urls[0]!, held: tcp!.writableLength, corked: tcp!.writableCorked, made: tcp!.bytesWritten });
        return Promise.resolve(urls.map((url): CheckResult => ({ url, status: 'skipped' })));
      },
      leave: () => {},
    };
    let served: WebSocket | undefined;
    const { client, frames } = await servedPair(t, checks, (socket) => {
      served = socket;
      tcp = (socket as unknown as { _socket: typeof tcp })._socket;
    });
    while (served === undefined || frames.length === 0) await new Promise((resolve) => setImmediate(resolve));

    /** Sends `checks` so the server reads them in one read: it reads nothing until all are in its receive buffer. */
    const sendInOneRead = async (list: { id: string; urls: string[] }[]) => {
      served!.pause();
      const clientTcp = (client as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
      clientTcp.cork();
      const written = list.map((check) => new Promise<void>((resolve, reject) => client.send(JSON.stringify({ type: 'check', ...check }), (error) => (error ? reject(error) : resolve()))));
      clientTcp.uncork();
      await Promise.all(written);
      served!.resume();
    };
    const waitForFrames = async (count: number) => {
      while (frames.length < count) await new Promise((resolve) => setImmediate(resolve));
    };

    // Answers of checks memory holds, then a check it does not: when the last is handed on, the others are framed, and held.
    const urls = Array.from({ length: 50 }, (_, i) => `https://mem.test/big/${String(i).padStart(4, '0')}`);
    const bytesOf = (id: string, list: string[]) => Buffer.byteLength(JSON.stringify({ type: 'done', id, ok: list.length, skipped: 0, failed: 0, results: list.map(answer) }));
    const answered = bytesOf('big', urls) + bytesOf('small1', ['https://mem.test/s1']) + bytesOf('small2', ['https://mem.test/s2']);
    const written = tcp!.bytesWritten;
    await sendInOneRead([
      { id: 'big', urls },
      { id: 'small1', urls: ['https://mem.test/s1'] },
      { id: 'small2', urls: ['https://mem.test/s2'] },
      { id: 'probe', urls: ['https://not.test/1'] },
    ]);
    await waitForFrames(5);
    const probe = seen.find((s) => s.url === 'https://not.test/1')!;
    assert.ok(probe.made - written >= answered, `the three answers were framed before the next frame was handed on (${probe.made - written} of ${answered} B)`);
    assert.ok(probe.corked > 0 && probe.held >= answered, `and are held for one write (${probe.held} B held)`);
    assert.deepEqual(
      frames.slice(1).map((frame) => (JSON.parse(frame) as { id: string }).id),
      ['big', 'small1', 'small2', 'probe'],
    );
  });

  it('tells the checks a frame holds no `@` only when its text shows none and has no escape that could spell one', { timeout: 20_000 }, async (t) => {
    const told: { url: string; noAt: boolean | undefined }[] = [];
    const checks = {
      checkNow: (urls: readonly string[], known: { noAt?: boolean } = {}) => {
        told.push({ url: urls[0]!, noAt: known.noAt });
        return undefined;
      },
      check: (urls: readonly string[]) => Promise.resolve(urls.map((url): CheckResult => ({ url, status: 'skipped' }))),
      leave: () => {},
    };
    const { client, frames } = await servedPair(t, checks);
    // Written by hand: JSON.stringify never escapes '@', a client may.
    client.send('{"type":"check","id":"plain","urls":["https://i0.hdslb.com/bfs/a.jpg"]}');
    client.send('{"type":"check","id":"escaped","urls":["https://i0.hdslb.com/bfs/b.jpg\\u0040320w.webp"]}');
    client.send('{"type":"check","id":"shown","urls":["https://i0.hdslb.com/bfs/c.jpg@320w.webp"]}');
    while (frames.length < 4) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(told, [
      { url: 'https://i0.hdslb.com/bfs/a.jpg', noAt: true },
      { url: 'https://i0.hdslb.com/bfs/b.jpg@320w.webp', noAt: false },
      { url: 'https://i0.hdslb.com/bfs/c.jpg@320w.webp', noAt: false },
    ]);
  });
});

/**
 * Many clients, the same URLs, at the same moment: each URL is fetched once and
 * every asker gets the answer. Real process, real sockets, real origin.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startOrigin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame } from './helpers/wsClient.js';

describe('coalescing', () => {
  it('250 sockets asking for the same 50 uncached URLs cause exactly 50 origin requests, and all get every result, then 50 ok', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    // Slow enough that every socket's check arrives while the downloads are running.
    origin.delayMs = 300;
    const dir = await tempDir(t);
    const service = await startService([
      '--data-dir', `${dir}/data`, '--covers-dir', `${dir}/covers`,
      '--allow-private-network', '--allow-hosts', '127.0.0.1', '--workers', '10',
    ]);
    t.after(async () => void (await service.stop()));

    const urls = Array.from({ length: 50 }, (_, i) => `${origin.url}/img/herd-${i}.jpg`);
    const sockets = await Promise.all(Array.from({ length: 250 }, () => connect(service.wsUrl)));
    t.after(() => Promise.all(sockets.map((s) => s.close())));

    const answers = await Promise.all(sockets.map((socket, i) => socket.check(`herd-${i}`, urls, 60_000)));

    assert.equal(origin.total(), 50, 'each URL reached the origin once');
    for (const url of urls) assert.equal(origin.hits.get(new URL(url).pathname), 1);
    for (const { done, results } of answers) {
      assert.equal(done.ok, 50);
      assert.equal(results.length, 50, 'every socket waited for every URL');
      // Each result frame (written in rounds, framed by coverhelper itself) says what done says of its URL.
      const byUrl = new Map((done.results as Frame[]).map((r) => [r.url, r]));
      for (const { type, id, ...result } of results) {
        assert.equal(type, 'result');
        assert.equal(id, done.id);
        assert.deepEqual(result, byUrl.get(result.url as string));
      }
      assert.equal(new Set(results.map((r) => r.url)).size, 50, 'one result per URL');
      assert.deepEqual((done.results as Frame[]).map((r) => r.url), urls);
    }
    // Every socket got the same cover for a URL.
    const first = answers[0]!.done.results as Frame[];
    for (const { done } of answers) assert.deepEqual((done.results as Frame[]).map((r) => r.coverUrl), first.map((r) => r.coverUrl));
    assert.ok(origin.maxOpen() <= 10, `at most --workers requests open at once (saw ${origin.maxOpen()})`);
  });
});

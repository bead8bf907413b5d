import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CheckResult } from '../src/checks/index.js';
import { doneFrame, resultHead, resultJson, resultTail } from '../src/servers/index.js';

const ok: CheckResult = { url: 'https://i0.hdslb.com/bfs/a "quoted".jpg', status: 'ok', coverUrl: 'http://c/covers/a%20b.jpg', path: 'a b.jpg', source: 'cache' };
const skipped: CheckResult = { url: 'https://example.com/\u2028page', status: 'skipped' };
const failed: CheckResult = { url: 'https://i0.hdslb.com/x.jpg', status: 'error', error: { code: 'http_status', message: 'HTTP 404 "Not Found"' } };

/** A `result` frame's payload as the client socket sends it: the check's head, then the answer's tail. */
const resultFrame = (id: string | number, result: CheckResult) => Buffer.concat([resultHead(id), resultTail(result)]).toString('utf8');

describe('server frames built from cached answers', () => {
  it('writes a result frame exactly as JSON.stringify writes the object, from a check\'s head and an answer\'s tail', () => {
    for (const id of ['b1', 7, 'quote"and\\slash', 'é漢']) {
      for (const result of [ok, skipped, failed, { ...ok, url: 'https://i0.hdslb.com/漢字.jpg' }]) {
        assert.equal(resultFrame(id, result), JSON.stringify({ type: 'result', id, ...result }));
        assert.deepEqual(JSON.parse(resultFrame(id, result)), { type: 'result', id, ...result });
      }
    }
    assert.equal(resultTail(ok), resultTail(ok), 'the same buffer for the same answer: its tail is made once');
  });

  it('writes a done frame exactly as JSON.stringify writes the object, with its counts', () => {
    const results = [ok, skipped, failed, ok];
    assert.equal(doneFrame('d', results), JSON.stringify({ type: 'done', id: 'd', ok: 2, skipped: 1, failed: 1, results }));
    assert.equal(doneFrame(3, []), JSON.stringify({ type: 'done', id: 3, ok: 0, skipped: 0, failed: 0, results: [] }));
  });

  it('answers a frozen answer object too (it cannot keep its JSON, so it is made each time)', () => {
    const frozen: CheckResult = Object.freeze({ url: 'https://i0.hdslb.com/z.jpg', status: 'skipped' as const });
    assert.equal(resultJson(frozen), JSON.stringify(frozen));
    assert.equal(resultFrame('f', frozen), JSON.stringify({ type: 'result', id: 'f', ...frozen }));
  });

  it('serializes an answer once and reuses it', () => {
    const answer: CheckResult = { url: 'https://i0.hdslb.com/y.jpg', status: 'skipped' };
    const first = resultJson(answer);
    assert.equal(resultJson(answer), first);
    // Answers are never changed after they are made; the cache is keyed by the object.
    answer.url = 'https://i0.hdslb.com/changed.jpg';
    assert.equal(resultJson(answer), first, 'the cached JSON is returned for the same object');
    assert.notEqual(resultJson({ ...answer }), first, 'a new answer object is serialized anew');
  });
});

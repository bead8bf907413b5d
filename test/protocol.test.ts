/**
 * The one protocol module (client/src/protocol.ts): the builders write exactly
 * what `JSON.stringify` of the frame object writes, and the parsers turn
 * untrusted frames into typed ones or refuse them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkFrame,
  doneFrame,
  doneFrameBytes,
  doneHead,
  sameDoneTail,
  errorFrame,
  helloFrame,
  parseClientFrame,
  parseServerFrame,
  parseShortAnswer,
  resultHead,
  resultBytes,
  resultJson,
  resultTail,
  shortAnswer,
  shortFrame,
} from '@coverhelper/client/protocol';
import type { CheckResult } from '@coverhelper/client/protocol';

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

  it('writes a done frame as bytes from each answer\'s cached bytes, the same bytes as the string', () => {
    const wide: CheckResult = { ...ok, url: 'https://i0.hdslb.com/漢字\u2028.jpg' };
    for (const id of ['d', 3, null, 'é"漢']) {
      for (const results of [[], [ok], [ok, skipped, failed, ok, wide], [wide, wide]]) {
        const bytes = doneFrameBytes(id, results);
        assert.ok(bytes.equals(Buffer.from(doneFrame(id, results))), `id ${String(id)}, ${results.length} answers`);
        assert.equal(bytes.toString('utf8'), JSON.stringify({ type: 'done', id, ok: results.filter((r) => r.status === 'ok').length, skipped: results.filter((r) => r.status === 'skipped').length, failed: results.filter((r) => r.status === 'error').length, results }));
      }
    }
    // Frames of 16 to 32 KiB share slabs: each keeps its own bytes however many are cut after it.
    const many = Array.from({ length: 150 }, (_, i): CheckResult => ({ ...ok, url: `https://i0.hdslb.com/bfs/archive/${i}/${'x'.repeat(100)}.jpg` }));
    const frames = Array.from({ length: 40 }, (_, k) => ({ id: `s${k}`, results: many.slice(0, 60 + k * 2) }));
    const built = frames.map(({ id, results }) => doneFrameBytes(id, results));
    assert.ok(built.some((b) => b.length >= 16 * 1024 && b.length <= 32 * 1024) && built.some((b) => b.length > 32 * 1024));
    for (const [k, { id, results }] of frames.entries()) assert.ok(built[k]!.equals(Buffer.from(doneFrame(id, results))), `frame ${k} intact`);
    // Not pooled when asked (a socket with much unsent): a buffer of its own, whatever its size.
    const own = doneFrameBytes('own', many.slice(0, 80), false);
    assert.ok(own.length >= 16 * 1024 && own.length <= 32 * 1024);
    assert.equal(own.buffer.byteLength, own.length, 'its own memory, not a slab\'s slice');
    assert.ok(own.equals(Buffer.from(doneFrame('own', many.slice(0, 80)))));
    const pooled = doneFrameBytes('pooled', many.slice(0, 80));
    assert.ok(pooled.buffer.byteLength > pooled.length, 'pooled by default: a slab\'s slice');
    assert.equal(resultBytes(ok), resultBytes(ok), 'an answer\'s bytes are made once');
    assert.ok(resultTail(ok).buffer === resultBytes(ok).buffer && resultTail(ok).byteOffset === resultBytes(ok).byteOffset + 1, 'its result tail is the same memory');
    assert.ok(resultTail(ok).equals(resultBytes(ok).subarray(1)));
  });

  it('writes the done frames of the same answers for other ids (a shared check\'s members), and hands out the tail of the last one for its very answers', () => {
    const wide: CheckResult = { ...ok, url: 'https://i0.hdslb.com/漢字\u2028.jpg' };
    const many = Array.from({ length: 120 }, (_, i): CheckResult => ({ ...ok, url: `https://i0.hdslb.com/bfs/archive/${i}.jpg` }));
    for (const results of [[ok, skipped, failed, wide], many, []]) {
      const built = ['h00000001', 'é"漢', null, 7, 'h00000001', ''].map((id) => ({ id, bytes: doneFrameBytes(id, results) }));
      for (const { id, bytes } of built) assert.ok(bytes.equals(Buffer.from(doneFrame(id, results))), `id ${String(id)}, ${results.length} answers`);
    }
    // Its tail, to send as it is after another id's head.
    const tail = sameDoneTail(many);
    assert.equal(tail, undefined, 'the last frame was of other answers');
    doneFrameBytes('x', many);
    for (const id of ['h00000002', 'é"漢', null]) assert.ok(Buffer.concat([doneHead(id), sameDoneTail(many)!]).equals(Buffer.from(doneFrame(id, many))));
    // An array of the same length with other answers in it is another check's: made anew.
    const first = [ok, ok];
    doneFrameBytes('a', first);
    const other = [skipped, failed];
    assert.ok(doneFrameBytes('b', other).equals(Buffer.from(doneFrame('b', other))));
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

describe('the parsers of untrusted frames', () => {
  it('reads what the builders write, both ways', () => {
    assert.deepEqual(parseClientFrame(checkFrame('a', ['u1', 'u2']), 10), { ok: true, message: { type: 'check', id: 'a', urls: ['u1', 'u2'] } });
    assert.deepEqual(parseClientFrame(shortFrame(['u1', 'u2']), 10), { ok: true, message: { type: 'short', urls: ['u1', 'u2'] } });
    assert.deepEqual(parseServerFrame(helloFrame({ version: '1.2.3', maxBatch: 500, maxFrameBytes: 1024 })), { type: 'hello', version: '1.2.3', maxBatch: 500, maxFrameBytes: 1024 });
    const done = parseServerFrame(doneFrame('d', [ok, skipped, failed]));
    assert.deepEqual(done, { type: 'done', id: 'd', ok: 1, skipped: 1, failed: 1, results: [ok, skipped, failed] });
    assert.deepEqual(parseServerFrame(Buffer.concat([resultHead(7), resultTail(failed)]).toString()), { type: 'result', id: 7, ...failed });
    assert.deepEqual(parseServerFrame(errorFrame(null, 'bad_request', 'no')), { type: 'error', id: null, code: 'bad_request', message: 'no' });
    assert.deepEqual(parseShortAnswer(shortAnswer([ok, skipped])), [ok.coverUrl, skipped.url]);
  });

  it("keeps an ok result's width, height and color, and drops malformed ones", () => {
    const base = { type: 'result', id: 'r', url: 'u', status: 'ok', coverUrl: 'http://x/covers/a.jpg', path: 'a.jpg', source: 'cache' };
    const parsed = (extra: Record<string, unknown>) => parseServerFrame(JSON.stringify({ ...base, ...extra }));
    assert.deepEqual(parsed({ width: 1146, height: 717, color: '#3366cc' }), { ...base, width: 1146, height: 717, color: '#3366cc' });
    for (const bad of [{ width: 0, height: 5 }, { width: 1.5, height: 5 }, { width: '10', height: 5 }, { width: 10 }, { width: 10, height: 2e6 }]) {
      const result = parsed({ ...bad, color: '#000000' });
      assert.ok(result?.type === 'result');
      assert.deepEqual([result.width, result.height, result.color], [undefined, undefined, '#000000'], JSON.stringify(bad));
    }
    for (const color of ['#FFF', '#GGGGGG', 'red', '#3366CC', 7, '#3366cc;x']) assert.equal((parsed({ width: 1, height: 1, color }) as { color?: string }).color, undefined, String(color));
    assert.equal((parseServerFrame(JSON.stringify({ ...base, status: 'error', error: { code: 'tle', message: 'm' }, width: 5, height: 5, color: '#000000' })) as { width?: number }).width, undefined, 'only ok results carry them');
  });

  it('refuses what a server must never be trusted with', () => {
    for (const text of [
      'not json',
      '[]',
      '{"type":"hello","version":1,"maxBatch":10,"maxFrameBytes":1}',
      '{"type":"done","id":"d","results":[{"url":"u","status":"ok"}]}',
      '{"type":"done","id":"d","results":[{"url":"u","status":"weird"}]}',
      '{"type":"result","id":{},"url":"u","status":"skipped"}',
      '{"type":"error","id":"x","code":"made_up","message":"m"}',
      '{"type":"unknown"}',
    ]) {
      assert.equal(parseServerFrame(text), undefined, text);
    }
    assert.equal(parseShortAnswer('NO a b'), undefined);
  });

  it('answers every kind of bad client frame with its code and keeps the id when it can', () => {
    assert.deepEqual(parseClientFrame('{"type":"check","id":"x","urls":["a","b","c"]}', 2), { ok: false, id: 'x', code: 'too_many_urls', message: '3 URLs in one check; at most 2 (--max-batch)' });
    assert.equal((parseClientFrame('{"type":"nope","id":"x"}', 2) as { id: unknown }).id, 'x');
    assert.equal((parseClientFrame('C a  b', 2) as { code: string }).code, 'bad_request');
    assert.equal((parseClientFrame('{"type":"check","id":"x","urls":[1]}', 2) as { message: string }).message, 'urls[0] is not a string');
    assert.equal((parseClientFrame(`{"type":"check","id":"x","urls":["${'u'.repeat(8193)}"]}`, 2) as { code: string }).code, 'bad_request');
  });
});

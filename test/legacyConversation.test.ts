/**
 * The 2019 protocol's state machine (src/legacy/conversation.ts) on its own:
 * a whole conversation fed in every way the byte stream can arrive (every
 * two-piece split, byte by byte, all at once), the answers it writes compared
 * byte for byte, and every kind of bad input. The checks are answered by the
 * test as the service would (a URL that waits gets its W as it finishes); the
 * real service over a real TCP socket is tested in legacy.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LegacyConversation } from '../src/legacy/conversation.js';
import type { ConversationState } from '../src/legacy/conversation.js';

interface Run {
  out: string;
  checked: string[][];
  refused: string[];
  over: number;
  state: ConversationState;
}

/**
 * Feeds `pieces` one by one. After each piece, a check that started is answered
 * as the service answers: `waited` URLs one `W` each as they finish, the rest
 * with the results (`answer` maps a URL to its result string).
 */
function converse(pieces: Buffer[], answer: (url: string) => string, options: { waited?: number; maxUrls?: number; maxBytes?: number } = {}): Run {
  const run: Run = { out: '', checked: [], refused: [], over: 0, state: 'command' };
  let pendingCheck: string[] | undefined;
  const conversation = new LegacyConversation(
    {
      write: (text) => (run.out += text),
      check: (urls) => {
        run.checked.push(urls);
        pendingCheck = urls;
      },
      over: () => run.over++,
      refuse: (reason) => run.refused.push(reason),
    },
    { maxUrls: options.maxUrls ?? 1000, maxBytes: options.maxBytes ?? 8 * 1024 * 1024 },
  );
  for (const piece of pieces) {
    conversation.receive(piece);
    if (pendingCheck) {
      const urls = pendingCheck;
      pendingCheck = undefined;
      for (let i = 0; i < Math.min(options.waited ?? 0, urls.length); i++) conversation.answeredOne();
      conversation.answered(urls.map(answer));
    }
  }
  run.state = conversation.state;
  return run;
}

const COVER = 'http://covers.example/covers/i0.hdslb.com/a-1-2.jpg';
const urls = ['https://i0.hdslb.com/bfs/a.jpg', '', 'https://example.com/not-a-cover', 'https://i0.hdslb.com/bfs/broken.jpg', 'https://i0.hdslb.com/bfs/漢字.jpg'];
const answer = (url: string) => (url.includes('broken') ? '' : url.includes('hdslb') ? COVER : url);
const urlString = urls.join(' ');
const clientBytes = Buffer.from(`C${Buffer.byteLength(urlString)}${urlString}RCO`);
const results = urls.map(answer).join(' ');
const expected = `G${'W'.repeat(urls.length)}OKL${Buffer.byteLength(results)}${results}`;

describe('the 2019 conversation, however the bytes arrive', () => {
  it('answers a client that waits for each answer, byte for byte', () => {
    const n = Buffer.byteLength(urlString);
    const run = converse([Buffer.from(`C${n}`), Buffer.from(urlString), Buffer.from('R'), Buffer.from('C'), Buffer.from('O')], answer, { waited: 2 });
    assert.equal(run.out, expected);
    assert.deepEqual(run.checked, [urls], 'one check, empty URL from the double space included, lengths in bytes (漢字)');
    assert.deepEqual([run.state, run.over, run.refused], ['over', 1, []]);
  });

  it('gives the same bytes for every two-piece split of the whole conversation', () => {
    for (let cut = 1; cut < clientBytes.length; cut++) {
      const run = converse([clientBytes.subarray(0, cut), clientBytes.subarray(cut)], answer);
      assert.equal(run.out, expected, `split at ${cut}`);
      assert.deepEqual(run.checked, [urls], `split at ${cut}`);
      assert.equal(run.state, 'over', `split at ${cut}`);
    }
  });

  it('gives the same bytes byte by byte, and all in one write', () => {
    const bytes = Array.from(clientBytes, (byte) => Buffer.from([byte]));
    assert.equal(converse(bytes, answer).out, expected);
    assert.equal(converse([clientBytes], answer).out, expected);
    assert.equal(converse([clientBytes], answer).state, 'over');
  });

  it('answers an empty URL string (C0) with one empty-URL answer', () => {
    const run = converse([Buffer.from('C0'), Buffer.from('RCO')], (url) => url);
    assert.deepEqual(run.checked, [['']]);
    assert.equal(run.out, 'GWOKL0');
    assert.equal(run.state, 'over');
  });
});

describe('bad input closes the conversation', () => {
  it('refuses a bad first command', () => {
    for (const first of ['X12', 'c12', ' C12', 'Cx']) {
      const run = converse([Buffer.from(first)], answer);
      assert.equal(run.state, 'refused', first);
      assert.equal(run.out, '', `${first}: nothing answered`);
      assert.equal(run.checked.length, 0);
    }
  });

  it('refuses a URL string longer than announced before it answers', () => {
    const run = converse([Buffer.from('C5https://i0.hdslb.com/a.jpg')], answer);
    assert.equal(run.state, 'refused');
    assert.match(run.refused[0]!, /longer than its announced|expected R/);
    assert.doesNotMatch(run.out, /OK/);
  });

  it('refuses a length over 8 MiB at once, and more URLs than --max-batch', () => {
    const huge = converse([Buffer.from('C9999999999')], answer);
    assert.equal(huge.state, 'refused');
    assert.equal(huge.out, '');
    const many = Array.from({ length: 4 }, (_, i) => `https://i0.hdslb.com/${i}.jpg`).join(' ');
    const tooMany = converse([Buffer.from(`C${many.length}`), Buffer.from(many)], answer, { maxUrls: 3 });
    assert.equal(tooMany.state, 'refused');
    assert.match(tooMany.refused[0]!, /4 URLs in one request; at most 3/);
    assert.equal(tooMany.checked.length, 0);
  });

  it('refuses anything but R, C and O in their turn', () => {
    const n = Buffer.byteLength('https://a.b/c');
    for (const [tail, expected] of [['X', /expected R/], ['RX', /expected C/], ['RCX', /expected O/]] as const) {
      const run = converse([Buffer.from(`C${n}https://a.b/c`), Buffer.from(tail)], (url) => url);
      assert.equal(run.state, 'refused', tail);
      assert.match(run.refused[0]!, expected);
    }
  });
});

describe('what one conversation keeps', () => {
  const io = (refused: string[]) => ({ write: () => undefined, check: () => undefined, over: () => undefined, refuse: (reason: string) => refused.push(reason) });

  it('while its check runs, keeps R, C, O sent ahead but refuses more than 64 bytes at once, and reads each byte once', () => {
    const refused: string[] = [];
    const conversation = new LegacyConversation(io(refused), { maxUrls: 10, maxBytes: 1000 });
    conversation.receive(Buffer.from('C5abcdeRCO'));
    assert.equal(conversation.state, 'working');
    assert.deepEqual(refused, [], 'RCO of a client that does not wait is kept');
    const started = performance.now();
    for (let i = 0; i < 64 && refused.length === 0; i++) conversation.receive(Buffer.alloc(1024 * 1024, 0x52));
    assert.equal(conversation.state, 'refused');
    assert.match(refused[0]!, /sent while the check runs; at most 64/);
    assert.ok(performance.now() - started < 1000, 'refused at the first large read, not after copying what came before');
  });

  it('counts the announced URL string from C until its check starts', () => {
    const conversation = new LegacyConversation(io([]), { maxUrls: 10, maxBytes: 1000 });
    conversation.receive(Buffer.from('C1'));
    assert.equal(conversation.urlStringBytes, 1);
    conversation.receive(Buffer.from('0'));
    assert.equal(conversation.urlStringBytes, 10);
    conversation.receive(Buffer.from('abcde'));
    assert.equal(conversation.urlStringBytes, 10, 'half sent: the whole announcement still counts');
    conversation.receive(Buffer.from('fghij'));
    assert.equal(conversation.state, 'working');
    assert.equal(conversation.urlStringBytes, 0, 'the check started: nothing unfinished');
  });
});

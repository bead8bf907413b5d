/**
 * The cover URL of a proxy request, as blogs write it: `<prefix><cover URL>`
 * by string concatenation, for the prefixes `http://h/?url=` and
 * `http://h/proxy/`, with the cover raw and encoded with encodeURIComponent.
 * Each request target is what an HTTP client sends for that string (`new URL`
 * then path + query: what a browser puts on the request line), and is read
 * back by `coverUrlFromProxyRequest` into one normalised cover URL.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkProxyCover, coverUrlFromProxyRequest, defaultRedirect, ignoredParamsHeader, noParams, addWeservParam, weservVariant } from '../src/proxy/index.js';
import type { ProxyCoverResult } from '../src/proxy/index.js';

const prefixes = ['http://h/?url=', 'http://h/proxy/'] as const;

/** The request target a client sends for `<prefix><cover>`. */
function target(prefix: string, cover: string): string {
  const url = new URL(prefix + cover);
  return url.pathname + url.search;
}

function parse(prefix: string, cover: string): ProxyCoverResult {
  return coverUrlFromProxyRequest(target(prefix, cover));
}

const ok = (result: ProxyCoverResult, label: string) => {
  assert.ok(result.ok, `${label}: ${result.ok ? '' : `${result.code} ${result.message}`}`);
  return result;
};

/** [cover as a plugin writes it, the normalised cover URL, the bilibili suffix read off it]. */
const forms: [string, string, string?][] = [
  ['https://i0.hdslb.com/bfs/archive/abc.jpg', 'https://i0.hdslb.com/bfs/archive/abc.jpg'],
  ['http://i0.hdslb.com/bfs/archive/abc.jpg', 'http://i0.hdslb.com/bfs/archive/abc.jpg'],
  ['//i0.hdslb.com/bfs/archive/abc.jpg', 'https://i0.hdslb.com/bfs/archive/abc.jpg'],
  ['i0.hdslb.com/bfs/archive/abc.jpg', 'https://i0.hdslb.com/bfs/archive/abc.jpg'],
  ['HTTPS://I0.HDSLB.COM/bfs/archive/abc.jpg', 'https://i0.hdslb.com/bfs/archive/abc.jpg'],
  // A readable bilibili suffix names a variant of the URL without it.
  ['https://i0.hdslb.com/bfs/archive/abc.jpg@220w_280h.webp', 'https://i0.hdslb.com/bfs/archive/abc.jpg', '220w_280h.webp'],
  ['//i1.hdslb.com/bfs/archive/abc.jpg@336w_190h_1c.webp', 'https://i1.hdslb.com/bfs/archive/abc.jpg', '336w_190h_1c.webp'],
  ['i2.hdslb.com/bfs/face/f.png@96w_96h.avif', 'https://i2.hdslb.com/bfs/face/f.png', '96w_96h.avif'],
  // One that cannot be read stays part of the URL.
  ['https://i0.hdslb.com/bfs/archive/abc.jpg@672w_378h_1c_!web-search-common-cover.webp', 'https://i0.hdslb.com/bfs/archive/abc.jpg@672w_378h_1c_!web-search-common-cover.webp'],
  ['https://i0.hdslb.com/bfs/archive/logo@2x.png', 'https://i0.hdslb.com/bfs/archive/logo@2x.png'],
  ['https://i0.hdslb.com/bfs/a%20b.jpg', 'https://i0.hdslb.com/bfs/a%20b.jpg'],
  ['https://i0.hdslb.com/bfs/a+b.jpg', 'https://i0.hdslb.com/bfs/a+b.jpg'],
  ['https://i0.hdslb.com/bfs/a.jpg?x=1&y=2', 'https://i0.hdslb.com/bfs/a.jpg?x=1&y=2'],
  ['https://i0.hdslb.com:443/bfs/a.jpg', 'https://i0.hdslb.com/bfs/a.jpg'],
  ['i0.hdslb.com:8443/bfs/a.jpg', 'https://i0.hdslb.com:8443/bfs/a.jpg'],
  ['  https://i0.hdslb.com/bfs/a.jpg  ', 'https://i0.hdslb.com/bfs/a.jpg'],
];

/** [video page, normalised, bvid or aid]. */
const videos: [string, string, string][] = [
  ['https://www.bilibili.com/video/BV1xx411c7mD', 'https://www.bilibili.com/video/BV1xx411c7mD', 'BV1xx411c7mD'],
  ['https://www.bilibili.com/video/BV1xx411c7mD/?p=2', 'https://www.bilibili.com/video/BV1xx411c7mD/?p=2', 'BV1xx411c7mD'],
  ['//www.bilibili.com/video/av170001', 'https://www.bilibili.com/video/av170001', '170001'],
  ['m.bilibili.com/video/BV1xx411c7mD', 'https://m.bilibili.com/video/BV1xx411c7mD', 'BV1xx411c7mD'],
];

describe('proxy cover URL: every form plugins write', () => {
  for (const prefix of prefixes) {
    for (const encode of [false, true]) {
      it(`${prefix}<cover> with the cover ${encode ? 'encoded' : 'raw'}`, () => {
        for (const [cover, expected, suffix] of forms) {
          const written = encode ? encodeURIComponent(cover) : cover;
          const result = ok(parse(prefix, written), `${prefix}${written}`);
          assert.equal(result.url, expected, `${prefix}${written}`);
          assert.equal(result.suffix?.suffix, suffix, `${prefix}${written}: the suffix`);
          assert.equal(result.video, undefined);
          assert.equal(result.shape, prefix.endsWith('/proxy/') ? 'path' : 'query');
          assert.deepEqual(result.params, noParams(), `${prefix}${written}: no parameters`);
        }
        for (const [page, expected, id] of videos) {
          const written = encode ? encodeURIComponent(page) : page;
          const result = ok(parse(prefix, written), written);
          assert.equal(result.url, expected, written);
          assert.equal(result.video?.id, id, written);
        }
      });
    }
  }

  it('decodes a cover encoded twice, and never decodes a raw one', () => {
    const cover = 'https://i0.hdslb.com/bfs/a%2Fb.jpg';
    for (const prefix of prefixes) {
      assert.equal(ok(parse(prefix, cover), 'raw').url, cover, 'a raw %2F stays');
      assert.equal(ok(parse(prefix, encodeURIComponent(cover)), 'encoded').url, cover);
      assert.equal(ok(parse(prefix, encodeURIComponent(encodeURIComponent('https://i0.hdslb.com/x.jpg'))), 'twice').url, 'https://i0.hdslb.com/x.jpg');
    }
  });

  it('reads /proxy/https:/host (slashes merged by a proxy in front) and /proxy///host', () => {
    assert.equal(ok(coverUrlFromProxyRequest('/proxy/https:/i0.hdslb.com/x.jpg'), 'merged').url, 'https://i0.hdslb.com/x.jpg');
    assert.equal(ok(coverUrlFromProxyRequest('/proxy///i0.hdslb.com/x.jpg'), '///').url, 'https://i0.hdslb.com/x.jpg');
  });

  it('refuses file:, data:, javascript: and every other scheme as not_allowed, encoded or not', () => {
    const refused = ['file:///etc/passwd', 'data:image/png;base64,iVBORw0KGgo=', 'javascript:alert(1)', 'ftp://i0.hdslb.com/a.jpg', 'blob:https://i0.hdslb.com/x', 'gopher://x/', 'ws://i0.hdslb.com/a', 'about:blank', 'JAVASCRIPT:alert(1)'];
    for (const prefix of prefixes) {
      for (const cover of refused) {
        for (const written of [cover, encodeURIComponent(cover)]) {
          const result = parse(prefix, written);
          assert.equal(result.ok, false, `${prefix}${written}`);
          if (!result.ok) assert.equal(result.code, 'not_allowed', `${prefix}${written}: ${result.message}`);
        }
      }
    }
  });

  it('answers bad_request for no url, an empty one, bad encoding and no host', () => {
    const bad: [string, boolean][] = [
      ['/', true],
      ['/?', true],
      ['/?w=200', true],
      ['/?urlx=https://i0.hdslb.com/a.jpg', true],
      ['/?url', true],
      ['/?url=', false],
      ['/?url=%20%20', false],
      ['/?url=%E0%A4%A', false],
      ['/?url=/bfs/a.jpg', false],
      ['/?url=https://', false],
      ['/proxy/', false],
      ['/proxy/?url=x', false],
      ['/elsewhere?url=https://i0.hdslb.com/a.jpg', false],
      [`/?url=https://i0.hdslb.com/${'a'.repeat(9000)}.jpg`, false],
    ];
    for (const [request, noUrl] of bad) {
      const result = coverUrlFromProxyRequest(request);
      assert.equal(result.ok, false, request);
      if (!result.ok) {
        assert.equal(result.code, 'bad_request', `${request.slice(0, 60)}: ${result.message}`);
        assert.equal(result.noUrl === true, noUrl, `${request.slice(0, 60)}: noUrl`);
      }
    }
  });
});

describe('proxy cover URL: weserv parameters and a raw & after url=', () => {
  it('reads weserv parameters after an encoded cover, before url=, and on the /proxy/ shape after an encoded cover', () => {
    const cover = 'https://i0.hdslb.com/bfs/a.jpg?x=1&y=2';
    const after = ok(coverUrlFromProxyRequest(`/?url=${encodeURIComponent(cover)}&w=200&h=100&dpr=2&fit=inside&output=webp&q=80&foo=1`), 'after');
    assert.equal(after.url, cover);
    assert.deepEqual(after.params, { w: 200, h: 100, dpr: 2, fit: 'inside', output: 'webp', q: 80, other: [], invalid: [] }, 'foo= after an encoded cover is ignored');
    const before = ok(coverUrlFromProxyRequest(`/?w=64&n=-1&url=${encodeURIComponent(cover)}`), 'before');
    assert.equal(before.url, cover);
    assert.deepEqual(before.params, { w: 64, other: ['n'], invalid: [] });
    const path = ok(coverUrlFromProxyRequest(`/proxy/${encodeURIComponent(cover)}?w=20&output=avif`), 'path');
    assert.equal(path.url, cover);
    assert.deepEqual(path.params, { w: 20, output: 'avif', other: [], invalid: [] });
  });

  it('after a raw cover: weserv names are parameters, other parts continue its own query', () => {
    const cases: [string, string, Record<string, unknown>][] = [
      ['/?url=i0.hdslb.com/x.jpg&w=200', 'https://i0.hdslb.com/x.jpg', { w: 200 }],
      ['/?url=https://i0.hdslb.com/x.jpg?a1=1&b=2&w=200', 'https://i0.hdslb.com/x.jpg?a1=1&b=2', { w: 200 }],
      ['/?url=https://i0.hdslb.com/x.jpg?a1=1&h=50&b=2&we&fit=cover', 'https://i0.hdslb.com/x.jpg?a1=1&b=2&we', { h: 50, fit: 'cover' }],
      ['/?url=https://i0.hdslb.com/x.jpg&foo=1&w=3', 'https://i0.hdslb.com/x.jpg', { w: 3 }],
      ['/?url=https://www.bilibili.com/video/BV1xx411c7mD?p=2&output=jpg', 'https://www.bilibili.com/video/BV1xx411c7mD?p=2', { output: 'jpg' }],
      ['/?url=//i0.hdslb.com/x.jpg&default=https%3A%2F%2Fi0.hdslb.com%2Fd.png', 'https://i0.hdslb.com/x.jpg', { default: 'https://i0.hdslb.com/d.png' }],
      ['/?url=https://i0.hdslb.com/x.jpg&url=https://evil.example/y.jpg', 'https://i0.hdslb.com/x.jpg', {}],
    ];
    for (const [request, url, params] of cases) {
      const result = ok(coverUrlFromProxyRequest(request), request);
      assert.equal(result.url, url, request);
      assert.deepEqual(result.params, { other: [], invalid: [], ...params }, request);
    }
  });

  it('drops bad values (named as invalid) and keeps the cover', () => {
    const result = ok(coverUrlFromProxyRequest('/?url=i0.hdslb.com/x.jpg&w=abc&h=0&dpr=9&fit=stretch&output=gif&q=101&default='), 'bad values');
    assert.equal(result.url, 'https://i0.hdslb.com/x.jpg');
    assert.deepEqual(result.params, { other: [], invalid: ['w', 'h', 'dpr', 'fit', 'output', 'q', 'default'] });
    const good = noParams();
    for (const [name, value] of [['w', '10000'], ['h', '1'], ['dpr', '1.5'], ['fit', 'OUTSIDE'], ['output', 'jpeg'], ['q', '1']] as const) {
      assert.equal(addWeservParam(good, name, value), true, name);
    }
    assert.deepEqual(good, { w: 10000, h: 1, dpr: 1.5, fit: 'outside', output: 'jpg', q: 1, other: [], invalid: [] });
    assert.equal(addWeservParam(good, 'foo', '1'), false, 'foo is no weserv parameter');
  });

  it('X-Coverhelper-Ignored names every given parameter not applied, default only when bad', () => {
    const params = ok(coverUrlFromProxyRequest('/?url=i0.hdslb.com/x.jpg&w=200&h=100&fit=cover&n=-1&default=i0.hdslb.com/d.jpg'), 'given').params;
    assert.equal(ignoredParamsHeader(params), 'w, h, fit, n');
    assert.equal(ignoredParamsHeader(params, ['w', 'h']), 'fit, n');
    assert.equal(ignoredParamsHeader(noParams()), undefined, 'no header without parameters');
    assert.equal(ignoredParamsHeader(ok(coverUrlFromProxyRequest('/?url=i0.hdslb.com/x.jpg&default=i0.hdslb.com/d.jpg'), 'd').params), undefined);
    const bad = ok(coverUrlFromProxyRequest('/?url=i0.hdslb.com/x.jpg&w=x&default='), 'bad').params;
    assert.equal(ignoredParamsHeader(bad, ['w', 'default']), 'w, default', 'a bad value is never applied');
  });

  it('weservVariant: the variant the parameters ask for, with the names it applies', () => {
    const of = (query: string) => weservVariant(ok(coverUrlFromProxyRequest(`/?url=i0.hdslb.com/x.jpg${query}`), query).params);
    assert.equal(of(''), undefined, 'no parameters: the stored cover itself');
    assert.equal(of('&default=i0.hdslb.com/d.jpg&n=-1&w=abc'), undefined, 'default, others and bad values make no variant');
    assert.deepEqual(of('&w=200&h=100'), { request: { w: 200, h: 100, fit: 'inside' }, applied: ['w', 'h'], byAccept: true }, "weserv's default fit: inside");
    assert.deepEqual(of('&w=300&fit=cover&output=jpg&q=70'), { request: { w: 300, fit: 'cover', format: 'jpeg', quality: 70 }, applied: ['w', 'fit', 'output', 'q'], byAccept: false });
    assert.deepEqual(of('&output=avif'), { request: { fit: 'inside', format: 'avif' }, applied: ['output'], byAccept: false });
    assert.deepEqual(of('&w=100&dpr=8')?.request, { w: 100, dpr: 3, fit: 'inside' }, 'dpr past 3 is applied as 3');
    assert.deepEqual(of('&w=100&dpr=0.5')?.request, { w: 100, dpr: 1, fit: 'inside' }, 'dpr below 1 as 1');
    assert.deepEqual(of('&w=100&dpr=1.555')?.request, { w: 100, dpr: 1.56, fit: 'inside' }, 'two decimals');
    const given = ok(coverUrlFromProxyRequest('/?url=i0.hdslb.com/x.jpg&w=200&h=100&fit=cover&n=-1&we'), 'given').params;
    assert.equal(ignoredParamsHeader(given, weservVariant(given)?.applied), 'n', 'only what was not applied is named');
  });
});

describe('proxy cover URL: only what /ws would fetch', () => {
  const rules = { allowHosts: ['*.hdslb.com', '*.biliimg.com'], allowPrivateNetwork: false };

  it('allows images on --allow-hosts and video pages; refuses other hosts and private literals', () => {
    assert.deepEqual(checkProxyCover('https://i0.hdslb.com/bfs/a.jpg@220w_280h.webp', rules), { ok: true, kind: 'image' });
    assert.deepEqual(checkProxyCover('https://www.bilibili.com/video/BV1xx411c7mD', rules), { ok: true, kind: 'video' });
    const refused = ['https://evil.example/a.jpg', 'https://i0.hdslb.com.evil.example/a.jpg', 'https://user:pw@i0.hdslb.com/a.jpg', 'https://www.bilibili.com/'];
    for (const url of refused) assert.equal(checkProxyCover(url, rules).ok, false, url);
    const open = { allowHosts: ['*'], allowPrivateNetwork: false };
    for (const url of ['http://127.0.0.1/a.jpg', 'http://[::1]/a.jpg', 'http://10.0.0.1/a.jpg', 'http://localhost:8080/a.jpg', 'http://169.254.169.254/latest', 'http://[::ffff:127.0.0.1]/a.jpg']) {
      const result = checkProxyCover(url, open);
      assert.deepEqual(result.ok ? 'allowed' : result.code, 'not_allowed', url);
    }
    assert.deepEqual(checkProxyCover('http://127.0.0.1:9/a.jpg', { allowHosts: ['127.0.0.1'], allowPrivateNetwork: true }), { ok: true, kind: 'image' });
  });

  it('redirects to default= only when it is an allowed image URL', () => {
    assert.equal(defaultRedirect('i0.hdslb.com/d.jpg', rules), 'https://i0.hdslb.com/d.jpg');
    assert.equal(defaultRedirect(encodeURIComponent('//i0.hdslb.com/d.jpg'), rules), 'https://i0.hdslb.com/d.jpg');
    for (const value of [undefined, 'https://evil.example/d.jpg', 'javascript:alert(1)', 'https://www.bilibili.com/video/BV1xx411c7mD', 'data:image/gif;base64,R0lGOD']) {
      assert.equal(defaultRedirect(value, rules), undefined, String(value));
    }
  });
});

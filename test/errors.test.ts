import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CoverError, isRemembered, isRetryable, refusalToCoverError, toCoverError } from '../src/errors.js';
import { UpstreamRefusal } from '../src/upstream/types.js';

describe('the retry table', () => {
  it('retries transient failures and nothing else', () => {
    const cases: [Parameters<typeof isRetryable>[0], boolean][] = [
      [{ code: 'network' }, true],
      [{ code: 'http_status', detail: 500 }, true],
      [{ code: 'http_status', detail: 503 }, true],
      [{ code: 'http_status', detail: 429 }, true],
      [{ code: 'http_status', detail: 404 }, false],
      [{ code: 'http_status', detail: 403 }, false],
      [{ code: 'http_status' }, false],
      [{ code: 'not_image' }, false],
      [{ code: 'too_large' }, false],
      [{ code: 'not_allowed' }, false],
      [{ code: 'invalid_url' }, false],
      [{ code: 'tle' }, false],
      [{ code: 'resolve_failed', detail: -404 }, false],
      [{ code: 'resolve_failed', detail: -500 }, true],
      [{ code: 'resolve_failed', detail: 62002 }, false],
      [{ code: 'upstream_limited' }, false],
      [{ code: 'disk_full' }, false],
      [{ code: 'shutting_down' }, false],
    ];
    for (const [error, expected] of cases) assert.equal(isRetryable(error), expected, JSON.stringify(error));
  });

  it('turns unknown throws into network errors and a full disk into disk_full', () => {
    assert.equal(toCoverError(new Error('boom')).code, 'network');
    assert.equal(toCoverError(Object.assign(new Error('no space'), { code: 'ENOSPC' })).code, 'disk_full');
    const refused = toCoverError(new UpstreamRefusal('api.bilibili.com', 'API code -352'));
    assert.equal(refused.code, 'upstream_limited');
    assert.equal(refusalToCoverError(new UpstreamRefusal('i0.hdslb.com', 'HTTP 429', 5000)).code, 'upstream_limited');
    assert.equal(isRemembered('upstream_limited'), false, 'a refusal is the host\'s state, never the URL\'s remembered failure');
    assert.equal(isRemembered('resolve_failed'), true);
    const original = new CoverError('too_large', 'big');
    assert.equal(toCoverError(original), original);
  });
});

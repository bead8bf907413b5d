import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CoverError, isRetryable, toCoverError } from '../src/errors.js';

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
      [{ code: 'resolve_failed', detail: -412 }, true],
      [{ code: 'disk_full' }, false],
      [{ code: 'shutting_down' }, false],
    ];
    for (const [error, expected] of cases) assert.equal(isRetryable(error), expected, JSON.stringify(error));
  });

  it('turns unknown throws into network errors and a full disk into disk_full', () => {
    assert.equal(toCoverError(new Error('boom')).code, 'network');
    assert.equal(toCoverError(Object.assign(new Error('no space'), { code: 'ENOSPC' })).code, 'disk_full');
    const original = new CoverError('too_large', 'big');
    assert.equal(toCoverError(original), original);
  });
});

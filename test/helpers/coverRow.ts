/**
 * A cover row for tests that write rows directly: every column set, the ones a
 * test does not care about to a plain download of a 1×1 JPEG stored at time 0,
 * never resolved (not a video page yet) without an original or a colour.
 */
import type { CoverRow } from '../../src/store/index.js';

export function coverRow(url: string, overrides: Partial<CoverRow> = {}): CoverRow {
  return {
    url,
    path: 'h/a.jpg',
    source: 'download',
    bytes: 1,
    contentType: 'image/jpeg',
    width: 1,
    height: 1,
    sha256: 'a'.repeat(64),
    createdAt: 0,
    lastAskedAt: 0,
    resolvedAt: null,
    resolvedPic: null,
    originalPath: null,
    originalWidth: null,
    originalHeight: null,
    originalBytes: null,
    color: null,
    ...overrides,
  };
}

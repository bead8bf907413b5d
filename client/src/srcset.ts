/**
 * `srcset` strings for a cover: the service makes any width of a cover on
 * demand at `<coverUrl>?w=<width>&f=<format>` (rounded up to its `--widths`,
 * never past the original), so a page lists the widths its layout can use and
 * lets the browser pick by screen and density.
 */
import type { CheckResult } from './protocol.js';

/** The formats the service renders a cover in. */
export type CoverFormat = 'jpeg' | 'png' | 'webp' | 'avif';

export const COVER_FORMATS: readonly CoverFormat[] = ['jpeg', 'png', 'webp', 'avif'];

export interface SrcsetOptions {
  /** The widths to offer, in pixels (positive integers; order and repeats do not matter). */
  widths: readonly number[];
  /**
   * The format of every candidate (`f=`). Without it the URLs name none and the
   * service picks from the browser's `Accept` (AVIF or WebP when it takes them).
   */
  format?: CoverFormat;
}

/**
 * The `srcset` value for an ok result: one `<url> <w>w` candidate per width, in
 * ascending order. Widths past the original's `width` are left out (the service
 * never enlarges, so they would only repeat the largest image under a false
 * descriptor); when any is left out, the original's own width is offered once
 * instead, so the sharpest image the service has stays on the list. A result
 * without `width` (from a service before these fields) keeps every width.
 * Anything but an ok result with a `coverUrl` gives `''` (no candidates: use
 * the original URL).
 *
 * Throws a `RangeError` for a width that is not a positive integer, or a format
 * the service does not know.
 */
export function coverSrcset(result: Pick<CheckResult, 'status' | 'coverUrl' | 'width'>, options: SrcsetOptions): string {
  const { widths, format } = options;
  for (const width of widths) {
    if (!Number.isInteger(width) || width <= 0) throw new RangeError(`coverSrcset: width ${String(width)} is not a positive integer`);
  }
  if (format !== undefined && !COVER_FORMATS.includes(format)) throw new RangeError(`coverSrcset: format ${String(format)} is not one of ${COVER_FORMATS.join(', ')}`);
  if (result.status !== 'ok' || !result.coverUrl) return '';
  const original = result.width !== undefined && Number.isInteger(result.width) && result.width > 0 ? result.width : undefined;
  const chosen = new Set<number>();
  let capped = false;
  for (const width of widths) {
    if (original !== undefined && width > original) capped = true;
    else chosen.add(width);
  }
  if (capped && original !== undefined) chosen.add(original);
  // A candidate's URL ends at whitespace: any in it (none in the service's own) is escaped.
  const base = result.coverUrl.replace(/\s/g, (c) => encodeURIComponent(c));
  const join = base.includes('?') ? '&' : '?';
  const suffix = format === undefined ? '' : `&f=${format}`;
  return [...chosen]
    .sort((a, b) => a - b)
    .map((width) => `${base}${join}w=${width}${suffix} ${width}w`)
    .join(', ');
}

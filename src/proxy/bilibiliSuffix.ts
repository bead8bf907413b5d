/**
 * bilibili's image processing suffixes, read as variants of the URL without
 * them: blog plugins ask bilibili's CDN for `…/abc.jpg@220w_280h.webp` or
 * `…/abc.jpg@336w_190h_1c.webp`, and every suffix of one cover should cost one
 * download of `…/abc.jpg`, the sizes and formats being made here.
 *
 * The suffix is what follows the one `@` in the last path segment, after a file
 * name with an extension (`abc.jpg@…`): parts joined by `_`, then an optional
 * format extension.
 * - `{n}w`, `{n}h`: the width and height box, whole numbers 1–10000. As on
 *   bilibili's CDN they are maxima: the aspect is kept inside the box
 *   (`@220w_280h` of a 1146×717 cover is 220×138).
 * - `{0|1}c`: `1c` crops to fill exactly w×h, centred (it needs both w and h;
 *   with one of them the aspect is kept, as the CDN does).
 * - `{0|1}e`: the CDN's resize mode; `0e` (the default) fits inside the box,
 *   `1e` covers it (the short side fits, the other may pass the box).
 * - `{n}q`: the quality, 1–100.
 * - `.webp`, `.avif`, `.png`, `.jpg` (or `.jpeg`): the format; without one, the
 *   original's own. `@.webp` is the original's size in WebP.
 * Sizes are exact (pages are laid out for them), never past the original: a
 * larger box keeps the original's size, and a larger crop box becomes the
 * largest box of its aspect inside the original.
 *
 * A suffix that cannot be read (a part not listed above, a part twice, an
 * empty part, a number out of range, an `@` with nothing after it, two `@`, an
 * `@` in the query, a URL with a query or a fragment, no file extension before
 * the `@`, such as `logo@2x.png`) is no variant: the URL is kept whole, fetched
 * as it is and stored as its own cover.
 *
 * Suffixes are read on every host the service fetches from, not only
 * bilibili's: a cover URL elsewhere that happens to end in `x.jpg@100w` is read
 * the same way.
 */

import { specFromRequest } from '../images/variants.js';
import type { OriginalInfo, VariantFormat, VariantRequest, VariantSpec } from '../images/variants.js';

/** The formats a suffix can name (the render core's names). */
export type SuffixFormat = VariantFormat;

/** What a readable suffix asks for. */
export interface SuffixRequest {
  /** Width box, if given. */
  w?: number;
  /** Height box, if given. */
  h?: number;
  /** `1c`: crop to fill exactly w×h (only set when both are given). */
  crop: boolean;
  /** `1e` (without a crop): cover the box instead of fitting inside it. */
  cover: boolean;
  /** `{n}q`. */
  quality?: number;
  /** The extension's format; undefined = the original's own. */
  format?: SuffixFormat;
}

/** A cover URL with a readable suffix. */
export interface BilibiliSuffix {
  /** The URL without the suffix: what is checked, downloaded and stored. */
  base: string;
  /** The suffix as given, without its `@`. */
  suffix: string;
  request: SuffixRequest;
}

/** Largest w or h a suffix may name. */
export const MAX_SUFFIX_SIDE = 10000;

const formatByExtension: Readonly<Record<string, SuffixFormat>> = { webp: 'webp', avif: 'avif', png: 'png', jpg: 'jpeg', jpeg: 'jpeg' };

/** A file name with an extension, then `@`. */
const basePattern = /^[^@/]*[^@/.]\.[A-Za-z0-9]{1,5}$/;
const partPattern = /^([1-9]\d{0,4}|0)([whceq])$/;
const tailPattern = /^(.*?)(?:\.(webp|avif|png|jpg|jpeg))?$/;

function readSuffix(suffix: string): SuffixRequest | undefined {
  const tail = tailPattern.exec(suffix);
  if (tail === null) return undefined;
  const partsText = tail[1]!;
  const format = tail[2] === undefined ? undefined : formatByExtension[tail[2]];
  if (partsText === '' && format === undefined) return undefined;
  const seen = new Map<string, number>();
  if (partsText !== '') {
    for (const part of partsText.split('_')) {
      const m = partPattern.exec(part);
      if (m === null) return undefined;
      const letter = m[2]!;
      if (seen.has(letter)) return undefined;
      seen.set(letter, Number(m[1]));
    }
  }
  const w = seen.get('w');
  const h = seen.get('h');
  const c = seen.get('c');
  const e = seen.get('e');
  const q = seen.get('q');
  if (w !== undefined && (w < 1 || w > MAX_SUFFIX_SIDE)) return undefined;
  if (h !== undefined && (h < 1 || h > MAX_SUFFIX_SIDE)) return undefined;
  if (c !== undefined && c > 1) return undefined;
  if (e !== undefined && e > 1) return undefined;
  if (q !== undefined && (q < 1 || q > 100)) return undefined;
  const both = w !== undefined && h !== undefined;
  const crop = c === 1 && both;
  const request: SuffixRequest = { crop, cover: !crop && e === 1 && both };
  if (w !== undefined) request.w = w;
  if (h !== undefined) request.h = h;
  if (q !== undefined) request.quality = q;
  if (format !== undefined) request.format = format;
  return request;
}

/**
 * The suffix of a normalised cover URL (`URL.href`), or undefined when it has
 * none or one that cannot be read (then the URL is fetched whole).
 */
export function readBilibiliSuffix(href: string): BilibiliSuffix | undefined {
  const at = href.lastIndexOf('@');
  if (at === -1) return undefined;
  let url: URL;
  try {
    url = new URL(href);
  } catch {
    return undefined;
  }
  if (url.search !== '' || url.hash !== '' || href.includes('?') || href.includes('#')) return undefined;
  const path = url.pathname;
  const slash = path.lastIndexOf('/');
  const segment = path.slice(slash + 1);
  const mark = segment.indexOf('@');
  if (mark === -1 || segment.indexOf('@', mark + 1) !== -1) return undefined;
  if (!basePattern.test(segment.slice(0, mark))) return undefined;
  const suffix = segment.slice(mark + 1);
  // The href ends with the path (no query, no fragment), so the suffix is its tail.
  if (!href.endsWith(`@${suffix}`)) return undefined;
  const request = readSuffix(suffix);
  if (request === undefined) return undefined;
  return { base: href.slice(0, href.length - suffix.length - 1), suffix, request };
}

/** The render core's request for a suffix: `1c` is `cover`, `1e` is `outside`, else `inside`. */
export function suffixVariantRequest(request: SuffixRequest): VariantRequest {
  return {
    w: request.w,
    h: request.h,
    fit: request.crop ? 'cover' : request.cover ? 'outside' : 'inside',
    format: request.format,
    quality: request.quality,
  };
}

/**
 * The exact variant `request` asks of an original of `original.width`×`height`
 * in `original.format` (a sharp format name or a content type): the aspect
 * kept inside the box (or covering it with `1e`), or with `1c` cropped to the
 * box; never past the original; sizes exact (not rounded to `--widths`, both
 * sides given, so the render makes exactly them); the extension's format, else
 * the original's own (`Accept` plays no part).
 */
export function suffixSpec(request: SuffixRequest, original: OriginalInfo): VariantSpec {
  const spec = specFromRequest(suffixVariantRequest(request), original, { widths: [], formats: [], round: false });
  if (spec.fit === 'cover') return spec;
  // The size at the kept aspect, both sides rounded, made exactly (`fill`): left to
  // sharp, `inside` may come out a pixel short (100 wide of 1146×717 is 100×62.6: 63).
  const height = spec.height ?? Math.max(1, Math.round((Math.max(1, original.height) * spec.width) / Math.max(1, original.width)));
  return { ...spec, height, fit: 'fill' };
}

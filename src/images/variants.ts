/**
 * Variants: a cover at the size and in the format a page asks for, made from
 * the original kept beside it. Pure (no I/O but sharp): what to make
 * (`specFromRequest`, from a request's values), its name (`variantKey`), and the
 * making (`renderVariant`, within the shared decode budget, with the shared
 * encoder), and its stored path (`variantPathOf`, in the folder `coverFiles.ts`
 * keeps beside each cover);
 * who makes them, once each, is the render supervisor's (`renders.ts`).
 *
 * A variant is never larger than its original: a request past it is scaled
 * down to the original's size, keeping the requested aspect.
 */
import { CoverError } from '../errors.js';
import { encodeImage } from './encode.js';
import type { EncodedImage } from './encode.js';
import { input, notImage, withinDecodeBudget } from './processImage.js';
import { variantsFolderOf } from '../store/coverFiles.js';

export type VariantFormat = 'jpeg' | 'png' | 'webp' | 'avif';
export type VariantFit = 'cover' | 'contain' | 'inside' | 'outside' | 'fill';

/** One variant, fully resolved: the exact pixel box and encoding to make. */
export interface VariantSpec {
  /** Exact output width in pixels (already rounded/clamped by whoever built the spec). */
  width: number;
  /** Exact output height, or undefined = keep aspect from width. */
  height?: number;
  /** sharp's fit; 'cover' crops centred. */
  fit: VariantFit;
  format: VariantFormat;
  /** 1–100, undefined = the format's default. */
  quality?: number;
}

export const VARIANT_FORMATS: readonly VariantFormat[] = ['jpeg', 'png', 'webp', 'avif'];
export const VARIANT_FITS: readonly VariantFit[] = ['cover', 'contain', 'inside', 'outside', 'fill'];
/** The default `--widths`. */
export const DEFAULT_WIDTHS: readonly number[] = [160, 240, 320, 480, 640, 960, 1280, 1920];
/** The default `--formats` (tried in this order against `Accept`, then the original's own). */
export const DEFAULT_FORMATS: readonly VariantFormat[] = ['avif', 'webp'];
/** Largest `w`/`h` a request may name (larger ones are refused, not clamped: they are mistakes). */
export const MAX_DIMENSION = 16_384;

const contentTypes: Record<VariantFormat, string> = { jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', avif: 'image/avif' };
const extensions: Record<VariantFormat, string> = { jpeg: 'jpg', png: 'png', webp: 'webp', avif: 'avif' };

/** The Content-Type of a variant format. */
export const variantContentType = (format: VariantFormat): string => contentTypes[format];
/** The file extension of a variant format. */
export const variantExtension = (format: VariantFormat): string => extensions[format];

/** A request's value that cannot name a variant: answered 400 `bad_request` with `message`. */
export class VariantRequestError extends Error {
  override readonly name = 'VariantRequestError';
  readonly code = 'bad_request';
}

function checkSpec(spec: VariantSpec): void {
  const whole = (n: number | undefined) => n === undefined || (Number.isInteger(n) && n >= 1 && n <= MAX_DIMENSION);
  if (!whole(spec.width) || !whole(spec.height)) throw new RangeError(`a variant's size must be whole pixels from 1 to ${MAX_DIMENSION}: ${spec.width}×${spec.height}`);
  if (!VARIANT_FITS.includes(spec.fit)) throw new RangeError(`not a fit: ${String(spec.fit)}`);
  if (!VARIANT_FORMATS.includes(spec.format)) throw new RangeError(`not a variant format: ${String(spec.format)}`);
  if (spec.quality !== undefined && !(Number.isInteger(spec.quality) && spec.quality >= 1 && spec.quality <= 100)) {
    throw new RangeError(`a quality is a whole number from 1 to 100, not ${spec.quality}`);
  }
}

/**
 * A stable short key for the spec, `[a-z0-9-]` only, used in the file name:
 * `w320-h200-cover-webp`, `w480-inside-avif-q50`.
 */
export function variantKey(spec: VariantSpec): string {
  checkSpec(spec);
  const parts = [`w${spec.width}`];
  if (spec.height !== undefined) parts.push(`h${spec.height}`);
  parts.push(spec.fit, spec.format);
  if (spec.quality !== undefined) parts.push(`q${spec.quality}`);
  return parts.join('-');
}

/** The stored path of the variant `spec` of the cover stored at `coverPath`: `<path>.variants/<key>.<ext>`, beside it (the folder is the store's). */
export function variantPathOf(coverPath: string, spec: VariantSpec): string {
  return `${variantsFolderOf(coverPath)}/${variantKey(spec)}.${variantExtension(spec.format)}`;
}

/**
 * Renders one variant from an original's bytes: decoded within the shared
 * decode budget (the pixel limit, `signal` honoured as for downloads), turned
 * upright, resized to the spec (never enlarged: sharp's `withoutEnlargement`
 * guards a spec that was not clamped) and encoded with the shared encoder.
 * A body that does not decode is `not_image`.
 */
export function renderVariant(original: Buffer, spec: VariantSpec, signal?: AbortSignal): Promise<EncodedImage> {
  checkSpec(spec);
  return withinDecodeBudget(original, signal, async () => {
    try {
      const pipeline = input(original)
        .rotate()
        .resize(spec.width, spec.height, { fit: spec.fit, position: 'centre', withoutEnlargement: true, background: spec.format === 'jpeg' ? '#ffffff' : { r: 0, g: 0, b: 0, alpha: 0 } });
      return await encodeImage(pipeline, spec.format, 'variant', spec.quality);
    } catch (error) {
      throw error instanceof CoverError ? error : notImage(error);
    }
  });
}

/** A request's raw values: query strings (`/covers/…?w=`), or numbers (a parsed bilibili suffix). */
export interface VariantRequest {
  w?: string | number | undefined;
  h?: string | number | undefined;
  fit?: string | undefined;
  /** `f`: `jpeg` (or `jpg`), `png`, `webp`, `avif`; undefined = by `Accept`. */
  format?: string | undefined;
  dpr?: string | number | undefined;
  /** `q`: 1–100, undefined = the format's default. */
  quality?: string | number | undefined;
}

/**
 * What a stored cover's original is, for a spec: its size (the cover's own for
 * covers stored before originals were kept) and its format (the original and
 * the cover always share one).
 */
export function originalOf(row: { width: number; height: number; contentType: string; originalWidth: number | null; originalHeight: number | null }): OriginalInfo {
  return { width: row.originalWidth ?? row.width, height: row.originalHeight ?? row.height, format: row.contentType };
}

export interface OriginalInfo {
  width: number;
  height: number;
  /** The original's format (sharp's name or a content type); its own is the last choice without `f`. */
  format: string;
}

export interface SpecOptions {
  /** `--widths`, ascending or not. */
  widths: readonly number[];
  /** `--formats`, in order of preference. */
  formats: readonly VariantFormat[];
  /** The request's `Accept` header. */
  accept?: string | undefined;
  /** Round the width up to `widths` (`/covers`, weserv); false for exact sizes (bilibili suffixes). */
  round: boolean;
}

function dimension(name: string, value: string | number | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = typeof value === 'number' ? value : /^[0-9]{1,6}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_DIMENSION) throw new VariantRequestError(`${name} must be a whole number of pixels from 1 to ${MAX_DIMENSION}, not ${JSON.stringify(String(value))}`);
  return n;
}

function devicePixelRatio(value: string | number | undefined): number {
  if (value === undefined || value === '') return 1;
  const n = typeof value === 'number' ? value : /^[0-9](\.[0-9]{1,2})?$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= 3)) throw new VariantRequestError(`dpr must be a number from 1 to 3 (at most two decimals), not ${JSON.stringify(String(value))}`);
  return n;
}

function fitOf(value: string | undefined): VariantFit {
  if (value === undefined || value === '') return 'cover';
  if (!(VARIANT_FITS as readonly string[]).includes(value)) throw new VariantRequestError(`fit must be one of ${VARIANT_FITS.join(', ')}, not ${JSON.stringify(value)}`);
  return value as VariantFit;
}

function qualityOf(value: string | number | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = typeof value === 'number' ? value : /^[0-9]{1,3}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new VariantRequestError(`q must be a whole number from 1 to 100, not ${JSON.stringify(String(value))}`);
  return n;
}

/** A format's name as `f` may say it (`jpg` is `jpeg`), or undefined. */
export function variantFormatOf(value: string): VariantFormat | undefined {
  const name = value.toLowerCase();
  if (name === 'jpg') return 'jpeg';
  return (VARIANT_FORMATS as readonly string[]).includes(name) ? (name as VariantFormat) : undefined;
}

/** The original's own format as a variant format (by sharp's name or content type; others: JPEG). */
function ownFormat(format: string): VariantFormat {
  const name = format.toLowerCase().replace(/^image\//, '');
  if (name === 'heif') return 'avif';
  return variantFormatOf(name) ?? 'jpeg';
}

/** The media types an `Accept` header takes explicitly (q > 0); wildcards say nothing about new formats. */
export function acceptedTypes(accept: string | undefined): Set<string> {
  const types = new Set<string>();
  if (accept === undefined) return types;
  for (const range of accept.slice(0, 4096).split(',')) {
    const [type, ...params] = range.split(';').map((part) => part.trim().toLowerCase());
    if (type === undefined || type === '') continue;
    const q = params.find((param) => param.startsWith('q='));
    if (q !== undefined && !(Number(q.slice(2)) > 0)) continue;
    types.add(type);
  }
  return types;
}

/**
 * The format without `f`: the first of `formats` that `Accept` names, else the
 * original's own.
 */
export function formatFromAccept(accept: string | undefined, formats: readonly VariantFormat[], original: string): VariantFormat {
  const accepted = acceptedTypes(accept);
  return formats.find((format) => accepted.has(contentTypes[format])) ?? ownFormat(original);
}

/** The smallest of `widths` at least `wanted`, or the largest of them. */
function roundUp(wanted: number, widths: readonly number[]): number {
  const sorted = [...widths].sort((a, b) => a - b);
  return sorted.find((width) => width >= wanted) ?? sorted.at(-1) ?? wanted;
}

/**
 * A request's values → the variant to make. `dpr` (1–3) multiplies `w` and `h`
 * first; with `round`, the width is then rounded up to the next of `widths`
 * (the largest past them) and the height follows at the asked aspect; then the
 * box is scaled down, keeping its aspect, until it fits the original (never
 * upscaled). `fit` is `cover` by default; `inside` and `outside` resolve to the
 * exact size they make. Without `w` or `h`: the original's width (a format
 * change). Format: `f`, else the first of `formats` that `Accept` names, else
 * the original's own. A bad value throws `VariantRequestError` naming it.
 */
export function specFromRequest(request: VariantRequest, original: OriginalInfo, options: SpecOptions): VariantSpec {
  const w = dimension('w', request.w);
  const h = dimension('h', request.h);
  const dpr = devicePixelRatio(request.dpr);
  const fit = fitOf(request.fit);
  const quality = qualityOf(request.quality);
  let format: VariantFormat;
  if (request.format === undefined || request.format === '') format = formatFromAccept(options.accept, options.formats, original.format);
  else {
    const named = variantFormatOf(request.format);
    if (named === undefined) throw new VariantRequestError(`f must be one of ${VARIANT_FORMATS.join(', ')}, not ${JSON.stringify(request.format)}`);
    format = named;
  }
  // The original as a box no side of which passes MAX_DIMENSION (an original kept whole, --resize
  // off, may be wider): a variant is never larger than that.
  const fitScale = Math.min(1, MAX_DIMENSION / Math.max(original.width, original.height, 1));
  const ow = Math.max(1, Math.round(original.width * fitScale));
  const oh = Math.max(1, Math.round(original.height * fitScale));
  const withQuality = (spec: VariantSpec): VariantSpec => (quality === undefined ? spec : { ...spec, quality });

  // Without a height: the width alone, at the original's aspect (the fit then changes nothing).
  if (h === undefined) {
    const wanted = w === undefined ? ow : w * dpr;
    const width = Math.min(ow, Math.max(1, Math.round(options.round ? roundUp(wanted, options.widths) : wanted)));
    return withQuality({ width, fit: 'inside', format });
  }
  // A height alone: the width it makes at the original's aspect, then as above with that height.
  const wantedW = w === undefined ? (h * dpr * ow) / oh : w * dpr;
  const wantedH = h * dpr;
  let width = options.round ? roundUp(wantedW, options.widths) : wantedW;
  let height = (wantedH * width) / wantedW;
  if (w === undefined || fit === 'inside' || fit === 'outside') {
    // Resolve to the size sharp will make, so that the spec is exact.
    const scale = w === undefined ? width / ow : fit === 'inside' ? Math.min(width / ow, height / oh) : Math.max(width / ow, height / oh);
    const s = Math.min(1, scale);
    return withQuality({ width: Math.max(1, Math.round(ow * s)), height: Math.max(1, Math.round(oh * s)), fit: w === undefined ? 'inside' : fit, format });
  }
  // A box (cover, contain, fill): scaled down whole until it fits the original.
  const shrink = Math.min(1, ow / width, oh / height);
  width *= shrink;
  height *= shrink;
  return withQuality({ width: Math.max(1, Math.min(ow, Math.round(width))), height: Math.max(1, Math.min(oh, Math.round(height))), fit, format });
}

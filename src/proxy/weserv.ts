/**
 * The weserv parameters of a proxy request: the ones blog plugins send to
 * `images.weserv.nl`, read and validated here, and turned into the variant
 * they ask for (`weservVariant`).
 *
 * - Applied: `w`, `h`, `dpr`, `fit`, `output` and `q` make a variant of the
 *   cover through the render core, as `/covers/<path>?w=&h=&fit=&f=&dpr=`
 *   does: `w` rounded up to `--widths`, never past the original, `dpr`
 *   multiplying first (at most 3: a larger one is applied as 3), the format by
 *   `output`, else by `Accept` among `--formats` (the answer then varies by
 *   `Accept`), else the original's own. One difference keeps weserv's meaning:
 *   without `fit`, `w` with `h` fits inside the box (weserv's default), where
 *   `/covers` crops to fill it.
 * - `default` is honoured by the route (a redirect when the cover cannot be had).
 *
 * - Recognised and validated: `w`, `h` (whole numbers 1–10000), `dpr` (a number
 *   above 0, at most 8), `fit` (`cover`, `contain`, `inside`, `outside`, `fill`),
 *   `output` (`jpg`, `png`, `webp`, `avif`; `jpeg` is read as `jpg`), `q` (whole
 *   number 1–100), `default` (a URL, in any of the forms a cover URL may take).
 * - Other names weserv knows (`n`, `we`, `a`, `cx`, `blur`, …) are accepted and
 *   never applied: they are named in `X-Coverhelper-Ignored` like the others.
 * - A bad value is not an error: a page asking for `w=abc` still gets its
 *   cover. The parameter is dropped and named in `invalid` (and so in the
 *   ignored header): a broken image would help nobody.
 */

/** weserv's `fit` values. */
export const fitValues = ['cover', 'contain', 'inside', 'outside', 'fill'] as const;
export type Fit = (typeof fitValues)[number];

/** The `output` formats coverhelper can make (§16). */
export const outputValues = ['jpg', 'png', 'webp', 'avif'] as const;
export type Output = (typeof outputValues)[number];

/** The parameters coverhelper reads, with their values checked. */
export interface WeservParams {
  w?: number;
  h?: number;
  dpr?: number;
  fit?: Fit;
  output?: Output;
  q?: number;
  /**
   * The raw `default=` value as given (percent-decoded once by the query reader);
   * the route normalises it with `normaliseCoverUrl` and checks it by the same
   * rules as the cover before redirecting to it.
   */
  default?: string;
  /** Names of other weserv parameters given (`n`, `we`, …), in order, each once. */
  other: string[];
  /** Names of recognised parameters whose value was bad (dropped), in order, each once. */
  invalid: string[];
}

/** The parameters coverhelper reads and checks. */
export const recognisedParams = ['w', 'h', 'dpr', 'fit', 'output', 'q', 'default'] as const;
export type RecognisedParam = (typeof recognisedParams)[number];

/**
 * Every parameter name of weserv's API (images.weserv.nl/docs) besides `url`:
 * after a raw `url=` value, a `&name=` with one of these names is a parameter,
 * any other continues the cover URL's own query.
 */
export const weservParamNames: ReadonlySet<string> = new Set([
  ...recognisedParams,
  // size and crop
  'we', 'a', 'fpx', 'fpy', 'cx', 'cy', 'cw', 'ch', 'precrop', 'trim',
  // orientation and adjustment
  'ro', 'flip', 'flop', 'bg', 'cbg', 'rbg', 'blur', 'con', 'filter', 'gam', 'mod', 'sat', 'hue', 'sharp', 'sharpf', 'sharpj', 'tint', 'bri',
  // mask
  'mask', 'mtrim', 'mbg',
  // format and delivery
  'n', 'page', 'pages', 'l', 'af', 'il', 'lossless', 'maxage', 'filename', 'encoding', 'errorredirect',
]);

/** Whether `name` is a weserv parameter (`url` excluded). */
export function isWeservParam(name: string): boolean {
  return weservParamNames.has(name);
}

/** An empty parameter set. */
export function noParams(): WeservParams {
  return { other: [], invalid: [] };
}

const wholeNumber = (value: string, min: number, max: number): number | undefined => {
  if (!/^\d{1,6}$/.test(value)) return undefined;
  const n = Number(value);
  return n >= min && n <= max ? n : undefined;
};

const pushOnce = (list: string[], name: string) => {
  if (!list.includes(name)) list.push(name);
};

/**
 * Adds one `name=value` (both already percent-decoded) to `params`. A name that
 * is no weserv parameter is not added (the caller decides whether it continues
 * the cover URL). A parameter given twice keeps its last valid value.
 * Returns whether the name is a weserv parameter.
 */
export function addWeservParam(params: WeservParams, name: string, rawValue: string): boolean {
  if (!isWeservParam(name)) return false;
  const value = rawValue.trim();
  const bad = () => pushOnce(params.invalid, name);
  switch (name as RecognisedParam) {
    case 'w':
    case 'h': {
      const n = wholeNumber(value, 1, 10000);
      if (n === undefined) bad();
      else params[name as 'w' | 'h'] = n;
      return true;
    }
    case 'dpr': {
      const n = /^\d{1,2}(\.\d{1,4})?$/.test(value) ? Number(value) : NaN;
      if (!(n > 0 && n <= 8)) bad();
      else params.dpr = n;
      return true;
    }
    case 'fit': {
      const fit = value.toLowerCase();
      if ((fitValues as readonly string[]).includes(fit)) params.fit = fit as Fit;
      else bad();
      return true;
    }
    case 'output': {
      const output = value.toLowerCase() === 'jpeg' ? 'jpg' : value.toLowerCase();
      if ((outputValues as readonly string[]).includes(output)) params.output = output as Output;
      else bad();
      return true;
    }
    case 'q': {
      const n = wholeNumber(value, 1, 100);
      if (n === undefined) bad();
      else params.q = n;
      return true;
    }
    case 'default':
      if (value === '') bad();
      else params.default = value;
      return true;
    default:
      pushOnce(params.other, name);
      return true;
  }
}

/** The names of the parameters given with a usable value, in the order of `recognisedParams`, then the others. */
export function givenParams(params: WeservParams): string[] {
  const given: string[] = recognisedParams.filter((name) => params[name] !== undefined);
  return [...given, ...params.invalid.filter((name) => !given.includes(name)), ...params.other];
}

/** The parameters that make a variant. */
export const variantParams = ['w', 'h', 'dpr', 'fit', 'output', 'q'] as const;

/** What a request's weserv parameters ask of the render core. */
export interface WeservVariant {
  /** The render core's request values (`specFromRequest`). */
  request: { w?: number; h?: number; dpr?: number; fit: Fit; format?: string; quality?: number };
  /** The names of the parameters it applies (for `ignoredParamsHeader`). */
  applied: string[];
  /** True when no `output` is given: the format is chosen by `Accept` (the answer varies by it). */
  byAccept: boolean;
}

/**
 * The variant the parameters ask for, or undefined when none of `w`, `h`,
 * `dpr`, `fit`, `output`, `q` is given with a usable value (the stored cover
 * itself is the answer). `dpr` is at most 3 (larger is applied as 3, below 1
 * as 1, to two decimals); `fit` is weserv's default, `inside`, when not given.
 */
export function weservVariant(params: WeservParams): WeservVariant | undefined {
  const applied: string[] = variantParams.filter((name) => params[name] !== undefined);
  if (applied.length === 0) return undefined;
  const request: WeservVariant['request'] = { fit: params.fit ?? 'inside' };
  if (params.w !== undefined) request.w = params.w;
  if (params.h !== undefined) request.h = params.h;
  if (params.dpr !== undefined) request.dpr = Math.round(Math.min(3, Math.max(1, params.dpr)) * 100) / 100;
  if (params.output !== undefined) request.format = params.output === 'jpg' ? 'jpeg' : params.output;
  if (params.q !== undefined) request.quality = params.q;
  return { request, applied, byAccept: params.output === undefined };
}

/**
 * The value of `X-Coverhelper-Ignored`: the names of the parameters given but
 * not applied, comma-separated (`w, h, fit`), or `undefined` when there are
 * none (then the header is not sent). `applied` names the ones the answer did
 * apply (`weservVariant`'s `applied` when a variant was answered; none for the
 * stored cover itself or a bilibili suffix's variant). `default` is honoured
 * by the route itself (a redirect when the cover cannot be had), so it is
 * named only when its value was bad. A bad value is never applied.
 */
export function ignoredParamsHeader(params: WeservParams, applied: Iterable<string> = []): string | undefined {
  const done = new Set(applied);
  done.add('default');
  const ignored = givenParams(params).filter((name) => params.invalid.includes(name) || !done.has(name));
  return ignored.length === 0 ? undefined : ignored.join(', ');
}

/**
 * The weserv parameters of a proxy request (SPEC §14): the ones blog plugins
 * send to `images.weserv.nl`, read and validated here so that the route only
 * has to decide which it applies.
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

/**
 * The value of `X-Coverhelper-Ignored`: the names of the parameters given but
 * not applied, comma-separated (`w, h, fit`), or `undefined` when there are
 * none (then the header is not sent). `applied` names the ones the answer did
 * apply (none until sizes and formats exist). `default` is honoured by the
 * route itself (a redirect when the cover cannot be had), so it is named only
 * when its value was bad. A bad value is never applied.
 */
export function ignoredParamsHeader(params: WeservParams, applied: Iterable<string> = []): string | undefined {
  const done = new Set(applied);
  done.add('default');
  const ignored = givenParams(params).filter((name) => params.invalid.includes(name) || !done.has(name));
  return ignored.length === 0 ? undefined : ignored.join(', ');
}

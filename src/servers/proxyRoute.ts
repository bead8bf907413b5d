/**
 * The proxy prefix: `GET|HEAD /?url=<cover URL>` and
 * `/proxy/<cover URL>`, the shapes static blogs' plugins write as
 * `<prefix><cover URL>` into `<img src>` or a CSS background.
 *
 *   the cover URL      read from the raw request target (src/proxy/coverUrl.ts:
 *                      encoded or not, `https://`, `http://`, `//host/…`,
 *                      `host/…`, bilibili suffixes, video pages)
 *   not an open proxy  only what `/ws` would fetch: anything else is 403
 *                      `not_allowed` before a connection is made
 *   stored             200 with the cover's bytes (no redirect), Content-Type,
 *                      ETag, 304, `Cache-Control: public, max-age=--proxy-max-age`,
 *                      HEAD; never rate limited
 *   not stored         a download this request would start counts against its
 *                      client address's `--proxy-rate` per 10 minutes (429 with
 *                      Retry-After past it; joining a download in flight or a
 *                      remembered failure starts nothing); then it is checked as
 *                      on `/ws` (joining a download in flight) and the request
 *                      waits up to `--time-limit` for it, as its own asker (a
 *                      request given up drops what only it waited for)
 *   cannot be had      `default=<URL>` (allowed by the same rules): 302 to it;
 *                      else the placeholder (200, `no-store`,
 *                      `X-Coverhelper-Error: <code>`); with `--placeholder none`
 *                      502 `{"code","message"}`
 *
 *   a variant         weserv's `w`, `h`, `dpr`, `fit`, `output`, `q`
 *                      (src/proxy/weserv.ts: rounded to `--widths`, format by
 *                      `output` or `Accept` with `Vary: Accept`) or a readable
 *                      bilibili suffix (src/proxy/bilibiliSuffix.ts: exact
 *                      sizes; the cover is the URL without it): the cover is
 *                      found or waited for as above, then its variant is asked
 *                      of the render supervisor (rendered once; a render this
 *                      request would start counts against `--proxy-rate` too),
 *                      answered with the same cache headers; a render that
 *                      fails is a cover that cannot be had. Variant bytes are
 *                      held like covers', by their stored path.
 *
 * `X-Coverhelper-Ignored` names the parameters given and not applied. Without
 * size or format parameters the answer is the stored cover itself.
 * `GET /` without `url` is the service's home page.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CheckResult } from '../checks/index.js';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { retryAfterHeader, sendError } from '../http/index.js';
import type { Logger } from '../logger.js';
import { CoverError } from '../errors.js';
import { originalOf, specFromRequest, VariantRequestError, variantKey, variantPathOf } from '../images/variants.js';
import type { OriginalInfo, VariantFormat, VariantSpec } from '../images/variants.js';
import { checkProxyCover, clientAddress, clientKey, coverUrlFromProxyRequest, defaultRedirect, ignoredParamsHeader, ProxyRateLimiter, suffixSpec, TrustedProxies, weservVariant } from '../proxy/index.js';
import type { PlaceholderImage, ProxyCover, StartLimiter, WeservParams } from '../proxy/index.js';
import type { CoverIndex, CoverRow } from '../store/index.js';
import { CoverBytes } from './coverBytes.js';
import type { CachedCover } from './coverBytes.js';
import { notModified, serveCover } from './coverRoute.js';
import type { Door } from './doorRoute.js';
import type { ErrorBody } from '../wire/door.js';

/** The render supervisor, as the proxy uses it (the service's `Renders`). */
export interface ProxyRenders {
  /** Whether this variant is being rendered now (asking for it joins that render, which starts nothing). */
  inFlight(coverPath: string, spec: VariantSpec): boolean;
  /** The variant's stored path, rendered once if missing (concurrent callers share one render); rejects with a CoverError. */
  variant(coverPath: string, spec: VariantSpec, signal?: AbortSignal, known?: { source?: string | undefined; notOnDisk?: boolean }): Promise<{ path: string }>;
}

export interface ProxyRouteDeps {
  config: Pick<Config, 'proxy' | 'allowHosts' | 'allowPrivateNetwork' | 'proxyMaxAge' | 'proxyRate' | 'trustProxy' | 'coversDir'>;
  covers: Pick<CoverIndex, 'findMany' | 'findInMemory'>;
  /** Whether asking for the URL now would start a download (not in flight here, no remembered failure). */
  wouldStart: (url: string) => boolean;
  /** Starts per client address (`--proxy-rate`), shared with `/covers` variants and suffixes on `/ws`; default its own. */
  limiter?: StartLimiter;
  door: Pick<Door, 'answerWithin' | 'askerFor'>;
  /**
   * Sizes and formats: the render supervisor, `--widths` and `--formats`.
   * Without it, weserv's size and format parameters are not applied (named in
   * `X-Coverhelper-Ignored`) and a bilibili suffix is answered with its base cover.
   */
  variants?: { renders: ProxyRenders; widths: readonly number[]; formats: readonly VariantFormat[] };
  /** The image answered when a cover cannot be had; null for `--placeholder none`. */
  placeholder: PlaceholderImage | null;
  /** `GET /` without `url`. */
  home: (req: IncomingMessage, res: ServerResponse) => void;
  logger: Logger;
  /** The one clock (default the system's): the rate limit's windows, `retry-after`. */
  clock?: Clock;
  /** Stored video page covers due to be re-resolved are asked again in the background (`Reresolver`). */
  reresolve?: { consider(row: CoverRow): boolean };
}

/** The cover path as a URL path under `/covers/` (each segment encoded). */
function urlPath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

/** A variant a request asks for: from a bilibili suffix or from weserv's parameters. */
interface VariantAsk {
  /** The spec for a stored cover's original (throws `VariantRequestError` for values that cannot be made). */
  specFor(original: OriginalInfo, accept: string | undefined): VariantSpec;
  /** Headers every answer to it carries: `X-Coverhelper-Ignored` for what is not applied, `Vary: Accept` when the format follows it. */
  headers: Record<string, string>;
}

/** Why a cover cannot be had: the 502 body (`ErrorBody`, the wire contract) and, while remembered or cooling, when to try again. */
type Failure = ErrorBody & { retryAt?: string | undefined };


export class ProxyRoute {
  private readonly limiter: StartLimiter;
  private readonly trusted: TrustedProxies;
  /** The bytes of covers and variants answered lately (bounded), by stored path: one asked again is answered from memory. */
  private readonly recent: CoverBytes;
  private readonly cacheControl: string;

  constructor(private readonly deps: ProxyRouteDeps) {
    this.recent = new CoverBytes(deps.config.coversDir);
    this.cacheControl = `public, max-age=${deps.config.proxyMaxAge}`;
    this.limiter = deps.limiter ?? new ProxyRateLimiter({ limit: deps.config.proxyRate, ...(deps.clock ? { clock: deps.clock } : {}) });
    this.trusted = new TrustedProxies(deps.config.trustProxy);
  }

  /** `GET|HEAD /?url=…` and `/proxy/…`. */
  readonly serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const { config } = this.deps;
    const parsed = coverUrlFromProxyRequest(req.url ?? '/');
    if (!parsed.ok && parsed.noUrl) return this.deps.home(req, res);
    if (config.proxy === 'off') return sendError(res, 404, 'not_found', 'the proxy prefix is off (--proxy off)');
    if (!parsed.ok) return sendError(res, parsed.code === 'not_allowed' ? 403 : 400, parsed.code, parsed.message);
    const allowed = checkProxyCover(parsed.url, config);
    if (!allowed.ok) return sendError(res, 403, 'not_allowed', `not fetched through this proxy: ${allowed.message}`);
    const ask = this.variantAsk(parsed);
    if (ask !== undefined) return this.serveVariant(req, res, parsed.url, parsed.params, ask);
    const { url, params } = parsed;
    const ignored = ignoredParamsHeader(params);
    const headers: Record<string, string> = ignored === undefined ? {} : { 'x-coverhelper-ignored': ignored };

    // The hot path: a cover the index holds in memory whose bytes are held too is answered with no promise.
    const remembered = this.deps.covers.findInMemory([url], { touch: true })[0];
    if (remembered !== undefined) this.deps.reresolve?.consider(remembered);
    const held = remembered === undefined ? undefined : this.recent.peek(remembered.path);
    if (held !== undefined) return this.send(req, res, held, headers);
    const stored = remembered ?? (await this.deps.covers.findMany([url], { touch: true })).get(url);
    if (stored !== undefined && remembered === undefined) this.deps.reresolve?.consider(stored);
    if (stored !== undefined) return this.bytes(req, res, stored.path, headers, params);

    const client = this.clientOf(req);
    if (this.deps.wouldStart(url) && !this.take(res, client, 'downloads', headers)) return;
    const result = await this.deps.door.answerWithin(url, this.deps.door.askerFor(req, res, 'proxy', `addr:${client}`));
    if (result?.status === 'ok' && result.path !== undefined) return this.bytes(req, res, result.path, headers, params);
    return this.cannotBeHad(req, res, params, this.failureOf(result), headers);
  };

  /** The variant a request asks for, or undefined for the stored cover itself (no suffix, no size or format parameter, or no render supervisor). */
  private variantAsk(parsed: ProxyCover): VariantAsk | undefined {
    const variants = this.deps.variants;
    if (variants === undefined) return undefined;
    const { suffix, params } = parsed;
    if (suffix !== undefined) {
      // The suffix names the variant: weserv's size and format parameters beside it are not applied.
      const ignored = ignoredParamsHeader(params);
      return { specFor: (original) => suffixSpec(suffix.request, original), headers: ignored === undefined ? {} : { 'x-coverhelper-ignored': ignored } };
    }
    // The common case, the stored cover itself, allocates nothing here.
    if (params.w === undefined && params.h === undefined && params.dpr === undefined && params.fit === undefined && params.output === undefined && params.q === undefined) return undefined;
    const weserv = weservVariant(params);
    if (weserv === undefined) return undefined;
    const ignored = ignoredParamsHeader(params, weserv.applied);
    return {
      specFor: (original, accept) => specFromRequest(weserv.request, original, { widths: variants.widths, formats: variants.formats, accept, round: true }),
      headers: { ...(ignored === undefined ? {} : { 'x-coverhelper-ignored': ignored }), ...(weserv.byAccept ? { vary: 'Accept' } : {}) },
    };
  }

  /**
   * A variant of the cover at `url`: the cover is found (or checked and waited
   * for, as for the cover itself), then its variant is answered, rendered once
   * if it is not there yet. A download and a render the request would start
   * each count against its client's `--proxy-rate`.
   */
  private async serveVariant(req: IncomingMessage, res: ServerResponse, url: string, params: WeservParams, ask: VariantAsk): Promise<void> {
    const { headers } = ask;
    const accept = req.headers.accept;
    // The hot path, as for covers: the index row in memory, the variant's bytes held.
    const remembered = this.deps.covers.findInMemory([url], { touch: true })[0];
    if (remembered !== undefined) {
      this.deps.reresolve?.consider(remembered);
      const spec = this.specOf(remembered, ask, accept);
      const held = spec === undefined ? undefined : this.recent.peek(variantPathOf(remembered.path, spec));
      if (held !== undefined) return this.send(req, res, held, headers);
    }
    let row = remembered ?? (await this.deps.covers.findMany([url], { touch: true })).get(url);
    if (row !== undefined && remembered === undefined) this.deps.reresolve?.consider(row);
    const client = this.clientOf(req);
    if (row === undefined) {
      if (this.deps.wouldStart(url) && !this.take(res, client, 'downloads', headers)) return;
      const result = await this.deps.door.answerWithin(url, this.deps.door.askerFor(req, res, 'proxy', `addr:${client}`));
      if (result?.status !== 'ok' || result.path === undefined) return this.cannotBeHad(req, res, params, this.failureOf(result), headers);
      row = (await this.deps.covers.findMany([url], { touch: false })).get(url);
      if (row === undefined) return this.cannotBeHad(req, res, params, { code: 'file_missing', message: 'the cover was removed meanwhile; ask again to download it' }, headers);
    }
    const spec = this.specOf(row, ask, accept);
    if (spec === undefined) {
      // Values no variant can be made of (a spec past the render core's limits): the cover itself, every parameter named.
      const ignored = ignoredParamsHeader(params);
      return this.bytes(req, res, row.path, ignored === undefined ? {} : { 'x-coverhelper-ignored': ignored }, params);
    }
    const variantPath = variantPathOf(row.path, spec);
    const held = this.recent.peek(variantPath);
    if (held !== undefined) return this.send(req, res, held, headers);
    const renders = this.deps.variants!.renders;
    const joining = renders.inFlight(row.path, spec);
    if (!joining) {
      // Made already: read once, into the held bytes (a large one streamed), as a stored cover is.
      const onDisk = await this.recent.get(variantPath);
      if (onDisk === 'large') return serveCover(req, res, urlPath(variantPath), this.deps.config.coversDir, { 'cache-control': this.cacheControl, ...headers });
      if (onDisk !== undefined) return this.send(req, res, onDisk, headers);
      // Missing: the render this request starts counts against its client's --proxy-rate.
      if (!this.take(res, client, 'renders', headers)) return;
    }
    const controller = new AbortController();
    const abort = () => controller.abort();
    res.once('close', abort);
    let made: { path: string };
    try {
      made = await renders.variant(row.path, spec, controller.signal, { source: row.originalPath ?? row.path, notOnDisk: !joining });
    } catch (error) {
      if (res.closed) return;
      const failure = error instanceof CoverError ? { code: error.code, message: error.message } : { code: 'internal_error', message: 'the variant could not be made' };
      this.deps.logger.warn('proxy variant not made', { url, variant: variantKey(spec), code: failure.code, message: failure.message });
      return this.cannotBeHad(req, res, params, failure, headers);
    } finally {
      res.off('close', abort);
    }
    return this.bytes(req, res, made.path, headers, params);
  }

  /** The spec `ask` makes of the cover in `row`, or undefined when its values cannot be made. */
  private specOf(row: CoverRow, ask: VariantAsk, accept: string | undefined): VariantSpec | undefined {
    try {
      return ask.specFor(originalOf(row), accept);
    } catch (error) {
      if (error instanceof VariantRequestError || error instanceof RangeError) return undefined;
      throw error;
    }
  }

  /** The client: the peer, or behind a --trust-proxy peer the forwarded address (its rate and its turn at the workers). */
  private clientOf(req: IncomingMessage): string {
    return clientKey(clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], this.trusted));
  }

  /** Counts one start (a download or a render) for `client`; past `--proxy-rate` answers 429 and returns false. */
  private take(res: ServerResponse, client: string, what: 'downloads' | 'renders', headers: Record<string, string>): boolean {
    const decision = this.limiter.take(client);
    if (decision.allowed) return true;
    this.deps.logger.debug(`proxy ${what === 'downloads' ? 'download' : 'render'} refused: the client address is over --proxy-rate`, { client });
    sendError(res, 429, 'too_many_requests', `this address may start ${this.deps.config.proxyRate} downloads and renders per 10 minutes (--proxy-rate); stored covers are not limited`, {
      'retry-after': String(decision.retryAfterSeconds),
      ...headers,
    });
    return false;
  }

  private async bytes(req: IncomingMessage, res: ServerResponse, path: string, extra: Record<string, string>, params: WeservParams): Promise<void> {
    const cacheControl = { 'cache-control': this.cacheControl, ...extra };
    const cover = await this.recent.get(path);
    // The index names a file that is not there (removed meanwhile): a cover that cannot be had.
    if (cover === undefined) return this.cannotBeHad(req, res, params, { code: 'file_missing', message: `the cover file ${path} is missing; ask again to download it` }, extra);
    if (cover === 'large') return serveCover(req, res, urlPath(path), this.deps.config.coversDir, cacheControl);
    this.send(req, res, cover, extra);
  }

  /** A held cover's bytes (or 304, or HEAD's headers). */
  private send(req: IncomingMessage, res: ServerResponse, cover: CachedCover, extra: Record<string, string>): void {
    const headers = { 'content-type': cover.contentType, etag: cover.etag, 'x-content-type-options': 'nosniff', 'cache-control': this.cacheControl, ...extra };
    if (notModified(req, cover.etag)) {
      res.writeHead(304, headers).end();
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': String(cover.body.length) });
    res.end(req.method === 'HEAD' ? undefined : cover.body);
  }

  private failureOf(result: CheckResult | undefined): Failure {
    if (result === undefined) return { code: 'tle', message: 'no answer within --time-limit; try again' };
    if (result.status === 'skipped') return { code: 'not_allowed', message: result.reason ?? 'not fetched' };
    return { code: result.error?.code ?? 'network', message: result.error?.message ?? 'failed', retryAt: result.retryAt };
  }

  /** A cover that cannot be had: `default=`, the placeholder, or 502 JSON. */
  private cannotBeHad(req: IncomingMessage, res: ServerResponse, params: WeservParams, failure: Failure, headers: Record<string, string>): void {
    const noStore = { 'cache-control': 'no-store', 'x-coverhelper-error': failure.code, ...headers };
    const target = defaultRedirect(params.default, this.deps.config);
    if (target !== undefined) {
      res.writeHead(302, { location: target, 'content-length': '0', ...noStore }).end();
      return;
    }
    const image = this.deps.placeholder;
    if (image === null) {
      return sendError(res, 502, failure.code, failure.message, { ...noStore, ...retryAfterHeader(failure.retryAt, (this.deps.clock ?? systemClock).now()) });
    }
    res.writeHead(200, { 'content-type': image.contentType, 'content-length': String(image.body.length), 'x-content-type-options': 'nosniff', ...noStore });
    res.end(req.method === 'HEAD' ? undefined : image.body);
  }
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * `GET /` without `url`: what this service is and the ways in. No script, no
 * data: the same for everyone.
 */
export function homePage(version: string, serviceUrl: () => string, proxy: Config['proxy']) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const base = escapeHtml(serviceUrl());
    const proxyLines =
      proxy === 'off'
        ? '<li>The proxy prefix is off on this service (<code>--proxy off</code>).</li>'
        : `<li>Static blogs: the image-proxy prefix <code>${base}/?url=</code> or <code>${base}/proxy/</code> before a cover URL, in <code>&lt;img src&gt;</code> or a CSS background.</li>`;
    const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coverhelper ${escapeHtml(version)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; line-height: 1.5">
<h1>coverhelper ${escapeHtml(version)}</h1>
<p>A cover cache for blogs: it downloads each video cover once, stores it, and serves it without hot-linking.</p>
<ul>
<li>Blog servers: a WebSocket at <code>${base.replace(/^http/, 'ws')}/ws</code> (check frames), or <code>POST ${base}/api/check</code>.</li>
${proxyLines}
<li>Covers: <code>${base}/covers/…</code>. Health: <a href="/healthz">/healthz</a>. Metrics: <a href="/metrics">/metrics</a>.</li>
<li>The administrator's dashboard: <a href="/admin/">${base}/admin/</a>. Its token is the service's <code>--admin-token</code>, or, without one, the one generated at the first start into <code>admin-token</code> in the data folder (the start line in the log names the file).</li>
</ul>
</body></html>
`;
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'content-length': String(Buffer.byteLength(body)),
      'cache-control': 'no-store',
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
      'x-content-type-options': 'nosniff',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}

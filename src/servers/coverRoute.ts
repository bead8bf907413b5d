/**
 * `GET /covers/<path>`: a stored cover file, with its Content-Type, an ETag,
 * a long-lived Cache-Control (a path changes whenever its content does), 304
 * on If-None-Match, and 404 `{"code","message"}` for anything not a regular
 * file inside the covers folder (links are not followed out of it: see
 * `openCoverFile`).
 *
 * `GET /covers/<path>?w=&h=&fit=&f=&dpr=&q=`: a variant of the cover stored at
 * `<path>` (`serveCoverVariant`): the request's values make a spec
 * (`specFromRequest`: `w` rounded up to `--widths`, never past the original,
 * the format by `f` or by `Accept` among `--formats`), the variant is rendered
 * once if missing (`Renders`), and its file is served like a cover, with
 * `Vary: Accept` when the format came from `Accept`. Bad values are 400
 * `bad_request`; a path that is not a cover's is 404. A query naming none of
 * these is ignored (the plain file, as without a query).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CoverError } from '../errors.js';
import { sendError } from '../http/index.js';
import { CoverGoneError, RendersBusyError, TooManyVariantsError } from '../images/renders.js';
import type { RenderedVariant, Renders } from '../images/renders.js';
import { originalOf, specFromRequest, variantContentType, variantPathOf, VariantRequestError } from '../images/variants.js';
import type { VariantFormat, VariantSpec } from '../images/variants.js';
import type { Logger } from '../logger.js';
import { clientAddress, clientKey } from '../proxy/index.js';
import type { StartLimiter, TrustedProxies } from '../proxy/index.js';
import { coverPathOfVariant, isOriginalPath, isVariantPath, openCoverFile, openStoredFile, storedPathOfUrl } from '../store/index.js';
import type { OpenCover } from '../store/index.js';
import type { CoverIndex } from '../store/ports.js';

const contentTypes: Record<string, string> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.avif': 'image/avif',
  '.tiff': 'image/tiff',
};

/** The Content-Type of a stored cover, by its extension. */
export function contentTypeOf(file: string): string {
  return contentTypes[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/** A stored file's ETag: its size and modification time. */
export function etagOf(size: number, mtimeMs: number): string {
  return `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;
}

/** Whether the request's If-None-Match names `etag`. */
export function notModified(req: IncomingMessage, etag: string): boolean {
  const ifNoneMatch = req.headers['if-none-match'];
  return ifNoneMatch !== undefined && ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag || tag.trim() === '*');
}

/**
 * Answers `GET /covers/<file>`: `file` is the path after `/covers/`, as sent.
 * `extra` headers replace the defaults (the proxy prefix gives its own Cache-Control).
 */
export async function serveCover(req: IncomingMessage, res: ServerResponse, file: string, coversDir: string, extra: Record<string, string> = {}): Promise<void> {
  const found = await openCoverFile(coversDir, file);
  if (!found) return sendError(res, 404, 'not_found', 'no cover at this path');
  return sendOpened(req, res, found, contentTypeOf(found.file), extra);
}

/** Serves a file opened through the path guard (ETag, 304, HEAD), then closes it. */
async function sendOpened(req: IncomingMessage, res: ServerResponse, found: OpenCover, contentType: string, extra: Record<string, string>): Promise<void> {
  // Served from the handle opened and checked, so nothing swapped in after the check is read.
  const stream = found.handle.createReadStream({ autoClose: true });
  const close = () => stream.destroy();
  const etag = etagOf(found.size, found.mtimeMs);
  const headers = {
    'content-type': contentType,
    etag,
    'cache-control': 'public, max-age=31536000, immutable',
    'x-content-type-options': 'nosniff',
    ...extra,
  };
  if (notModified(req, etag)) {
    close();
    res.writeHead(304, headers).end();
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': String(found.size) });
  if (req.method === 'HEAD') {
    close();
    res.end();
    return;
  }
  try {
    await pipeline(stream, res);
  } catch {
    res.destroy();
  }
}

/** Serves bytes in memory as `sendOpened` serves a file (ETag, 304, HEAD). */
function sendBytes(req: IncomingMessage, res: ServerResponse, data: Buffer, etag: string, contentType: string, extra: Record<string, string>): void {
  const headers = { 'content-type': contentType, etag, 'cache-control': 'public, max-age=31536000, immutable', 'x-content-type-options': 'nosniff', ...extra };
  if (notModified(req, etag)) {
    res.writeHead(304, headers).end();
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': String(data.length) });
  res.end(req.method === 'HEAD' ? undefined : data);
}

/** The query parameters that ask for a variant. */
const VARIANT_PARAMS = ['w', 'h', 'fit', 'f', 'dpr', 'q'] as const;

/** Whether a query asks for a variant (names any of `w`, `h`, `fit`, `f`, `dpr`, `q`). */
export function asksForVariant(query: URLSearchParams): boolean {
  return VARIANT_PARAMS.some((name) => query.has(name));
}

export interface CoverVariantDeps {
  coversDir: string;
  covers: Pick<CoverIndex, 'findByPath' | 'touch'>;
  renders: Renders;
  /** A render a request starts counts against its client address's `--proxy-rate` (shared with the proxy). */
  limiter: StartLimiter;
  /** `--trust-proxy`: whose `X-Forwarded-For` names the client. */
  trusted: TrustedProxies;
  /** `--proxy-rate`, for the 429's message. */
  rate: number;
  /** `--widths`. */
  widths: readonly number[];
  /** `--formats`. */
  formats: readonly VariantFormat[];
  logger?: Logger;
}


/**
 * Answers `GET /covers/<file>?w=&h=&fit=&f=&dpr=&q=`: the variant of the cover
 * stored at `file`, rendered once if missing.
 */
export async function serveCoverVariant(req: IncomingMessage, res: ServerResponse, file: string, query: URLSearchParams, deps: CoverVariantDeps): Promise<void> {
  const values: Record<string, string | undefined> = {};
  for (const name of VARIANT_PARAMS) {
    const all = query.getAll(name);
    if (all.length > 1) return sendError(res, 400, 'bad_request', `${name} is given ${all.length} times; give it once`);
    values[name] = all[0];
  }
  const asked = storedPathOfUrl(file);
  // A variant's path (a suffix's answer names one) asks for a variant of its cover; originals are not served.
  const coverPath = asked !== undefined && isVariantPath(asked) ? coverPathOfVariant(asked) : asked;
  if (coverPath === undefined || isOriginalPath(coverPath)) return sendError(res, 404, 'not_found', 'no cover at this path');
  const row = await deps.covers.findByPath(coverPath);
  if (row === null) return sendError(res, 404, 'not_found', 'no cover at this path');
  let spec: VariantSpec;
  try {
    spec = specFromRequest(
      { w: values.w, h: values.h, fit: values.fit, format: values.f, dpr: values.dpr, quality: values.q },
      originalOf(row),
      { widths: deps.widths, formats: deps.formats, accept: req.headers.accept, round: true },
    );
  } catch (error) {
    if (error instanceof VariantRequestError) return sendError(res, 400, error.code, error.message);
    throw error;
  }
  // Asking for a variant is asking for the cover: it is not expired while pages use it.
  deps.covers.touch([row.url]);
  const extra: Record<string, string> = values.f === undefined || values.f === '' ? { vary: 'Accept' } : {};
  const contentType = variantContentType(spec.format);
  const variantPath = variantPathOf(coverPath, spec);
  const onDisk = await openStoredFile(deps.coversDir, variantPath);
  if (onDisk) return sendOpened(req, res, onDisk, contentType, extra);

  // Missing: a render this request starts counts against its client's --proxy-rate (joining one in flight does not).
  if (!deps.renders.inFlight(coverPath, spec)) {
    const client = clientKey(clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], deps.trusted));
    const decision = deps.limiter.take(client);
    if (!decision.allowed) {
      return sendError(res, 429, 'too_many_requests', `this address may start ${deps.rate} downloads and renders per 10 minutes (--proxy-rate); variants already made are not limited`, {
        'retry-after': String(decision.retryAfterSeconds),
      });
    }
  }
  // Render it (or wait for the render in flight). A client that leaves stops waiting.
  const left = new AbortController();
  const onClose = () => left.abort(new CoverError('cancelled', 'the client left'));
  res.once('close', onClose);
  let rendered: RenderedVariant;
  try {
    rendered = await deps.renders.variant(coverPath, spec, left.signal, { source: row.originalPath ?? row.path, notOnDisk: true });
  } catch (error) {
    if (left.signal.aborted) return;
    return sendRenderError(res, error, coverPath, deps.logger);
  } finally {
    res.off('close', onClose);
  }
  // Just made: its bytes are at hand (the ETag the file will have when served from disk).
  if (rendered.made !== undefined) return sendBytes(req, res, rendered.made.data, etagOf(rendered.made.data.length, rendered.made.mtimeMs), contentType, extra);
  const made = await openStoredFile(deps.coversDir, variantPath);
  // Made, then removed at once (its cover removed meanwhile).
  if (!made) return sendError(res, 404, 'not_found', 'no cover at this path');
  return sendOpened(req, res, made, contentType, extra);
}

function sendRenderError(res: ServerResponse, error: unknown, coverPath: string, logger: Logger | undefined): void {
  if (error instanceof CoverGoneError) return sendError(res, 404, 'not_found', 'no cover at this path');
  if (error instanceof TooManyVariantsError) return sendError(res, 429, 'too_many_variants', error.message);
  if (error instanceof RendersBusyError) return sendError(res, 503, 'busy', error.message, { 'retry-after': '1' });
  if (error instanceof CoverError && (error.code === 'shutting_down' || error.code === 'tle')) {
    return sendError(res, 503, error.code, error.message, { 'retry-after': '1' });
  }
  logger?.warn('variant could not be made', { path: coverPath, error });
  const message = error instanceof Error ? error.message : String(error);
  sendError(res, 500, 'render_failed', `the variant could not be made: ${message}`);
}

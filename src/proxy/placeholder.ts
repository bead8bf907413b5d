/**
 * The image a proxy request gets when its cover cannot be had: a
 * clean box rather than a broken image. `--placeholder` is one of:
 *
 * - `built-in` (the default): a neutral light grey 320×200 (16:10) PNG, made
 *   with sharp at its first use and kept in memory (a few hundred bytes);
 * - a FILE (made absolute by config.ts): read once at start, at most
 *   `--max-bytes`, and proved an image by decoding it whole (JPEG, PNG, WebP,
 *   GIF or AVIF: an SVG could carry script, so it is refused); a bad file stops
 *   the start with one line naming the option (`OptionError`, exit 2);
 * - `none`: no image; the route answers 502 `{"code","message"}`.
 *
 * `preparePlaceholder` loads (and checks) it; the answer is kept per setting,
 * so the start check and the route share one read.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import sharp from 'sharp';
import type { Metadata } from 'sharp';
import type { Config, Origin } from '../config.js';
import { invalidOption } from '../config.js';
import { MAX_IMAGE_PIXELS } from '../images/index.js';

/** `--placeholder`'s value for the image made here. */
export const BUILT_IN_PLACEHOLDER = 'built-in';
/** `--placeholder`'s value for no image at all. */
export const NO_PLACEHOLDER = 'none';

export interface PlaceholderImage {
  body: Buffer;
  contentType: string;
  /** A strong ETag of the bytes (quoted). */
  etag: string;
  width: number;
  height: number;
}

const contentTypes: Record<string, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  gif: 'image/gif',
  heif: 'image/avif',
};

const firstLine = (error: unknown) => (error instanceof Error ? error.message : String(error)).split('\n')[0]!;

const etagOf = (body: Buffer) => `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;

/** The built-in box: 320×200, RGB(238, 238, 238), PNG. */
async function makeBuiltIn(): Promise<PlaceholderImage> {
  const body = await sharp({ create: { width: 320, height: 200, channels: 3, background: { r: 238, g: 238, b: 238 } } })
    .png({ compressionLevel: 9 })
    .toBuffer();
  return { body, contentType: 'image/png', etag: etagOf(body), width: 320, height: 200 };
}

let builtIn: Promise<PlaceholderImage> | undefined;

/** The built-in placeholder, made once. */
export function builtInPlaceholder(): Promise<PlaceholderImage> {
  builtIn ??= makeBuiltIn().catch((error: unknown) => {
    builtIn = undefined;
    throw error;
  });
  return builtIn;
}

/** Reads at most `maxBytes` of `file`; throws a message when it is larger, missing or unreadable. */
async function readLimited(file: string, maxBytes: number): Promise<Buffer> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    throw new Error(`cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error(`${file} is not a file`);
    if (stat.size > maxBytes) throw new Error(`${file} is ${stat.size} bytes, more than --max-bytes (${maxBytes})`);
    const body = Buffer.alloc(stat.size);
    const { bytesRead } = await handle.read(body, 0, stat.size, 0);
    return body.subarray(0, bytesRead);
  } catch (error) {
    if (error instanceof Error && !('code' in error)) throw error;
    throw new Error(`cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  } finally {
    await handle.close();
  }
}

/**
 * A placeholder file, read and proved an image by a whole decode; throws an
 * `Error` whose message says what is wrong (for the start line).
 */
export async function loadPlaceholderFile(file: string, maxBytes: number): Promise<PlaceholderImage> {
  const body = await readLimited(file, maxBytes);
  if (body.length === 0) throw new Error(`${file} is empty`);
  let meta: Metadata;
  try {
    meta = await sharp(body, { failOn: 'error', limitInputPixels: MAX_IMAGE_PIXELS }).metadata();
  } catch (error) {
    throw new Error(`${file} is not an image that decodes: ${firstLine(error)}`);
  }
  const format = meta.format === 'heif' && meta.compression !== 'av1' ? 'heic' : meta.format;
  if (!Object.hasOwn(contentTypes, format)) throw new Error(`${file} is a ${format} image (use JPEG, PNG, WebP, GIF or AVIF)`);
  let width: number;
  let height: number;
  try {
    const { info } = await sharp(body, { failOn: 'error', limitInputPixels: MAX_IMAGE_PIXELS }).raw().toBuffer({ resolveWithObject: true });
    width = info.width;
    height = info.height;
  } catch (error) {
    throw new Error(`${file} is not an image that decodes: ${firstLine(error)}`);
  }
  return { body, contentType: contentTypes[format]!, etag: etagOf(body), width, height };
}

const loaded = new Map<string, Promise<PlaceholderImage>>();

/**
 * The placeholder `config` names: the image, or `null` for `none`. A FILE is read
 * once per path and size limit and kept. A bad file throws an `OptionError` whose
 * one line names the option as it was given (`origin`, from `resolveConfig`'s
 * origins; default: the flag).
 */
export async function preparePlaceholder(config: Pick<Config, 'placeholder' | 'maxBytes'>, origin: Origin = { from: 'flag', flag: '--placeholder' }): Promise<PlaceholderImage | null> {
  const setting = config.placeholder;
  if (setting === NO_PLACEHOLDER) return null;
  if (setting === BUILT_IN_PLACEHOLDER) return builtInPlaceholder();
  const key = `${config.maxBytes}\0${setting}`;
  let image = loaded.get(key);
  if (image === undefined) {
    image = loadPlaceholderFile(setting, config.maxBytes);
    loaded.set(key, image);
    image.catch(() => loaded.delete(key));
  }
  try {
    return await image;
  } catch (error) {
    throw invalidOption('placeholder', origin, (error as Error).message);
  }
}

/**
 * Signed cover URLs (the HTTP door, `GET /c/<signature>/<base64url of the URL>`),
 * as imgproxy and camo sign theirs: only whoever holds the key can make the
 * service fetch. The signature is the base64url HMAC-SHA256 of the base64url
 * part, keyed by the service's `--url-key`. The service verifies with these same
 * functions.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The base64url of a URL's UTF-8 bytes, as the door's last path segment. */
export function encodeCoverTarget(url: string): string {
  return Buffer.from(url, 'utf8').toString('base64url');
}

/** The signature of an encoded target: base64url HMAC-SHA256 keyed by `key`. */
export function coverSignature(encoded: string, key: string): string {
  return createHmac('sha256', key).update(encoded).digest('base64url');
}

/**
 * The signed door URL of `url`: `<base>/c/<signature>/<base64url>`, where `base`
 * is the service's address as the blog's readers reach it (such as
 * `https://covers.example.com`; a trailing slash is fine).
 */
export function signCoverUrl(url: string, key: string, base: string): string {
  const encoded = encodeCoverTarget(url);
  return `${base.replace(/\/+$/, '')}/c/${coverSignature(encoded, key)}/${encoded}`;
}

/**
 * The URL a door path names, if `signature` is right for `encoded` under `key`
 * (compared in constant time); undefined otherwise, or when `encoded` is not
 * base64url of UTF-8 text.
 */
export function verifyCoverTarget(signature: string, encoded: string, key: string): string | undefined {
  if (!/^[A-Za-z0-9_-]+$/.test(encoded) || !/^[A-Za-z0-9_-]{43}$/.test(signature)) return undefined;
  const expected = Buffer.from(coverSignature(encoded, key));
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  const url = Buffer.from(encoded, 'base64url').toString('utf8');
  // Only what encodes back to the same text is taken: no loose padding or stray bits.
  return encodeCoverTarget(url) === encoded ? url : undefined;
}

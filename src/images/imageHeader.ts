/**
 * Format and size of a JPEG, PNG, GIF or WebP from its first bytes, in
 * JavaScript: what sharp's `metadata()` would say, without a native call. The
 * size is what the pixel limit and the decode budget are checked against before
 * anything is decoded.
 */
export interface ImageHeader {
  format: 'jpeg' | 'png' | 'gif' | 'webp';
  width: number;
  height: number;
}

/**
 * Format and size read from the first bytes of a JPEG, PNG, GIF or WebP, the
 * same values sharp's `metadata()` reports (with `animated: false`), without a
 * native call. Null for any other format, or a header that is cut off or odd:
 * then ask sharp. Says nothing about the rest of the body: only a decode does.
 */
export function readImageHeader(body: Buffer): ImageHeader | null {
  if (body.length >= 4 && body[0] === 0xff && body[1] === 0xd8) return jpegHeader(body);
  if (body.length >= 24 && body.readUInt32BE(0) === 0x89504e47 && body.readUInt32BE(4) === 0x0d0a1a0a) {
    // Signature, then the IHDR chunk: length, type, width, height.
    if (body.toString('latin1', 12, 16) !== 'IHDR') return null;
    return sized('png', body.readUInt32BE(16), body.readUInt32BE(20));
  }
  if (body.length >= 13 && (body.toString('latin1', 0, 6) === 'GIF87a' || body.toString('latin1', 0, 6) === 'GIF89a')) return gifHeader(body);
  if (body.length >= 30 && body.toString('latin1', 0, 4) === 'RIFF' && body.toString('latin1', 8, 12) === 'WEBP') return webpHeader(body);
  return null;
}

function sized(format: ImageHeader['format'], width: number, height: number): ImageHeader | null {
  return width > 0 && height > 0 ? { format, width, height } : null;
}

/** The first frame header (SOFn) before the scan, walking the segments. */
function jpegHeader(body: Buffer): ImageHeader | null {
  let i = 2;
  while (i + 4 <= body.length) {
    if (body[i] !== 0xff) return null;
    let marker = body[i + 1]!;
    while (marker === 0xff && i + 2 < body.length) marker = body[++i + 1]!; // fill bytes
    i += 2;
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue; // no length
    if (marker === 0xd9 || marker === 0xda || i + 2 > body.length) return null; // end, or the scan, before a frame header
    const length = body.readUInt16BE(i);
    if (length < 2) return null;
    // SOF0–SOF15 but DHT (C4), JPG (C8) and DAC (CC): length, precision, height, width.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (length < 7 || i + 7 > body.length) return null;
      return sized('jpeg', body.readUInt16BE(i + 5), body.readUInt16BE(i + 3));
    }
    i += length;
  }
  return null;
}

/**
 * The logical screen, as libvips' GIF loader (libnsgif) sizes it: a screen of a
 * common monitor size, 0 or over 2048 counts as 1×1, and the first frame may
 * grow it; so the first image descriptor is read too.
 */
function gifHeader(body: Buffer): ImageHeader | null {
  let width = body.readUInt16LE(6);
  let height = body.readUInt16LE(8);
  const monitor = ['640x480', '640x512', '800x600', '1024x768', '1280x1024', '1600x1200'];
  if (width === 0 || height === 0 || width > 2048 || height > 2048 || monitor.includes(`${width}x${height}`)) width = height = 1;
  const flags = body[10]!;
  let i = 13 + (flags & 0x80 ? 3 << ((flags & 7) + 1) : 0); // after the global colour table
  for (;;) {
    if (i >= body.length) return null;
    const block = body[i]!;
    if (block === 0x2c) {
      // Image descriptor: left, top, width, height.
      if (i + 9 > body.length) return null;
      width = Math.max(width, body.readUInt16LE(i + 1) + body.readUInt16LE(i + 5));
      height = Math.max(height, body.readUInt16LE(i + 3) + body.readUInt16LE(i + 7));
      return sized('gif', width, height);
    }
    if (block !== 0x21) return null; // an extension is all that may come before the first image
    i += 2; // introducer and label, then data sub-blocks up to an empty one
    while (i < body.length && body[i] !== 0) i += body[i]! + 1;
    i++;
  }
}

/** The canvas of an extended WebP, or the frame size of a simple lossy or lossless one. */
function webpHeader(body: Buffer): ImageHeader | null {
  const chunk = body.toString('latin1', 12, 16);
  if (chunk === 'VP8X') return sized('webp', body.readUIntLE(24, 3) + 1, body.readUIntLE(27, 3) + 1);
  if (chunk === 'VP8L') {
    if (body[20] !== 0x2f) return null;
    const bits = body.readUInt32LE(21);
    return sized('webp', (bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1);
  }
  if (chunk === 'VP8 ') {
    // Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height.
    if (body.length < 30 || body[23] !== 0x9d || body[24] !== 0x01 || body[25] !== 0x2a) return null;
    return sized('webp', body.readUInt16LE(26) & 0x3fff, body.readUInt16LE(28) & 0x3fff);
  }
  return null;
}

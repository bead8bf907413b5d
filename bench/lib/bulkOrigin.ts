/**
 * An image origin on 127.0.0.1 for the scenarios that need thousands of
 * distinct real images (test/helpers/origin.ts encodes every image it serves
 * with sharp, which at 100,000 images would make the origin the thing measured).
 *
 *   GET /c/<set>/<i>.jpg   a real JPEG, different bytes for every <set>/<i>
 *
 * At start it encodes a few base images of the chosen size class (noise, so
 * they are as costly to decode as photos of that size); each response is a base
 * image with a JPEG comment segment naming `<set>/<i>` inserted after its JFIF
 * header: a valid JPEG whose bytes (and sha256) differ per URL.
 *
 * `serveImages(images)` serves given images the same way (the cold scenario's
 * 1920×1080 covers, bench/lib/coverImages.ts): URL `<set>/<i>` gets image
 * `i % images.length`, with its comment segment.
 *
 * `hold = true` keeps every request open until `release()`: the restore
 * scenario uses it to leave a killed service's tasks unfinished.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import sharp from 'sharp';

export type SizeClass = 'large' | 'small';

export interface BulkOrigin {
  url: string;
  /** Every request seen. */
  requests: number;
  /** Requests per set. */
  perSet: Map<string, number>;
  /** Most requests open at once. */
  maxOpen: number;
  /** Added to every response, in ms. */
  delayMs: number;
  /** While true, requests wait for `release()`. */
  hold: boolean;
  /** Mean body size, bytes. */
  meanBytes: number;
  imageUrl(set: string, index: number): string;
  release(): void;
  close(): Promise<void>;
}

/** Noise blurred just enough that a 640×400 JPEG at quality 80 is about 50 KB. */
async function baseImage(seed: number, size: SizeClass): Promise<Buffer> {
  const [width, height, blur] = size === 'large' ? [640, 400, 1.5] : [64, 40, 0];
  const raw = Buffer.alloc(width * height * 3);
  let s = seed * 2654435761;
  for (let i = 0; i < raw.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    raw[i] = (s >>> 16) & 255;
  }
  let image = sharp(raw, { raw: { width, height, channels: 3 } });
  if (blur > 0) image = image.blur(blur);
  return image.jpeg({ quality: 80 }).toBuffer();
}

/** Where a comment segment may go: after SOI and a leading APP0 (JFIF) segment. */
function insertPoint(jpeg: Buffer): number {
  if (jpeg[0] !== 0xff || jpeg[1] !== 0xd8) throw new Error('not a JPEG');
  if (jpeg[2] === 0xff && jpeg[3] === 0xe0) return 4 + jpeg.readUInt16BE(4);
  return 2;
}

export async function startBulkOrigin(size: SizeClass, bases = 16): Promise<BulkOrigin> {
  return serveImages(await Promise.all(Array.from({ length: bases }, (_, i) => baseImage(i + 1, size))));
}

/** An origin serving these JPEGs: `<set>/<i>` is image `i % images.length`, made distinct by a comment. */
export async function serveImages(images: readonly Buffer[]): Promise<BulkOrigin> {
  const bases = images.length;
  if (bases === 0) throw new Error('serveImages: no images');
  const cuts = images.map(insertPoint);
  const sockets = new Set<Socket>();
  const held: (() => void)[] = [];
  let open = 0;

  const body = (set: string, index: number): Buffer => {
    const image = images[index % bases]!;
    const cut = cuts[index % bases]!;
    const text = Buffer.from(`coverhelper-bench ${set}/${index}`);
    const segment = Buffer.alloc(4 + text.length);
    segment[0] = 0xff;
    segment[1] = 0xfe;
    segment.writeUInt16BE(2 + text.length, 2);
    text.copy(segment, 4);
    return Buffer.concat([image.subarray(0, cut), segment, image.subarray(cut)]);
  };

  const origin: BulkOrigin = {
    url: '',
    requests: 0,
    perSet: new Map(),
    maxOpen: 0,
    delayMs: 0,
    hold: false,
    meanBytes: images.reduce((sum, image) => sum + image.length, 0) / bases,
    imageUrl: (set, index) => `${origin.url}/c/${set}/${index}.jpg`,
    release() {
      origin.hold = false;
      for (const finish of held.splice(0)) finish();
    },
    async close() {
      held.length = 0;
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const server = http.createServer((req, res) => {
    origin.requests++;
    const m = /^\/c\/([^/]+)\/(\d+)\.jpg$/.exec(req.url ?? '');
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const set = m[1]!;
    origin.perSet.set(set, (origin.perSet.get(set) ?? 0) + 1);
    open++;
    origin.maxOpen = Math.max(origin.maxOpen, open);
    res.once('close', () => open--);
    const send = () => {
      if (res.destroyed) return;
      const data = body(set, Number(m[2]));
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': data.length }).end(data);
    };
    const later = () => (origin.delayMs > 0 ? setTimeout(send, origin.delayMs) : send());
    if (origin.hold) held.push(later);
    else later();
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return origin;
}

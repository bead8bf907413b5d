/**
 * A real HTTP origin on 127.0.0.1, port 0, for tests: serves generated images,
 * misbehaves on request, counts requests and the most open at once, and can
 * play bilibili's view API.
 *
 *   /img/<name>.jpg|png     a real image, different per name (optional ?delay=ms);
 *                           a bilibili suffix after it (`….jpg@220w_280h.webp`) is served the same
 *   /status/<code>          that status
 *   /redirect/<n>/<name>    n redirects, then /img/<name>
 *   /loop                   redirects to itself forever
 *   /to?url=<u>             redirects to u
 *   /fake.jpg               text with an image content type
 *   /bytes/<n>              a valid JPEG padded to exactly n bytes (padding after EOI)
 *   /hang                   headers, then a body that never ends
 *   /x/web-interface/view   bilibili's view API, answers set with `videos`
 *   /half/<name>.jpg        headers and half the image, the rest when `release()` is called
 *   /flaky/<name>.jpg?fails=N   500 for the first N requests of that path, then the image
 *                           (a transient failure; 503 would be a refusal that cools the host)
 *   /reset/<name>.jpg?fails=N   connection reset for the first N requests, then the image
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import sharp from 'sharp';

export interface Origin {
  url: string;
  /** Requests per path (without query). */
  hits: Map<string, number>;
  total(): number;
  /** Most requests open at once. */
  maxOpen(): number;
  /** Response delay in ms for /img (default 0). */
  delayMs: number;
  /** bvid/aid → the view API answer. */
  videos: Map<string, unknown>;
  /** Requests seen, with their headers. */
  requests: { path: string; headers: http.IncomingHttpHeaders }[];
  /** Sockets whose request ended while the body was still open. */
  abortedSockets: number;
  /** Lets every held /half response finish. */
  release(): void;
  close(): Promise<void>;
}

const imageCache = new Map<string, Buffer>();

/** A small real image whose pixels depend on `name`. */
export async function makeImage(name: string, format: 'jpeg' | 'png' = 'jpeg', width = 640, height = 400): Promise<Buffer> {
  const key = `${name}:${format}:${width}x${height}`;
  const cached = imageCache.get(key);
  if (cached) return cached;
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  const image = sharp({ create: { width, height, channels: 3, background: { r: h & 255, g: (h >> 8) & 255, b: (h >> 16) & 255 } } });
  const data = await (format === 'png' ? image.png() : image.jpeg({ quality: 80 })).toBuffer();
  imageCache.set(key, data);
  return data;
}

export async function startOrigin(): Promise<Origin> {
  let open = 0;
  let released = false;
  const held: (() => void)[] = [];
  let maxOpen = 0;
  const sockets = new Set<Socket>();
  const origin: Origin = {
    url: '',
    hits: new Map(),
    total: () => [...origin.hits.values()].reduce((a, b) => a + b, 0),
    maxOpen: () => maxOpen,
    delayMs: 0,
    videos: new Map(),
    requests: [],
    abortedSockets: 0,
    release: () => {
      released = true;
      for (const finish of held.splice(0)) finish();
    },
    close: async () => {
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    origin.hits.set(path, (origin.hits.get(path) ?? 0) + 1);
    origin.requests.push({ path, headers: req.headers });
    open++;
    maxOpen = Math.max(maxOpen, open);
    res.once('close', () => {
      open--;
      if (!res.writableFinished) origin.abortedSockets++;
    });
    void respond(url, res).catch((error: unknown) => {
      res.destroy(error as Error);
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  async function respond(url: URL, res: http.ServerResponse): Promise<void> {
    const path = url.pathname;
    const delay = Number(url.searchParams.get('delay') ?? origin.delayMs);
    let m: RegExpExecArray | null;
    if ((m = /^\/img\/(.+?)\.(jpg|png)(?:@[\w.]*)?$/.exec(path))) {
      // `?size=WxH` picks the image's size (default 640×400).
      const size = /^(\d{1,5})x(\d{1,5})$/.exec(url.searchParams.get('size') ?? '');
      const body = await makeImage(m[1]!, m[2] === 'png' ? 'png' : 'jpeg', size ? Number(size[1]) : undefined, size ? Number(size[2]) : undefined);
      if (delay > 0) await sleep(delay);
      res.writeHead(200, { 'content-type': m[2] === 'png' ? 'image/png' : 'image/jpeg', 'content-length': body.length }).end(body);
    } else if ((m = /^\/status\/(\d+)$/.exec(path))) {
      res.writeHead(Number(m[1]), { 'content-type': 'text/plain' }).end(`status ${m[1]}\n`);
    } else if ((m = /^\/redirect\/(\d+)\/(.+)$/.exec(path))) {
      const n = Number(m[1]);
      res.writeHead(302, { location: n > 1 ? `/redirect/${n - 1}/${m[2]}` : `/img/${m[2]}.jpg` }).end();
    } else if (path === '/loop') {
      res.writeHead(302, { location: '/loop' }).end();
    } else if (path === '/to') {
      res.writeHead(302, { location: url.searchParams.get('url') ?? '/' }).end();
    } else if (path === '/fake.jpg') {
      res.writeHead(200, { 'content-type': 'image/jpeg' }).end('this is not an image at all, only text pretending');
    } else if ((m = /^\/bytes\/(\d+)$/.exec(path))) {
      const n = Number(m[1]);
      const image = await makeImage('sized', 'jpeg', 64, 40);
      const body = Buffer.alloc(n);
      image.copy(body, 0, 0, Math.min(image.length, n));
      res.writeHead(200, { 'content-type': 'image/jpeg', ...(url.searchParams.has('chunked') ? {} : { 'content-length': n }) });
      res.end(body);
    } else if (path === '/hang') {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      res.write(Buffer.from([0xff, 0xd8]));
    } else if ((m = /^\/half\/(.+)\.jpg$/.exec(path))) {
      const body = await makeImage(`half-${m[1]!}`, 'jpeg', 1200, 900);
      const half = Math.floor(body.length / 2);
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length });
      res.write(body.subarray(0, half));
      const finish = () => res.end(body.subarray(half));
      if (released) finish();
      else held.push(finish);
    } else if ((m = /^\/(flaky|reset)\/(.+)\.jpg$/.exec(path))) {
      const fails = Number(url.searchParams.get('fails') ?? 1);
      if ((origin.hits.get(path) ?? 0) <= fails) {
        if (m[1] === 'reset') res.socket?.resetAndDestroy();
        else res.writeHead(500).end('busy');
        return;
      }
      const body = await makeImage(m[2]!);
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length }).end(body);
    } else if (path === '/x/web-interface/view') {
      const key = url.searchParams.get('bvid') ?? `av${url.searchParams.get('aid') ?? ''}`;
      const answer = origin.videos.get(key) ?? { code: -404, message: '啥都木有', ttl: 1 };
      if (delay > 0) await sleep(delay);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    } else {
      res.writeHead(404).end('no such thing');
    }
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return origin;
}

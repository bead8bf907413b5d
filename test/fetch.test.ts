/**
 * The fetcher against real HTTP origins on 127.0.0.1 (port 0): URL rules, the
 * private-network guard, redirects, size limits, aborts and bilibili resolution.
 * No mocks, no sleeps: waits are on real events, each behind a timeout guard.
 */
import assert from 'node:assert/strict';
import { UpstreamRefusal } from '../src/upstream/types.js';
import diagnosticsChannel from 'node:diagnostics_channel';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { Agent, buildConnector } from 'undici';
import { CoverError, isRemembered, isRetryable, toCoverError } from '../src/errors.js';
import type { ErrorCode } from '../src/errors.js';
import {
  classifyUrl,
  createGuardedConnector,
  createHttpClient,
  downloadImage,
  getJson,
  hostAllowed,
  isAbort,
  isPrivateAddress,
  resolveVideoCover,
} from '../src/fetch/index.js';
import type { HttpClient } from '../src/fetch/index.js';

const userAgent = 'coverhelper-test/0.0.0';

// ---------------------------------------------------------------------------
// helpers

interface Origin {
  /** `http://127.0.0.1:PORT` */
  base: string;
  port: number;
  /** Every request the origin saw, in order. */
  requests: http.IncomingMessage[];
  /** TCP connections the origin accepted. */
  connections: () => number;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Starts a real origin on 127.0.0.1:0, closed (with all its sockets) when the test ends. */
async function startOrigin(t: TestContext, handler: Handler): Promise<Origin> {
  const requests: http.IncomingMessage[] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    requests.push(req);
    handler(req, res);
  });
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => closeServer(server));
  const { port } = server.address() as AddressInfo;
  return { base: `http://127.0.0.1:${port}`, port, requests, connections: () => connections };
}

async function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A port on 127.0.0.1 that nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await closeServer(server);
  return port;
}

/** Resolves with `promise`, or fails the test if it takes longer than `ms`. Not a sleep: it ends when the promise does. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, guard]);
  } finally {
    clearTimeout(timer);
  }
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Awaits `promise`, asserts it rejects with a `CoverError` of `code`, and returns the error. */
async function coverError(promise: Promise<unknown>, code: ErrorCode): Promise<CoverError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof CoverError, `expected a CoverError, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
    return error;
  }
  assert.fail(`expected a CoverError ${code}, but it resolved`);
}

function bytes(n: number, fill = 0x61): Buffer {
  return Buffer.alloc(n, fill);
}

const never = new AbortController().signal;

// ---------------------------------------------------------------------------
// URL rules

describe('classifyUrl', () => {
  const allow = ['*.hdslb.com', 'img.example.com'];

  it('calls an http(s) URL on an allowed host an image', () => {
    const kind = classifyUrl('https://i0.hdslb.com/bfs/archive/a.jpg', allow);
    assert.equal(kind.kind, 'image');
    assert.equal(kind.kind === 'image' && kind.url.href, 'https://i0.hdslb.com/bfs/archive/a.jpg');
    assert.equal(classifyUrl('http://img.example.com/x.png?w=1', allow).kind, 'image');
    assert.equal(classifyUrl('https://I0.HDSLB.COM/a.jpg', allow).kind, 'image');
  });

  it('skips an image on a host outside the allow list', () => {
    assert.deepEqual(classifyUrl('https://evil.example.org/a.jpg', allow), { kind: 'skip', reason: 'host evil.example.org is not in --allow-hosts' });
    assert.deepEqual(classifyUrl('https://i0.hdslb.com.evil.org/a.jpg', allow), { kind: 'skip', reason: 'host i0.hdslb.com.evil.org is not in --allow-hosts' });
  });

  it('lets *.x.com match subdomains of x.com but not x.com itself', () => {
    assert.equal(classifyUrl('https://a.x.com/p.jpg', ['*.x.com']).kind, 'image');
    assert.equal(classifyUrl('https://a.b.x.com/p.jpg', ['*.x.com']).kind, 'image');
    assert.equal(classifyUrl('https://x.com/p.jpg', ['*.x.com']).kind, 'skip');
    assert.equal(classifyUrl('https://evilx.com/p.jpg', ['*.x.com']).kind, 'skip');
  });

  it('lets * allow any host', () => {
    assert.equal(classifyUrl('https://anything.example/p.jpg', ['*']).kind, 'image');
    assert.equal(classifyUrl('http://127.0.0.1:8080/p.jpg', ['*']).kind, 'image');
  });

  it('recognises BV and av video pages with query, fragment or trailing slash, whatever the allow list', () => {
    const bv = { kind: 'video', param: 'bvid', id: 'BV1xx411c7mD' };
    for (const url of [
      'https://www.bilibili.com/video/BV1xx411c7mD',
      'https://www.bilibili.com/video/BV1xx411c7mD/',
      'https://www.bilibili.com/video/BV1xx411c7mD/?spm_id_from=333.1007&vd_source=abc',
      'https://www.bilibili.com/video/BV1xx411c7mD#reply123',
      'http://bilibili.com/video/BV1xx411c7mD?p=2#t=10',
      'https://m.bilibili.com/video/BV1xx411c7mD',
    ]) {
      assert.deepEqual(classifyUrl(url, []), bv, url);
    }
    const av = { kind: 'video', param: 'aid', id: '170001' };
    for (const url of ['https://www.bilibili.com/video/av170001', 'https://www.bilibili.com/video/av170001/?p=1#x', 'http://m.bilibili.com/video/AV170001']) {
      assert.deepEqual(classifyUrl(url, []), av, url);
    }
  });

  it('skips garbage, other schemes, credentials and bilibili pages that are not videos, saying why', () => {
    const cases: [string, string][] = [
      ['', 'not a URL'],
      ['not a url', 'not a URL'],
      ['ftp://i0.hdslb.com/a.jpg', 'not an http(s) URL (ftp)'],
      ['file:///etc/passwd', 'not an http(s) URL (file)'],
      ['data:image/png;base64,AAAA', 'not an http(s) URL (data)'],
      ['https://user:pass@i0.hdslb.com/a.jpg', 'the URL carries a user name or password'],
      ['https://www.bilibili.com/', 'host www.bilibili.com is not in --allow-hosts'],
      ['https://www.bilibili.com/video/BV1xx', 'host www.bilibili.com is not in --allow-hosts'],
      ['https://www.bilibili.com/video/av', 'host www.bilibili.com is not in --allow-hosts'],
      ['https://space.bilibili.com/video/BV1xx411c7mD', 'host space.bilibili.com is not in --allow-hosts'],
      ['https://user:pass@www.bilibili.com/video/BV1xx411c7mD', 'the URL carries a user name or password'],
    ];
    for (const [url, reason] of cases) assert.deepEqual(classifyUrl(url, allow), { kind: 'skip', reason }, url);
  });
});

describe('hostAllowed', () => {
  it('matches exactly, by subdomain pattern or by *, ignoring case and a trailing dot', () => {
    assert.equal(hostAllowed('img.example.com', ['img.example.com']), true);
    assert.equal(hostAllowed('IMG.Example.com', ['img.example.com']), true);
    assert.equal(hostAllowed('i0.hdslb.com.', ['*.hdslb.com']), true);
    assert.equal(hostAllowed('hdslb.com', ['*.hdslb.com']), false);
    assert.equal(hostAllowed('other.com', ['img.example.com']), false);
    assert.equal(hostAllowed('other.com', ['*']), true);
    assert.equal(hostAllowed('[::1]', ['[::1]']), true);
    assert.equal(hostAllowed('127.0.0.1', []), false);
  });
});

// ---------------------------------------------------------------------------
// downloads, with private origins allowed (every test origin is on 127.0.0.1)

describe('downloadImage', () => {
  let client: HttpClient;
  before(() => {
    client = createHttpClient({ allowPrivateNetwork: true, userAgent });
  });
  after(() => client.close());

  const allowHosts = ['127.0.0.1'];
  const options = (extra: { maxBytes?: number; signal?: AbortSignal; onProgress?: (b: number, t: number | undefined) => void } = {}) => ({
    client,
    allowHosts,
    maxBytes: extra.maxBytes ?? 1_000_000,
    signal: extra.signal ?? never,
    ...(extra.onProgress ? { onProgress: extra.onProgress } : {}),
  });

  it('returns the body and content type of a 200, sending our user agent and no referer', async (t) => {
    const image = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);
    const origin = await startOrigin(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': image.length });
      res.end(image);
    });
    const progress: [number, number | undefined][] = [];
    const result = await downloadImage(new URL(`${origin.base}/cover.png`), options({ onProgress: (b, total) => progress.push([b, total]) }));
    assert.deepEqual(result.body, image);
    assert.equal(result.contentType, 'image/png');
    assert.equal(result.finalUrl.href, `${origin.base}/cover.png`);
    assert.deepEqual(progress.at(-1), [image.length, image.length]);
    const req = origin.requests[0]!;
    assert.equal(req.headers['user-agent'], userAgent);
    assert.equal(req.headers.referer, undefined);
    assert.match(req.headers.accept ?? '', /^image\/avif/);
  });

  it('fails a 404 with http_status carrying 404', async (t) => {
    const origin = await startOrigin(t, (_req, res) => {
      res.writeHead(404).end('no such cover');
    });
    const error = await coverError(downloadImage(new URL(`${origin.base}/missing.jpg`), options()), 'http_status');
    assert.equal(error.detail, 404);
    assert.equal(error.message, 'HTTP 404');
  });

  it('fails a 500 with http_status carrying 500', async (t) => {
    const origin = await startOrigin(t, (_req, res) => {
      res.writeHead(500).end('oops');
    });
    const error = await coverError(downloadImage(new URL(`${origin.base}/broken.jpg`), options()), 'http_status');
    assert.equal(error.detail, 500);
  });

  it('passes the gate of each hop\'s host, gives the slot back when the body is read, and turns 412/429/503 into refusals with their Retry-After', async (t) => {
    const now = Date.UTC(2026, 0, 1);
    const origin = await startOrigin(t, (req, res) => {
      if (req.url === '/hop') res.writeHead(302, { location: `http://localhost:${(req.socket.localPort ?? 0).toString()}/image` }).end();
      else if (req.url === '/image') res.writeHead(200, { 'content-type': 'image/jpeg' }).end('JPEG');
      else if (req.url === '/429') res.writeHead(429, { 'retry-after': '7' }).end();
      else if (req.url === '/503') res.writeHead(503, { 'retry-after': new Date(now + 90_000).toUTCString() }).end();
      else if (req.url === '/412') res.writeHead(412).end();
      else res.writeHead(404).end();
    });
    const passed: string[] = [];
    const outcomes: unknown[] = [];
    const gate = {
      acquire: (host: string) => {
        passed.push(host);
        return Promise.resolve((outcome: unknown) => void outcomes.push(outcome));
      },
      now: () => now,
    };
    const hops = { ...options(), allowHosts: ['127.0.0.1', 'localhost'], gate };
    const result = await downloadImage(new URL(`${origin.base}/hop`), hops);
    assert.equal(result.body.toString(), 'JPEG');
    assert.deepEqual(passed, ['127.0.0.1', 'localhost']);
    assert.deepEqual(outcomes, ['ok', 'ok']);
    for (const [path, retryAfterMs] of [['/429', 7000], ['/503', 90_000], ['/412', undefined]] as const) {
      outcomes.length = 0;
      const refusal = await downloadImage(new URL(`${origin.base}${path}`), hops).then(
        () => assert.fail('resolved'),
        (thrown: unknown) => thrown,
      );
      assert.ok(refusal instanceof UpstreamRefusal, String(refusal));
      assert.equal(refusal.why, `HTTP ${path.slice(1)}`);
      assert.equal(refusal.retryAfterMs, retryAfterMs);
      assert.deepEqual(outcomes, [refusal], 'the slot is given back with the refusal');
    }
    outcomes.length = 0;
    await coverError(downloadImage(new URL(`${origin.base}/missing`), hops), 'http_status');
    assert.deepEqual(outcomes, ['error']);
  });

  it('follows a chain of 5 redirects of every kind to the image', async (t) => {
    const statuses = [301, 302, 303, 307, 308, 302];
    const origin = await startOrigin(t, (req, res) => {
      const n = Number(/^\/r\/(\d+)$/.exec(req.url ?? '')?.[1] ?? 'NaN');
      if (n > 0) res.writeHead(statuses[n - 1]!, { location: `/r/${n - 1}` }).end('moved');
      else res.writeHead(200, { 'content-type': 'image/jpeg' }).end('JPEG');
    });
    const result = await downloadImage(new URL(`${origin.base}/r/5`), options());
    assert.equal(result.body.toString(), 'JPEG');
    assert.equal(result.finalUrl.href, `${origin.base}/r/0`);
    assert.equal(origin.requests.length, 6);
  });

  it('gives up on the sixth redirect with http_status "too many redirects"', async (t) => {
    const origin = await startOrigin(t, (req, res) => {
      const n = Number(/^\/r\/(\d+)$/.exec(req.url ?? '')?.[1] ?? 'NaN');
      if (n > 0) res.writeHead(307, { location: `/r/${n - 1}` }).end();
      else res.writeHead(200).end('JPEG');
    });
    const error = await coverError(downloadImage(new URL(`${origin.base}/r/6`), options()), 'http_status');
    assert.equal(error.message, 'too many redirects (more than 5)');
    assert.equal(error.detail, 307);
    assert.equal(origin.requests.length, 6, 'the sixth redirect target is never asked for');
  });

  it('stops a redirect loop with http_status "too many redirects"', async (t) => {
    const origin = await startOrigin(t, (_req, res) => {
      res.writeHead(302, { location: '/loop' }).end();
    });
    const error = await coverError(downloadImage(new URL(`${origin.base}/loop`), options()), 'http_status');
    assert.match(error.message, /too many redirects/);
    assert.equal(error.detail, 302);
  });

  it('refuses a redirect to a host not in the allow list with not_allowed, without asking it', async (t) => {
    const origin = await startOrigin(t, (req, res) => {
      if (req.url === '/start') res.writeHead(302, { location: `http://localhost:${origin.port}/img` }).end();
      else res.writeHead(200).end('JPEG');
    });
    const error = await coverError(downloadImage(new URL(`${origin.base}/start`), options()), 'not_allowed');
    assert.equal(error.message, 'redirect to a host not in --allow-hosts: localhost');
    assert.deepEqual(
      origin.requests.map((r) => r.url),
      ['/start'],
    );
  });

  it('refuses a redirect to a scheme other than http(s) with invalid_url', async (t) => {
    const origin = await startOrigin(t, (_req, res) => {
      res.writeHead(301, { location: 'ftp://127.0.0.1/a.jpg' }).end();
    });
    await coverError(downloadImage(new URL(`${origin.base}/start`), options()), 'invalid_url');
  });

  it('accepts a body of exactly maxBytes and refuses maxBytes + 1 with too_large, with a Content-Length', async (t) => {
    const origin = await startOrigin(t, (req, res) => {
      const n = Number(req.url?.slice(1));
      res.writeHead(200, { 'content-length': n }).end(bytes(n));
    });
    const ok = await downloadImage(new URL(`${origin.base}/1000`), options({ maxBytes: 1000 }));
    assert.equal(ok.body.length, 1000);
    const error = await coverError(downloadImage(new URL(`${origin.base}/1001`), options({ maxBytes: 1000 })), 'too_large');
    assert.equal(error.message, 'image larger than 1000 bytes');
  });

  it('accepts a chunked body of exactly maxBytes and refuses maxBytes + 1 with too_large while streaming', async (t) => {
    const origin = await startOrigin(t, (req, res) => {
      const n = Number(req.url?.slice(1));
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      for (let sent = 0; sent < n; sent += 100) res.write(bytes(Math.min(100, n - sent)));
      res.end();
    });
    const progress: number[] = [];
    const ok = await downloadImage(new URL(`${origin.base}/1000`), options({ maxBytes: 1000, onProgress: (b, total) => progress.push(b, total ?? -1) }));
    assert.equal(ok.body.length, 1000);
    assert.equal(progress.at(-2), 1000);
    assert.equal(progress.at(-1), -1, 'no total without a Content-Length');
    await coverError(downloadImage(new URL(`${origin.base}/1001`), options({ maxBytes: 1000 })), 'too_large');
  });

  it('refuses a Content-Length above maxBytes at once, before any of the body arrives', async (t) => {
    const origin = await startOrigin(t, (_req, res) => {
      res.writeHead(200, { 'content-length': 50_000_000 });
      res.flushHeaders(); // and never a byte of body
    });
    await within(coverError(downloadImage(new URL(`${origin.base}/huge`), options({ maxBytes: 1000 })), 'too_large'), 5000, 'too_large');
  });

  it('stops a body that never finishes when the signal aborts, and the origin sees its socket closed', async (t) => {
    const socketClosed = deferred<void>();
    const origin = await startOrigin(t, (req, res) => {
      req.socket.once('close', () => socketClosed.resolve());
      res.writeHead(200, { 'content-length': 1_000_000 });
      res.write(bytes(1000)); // and never the rest
    });
    const controller = new AbortController();
    const started = Date.now();
    const download = downloadImage(new URL(`${origin.base}/slow`), options({ signal: controller.signal, onProgress: () => controller.abort() }));
    const error = await within(
      download.then(
        () => assert.fail('the download should not succeed'),
        (e: unknown) => e,
      ),
      5000,
      'the download ending',
    );
    assert.equal(isAbort(error, controller.signal), true);
    assert.equal(error, controller.signal.reason, 'the abort reason comes back as it was');
    assert.ok(!(error instanceof CoverError), 'an abort is not turned into a CoverError');
    await within(socketClosed.promise, 5000, 'the origin seeing its socket closed');
    assert.ok(Date.now() - started < 5000);
  });

  it('stops a request still waiting for headers when the signal aborts', async (t) => {
    const socketClosed = deferred<void>();
    const requested = deferred<void>();
    const origin = await startOrigin(t, (req) => {
      req.socket.once('close', () => socketClosed.resolve());
      requested.resolve(); // and never an answer
    });
    const controller = new AbortController();
    const download = downloadImage(new URL(`${origin.base}/silent`), options({ signal: controller.signal }));
    const outcome = download.then(
      () => assert.fail('the download should not succeed'),
      (e: unknown) => e,
    );
    await within(requested.promise, 5000, 'the request reaching the origin');
    const reason = new Error('time limit');
    controller.abort(reason);
    const error = await within(outcome, 5000, 'the download ending');
    assert.equal(error, reason);
    assert.equal(isAbort(error, controller.signal), true);
    await within(socketClosed.promise, 5000, 'the origin seeing its socket closed');
  });

  it('fails with network when the connection is reset in the middle of the body', async (t) => {
    let serverSocket: Socket | undefined;
    const origin = await startOrigin(t, (req, res) => {
      serverSocket = req.socket;
      res.writeHead(200, { 'content-length': 1000 });
      res.write(bytes(100));
    });
    const error = await coverError(
      downloadImage(new URL(`${origin.base}/reset`), options({ onProgress: () => serverSocket?.resetAndDestroy() })),
      'network',
    );
    assert.ok(error.cause !== undefined, 'the undici error is kept as the cause');
  });

  it('fails with network when a chunked body is cut off', async (t) => {
    let serverSocket: Socket | undefined;
    const origin = await startOrigin(t, (req, res) => {
      serverSocket = req.socket;
      res.writeHead(200);
      res.write(bytes(100));
    });
    await coverError(downloadImage(new URL(`${origin.base}/cut`), options({ onProgress: () => serverSocket?.destroy() })), 'network');
  });

  it('fails with network when nothing listens on the port', async () => {
    const port = await closedPort();
    const error = await coverError(downloadImage(new URL(`http://127.0.0.1:${port}/a.jpg`), options()), 'network');
    assert.match(error.message, /ECONNREFUSED/);
  });
});

// ---------------------------------------------------------------------------
// the private-network guard (allowPrivateNetwork = false)

describe('the private-network guard', () => {
  let client: HttpClient;
  before(() => {
    client = createHttpClient({ allowPrivateNetwork: false, userAgent });
  });
  after(() => client.close());

  const guarded = (allowHosts: string[]) => ({ client, allowHosts, maxBytes: 1000, signal: never });

  it('refuses private IP literals with not_allowed before connecting', async (t) => {
    const origin = await startOrigin(t, (_req, res) => {
      res.end('JPEG');
    });
    const cases: [string, string][] = [
      [`http://127.0.0.1:${origin.port}/a.jpg`, 'refusing private address 127.0.0.1 for 127.0.0.1'],
      [`http://[::1]:${origin.port}/a.jpg`, 'refusing private address ::1 for ::1'],
      [`http://[::ffff:127.0.0.1]:${origin.port}/a.jpg`, 'refusing private address ::ffff:7f00:1 for ::ffff:7f00:1'],
    ];
    for (const [url, message] of cases) {
      const error = await coverError(downloadImage(new URL(url), guarded(['*'])), 'not_allowed');
      assert.equal(error.message, message);
    }
    assert.equal(origin.connections(), 0, 'the origin never saw a connection');
  });

  it('refuses special-purpose literals that are not loopback (198.18.0.1, TEST-NET, …) without opening a socket', async (t) => {
    // Nothing listens on these addresses, so "never connected" is shown by Node's
    // own `net.client.socket` channel: no client socket is created at all. Each
    // address is first checked to be refused, so a guard that would let one
    // through fails here before any packet could leave the machine.
    const sockets: unknown[] = [];
    const onSocket = (message: unknown) => sockets.push(message);
    diagnosticsChannel.subscribe('net.client.socket', onSocket);
    t.after(() => diagnosticsChannel.unsubscribe('net.client.socket', onSocket));

    const cases: [string, string][] = [
      ['http://198.18.0.1/a.jpg', '198.18.0.1'],
      ['http://203.0.113.7:8080/a.jpg', '203.0.113.7'],
      ['http://240.0.0.1/a.jpg', '240.0.0.1'],
      ['http://[::ffff:198.18.0.1]/a.jpg', '::ffff:c612:1'],
      ['http://[64:ff9b::c612:1]/a.jpg', '64:ff9b::c612:1'],
      ['https://[2001:db8::1]/a.jpg', '2001:db8::1'],
    ];
    for (const [url, address] of cases) {
      assert.equal(isPrivateAddress(address), true, `precondition: ${address} is refused, so it is safe to ask for ${url}`);
      const error = await coverError(downloadImage(new URL(url), guarded(['*'])), 'not_allowed');
      assert.equal(error.message, `refusing private address ${address} for ${address}`);
    }
    assert.equal(sockets.length, 0, 'no client socket was created');
  });

  it('refuses a name whose DNS answer is private (localhost) with not_allowed before connecting', async (t) => {
    const origin = await startOrigin(t, (_req, res) => {
      res.end('JPEG');
    });
    const error = await coverError(downloadImage(new URL(`http://localhost:${origin.port}/a.jpg`), guarded(['localhost'])), 'not_allowed');
    assert.match(error.message, /^refusing private address \S+ for localhost$/);
    assert.equal(origin.connections(), 0);
  });

  it('refuses the bilibili API on a private address too', async (t) => {
    const origin = await startOrigin(t, (_req, res) => {
      res.end('{}');
    });
    await coverError(resolveVideoCover({ kind: 'video', param: 'bvid', id: 'BV1xx411c7mD' }, { client, apiBase: origin.base, signal: never }), 'not_allowed');
    assert.equal(origin.connections(), 0);
  });

  it('checks every redirect hop: a redirect from an allowed origin to a private address is refused', async (t) => {
    // Every test origin is on loopback, so the first hop has to be let through: this
    // agent sends connections to 127.0.0.1 through a plain undici connector and every
    // other host through the real guarded connector (allowPrivateNetwork: false).
    // What is tested is that downloadImage's hand-followed redirect reaches the guard
    // on the next hop, for a private literal and for a name resolving to one.
    const open = buildConnector({});
    const guard = createGuardedConnector({ allowPrivateNetwork: false });
    const agent = new Agent({ connect: (opts, callback) => (opts.hostname === '127.0.0.1' ? open : guard)(opts, callback) });
    const mixed: HttpClient = { dispatcher: agent, userAgent, allowPrivateNetwork: false, close: () => agent.close() };
    t.after(() => mixed.close());

    const origin = await startOrigin(t, (req, res) => {
      if (req.url === '/to-literal') res.writeHead(302, { location: `http://127.0.0.2:${origin.port}/a.jpg` }).end();
      else if (req.url === '/to-name') res.writeHead(302, { location: `http://localhost:${origin.port}/a.jpg` }).end();
      else res.end('JPEG');
    });
    const opts = { client: mixed, allowHosts: ['127.0.0.1', '127.0.0.2', 'localhost'], maxBytes: 1000, signal: never };

    const literal = await coverError(downloadImage(new URL(`${origin.base}/to-literal`), opts), 'not_allowed');
    assert.equal(literal.message, 'refusing private address 127.0.0.2 for 127.0.0.2');
    const named = await coverError(downloadImage(new URL(`${origin.base}/to-name`), opts), 'not_allowed');
    assert.match(named.message, /^refusing private address \S+ for localhost$/);
    assert.deepEqual(
      origin.requests.map((r) => r.url),
      ['/to-literal', '/to-name'],
      'only the first hops reached the origin',
    );
  });
});

// ---------------------------------------------------------------------------
// bilibili

describe('resolveVideoCover', () => {
  let client: HttpClient;
  before(() => {
    client = createHttpClient({ allowPrivateNetwork: true, userAgent });
  });
  after(() => client.close());

  const bv = { kind: 'video', param: 'bvid', id: 'BV1xx411c7mD' } as const;
  const av = { kind: 'video', param: 'aid', id: '170001' } as const;

  async function api(t: TestContext, answer: (url: URL) => { status?: number; body: string }) {
    return startOrigin(t, (req, res) => {
      const url = new URL(req.url ?? '/', 'http://api');
      if (url.pathname !== '/x/web-interface/view') {
        res.writeHead(404).end();
        return;
      }
      const { status = 200, body } = answer(url);
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(body);
    });
  }

  it('returns data.pic for a BV video, upgrading http to https for a public host', async (t) => {
    const origin = await api(t, () => ({ body: JSON.stringify({ code: 0, message: '0', data: { pic: 'http://i0.hdslb.com/bfs/archive/abc.jpg', title: 't' } }) }));
    const pic = await resolveVideoCover(bv, { client, apiBase: origin.base, signal: never });
    assert.equal(pic.href, 'https://i0.hdslb.com/bfs/archive/abc.jpg');
    const req = origin.requests[0]!;
    assert.equal(req.url, '/x/web-interface/view?bvid=BV1xx411c7mD');
    assert.equal(req.headers['user-agent'], userAgent);
    assert.equal(req.headers.referer, undefined);
  });

  it('asks by aid for an av video and makes a protocol-relative pic https', async (t) => {
    const origin = await api(t, () => ({ body: JSON.stringify({ code: 0, data: { pic: '//i1.hdslb.com/bfs/archive/def.png' } }) }));
    const pic = await resolveVideoCover(av, { client, apiBase: `${origin.base}/`, signal: never });
    assert.equal(pic.href, 'https://i1.hdslb.com/bfs/archive/def.png');
    assert.equal(origin.requests[0]!.url, '/x/web-interface/view?aid=170001');
  });

  it('keeps an http pic on 127.0.0.1 as http when private origins are allowed', async (t) => {
    const origin = await api(t, () => ({ body: JSON.stringify({ code: 0, data: { pic: 'http://127.0.0.1:9/cover.jpg' } }) }));
    const pic = await resolveVideoCover(bv, { client, apiBase: origin.base, signal: never });
    assert.equal(pic.href, 'http://127.0.0.1:9/cover.jpg');
  });

  it('fails a deleted or private video (-404, 62002, 62004, 62012) with resolve_failed carrying the code, saying what it means', async (t) => {
    const meanings: [number, RegExp][] = [
      [-404, /does not exist or was deleted/],
      [62002, /not visible/],
      [62004, /under review/],
      [62012, /visible to its uploader only/],
    ];
    for (const [code, meaning] of meanings) {
      const origin = await api(t, () => ({ body: JSON.stringify({ code, message: '啥都木有', ttl: 1 }) }));
      const error = await coverError(resolveVideoCover(bv, { client, apiBase: origin.base, signal: never }), 'resolve_failed');
      assert.equal(error.detail, code);
      assert.match(error.message, new RegExp(`^bilibili answered code ${code} \\(`));
      assert.match(error.message, meaning);
      assert.match(error.message, /bvid=BV1xx411c7mD: 啥都木有/, "names the video and keeps bilibili's message");
      assert.equal(isRemembered(error.code), true);
    }
  });

  it('keeps any other non-zero code as resolve_failed with bilibili\'s message', async (t) => {
    const origin = await api(t, () => ({ body: JSON.stringify({ code: -400, message: '请求错误' }) }));
    const error = await coverError(resolveVideoCover(bv, { client, apiBase: origin.base, signal: never }), 'resolve_failed');
    assert.equal(error.detail, -400);
    assert.equal(error.message, 'bilibili answered code -400: 请求错误');
  });

  it('throws UpstreamRefusal for a risk-control code (-412, -352, -799, -509), naming the API host; it becomes upstream_limited, never remembered', async (t) => {
    for (const code of [-412, -352, -799, -509]) {
      const origin = await api(t, () => ({ body: JSON.stringify({ code, message: '请求被拦截' }) }));
      const thrown = await resolveVideoCover(bv, { client, apiBase: origin.base, signal: never }).then(
        () => assert.fail('resolved'),
        (error: unknown) => error,
      );
      assert.ok(thrown instanceof UpstreamRefusal, `code ${code}: ${String(thrown)}`);
      assert.equal(thrown.host, '127.0.0.1');
      assert.equal(thrown.why, `API code ${code}`);
      assert.equal(thrown.retryAfterMs, undefined);
      const answer = toCoverError(thrown);
      assert.equal(answer.code, 'upstream_limited');
      assert.match(answer.message, new RegExp(`127\\.0\\.0\\.1 refused .*API code ${code}`));
      assert.equal(isRemembered(answer.code), false);
      assert.equal(isRetryable(answer), false, 'the host cooling decides when it is asked again, not the retry backoff');
    }
  });

  it('sends the API identity (Cookie, User-Agent) on the view API request when given, and only what it was given', async (t) => {
    const origin = await api(t, () => ({ body: JSON.stringify({ code: 0, data: { pic: 'https://i0.hdslb.com/a.jpg' } }) }));
    const cookie = 'SESSDATA=abc123%2Cdef; buvid3=XYZ-0001infoc';
    await resolveVideoCover(bv, { client, apiBase: origin.base, signal: never, identity: { cookie, userAgent: 'MyBlog/1.0 (+https://blog.example)' } });
    assert.equal(origin.requests[0]!.headers.cookie, cookie);
    assert.equal(origin.requests[0]!.headers['user-agent'], 'MyBlog/1.0 (+https://blog.example)');
    await resolveVideoCover(bv, { client, apiBase: origin.base, signal: never, identity: { cookie } });
    assert.equal(origin.requests[1]!.headers['user-agent'], userAgent, "the client's own User-Agent when none is set");
    await resolveVideoCover(bv, { client, apiBase: origin.base, signal: never });
    assert.equal(origin.requests[2]!.headers.cookie, undefined, 'no cookie unless one is set');
  });

  it('never follows an API redirect, so the cookie cannot reach another host', async (t) => {
    const elsewhere = await startOrigin(t, (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"code":0,"data":{"pic":"https://i0.hdslb.com/a.jpg"}}'));
    const redirecting = await startOrigin(t, (_req, res) => res.writeHead(302, { location: `${elsewhere.base}/x/web-interface/view?bvid=BV1xx411c7mD` }).end());
    const error = await coverError(resolveVideoCover(bv, { client, apiBase: redirecting.base, signal: never, identity: { cookie: 'SESSDATA=secret-value-1' } }), 'http_status');
    assert.equal(error.detail, 302);
    assert.equal(redirecting.requests[0]!.headers.cookie, 'SESSDATA=secret-value-1');
    assert.equal(elsewhere.requests.length, 0, 'the other host saw nothing');
  });

  it('fails an answer that is not JSON with resolve_failed', async (t) => {
    const origin = await api(t, () => ({ body: '<html>captcha</html>' }));
    const error = await coverError(resolveVideoCover(bv, { client, apiBase: origin.base, signal: never }), 'resolve_failed');
    assert.equal(error.message, 'bilibili API answered with something other than JSON');
  });

  it('fails code 0 without a usable data.pic with resolve_failed', async (t) => {
    for (const body of [{ code: 0, data: {} }, { code: 0 }, { code: 0, data: { pic: 'not a url' } }, { code: 0, data: { pic: 'ftp://x/y.jpg' } }, { message: 'no code' }]) {
      const origin = await api(t, () => ({ body: JSON.stringify(body) }));
      await coverError(resolveVideoCover(bv, { client, apiBase: origin.base, signal: never }), 'resolve_failed');
    }
  });

  it('fails a non-2xx API answer with http_status; 412/429/503 and the risk-control codes are refusals of the host', async (t) => {
    const origin = await api(t, () => ({ status: 404, body: '{"code":-404}' }));
    const error = await coverError(resolveVideoCover(bv, { client, apiBase: origin.base, signal: never }), 'http_status');
    assert.equal(error.detail, 404);
    for (const [status, body, why] of [[412, '{"code":-412}', 'HTTP 412'], [200, '{"code":-352,"message":"risk"}', 'API code -352'], [200, '{"code":-799}', 'API code -799']] as const) {
      const refusing = await api(t, () => ({ status, body }));
      const refusal = await resolveVideoCover(bv, { client, apiBase: refusing.base, signal: never }).then(
        () => assert.fail('resolved'),
        (thrown: unknown) => thrown,
      );
      assert.ok(refusal instanceof UpstreamRefusal, String(refusal));
      assert.equal(refusal.why, why);
      assert.equal(refusal.host, '127.0.0.1');
    }
  });

  it('refuses a JSON answer larger than the limit with resolve_failed', async (t) => {
    const origin = await api(t, () => ({ body: JSON.stringify({ code: 0, data: { pic: 'https://i0.hdslb.com/a.jpg', filler: 'x'.repeat(5000) } }) }));
    await coverError(getJson(new URL(`${origin.base}/x/web-interface/view`), { client, signal: never, maxBytes: 1000 }), 'resolve_failed');
    const whole = await getJson(new URL(`${origin.base}/x/web-interface/view`), { client, signal: never });
    assert.equal((whole as { code: number }).code, 0);
  });
});

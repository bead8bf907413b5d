/**
 * The HTTP edge: the route table (matching, params, specificity, 404, 405 with
 * Allow, HEAD, guards) over a real HTTP server on 127.0.0.1, the one token
 * check, the protocol module's `parseUrlList`, and the service's table as the
 * real service process serves it (every door, 404/405 as `{"code","message"}`).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseClientFrame, parseUrlList } from '@coverhelper/client/protocol';
import { hasToken, RouteTable, sendJson, tokenMatches } from '../src/http/index.js';
import type { Guard, RouteContext } from '../src/http/index.js';
import { startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';

type TestContext = Parameters<typeof tempDir>[0];

/** A table whose handlers answer which route ran and its params. */
function table(): RouteTable {
  const named = (name: string) => (_req: http.IncomingMessage, res: http.ServerResponse, ctx: RouteContext) => sendJson(res, 200, { route: name, params: ctx.params });
  return new RouteTable()
    .get('/healthz', named('healthz'))
    .get('/covers/*', named('covers'))
    .get('/api/jobs/:id', named('job'))
    .get('/api/jobs/:id/archive', named('archive'))
    .get('/api/jobs/new', named('new'))
    .post('/api/jobs', named('create'))
    .add(['PUT', 'DELETE'], '/admin/api/covers', named('cover'))
    .get('/', named('root'));
}

/** Serves `routes` on 127.0.0.1:0 for the test. */
async function serve(t: TestContext, routes: RouteTable): Promise<string> {
  const server = http.createServer((req, res) => void routes.serve(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A request with the path exactly as written (fetch would normalise it). */
function raw(base: string, method: string, pathAndQuery: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/`, { method, path: pathAndQuery, headers }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.once('error', reject);
    req.end();
  });
}

describe('the route table', () => {
  it('matches literals, :params and a trailing *, the most specific first', () => {
    const routes = table();
    const found = (method: string, path: string) => {
      const match = routes.match(method, path);
      return match.kind === 'found' ? match.params : match.kind;
    };
    assert.deepEqual(found('GET', '/healthz'), {});
    assert.deepEqual(found('GET', '/api/jobs/abc'), { id: 'abc' });
    assert.deepEqual(found('GET', '/api/jobs/abc/archive'), { id: 'abc' });
    assert.deepEqual(found('GET', '/covers/a/b/c.jpg'), { '*': 'a/b/c.jpg' });
    assert.deepEqual(found('GET', '/covers/'), { '*': '' });
    assert.deepEqual(found('GET', '/covers/..%2f..%2fetc'), { '*': '..%2f..%2fetc' }, 'the path as sent, never decoded');
    // No prefix shadowing: a pattern is whole segments.
    for (const path of ['/coversX', '/coversX/a.jpg', '/covers', '/healthzz', '/healthz/', '/api/jobs/', '/api/jobs/a/b', '/api/jobs/a/archive/x', '/api/jobsX', '//healthz', '/x']) {
      assert.equal(found('GET', path), 'not_found', path);
    }
    // A literal segment wins over a parameter in the same place, whatever the order they were added in.
    assert.deepEqual(found('GET', '/api/jobs/new'), {}, 'the literal route, not :id');
    assert.deepEqual(found('GET', '/api/jobs/old'), { id: 'old' });
    assert.ok(routes.list().indexOf('GET /api/jobs/new') < routes.list().indexOf('GET /api/jobs/:id'));
    assert.throws(() => new RouteTable().get('/a/:x', () => {}).get('/a/:y', () => {}), /already in the table/);
    assert.throws(() => new RouteTable().get('/a/*/b', () => {}), /\* comes last/);
    assert.throws(() => new RouteTable().get('a', () => {}), /start with \//);
  });

  it('answers 404 and 405 with Allow as {"code","message"}, HEAD where GET is, and runs guards in their place', async (t) => {
    const base = await serve(t, table());
    const job = await raw(base, 'GET', '/api/jobs/j1/archive?x=1');
    assert.equal(job.status, 200);
    assert.deepEqual(JSON.parse(job.body), { route: 'archive', params: { id: 'j1' } });

    const missing = await raw(base, 'GET', '/coversX/a.jpg');
    assert.equal(missing.status, 404);
    assert.match(missing.headers['content-type'] ?? '', /^application\/json/);
    assert.deepEqual(Object.keys(JSON.parse(missing.body) as object), ['code', 'message']);
    assert.equal((JSON.parse(missing.body) as { code: string }).code, 'not_found');

    const wrong = await raw(base, 'POST', '/healthz');
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.allow, 'GET, HEAD');
    assert.equal((JSON.parse(wrong.body) as { code: string }).code, 'method_not_allowed');
    const admin = await raw(base, 'GET', '/admin/api/covers');
    assert.equal(admin.status, 405);
    assert.equal(admin.headers.allow, 'PUT, DELETE');
    assert.equal((await raw(base, 'GET', '/api/jobs')).headers.allow, 'POST');

    const head = await raw(base, 'HEAD', '/api/jobs/j2');
    assert.equal(head.status, 200);
    assert.equal(head.body, '', 'no body to a HEAD');
    assert.equal((await raw(base, 'HEAD', '/api/jobs')).status, 405, 'HEAD only where GET is');

    // Guards: a route's after its method is known, an area's before any matching.
    const bearerOk: Guard = (req, res) => {
      if (req.headers.authorization === 'Bearer ok') return true;
      res.writeHead(401, { 'content-length': '0' }).end();
      return false;
    };
    const guarded = new RouteTable()
      .guard('/admin/api/*', bearerOk)
      .post('/admin/api/pause', (_req, res) => sendJson(res, 200, { paused: true }))
      .post('/api/check', (_req, res) => sendJson(res, 200, { checked: true }), { guard: bearerOk });
    const guardedBase = await serve(t, guarded);
    const auth = { authorization: 'Bearer ok' };
    for (const [method, route] of [['POST', '/admin/api/pause'], ['GET', '/admin/api/pause'], ['GET', '/admin/api/nope']]) {
      const refused = await raw(guardedBase, method!, route!);
      assert.deepEqual([refused.status, refused.body], [401, ''], `${method} ${route}: nothing said, not even 404/405`);
    }
    assert.equal((await raw(guardedBase, 'POST', '/admin/api/pause', auth)).status, 200);
    assert.equal((await raw(guardedBase, 'GET', '/admin/api/pause', auth)).status, 405);
    assert.equal((await raw(guardedBase, 'GET', '/admin/api/nope', auth)).status, 404);
    assert.equal((await raw(guardedBase, 'GET', '/api/check')).status, 405, 'a route guard runs once the method is known');
    assert.equal((await raw(guardedBase, 'POST', '/api/check')).status, 401);
    assert.equal((await raw(guardedBase, 'POST', '/api/check', auth)).status, 200);
  });
});

describe('the token check', () => {
  const request = (headers: Record<string, string>) => ({ headers }) as http.IncomingMessage;
  const url = (query: string) => new URL(`http://localhost/ws${query}`);

  it('takes a Bearer header, or ?token= where allowed, compared whole', () => {
    assert.equal(tokenMatches('s3cret', 's3cret'), true);
    for (const given of [undefined, '', 's3cre', 's3cretx', 'S3CRET']) assert.equal(tokenMatches(given, 's3cret'), false, String(given));
    assert.equal(hasToken(request({ authorization: 'Bearer s3cret' }), url(''), 's3cret', 'header'), true);
    assert.equal(hasToken(request({ authorization: 'bearer   s3cret ' }), url(''), 's3cret', 'header'), true);
    assert.equal(hasToken(request({}), url('?token=s3cret'), 's3cret', 'header'), false, 'the admin API takes no ?token=');
    assert.equal(hasToken(request({}), url('?token=s3cret'), 's3cret', 'header-or-query'), true);
    assert.equal(hasToken(request({ authorization: 'Bearer wrong' }), url('?token=s3cret'), 's3cret', 'header-or-query'), false, 'the header wins');
    assert.equal(hasToken(request({ authorization: 'Basic s3cret' }), url(''), 's3cret', 'header-or-query'), false);
    assert.equal(hasToken(request({}), url(''), 's3cret', 'header-or-query'), false);
    assert.equal(hasToken(request({}), url(''), undefined, 'header-or-query'), true, 'no token set: open');
  });
});

describe('parseUrlList', () => {
  it('answers the codes of /ws, for a check and for any other batch', () => {
    assert.deepEqual(parseUrlList(['a', 'b'], 2), { ok: true, urls: ['a', 'b'] });
    assert.deepEqual(parseUrlList([], 2), { ok: true, urls: [] });
    assert.deepEqual(parseUrlList('a', 2), { ok: false, code: 'bad_request', message: 'needs "urls", an array of strings' });
    assert.deepEqual(parseUrlList(undefined, 2), { ok: false, code: 'bad_request', message: 'needs "urls", an array of strings' });
    assert.deepEqual(parseUrlList(['a', 1], 2), { ok: false, code: 'bad_request', message: 'urls[1] is not a string' });
    assert.deepEqual(parseUrlList(['a', 'b', 'c'], 2), { ok: false, code: 'too_many_urls', message: '3 URLs in one check; at most 2 (--max-batch)' });
    assert.deepEqual(parseUrlList(['a', 'b', 'c'], 2, { noun: 'job', limit: '--max-batch × 10' }), { ok: false, code: 'too_many_urls', message: '3 URLs in one job; at most 2 (--max-batch × 10)' });
    assert.deepEqual(parseUrlList(['a', 'u'.repeat(8193)], 2), { ok: false, code: 'bad_request', message: 'urls[1] is longer than 8192 characters' });
    // The frame parser answers the same for the same list.
    assert.deepEqual(parseClientFrame('C a b c', 2), { ok: false, id: null, code: 'too_many_urls', message: '3 URLs in one check; at most 2 (--max-batch)' });
  });
});

describe('the service\'s table', () => {
  it('serves every door through it: 404 and 405 with Allow as {"code","message"}, a missing cover too', async (t) => {
    const dir = await tempDir(t);
    const service = await startService(['--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--admin-token', 'edge-admin-token']);
    t.after(async () => void (await service.stop()));
    const json = async (res: Response) => ({ status: res.status, allow: res.headers.get('allow'), type: res.headers.get('content-type'), body: (await res.json()) as { code: string; message: string } });
    const cover = await json(await fetch(`${service.url}/covers/127.0.0.1/missing.jpg`));
    assert.deepEqual([cover.status, cover.type, cover.body.code], [404, 'application/json; charset=utf-8', 'not_found']);
    for (const [method, route, allow] of [
      ['POST', '/healthz', 'GET, HEAD'],
      ['DELETE', '/metrics', 'GET, HEAD'],
      ['POST', '/ws', 'GET, HEAD'],
      ['PUT', '/api/check', 'POST'],
      ['DELETE', '/covers/x.jpg', 'GET, HEAD'],
    ] as const) {
      const answer = await json(await fetch(`${service.url}${route}`, { method }));
      assert.deepEqual([answer.status, answer.allow, answer.body.code], [405, allow, 'method_not_allowed'], `${method} ${route}`);
    }
    for (const route of ['/coversX', '/nope', '/api/checkX', '/admin/x']) {
      const answer = await json(await fetch(`${service.url}${route}`));
      assert.deepEqual([answer.status, answer.body.code], [404, 'not_found'], route);
    }
    // The admin API says nothing without its token, not even whether a route exists; with it, 405 and 404.
    for (const route of ['/admin/api/pause', '/admin/api/nope']) {
      const refused = await fetch(`${service.url}${route}`);
      assert.deepEqual([refused.status, await refused.text()], [401, ''], route);
    }
    const auth = { authorization: 'Bearer edge-admin-token' };
    const pause = await json(await fetch(`${service.url}/admin/api/pause`, { headers: auth }));
    assert.deepEqual([pause.status, pause.allow], [405, 'POST']);
    assert.equal((await fetch(`${service.url}/admin/api/nope`, { headers: auth })).status, 404);
    assert.equal((await fetch(`${service.url}/healthz`, { method: 'HEAD' })).status, 200);
  });

  it('survives request targets that are no plain path: `//`, `///`, `//[::1` (an upgrade to them is 400, a request 404), and answers on', async (t) => {
    const dir = await tempDir(t);
    const service = await startService(['--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers')]);
    t.after(async () => void (await service.stop()));
    /** Sends one raw request and reads the status line of the answer. */
    const raw = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(service.port, '127.0.0.1', () => socket.write(request));
        let text = '';
        socket.on('data', (chunk: Buffer) => {
          text += chunk.toString('latin1');
          if (text.includes('\r\n')) {
            socket.destroy();
            resolve(text.slice(0, text.indexOf('\r\n')));
          }
        });
        socket.once('error', reject);
        socket.once('close', () => resolve(text.split('\r\n')[0] ?? ''));
      });
    for (const target of ['//', '///', '//[::1', '//x/ws']) {
      const upgrade = await raw(`GET ${target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      assert.match(upgrade, /^HTTP\/1\.1 (400|404) /, `an upgrade to ${target}: ${upgrade}`);
      const plain = await raw(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      assert.match(plain, /^HTTP\/1\.1 (400|404) /, `GET ${target}: ${plain}`);
    }
    assert.equal((await fetch(`${service.url}/healthz`)).status, 200, 'the service answers on');
    assert.ok(!service.logs.some((line) => line.level === 'error'), 'nothing logged as an error');
  });
});

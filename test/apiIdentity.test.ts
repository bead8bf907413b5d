/**
 * The API identity (`--bilibili-cookie`, `--api-user-agent`): the real service
 * process against a real origin on 127.0.0.1 playing both bilibili's view API
 * and the image host. The cookie reaches API requests only, and no output of
 * the run (stdout, stderr, /ws frames, /healthz, /metrics, --print-config)
 * shows it. The file's checks at start are exercised on real files.
 */
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { StartError } from '../src/errors.js';
import { maskSecrets } from '../src/secrets.js';
import { readApiCookie } from '../src/preflight.js';
import { userAgent } from '../src/version.js';
import { startOrigin } from './helpers/origin.js';
import { runService, startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame } from './helpers/wsClient.js';

const SESSDATA = 'a1b2c3d4%2C1893456000%2Cabcde*11secret';
const BUVID = 'F00DCAFE-1234-5678-9ABC-DEF012345678infoc';
const COOKIE = `SESSDATA=${SESSDATA}; buvid3=${BUVID}`;
const API_UA = 'MyBlog/1.0 (+https://blog.example)';

/** Whether `text` shows the cookie or any of its values. */
const leaks = (text: string) => [COOKIE, SESSDATA, BUVID].some((secret) => text.includes(secret));

async function cookieFile(dir: string, content: string, mode: number): Promise<string> {
  const file = path.join(dir, `cookie-${mode.toString(8)}-${Math.random().toString(36).slice(2)}`);
  await writeFile(file, content, { mode });
  await chmod(file, mode);
  return file;
}

async function refusal(file: string): Promise<StartError> {
  return readApiCookie(file).then(
    () => assert.fail('accepted'),
    (error: unknown) => {
      assert.ok(error instanceof StartError, String(error));
      assert.equal(error.exitCode, 2);
      return error;
    },
  );
}

describe('the API identity', () => {
  it('the origin sees the cookie and the User-Agent on API requests only; no output of the run shows the cookie', async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    origin.videos.set('BV1xx411c7mD', { code: 0, data: { pic: `${origin.url}/redirect/1/video-cover` } });
    const dir = await tempDir(t);
    const file = await cookieFile(dir, `${COOKIE}\n`, 0o600);
    const args = [
      '--data-dir', `${dir}/data`,
      '--covers-dir', `${dir}/covers`,
      '--allow-private-network',
      '--allow-hosts', '127.0.0.1',
      '--bilibili-api', origin.url,
      '--bilibili-cookie', file,
      '--api-user-agent', API_UA,
      '--retries', '0',
    ];
    const service = await startService([...args, '--log-level', 'debug']);
    t.after(() => service.kill());

    const ws = await connect(service.wsUrl);
    const urls = ['https://www.bilibili.com/video/BV1xx411c7mD', `${origin.url}/img/plain.jpg`, 'https://www.bilibili.com/video/BV1gg411c7gg'];
    const { done } = await ws.check('c1', urls);
    const results = done.results as Frame[];
    assert.deepEqual(results.map((r) => r.status), ['ok', 'ok', 'error'], JSON.stringify(results));
    const health = await (await fetch(`${service.url}/healthz`)).text();
    const metrics = await (await fetch(`${service.url}/metrics`)).text();
    const hello = JSON.stringify(await ws.hello);
    const frames = JSON.stringify(ws.frames) + ws.texts.join('\n');
    await ws.close();
    assert.equal(await service.stop(), 0);

    const api = origin.requests.filter((r) => r.path === '/x/web-interface/view');
    const images = origin.requests.filter((r) => r.path !== '/x/web-interface/view');
    assert.equal(api.length, 2, 'one API request per video page');
    for (const request of api) {
      assert.equal(request.headers.cookie, COOKIE, 'the cookie line as the file holds it, without its newline');
      assert.equal(request.headers['user-agent'], API_UA);
    }
    assert.deepEqual(images.map((r) => r.path).sort(), ['/img/plain.jpg', '/img/video-cover.jpg', '/redirect/1/video-cover'], 'the video cover, its redirect hop, the plain image');
    for (const request of images) {
      assert.equal(request.headers.cookie, undefined, `no cookie on ${request.path}`);
      assert.equal(request.headers['user-agent'], userAgent, `coverhelper's own User-Agent on ${request.path}`);
    }

    const printed = await runService([...args, '--print-config']);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, new RegExp(`--bilibili-cookie\\s+${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(read at start\\)\\s+flag --bilibili-cookie`));
    assert.match(printed.stdout, /--api-user-agent\s+MyBlog\/1\.0/);
    const fromEnv = await runService(['--data-dir', `${dir}/data`, '--print-config'], { COVERHELPER_BILIBILI_COOKIE: file });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.match(fromEnv.stdout, /\(read at start\)\s+environment COVERHELPER_BILIBILI_COOKIE/);

    const logs = JSON.stringify(service.logs);
    assert.ok(service.logs.some((line) => line.message === 'download finished'), 'the run logged its downloads');
    assert.ok(service.logs.some((line) => /listening on/.test(line.message) && line.bilibiliCookie === 'set'), 'the start line says a cookie is set');
    for (const [what, text] of Object.entries({ logs, stderr: service.stderr(), frames, hello, health, metrics, printConfig: printed.stdout + printed.stderr, fromEnv: fromEnv.stdout })) {
      assert.equal(leaks(text), false, `${what} shows the cookie`);
    }
  });

  it('refuses to start with a cookie file others may read: exit 2, a line naming the file and chmod 600, never its content', async (t) => {
    const dir = await tempDir(t);
    const file = await cookieFile(dir, `${COOKIE}\n`, 0o644);
    const run = await runService(['--port', '0', '--data-dir', `${dir}/data`, '--covers-dir', `${dir}/covers`, '--log-format', 'json', '--bilibili-cookie', file]);
    assert.equal(run.code, 2, run.stdout + run.stderr);
    const output = run.stdout + run.stderr;
    assert.match(output, /coverhelper cannot start: --bilibili-cookie \S+ is readable or writable by group or others \(mode 0644\); it holds a login: chmod 600/);
    assert.ok(output.includes(file));
    assert.equal(leaks(output), false);
  });

  it('refuses a cookie file that is missing, empty, too large, holds more than one line or a NUL, or is not a file; accepts Cookie: and a final CRLF', async (t) => {
    const dir = await tempDir(t);
    assert.match((await refusal(path.join(dir, 'missing'))).message, /cannot be read \(ENOENT\); create it \(mode 0600\)/);
    assert.match((await refusal(await cookieFile(dir, '', 0o600))).message, /is empty/);
    assert.match((await refusal(await cookieFile(dir, '\n\n', 0o600))).message, /is empty/);
    assert.match((await refusal(await cookieFile(dir, 'x'.repeat(9000), 0o600))).message, /is 9000 bytes; a Cookie line is at most 8192/);
    for (const bad of [`${COOKIE}\nX-Injected: 1`, `${COOKIE}\r\nX: 1\n`, `SESSDATA=a\u0000b`, `SESSDATA=a\rb`]) {
      const error = await refusal(await cookieFile(dir, bad, 0o600));
      assert.match(error.message, /holds a line break, a NUL, a control or a non-ASCII character/);
      assert.equal(leaks(error.message), false);
    }
    assert.match((await refusal(await cookieFile(dir, COOKIE, 0o640))).message, /mode 0640/, 'group-readable is refused too');
    assert.match((await refusal(dir)).message, /is not a regular file/);
    assert.equal(await readApiCookie(await cookieFile(dir, `Cookie: ${COOKIE}\r\n`, 0o600)), COOKIE);
    assert.equal(await readApiCookie(await cookieFile(dir, `${COOKIE}\n`, 0o400)), COOKIE, 'read-only for its owner is fine');
    // Read once: its line and values are masked wherever they show up afterwards.
    assert.equal(maskSecrets(`a line with ${SESSDATA} and "${BUVID}"`), 'a line with **** and "****"');
  });
});

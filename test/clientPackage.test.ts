/**
 * The client package as published: `tsc -p client` builds JavaScript and type
 * declarations, the built module works against the real service, a script that
 * uses it and calls `close()` exits by itself (no handle left open), its
 * `signCoverUrl` makes URLs the service's door accepts, and the example blog
 * server (client/examples/blog.ts) renders a page of covers through it.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { startOrigin } from './helpers/origin.js';
import { root, startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';

type TestContext = Parameters<typeof tempDir>[0];
const KEY = 'client-package-door-key-0123456789';

/**
 * A folder inside the repository (test-output/, ignored by git), so the built
 * package finds `ws` in the root node_modules as an installed one would in its own.
 */
async function outputDir(t: TestContext): Promise<string> {
  await mkdir(path.join(root, 'test-output'), { recursive: true });
  const dir = await mkdtemp(path.join(root, 'test-output', 'client-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function build(t: TestContext): Promise<string> {
  const dir = await outputDir(t);
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'client', 'tsconfig.json'), '--outDir', path.join(dir, 'dist')], { encoding: 'utf8' });
  assert.equal(result.status, 0, `tsc -p client: ${result.stdout}${result.stderr}`);
  return dir;
}

async function setup(t: TestContext) {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const data = await tempDir(t);
  const service = await startService([
    '--data-dir', path.join(data, 'data'), '--covers-dir', path.join(data, 'covers'),
    '--allow-private-network', '--allow-hosts', '127.0.0.1', '--retries', '0', '--url-key', KEY,
  ]);
  t.after(async () => void (await service.stop()));
  return { origin, service };
}

/** Runs `node file args…` to its exit, which must come by itself within `limitMs`. */
function runToExit(file: string, args: string[], limitMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${path.basename(file)} did not exit by itself within ${limitMs} ms; stdout: ${stdout}; stderr: ${stderr}`));
    }, limitMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

describe('the built client package', () => {
  it('builds to JavaScript and declarations that match package.json, and works against the service', async (t) => {
    const dir = await build(t);
    const pkg = JSON.parse(readFileSync(path.join(root, 'client', 'package.json'), 'utf8')) as {
      name: string;
      type: string;
      dependencies: Record<string, string>;
      engines: { node: string };
      exports: Record<string, string | { types: string; default: string }>;
    };
    assert.equal(pkg.name, '@coverhelper/client');
    assert.deepEqual(Object.keys(pkg.dependencies), ['ws']);
    assert.equal(pkg.engines.node, '>=20');
    for (const [subpath, target] of Object.entries(pkg.exports)) {
      if (typeof target === 'string') continue;
      for (const file of [target.types, target.default]) assert.ok(existsSync(path.join(dir, file)), `exports ${subpath}: ${file} is built`);
    }
    const declarations = readFileSync(path.join(dir, 'dist', 'client.d.ts'), 'utf8');
    assert.match(declarations, /export declare class CoverClient extends EventEmitter<CoverClientEvents>/);
    assert.doesNotMatch(declarations, /from 'ws'/, 'the declarations need no @types/ws');

    const { origin, service } = await setup(t);
    const built = (await import(pathToFileURL(path.join(dir, 'dist', 'index.js')).href)) as typeof import('../client/src/index.js');
    const covers = new built.CoverClient(service.wsUrl);
    t.after(() => covers.close());
    const url = `${origin.url}/img/built.jpg`;
    const [result] = await covers.check([url]);
    assert.equal(result?.status, 'ok');
    assert.equal(await covers.coverUrl(url), result?.coverUrl);

    // signCoverUrl: the service's door takes the URL it makes.
    const signed = built.signCoverUrl(`${origin.url}/img/door.jpg`, KEY, `${service.url}/`);
    const redirect = await fetch(signed, { redirect: 'manual' });
    assert.equal(redirect.status, 302);
    assert.match(redirect.headers.get('location') ?? '', /\/covers\//);
    const forged = await fetch(built.signCoverUrl(`${origin.url}/img/door.jpg`, 'another key', service.url), { redirect: 'manual' });
    assert.equal(forged.status, 403);
  });

  it('lets a script that checks and closes exit by itself: answered, waiting on a dead service, or mid-check', async (t) => {
    const dir = await build(t);
    const { origin, service } = await setup(t);
    const script = path.join(dir, 'uses-client.mjs');
    await writeFile(
      script,
      `import { CoverClient } from './dist/index.js';
const [mode, wsUrl, url] = process.argv.slice(2);
const covers = new CoverClient(wsUrl, { reconnectMinMs: 20, reconnectMaxMs: 100 });
const answer = covers.check([url]).then((r) => 'answered ' + r[0].status, (e) => 'failed ' + e.code);
if (mode === 'answered') console.log(await answer);
else setTimeout(() => void covers.close(), 300);
if (mode === 'answered') await covers.close();
else console.log(await answer);
`,
    );
    const answered = await runToExit(script, ['answered', service.wsUrl, `${origin.url}/img/exit.jpg`]);
    assert.deepEqual([answered.code, answered.stdout.trim()], [0, 'answered ok'], answered.stderr);

    // No service: the client keeps reconnecting until close(), then the process ends.
    const down = await runToExit(script, ['waiting', 'ws://127.0.0.1:9/ws', `${origin.url}/img/exit.jpg`]);
    assert.deepEqual([down.code, down.stdout.trim()], [0, 'failed closed'], down.stderr);

    // Closed while the service holds the download.
    const held = await runToExit(script, ['held', service.wsUrl, `${origin.url}/half/exit.jpg`]);
    assert.deepEqual([held.code, held.stdout.trim()], [0, 'failed closed'], held.stderr);
    origin.release();
  });
});

describe('the example blog server', () => {
  it('renders a page whose images are the service\'s covers, and stops on SIGTERM', async (t) => {
    const { origin, service } = await setup(t);
    const dir = await tempDir(t);
    const videos = [
      { title: 'First <video>', cover: `${origin.url}/img/blog-1.jpg` },
      { title: 'Second', cover: `${origin.url}/img/blog-2.jpg` },
      { title: 'Gone', cover: `${origin.url}/status/404` },
    ];
    await writeFile(path.join(dir, 'videos.json'), JSON.stringify(videos));
    const blog = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'client', 'examples', 'blog.ts')], {
      cwd: path.join(root, 'client'),
      env: { ...process.env, COVERHELPER_URL: service.wsUrl, PORT: '0', VIDEOS: path.join(dir, 'videos.json') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => blog.once('exit', (code) => resolve(code)));
    t.after(() => blog.kill('SIGKILL'));
    let stderr = '';
    blog.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const address = await new Promise<string>((resolve, reject) => {
      let out = '';
      blog.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /blog on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      void exited.then((code) => reject(new Error(`the example exited with ${code}: ${stderr}`)));
    });

    const page = await fetch(address);
    assert.equal(page.status, 200);
    const html = await page.text();
    const sources = [...html.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]!);
    assert.equal(sources.length, 3);
    for (const src of sources.slice(0, 2)) {
      assert.ok(src.startsWith(`${service.url}/covers/`), src);
      const image = await fetch(src);
      assert.equal(image.status, 200);
      assert.equal(image.headers.get('content-type'), 'image/jpeg');
    }
    assert.equal(sources[2], videos[2]!.cover, 'a failed cover falls back to the original URL');
    // Each cover is a <picture>: AVIF and WebP sizes by coverSrcset (none past the 640-wide original),
    // the original's size for the aspect, and its colour as the box's background while it loads.
    const pictures = [...html.matchAll(/<picture>(.*?)<\/picture>/g)].map((m) => m[1]!);
    assert.equal(pictures.length, 2);
    const coverUrl = sources[0]!;
    const candidates = (format: string) => [160, 240, 320, 480, 640].map((w) => `${coverUrl}?w=${w}&amp;f=${format} ${w}w`).join(', ');
    assert.ok(pictures[0]!.includes(`<source type="image/avif" srcset="${candidates('avif')}"`), pictures[0]);
    assert.ok(pictures[0]!.includes(`<source type="image/webp" srcset="${candidates('webp')}"`), pictures[0]);
    assert.ok(pictures[0]!.includes(`<img src="${coverUrl}" srcset="${candidates('jpeg')}"`), pictures[0]);
    assert.match(pictures[0]!, / width="640" height="400" style="background-color:#[0-9a-f]{6}"/);
    assert.match(html, /First &lt;video&gt;/);
    assert.match(html, /error: http_status/);
    assert.match(html, /Covers from coverhelper: 2 of 3\./);
    assert.equal((await fetch(`${address}nothing`)).status, 404);

    blog.kill('SIGTERM');
    assert.equal(await exited, 0, 'the example closes its server and its client and exits by itself');
  });
});

/**
 * docs/DEPLOY.md as written: its configuration passes the service's checks, its
 * systemd unit runs the built service and passes `systemd-analyze verify`, and
 * its nginx site, run by a real nginx with a throwaway certificate on
 * 127.0.0.1, terminates TLS in front of the real service, passes both
 * WebSockets, limits upload bodies, and serves covers from the folder itself
 * (also with the service stopped), refusing links and dot files. Parts that
 * need a program this machine lacks (nginx, openssl, systemd-analyze) are
 * skipped with a message, never faked; .ci/run installs nginx.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../src/config.js';
import { originalPathOf } from '../src/store/index.js';
import { waitUntil } from './helpers/db.js';
import { root, startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';

const deploy = readFileSync(path.join(root, 'docs/DEPLOY.md'), 'utf8');

/** The fenced blocks of a language, in order. */
function blocks(lang: string): string[] {
  return [...deploy.matchAll(new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, 'g'))].map((m) => m[1]!);
}

/** The first program of these names on PATH or in the usual folders. */
function which(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin', '/sbin']) {
    const file = path.join(dir, name);
    if (dir && existsSync(file)) return file;
  }
  return undefined;
}

/** The environment file of section 3, as `KEY=value` pairs. */
function environmentFile(): Record<string, string> {
  const block = blocks('sh').find((b) => b.includes('COVERHELPER_DATA_DIR='));
  assert.ok(block, 'DEPLOY.md has the environment file');
  return Object.fromEntries(
    block
      .split('\n')
      .filter((line) => /^[A-Z_]+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
}

/** `[Service]` settings of the unit, each key with all its values. */
function unitSettings(unit: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let section = '';
  for (const line of unit.split('\n')) {
    const heading = /^\[(\w+)\]$/.exec(line);
    if (heading) section = heading[1]!;
    const setting = /^(\w+)=(.*)$/.exec(line);
    if (setting && section === 'Service') settings.set(setting[1]!, [...(settings.get(setting[1]!) ?? []), setting[2]!]);
  }
  return settings;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function request(url: string, options: https.RequestOptions & { body?: Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? https : http).request(url, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('docs/DEPLOY.md', () => {
  it('its environment file is a valid configuration, and the unit and the nginx site use its folders', () => {
    const env = environmentFile();
    const config = loadConfig({ argv: [], env, isTTY: false, cwd: '/' });
    assert.equal(config.publicUrl, 'https://covers.example.com/covers/');
    assert.equal(config.host, '127.0.0.1', 'the service listens on loopback only, behind nginx');
    const service = unitSettings(blocks('ini')[0]!);
    assert.deepEqual(service.get('ReadWritePaths')?.[0]?.split(' ').sort(), [config.dataDir, config.coversDir].sort());
    const site = blocks('nginx')[0]!;
    assert.ok(site.includes(`alias ${config.coversDir}/;`), 'nginx serves the covers folder');
    assert.ok(site.includes(`server ${config.host}:${config.port};`), 'nginx proxies to the service');
  });

  it('the systemd unit runs the built service with node, as a user, and outlasts its 5 s grace', async (t) => {
    const unit = blocks('ini')[0]!;
    const service = unitSettings(unit);
    const one = (key: string) => {
      const values = service.get(key);
      assert.equal(values?.length, 1, `one ${key}=`);
      return values[0]!;
    };
    assert.equal(one('User'), 'coverhelper');
    const workingDirectory = one('WorkingDirectory');
    assert.equal(one('ExecStart'), `/usr/bin/node ${workingDirectory}/dist/src/main.js`);
    assert.equal(one('Restart'), 'on-failure');
    assert.equal(one('KillSignal'), 'SIGTERM');
    assert.equal(one('RestartPreventExitStatus'), '2', 'a bad configuration (exit 2) is not restarted');
    const stop = /^(\d+)s$/.exec(one('TimeoutStopSec'));
    assert.ok(stop && Number(stop[1]) > 5, 'TimeoutStopSec is longer than the 5 s grace');
    assert.equal(one('EnvironmentFile'), '/etc/coverhelper/coverhelper.env');
    assert.equal(one('UMask'), '0027');

    const analyze = which('systemd-analyze');
    if (!analyze) return t.skip('systemd-analyze is not installed: the unit was read, not verified');
    const file = path.join(await tempDir(t), 'coverhelper.service');
    await writeFile(file, unit);
    const verified = spawnSync(analyze, ['verify', file], { encoding: 'utf8' });
    const complaints = `${verified.stdout}${verified.stderr}`.split('\n').filter((line) => line.includes('coverhelper.service'));
    assert.deepEqual(complaints, [], 'systemd-analyze verify has nothing to say about the unit');
  });

  it('the nginx site fronts the real service: TLS, WebSockets, upload limits, covers from the folder', async (t) => {
    const nginx = which('nginx');
    const openssl = which('openssl');
    if (!nginx || !openssl) return t.skip(`${nginx ? 'openssl' : 'nginx'} is not installed (Debian's package): the site was not run`);
    const dir = await tempDir(t);
    const covers = path.join(dir, 'covers');
    const adminToken = 'admin-token-for-the-deploy-test';
    const clientToken = 'client-token-for-the-deploy-test';
    const service = await startService([
      '--data-dir', `${dir}/data`,
      '--covers-dir', covers,
      '--public-url', 'https://covers.example.com/covers/',
      '--admin-token', adminToken,
      '--client-token', clientToken,
    ]);
    t.after(() => service.kill());

    // A throwaway certificate for the site's name.
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    const made = spawnSync(openssl, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=covers.example.com', '-addext', 'subjectAltName=DNS:covers.example.com', '-keyout', key, '-out', cert], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const ca = await readFile(cert);

    // The site as written, moved to this test's ports, folder and certificate.
    const [httpsPort, httpPort] = [await freePort(), await freePort()];
    let site = blocks('nginx')[0]!;
    const replacements: [string | RegExp, string][] = [
      ['server 127.0.0.1:8080;', `server 127.0.0.1:${service.port};`],
      ['alias /var/lib/coverhelper/covers/;', `alias ${covers}/;`],
      ['/etc/letsencrypt/live/covers.example.com/fullchain.pem', cert],
      ['/etc/letsencrypt/live/covers.example.com/privkey.pem', key],
      ['    listen 443 ssl http2;\n', `    listen 127.0.0.1:${httpsPort} ssl http2;\n`],
      ['    listen 80;\n', `    listen 127.0.0.1:${httpPort};\n`],
      [/ {4}listen \[::\]:\d+[^;]*;\n/g, ''],
    ];
    for (const [from, to] of replacements) {
      const before = site;
      site = typeof from === 'string' ? site.replace(from, to) : site.replace(from, to);
      assert.notEqual(site, before, `the site still has ${String(from)}`);
    }
    const prefix = path.join(dir, 'nginx');
    await mkdir(prefix);
    const conf = path.join(prefix, 'nginx.conf');
    const asRoot = process.getuid?.() === 0;
    await writeFile(
      conf,
      `${asRoot ? 'user root;\n' : ''}daemon off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
${site}
}
`,
    );
    const tested = spawnSync(nginx, ['-t', '-p', prefix, '-c', conf, '-e', `${prefix}/error.log`], { encoding: 'utf8' });
    assert.equal(tested.status, 0, `nginx -t: ${tested.stderr}`);
    const server = spawn(nginx, ['-p', prefix, '-c', conf, '-e', `${prefix}/error.log`], { stdio: 'ignore' });
    const serverExit = new Promise((resolve) => server.once('exit', resolve));
    t.after(async () => {
      server.kill('SIGTERM');
      await serverExit;
    });
    const base = `https://127.0.0.1:${httpsPort}`;
    const tls = { ca, servername: 'covers.example.com' };
    await waitUntil(() => request(`${base}/healthz`, tls).then((r) => r.status === 200), 'nginx to answer', 10_000);

    // TLS in front of the service; port 80 only redirects.
    const health = await request(`${base}/healthz`, tls);
    assert.equal((JSON.parse(health.body.toString()) as { status: string }).status, 'ready');
    const redirect = await request(`http://127.0.0.1:${httpPort}/healthz`, { headers: { host: 'covers.example.com' } });
    assert.deepEqual([redirect.status, redirect.headers.location], [301, 'https://covers.example.com/healthz']);

    // Both WebSockets upgrade through nginx, with their credentials.
    const client = await connect(`wss://127.0.0.1:${httpsPort}/ws`, { ...tls, headers: { authorization: `Bearer ${clientToken}` } });
    const { done } = await client.check('via-nginx', ['https://example.org/not-an-allowed-host.jpg']);
    assert.deepEqual([done.skipped, done.failed], [1, 0]);
    await client.close();
    await assert.rejects(connect(`wss://127.0.0.1:${httpsPort}/ws`, tls), /401/);
    const admin = await connect(`wss://127.0.0.1:${httpsPort}/admin/ws?token=${adminToken}`, tls);
    assert.equal((await admin.next()).type, 'snapshot');
    await admin.close();

    // Uploads: past nginx's limit nginx answers 413 itself; a 5 MB image (above
    // the 4 MiB of other requests) reaches the service and becomes a cover.
    const upload = (body: Buffer) =>
      request(`${base}/admin/api/covers?url=${encodeURIComponent('https://i0.hdslb.com/bfs/archive/deploy.png')}`, {
        ...tls,
        method: 'PUT',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/octet-stream', 'content-length': body.length },
        body,
      });
    const tooLarge = await upload(Buffer.alloc(12 * 1024 * 1024));
    assert.equal(tooLarge.status, 413);
    assert.match(tooLarge.body.toString(), /nginx/);
    const image = await sharp(randomBytes(1500 * 1100 * 3), { raw: { width: 1500, height: 1100, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
    assert.ok(image.length > 4 * 1024 * 1024);
    const stored = await upload(image);
    assert.equal(stored.status, 200, stored.body.toString());
    const { coverUrl, path: coverPath } = JSON.parse(stored.body.toString()) as { coverUrl: string; path: string };
    assert.equal(coverUrl, `https://covers.example.com/covers/${coverPath}`);

    // A size or format asked for is the service's to make: a query goes to it.
    const sized = await request(`${base}/covers/${coverPath}?w=160&f=webp`, tls);
    assert.equal(sized.status, 200);
    assert.equal(sized.headers['content-type'], 'image/webp');
    const variant = await sharp(sized.body).metadata();
    assert.deepEqual([variant.format, variant.width], ['webp', 160], 'the service made the variant');

    // Covers come from the folder: also once the service has stopped.
    assert.equal(await service.stop(), 0);
    assert.equal((await request(`${base}/covers/${coverPath}?w=240`, tls)).status, 502, 'a query goes to the service, now gone');
    const cover = await request(`${base}/covers/${coverPath}`, tls);
    assert.equal(cover.status, 200);
    assert.deepEqual(cover.body, await readFile(path.join(covers, coverPath)));
    assert.match(String(cover.headers['content-type']), /^image\//);
    assert.equal(cover.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.equal(cover.headers['x-content-type-options'], 'nosniff');
    assert.equal((await request(`${base}/healthz`, tls)).status, 502, 'the service is really gone');
    const missing = await request(`${base}/covers/no/such.jpg`, tls);
    assert.equal(missing.status, 404);
    assert.match(String(missing.headers['content-type']), /^application\/json/);
    assert.equal((JSON.parse(missing.body.toString()) as { code: string }).code, 'not_found', 'a 404 like every other of the service');
    // The original kept beside a cover is not served, as by the service.
    assert.ok(existsSync(path.join(covers, originalPathOf(coverPath))), 'the upload kept its original');
    assert.equal((await request(`${base}/covers/${originalPathOf(coverPath)}`, tls)).status, 404, 'originals are not served');

    // No link is followed, in or out of the folder, and no dot file is served.
    await writeFile(path.join(dir, 'secret.jpg'), 'outside the covers folder');
    await symlink(path.join(dir, 'secret.jpg'), path.join(covers, 'leak.jpg'));
    await mkdir(path.join(dir, 'outside'));
    await writeFile(path.join(dir, 'outside', 'a.jpg'), 'outside the covers folder');
    await symlink(path.join(dir, 'outside'), path.join(covers, 'linked'));
    await symlink(path.join(covers, coverPath), path.join(covers, 'inside.jpg'));
    for (const linked of ['leak.jpg', 'linked/a.jpg', 'inside.jpg']) {
      const reply = await request(`${base}/covers/${linked}`, tls);
      // 403 for a linked file; a linked folder is "not a folder" to nginx: 404.
      assert.ok([403, 404].includes(reply.status), `${linked} is refused, not ${reply.status}`);
      assert.ok(!reply.body.toString().includes('outside the covers folder'));
    }
    await mkdir(path.join(covers, '.tmp'), { recursive: true });
    await writeFile(path.join(covers, '.tmp', 'half.part'), 'being written');
    await writeFile(path.join(covers, '.hidden.jpg'), 'dot file');
    for (const dotted of ['.tmp/half.part', '.hidden.jpg', 'x/../.tmp/half.part']) {
      assert.equal((await request(`${base}/covers/${dotted}`, tls)).status, 404, `${dotted} is not served`);
    }
  });
});

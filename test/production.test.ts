/**
 * Running the service as an operator does: `npm start` and a SIGTERM to npm's own
 * process (what a process manager or `kill $(pidof npm)` sends), and the built
 * JavaScript (`npm run build`) run by plain `node`, without tsx.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cp, symlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { waitUntil } from './helpers/db.js';
import { relaxedLimits, root } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';

type Child = ChildProcessByStdio<null, Readable, Readable>;

const packageVersion = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;

/** Every process below `pid`, from /proc (parent of each process). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    children.set(parent, [...(children.get(parent) ?? []), Number(name)]);
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const child of children.get(p) ?? []) {
      found.push(child);
      walk(child);
    }
  };
  walk(pid);
  return found;
}

/** Whether the process runs (a zombie, finished but not yet reaped, does not). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return '';
  }
}

/** Whether this process can bind the port on 127.0.0.1, that is, nothing holds it. */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Collects a child's output and resolves when a line of it matches. */
function watch(child: Child) {
  let out = '';
  let err = '';
  const waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const check = () => {
    for (const waiter of [...waiters]) {
      const match = out.match(waiter.pattern);
      if (match) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(match);
      }
    }
  };
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    check();
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    exit,
    output: () => out,
    stderr: () => err,
    waitFor(pattern: RegExp, timeoutMs = 60_000) {
      return new Promise<RegExpMatchArray>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${String(pattern)} within ${timeoutMs} ms; stdout: ${out}; stderr: ${err}`)), timeoutMs);
        void exit.then(({ code }) => {
          clearTimeout(timer);
          reject(new Error(`exited with ${code} before ${String(pattern)}; stdout: ${out}; stderr: ${err}`));
        });
        waiters.push({
          pattern,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
        check();
      });
    },
  };
}

describe('production', () => {
  it('SIGTERM to npm start reaches the service: it stops gracefully and nothing is left holding the port', async (t) => {
    const dir = await tempDir(t);
    const npm = spawn('npm', ['start', '--', '--port', '0', '--log-format', 'json', '--data-dir', `${dir}/data`, '--covers-dir', `${dir}/covers`, ...relaxedLimits], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const seen: number[] = [];
    // Whatever the test finds, nothing it started outlives it.
    t.after(() => {
      for (const pid of [npm.pid!, ...seen]) if (running(pid)) process.kill(pid, 'SIGKILL');
    });
    const npmOut = watch(npm);
    const [, port] = await npmOut.waitFor(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
    seen.push(...descendants(npm.pid!));
    const services = seen.filter((pid) => /^\S*node --import tsx src\/main\.ts /.test(commandOf(pid)));
    assert.equal(services.length, 1, `one service process under npm: ${seen.map(commandOf).join(' | ')}`);
    assert.equal(await portIsFree(Number(port)), false, 'the service holds its port');

    npm.kill('SIGTERM'); // npm's own pid, not its process group
    await npmOut.exit;
    await waitUntil(() => seen.every((pid) => !running(pid)), 'every process npm started to end', 10_000).catch(() => {
      assert.fail(`still running after npm exited: ${seen.filter(running).map((pid) => `${pid} ${commandOf(pid)}`).join(' | ')}`);
    });
    assert.equal(await portIsFree(Number(port)), true, 'the port is free');
    assert.match(npmOut.output(), /"message":"stopping","signal":"SIGTERM"/, 'the service itself got the SIGTERM');
    assert.match(npmOut.output(), /"message":"stopped"/, 'and stopped gracefully');
  });

  it('npm run build makes JavaScript that node runs without tsx: dashboard, version, graceful stop', async (t) => {
    // Built into a fresh folder beside a copy of package.json and a link to
    // node_modules: the layout of a deployment, and the repository's own dist/
    // is left alone.
    const dir = await tempDir(t);
    const app = path.join(dir, 'app');
    const build = spawn('npm', ['run', 'build', '--', app], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    const buildOut = watch(build);
    const built = await buildOut.exit;
    assert.equal(built.code, 0, `build failed: ${buildOut.output()} ${buildOut.stderr()}`);
    assert.ok(existsSync(path.join(app, 'src/main.js')), 'src/main.js built');
    assert.ok(existsSync(path.join(app, 'machines/downloadMachine.js')), 'machines built');
    assert.ok(existsSync(path.join(app, 'ormconfig.js')), 'ormconfig built');
    for (const file of ['index.html', 'dashboard.js', 'dashboard.css']) {
      assert.ok(existsSync(path.join(app, 'src/admin/dashboard', file)), `the dashboard's ${file} copied beside its module`);
    }
    assert.equal(
      readdirSync(app, { recursive: true }).filter((f) => String(f).endsWith('.ts')).length,
      0,
      'no TypeScript in the build',
    );
    await cp(path.join(root, 'package.json'), path.join(app, 'package.json'));
    await symlink(path.join(root, 'node_modules'), path.join(app, 'node_modules'));

    const version = spawn(process.execPath, [path.join(app, 'src/main.js'), '--version'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const versionOut = watch(version);
    assert.deepEqual(await versionOut.exit, { code: 0, signal: null });
    assert.equal(versionOut.output(), `coverhelper ${packageVersion}\n`);

    const service = spawn(
      process.execPath,
      [path.join(app, 'src/main.js'), '--port', '0', '--log-format', 'json', '--data-dir', `${dir}/data`, '--covers-dir', `${dir}/covers`, ...relaxedLimits],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    t.after(() => {
      if (running(service.pid!)) service.kill('SIGKILL');
    });
    const serviceOut = watch(service);
    const [, url] = await serviceOut.waitFor(/listening on (http:\/\/[^\s"]+)/);
    assert.equal(descendants(service.pid!).length, 0, 'no esbuild or other helper process: plain node');
    const health = (await (await fetch(`${url}/healthz`)).json()) as { status: string; version: string };
    assert.deepEqual([health.status, health.version], ['ready', packageVersion]);
    const dashboard = await fetch(`${url}/admin`);
    assert.equal(dashboard.status, 200);
    assert.equal(await dashboard.text(), readFileSync(path.join(root, 'src/admin/dashboard/index.html'), 'utf8'));
    const script = await fetch(`${url}/admin/dashboard.js`);
    assert.equal(await script.text(), readFileSync(path.join(root, 'src/admin/dashboard/dashboard.js'), 'utf8'));

    service.kill('SIGTERM');
    assert.deepEqual(await serviceOut.exit, { code: 0, signal: null });
    assert.match(serviceOut.output(), /"message":"stopped"/);
  });
});

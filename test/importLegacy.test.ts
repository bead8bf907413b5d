/**
 * `npm run import-legacy -- DB DIR` as a real process, on a coverHub.db and a
 * coverFiles/ folder made here the way the 2019 Go service left them (real
 * images from sharp), with the hostile rows an old database may hold: missing
 * and broken files, a text file, a `../` path, an absolute path, a link out of
 * the folder, a file over --max-bytes, an image over the pixel limit, a URL that
 * is not http(s). Then the real service answers the imported URLs over the 2019
 * TCP port and over /ws without one request to the origin (whose hit counter
 * would show it: every imported URL points at it).
 */
import { TestClock } from '../src/clock.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { link, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { ImportProgress } from '../src/legacyImport/index.js';
import { makeImage, startOrigin } from './helpers/origin.js';
import type { Origin } from './helpers/origin.js';
import { root, runImportTool, startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { backends, freshDatabase, rawSql } from './helpers/stores.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';
import type { Frame } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the tool as `npm run import-legacy` does, to its exit. */
const runImport = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> => runImportTool(args, env);

/** A coverHub.db with `rows`, in `dir`. */
function makeLegacyDb(file: string, rows: [unknown, unknown][]): void {
  const db = new Database(file);
  try {
    db.exec('CREATE TABLE url2Path (url text primary key, path text)');
    const insert = db.prepare('INSERT INTO url2Path (url, path) VALUES (?, ?)');
    db.transaction(() => {
      for (const [url, relPath] of rows) insert.run(url, relPath);
    })();
  } finally {
    db.close();
  }
}

/** The folder the Go service ran in, with its database and files, and what each row should come to. */
async function legacyFolder(t: TestContext, origin: Origin) {
  const base = await tempDir(t);
  const dir = path.join(base, 'old');
  const host = new URL(origin.url).host.replace(':', '_');
  const files = path.join(dir, 'coverFiles', host);
  await mkdir(files, { recursive: true });
  await mkdir(path.join(base, 'outside'), { recursive: true });
  const put = async (name: string, data: Buffer | string) => writeFile(path.join(files, name), data);
  const rel = (name: string) => `coverFiles/${host}/${name}`;

  const good = {
    jpeg: `${origin.url}/img/old-cover.jpg`,
    png: `${origin.url}/img/old-cover.png`,
    wide: `${origin.url}/img/old-wide.jpg`,
    // The running service tried this one and remembers its failure: the import must still be answered.
    failedBefore: `${origin.url}/status/404?was=failed`,
  };
  await put('old-cover.jpg', await makeImage('old-cover'));
  await put('old-cover.png', await makeImage('old-cover-png', 'png'));
  await put('old-wide.jpg', await makeImage('old-wide', 'jpeg', 1280, 400));
  await put('failed-before.jpg', await makeImage('failed-before'));
  const jpeg = await makeImage('broken');
  await put('broken.jpg', jpeg.subarray(0, Math.floor(jpeg.length / 3)));
  await put('text.jpg', 'this is not an image\n');
  await put('same.jpg', await makeImage('same'));
  await writeFile(path.join(base, 'outside', 'secret.jpg'), await makeImage('secret'));
  await symlink(path.join(base, 'outside', 'secret.jpg'), path.join(files, 'link-out.jpg'));
  // Over --max-bytes 200000 (given to the import below): a valid JPEG padded after its end.
  await put('huge-bytes.jpg', Buffer.concat([jpeg, Buffer.alloc(250_000)]));
  // 5200×5000 = 26 megapixels, over the service's 25-megapixel limit (a small file: one colour).
  await put('bomb.png', await sharp({ create: { width: 5200, height: 5000, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png({ compressionLevel: 9 }).toBuffer());

  const skipped = {
    missing: [`${origin.url}/img/gone.jpg`],
    notImage: [`${origin.url}/img/broken.jpg`, `${origin.url}/img/text.jpg`],
    refused: [
      `${origin.url}/img/dotdot.jpg`,
      `${origin.url}/img/absolute.jpg`,
      `${origin.url}/img/link-out.jpg`,
      `${origin.url}/img/huge-bytes.jpg`,
      `${origin.url}/img/bomb.png`,
      'javascript:alert(1)',
      `${origin.url}/img/null-path.jpg`,
      // Two URLs with one host and base name: the Go service kept one file for both.
      `${origin.url}/img/same.jpg?v=1`,
      `${origin.url}/img/same.jpg?v=2`,
    ],
  };
  const rows: [unknown, unknown][] = [
    [good.jpeg, rel('old-cover.jpg')],
    [good.png, rel('old-cover.png')],
    [good.wide, rel('old-wide.jpg')],
    [good.failedBefore, rel('failed-before.jpg')],
    [skipped.missing[0], rel('gone.jpg')],
    [skipped.notImage[0], rel('broken.jpg')],
    [skipped.notImage[1], rel('text.jpg')],
    [skipped.refused[0], '../outside/secret.jpg'],
    [skipped.refused[1], path.join(base, 'outside', 'secret.jpg')],
    [skipped.refused[2], rel('link-out.jpg')],
    [skipped.refused[3], rel('huge-bytes.jpg')],
    [skipped.refused[4], rel('bomb.png')],
    [skipped.refused[5], rel('script.jpg')],
    [skipped.refused[6], null],
    [skipped.refused[7], rel('same.jpg')],
    [skipped.refused[8], rel('same.jpg')],
  ];
  const db = path.join(dir, 'coverHub.db');
  makeLegacyDb(db, rows);
  return { base, dir, db, good, skipped, rows: rows.length };
}

/** The whole 2019 conversation over TCP; the results in input order. */
async function converse(port: number, urls: string[]): Promise<string[]> {
  const socket = net.connect(port, '127.0.0.1');
  let received = Buffer.alloc(0);
  const changed: (() => void)[] = [];
  socket.on('data', (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    for (const wake of changed.splice(0)) wake();
  });
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const until = async (done: (text: string) => boolean) => {
    const deadline = Date.now() + 20_000;
    while (!done(received.toString('utf8'))) {
      if (Date.now() > deadline) throw new Error(`no answer; got ${JSON.stringify(received.toString('utf8'))}`);
      await new Promise<void>((resolve) => {
        changed.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  };
  const urlString = urls.join(' ');
  socket.write(`C${Buffer.byteLength(urlString)}`);
  await until((text) => text === 'G');
  socket.write(urlString);
  await until((text) => text.endsWith('OK'));
  socket.write('R');
  await until((text) => /L\d+$/.test(text));
  const length = Number(/L(\d+)$/.exec(received.toString('utf8'))![1]);
  const before = received.length;
  socket.write('C');
  await until(() => received.length === before + length);
  socket.write('O');
  await ended;
  return received.subarray(before).toString('utf8').split(' ');
}

async function legacyPort(service: Service): Promise<number> {
  const line = await service.waitForLog((l) => /^legacy protocol listening on tcp:\/\//.test(l.message));
  return Number(/:(\d+)$/.exec(line.message)![1]);
}

const summary = /^imported (\d+), already present (\d+), missing (\d+), not an image (\d+), refused (\d+) \(of (\d+) rows\) in \d+\.\ds$/;

function counts(stdout: string) {
  const lines = stdout.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one summary line on stdout: ${JSON.stringify(stdout)}`);
  const m = summary.exec(lines[0]!);
  assert.ok(m, `the summary line: ${lines[0]}`);
  const [imported, present, missing, notImage, refused, rows] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  return { imported, present, missing, notImage, refused, rows };
}

describe('npm run import-legacy', () => {
  for (const backend of backends) {
    it(`imports coverHub.db and coverFiles/ into ${backend} while the service runs; the service answers them over TCP and /ws with no origin request`, async (t) => {
      const origin = await startOrigin();
      t.after(() => origin.close());
      const legacy = await legacyFolder(t, origin);
      const db = await freshDatabase(t, backend);
      const folders = ['--data-dir', path.join(legacy.base, 'data'), '--covers-dir', path.join(legacy.base, 'covers'), '--db', db];
      const service = await startService([
        ...folders, '--allow-private-network', '--allow-hosts', '127.0.0.1', '--retries', '0', '--legacy-port', '0', '--fail-ttl', '600',
      ]);
      t.after(async () => void (await service.stop()));
      const port = await legacyPort(service);
      const ws = await connect(service.wsUrl);
      t.after(() => ws.close());

      // Before the import: the service fails this URL and remembers the failure for --fail-ttl.
      const before = (await ws.check('before', [legacy.good.failedBefore])).done.results as Frame[];
      assert.equal(before[0]!.status, 'error');
      const originRequests = origin.total();

      const first = await runImport([legacy.db, legacy.dir, ...folders, '--max-bytes', '200000']);
      assert.equal(first.code, 0, first.stderr);
      assert.deepEqual(counts(first.stdout), {
        imported: 4, present: 0, missing: 1, notImage: 2, refused: legacy.skipped.refused.length, rows: legacy.rows,
      });
      // Every skipped row is reported on stderr with its URL and why.
      const reports = first.stderr.split('\n').filter((line) => line.startsWith('skipped '));
      assert.equal(reports.length, 1 + 2 + legacy.skipped.refused.length, first.stderr);
      for (const [kind, urls] of Object.entries(legacy.skipped)) {
        const label = { missing: 'missing file', notImage: 'not an image', refused: 'refused' }[kind]!;
        for (const url of urls) assert.ok(reports.some((r) => r.startsWith(`skipped ${JSON.stringify(url)}: ${label}:`)), `${url} reported as ${label}: ${first.stderr}`);
      }
      assert.match(first.stderr, /"..\/outside\/secret.jpg"/);
      assert.match(first.stderr, /the file is a symbolic link/);
      assert.match(first.stderr, /over --max-bytes 200000/);
      assert.match(first.stderr, /megapixels/);
      assert.match(first.stderr, /2 URLs share this file/);

      // The running service answers every imported URL from the store, over /ws and over the 2019 port.
      const good = Object.values(legacy.good);
      const answers = (await ws.check('after', good)).done.results as Frame[];
      for (const answer of answers) {
        assert.equal(answer.status, 'ok', JSON.stringify(answer));
        assert.equal(answer.source, 'cache');
      }
      const tcpResults = await converse(port, [...good, legacy.skipped.missing[0]!]);
      assert.deepEqual(tcpResults.slice(0, good.length), answers.map((a) => a.coverUrl));
      // A URL the import skipped is not stored: the service downloads it (the origin has it).
      assert.ok(tcpResults[good.length]!.startsWith(`${service.url}/covers/`));
      assert.equal(origin.total(), originRequests + 1, 'one origin request: the skipped URL, none for the imported ones');
      assert.equal(origin.hits.get('/img/gone.jpg'), 1);

      // Stored like a download: resized to --resize (320x200 by default), source download, served.
      const served = await fetch(answers[0]!.coverUrl as string);
      assert.equal(served.status, 200);
      const meta = await sharp(Buffer.from(await served.arrayBuffer())).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 320, 200]);
      const rows = await rawSql<{ url: string; source: string }>(db, 'SELECT url, source FROM covers ORDER BY url');
      assert.deepEqual(rows.filter((r) => good.includes(r.url)).map((r) => r.source), ['download', 'download', 'download', 'download']);
      // Each keeps its original beside it, decoded to the size its row records.
      const originals = await rawSql<{ url: string; path: string; original_path: string | null; original_width: number | null; original_height: number | null; color: string | null }>(
        db,
        'SELECT url, path, original_path, original_width, original_height, color FROM covers ORDER BY url',
      );
      for (const row of originals.filter((r) => good.includes(r.url))) {
        assert.match(row.original_path ?? '', /\.orig\.[a-z]+$/, row.url);
        const originalFile = await readFile(path.join(legacy.base, 'covers', row.original_path!));
        const original = await sharp(originalFile).metadata();
        assert.deepEqual([original.width, original.height], [row.original_width, row.original_height], row.url);
        // And its colour: the images are solid, so every pixel's.
        const { channels } = await sharp(originalFile).stats();
        assert.equal(row.color, `#${channels.slice(0, 3).map((c) => Math.round(c.mean).toString(16).padStart(2, '0')).join('')}`, row.url);
      }

      // Again: nothing is imported twice.
      const second = await runImport([legacy.db, legacy.dir, ...folders, '--max-bytes', '200000']);
      assert.equal(second.code, 0, second.stderr);
      assert.deepEqual(counts(second.stdout), {
        imported: 0, present: 5, missing: 0, notImage: 2, refused: legacy.skipped.refused.length, rows: legacy.rows,
      }, 'the URL the service downloaded meanwhile is present now');
      const after = await rawSql<{ n: number }>(db, 'SELECT count(*) AS n FROM covers');
      assert.equal(Number(after[0]!.n), 5, 'four imported, one downloaded: no row twice');
    });
  }

  it('refuses a DB that is not a 2019 coverHelper database with one line and exit code 1', async (t) => {
    const base = await tempDir(t);
    const dir = path.join(base, 'old');
    await mkdir(dir);
    const notSqlite = path.join(base, 'notes.db');
    await writeFile(notSqlite, 'just some text, not SQLite at all\n'.repeat(100));
    const otherTable = path.join(base, 'other.db');
    const other = new Database(otherTable);
    other.exec('CREATE TABLE covers (url text, file text)');
    other.close();
    const noPath = path.join(base, 'nopath.db');
    const partial = new Database(noPath);
    partial.exec('CREATE TABLE url2Path (url text primary key)');
    partial.close();
    const folders = ['--data-dir', path.join(base, 'data'), '--covers-dir', path.join(base, 'covers')];
    const cases: [string, string, RegExp][] = [
      ['not SQLite', notSqlite, /^import-legacy: cannot read .*notes\.db as a 2019 coverHelper database: .*not a database/],
      ['no url2Path table', otherTable, /^import-legacy: .*other\.db is not a 2019 coverHelper database: it has no url2Path table$/],
      ['no path column', noPath, /^import-legacy: .*nopath\.db is not a 2019 coverHelper database: its url2Path table has no path column$/],
      ['missing', path.join(base, 'nowhere.db'), /^import-legacy: cannot open .*nowhere\.db: /],
    ];
    for (const [what, file, expected] of cases) {
      const run = await runImport([file, dir, ...folders]);
      assert.equal(run.code, 1, `${what}: ${run.stderr}`);
      assert.equal(run.stdout, '', what);
      const lines = run.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, `${what}: one line: ${run.stderr}`);
      assert.match(lines[0]!, expected, what);
    }
  });

  it('takes the service options: a bad value or a missing argument exits 2 naming it; a DIR that is not a folder exits 1', async (t) => {
    const base = await tempDir(t);
    const db = path.join(base, 'coverHub.db');
    makeLegacyDb(db, []);
    const help = await runImport(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: npm run import-legacy -- DB DIR \[options\]\n/);
    const badFlag = await runImport([db, base, '--resize', 'big']);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /^import-legacy: invalid --resize \(flag\): expected WxH/);
    const badEnv = await runImport([db, base], { COVERHELPER_MAX_BYTES: 'lots' });
    assert.equal(badEnv.code, 2);
    assert.match(badEnv.stderr, /^import-legacy: invalid COVERHELPER_MAX_BYTES \(environment\)/);
    const oneArgument = await runImport([db, '--data-dir', path.join(base, 'data')]);
    assert.equal(oneArgument.code, 2);
    assert.match(oneArgument.stderr, /^import-legacy: expected DB and DIR, got 1 argument/);
    const notFolder = await runImport([db, db, '--data-dir', path.join(base, 'data'), '--covers-dir', path.join(base, 'covers')]);
    assert.equal(notFolder.code, 1);
    assert.match(notFolder.stderr, /^import-legacy: DIR .* is not a folder\n$/);
    // The service's own folder checks: a covers folder that cannot be made is named, exit 1, nothing imported.
    const coversIsFile = await runImport([db, base, '--data-dir', path.join(base, 'data'), '--covers-dir', db]);
    assert.equal(coversIsFile.code, 1);
    assert.match(coversIsFile.stderr, /^import-legacy: the covers folder .*coverHub\.db is not writable \(\w+: .*; make it a folder writable .* --covers-dir\n$/);
    assert.equal(coversIsFile.stdout, '');
    // An empty database imports nothing, with the summary; a boolean flag before DB does not swallow it.
    const empty = await runImport(['--allow-private-network', db, base, '--data-dir', path.join(base, 'data'), '--covers-dir', path.join(base, 'covers')]);
    assert.equal(empty.code, 0, empty.stderr);
    assert.deepEqual(counts(empty.stdout), { imported: 0, present: 0, missing: 0, notImage: 0, refused: 0, rows: 0 });
  });

  it('stops on SIGINT after the rows begun (exit 130, the summary says how far), and the next run imports the rest', async (t) => {
    const base = await tempDir(t);
    const files = path.join(base, 'coverFiles', 'i0.hdslb.com');
    await mkdir(files, { recursive: true });
    // 400 files that are hard links to one 1920×1080 JPEG: distinct paths, each decoded on its own.
    await writeFile(path.join(files, 'big.jpg'), await makeImage('interrupted', 'jpeg', 1920, 1080));
    const rows: [string, string][] = [];
    for (let i = 0; i < 400; i++) {
      await link(path.join(files, 'big.jpg'), path.join(files, `${i}.jpg`));
      rows.push([`https://i0.hdslb.com/bfs/archive/${i}.jpg`, `coverFiles/i0.hdslb.com/${i}.jpg`]);
    }
    const db = path.join(base, 'coverHub.db');
    makeLegacyDb(db, rows);
    const args = [db, base, '--data-dir', path.join(base, 'data'), '--covers-dir', path.join(base, 'covers')];
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/tools/importLegacy.ts'), ...args], { cwd: root, env: { ...process.env, INIT_CWD: root }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (!stderr.includes('400 rows of') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    // At once: even a fast machine has not decoded 400 large images by then.
    child.kill('SIGINT');
    assert.equal(await exited, 130, stderr);
    assert.match(stderr, /import-legacy: stopping: the rows begun are finished first/);
    const m = /^imported (\d+), already present 0, missing 0, not an image 0, refused 0 \((\d+) of 400 rows done\) in \d+\.\ds\n$/.exec(stdout);
    assert.ok(m, `the summary says how far it went: ${stdout}`);
    const first = Number(m[1]);
    assert.equal(Number(m[2]), first);
    assert.ok(first < 400, 'stopped before the end');
    const stored = await rawSql<{ n: number }>(path.join(base, 'data', 'coverhelper.sqlite'), 'SELECT count(*) AS n FROM covers');
    assert.equal(Number(stored[0]!.n), first, 'every row counted as imported is stored');

    const rest = await runImport(args);
    assert.equal(rest.code, 0, rest.stderr);
    assert.deepEqual(counts(rest.stdout), { imported: 400 - first, present: first, missing: 0, notImage: 0, refused: 0, rows: 400 });
  });

  it('imports the first row of a URL that a table without its primary key repeats, and refuses the others', async (t) => {
    const base = await tempDir(t);
    await mkdir(path.join(base, 'coverFiles', 'i0.hdslb.com'), { recursive: true });
    await writeFile(path.join(base, 'coverFiles', 'i0.hdslb.com', 'one.jpg'), await makeImage('one'));
    await writeFile(path.join(base, 'coverFiles', 'i0.hdslb.com', 'two.jpg'), await makeImage('two'));
    const db = path.join(base, 'coverHub.db');
    const sqlite = new Database(db);
    sqlite.exec('CREATE TABLE url2Path (url text, path text)');
    const insert = sqlite.prepare('INSERT INTO url2Path VALUES (?, ?)');
    insert.run('https://i0.hdslb.com/bfs/archive/x.jpg', 'coverFiles/i0.hdslb.com/one.jpg');
    insert.run('https://i0.hdslb.com/bfs/archive/x.jpg', 'coverFiles/i0.hdslb.com/two.jpg');
    sqlite.close();
    const run = await runImport([db, base, '--data-dir', path.join(base, 'data'), '--covers-dir', path.join(base, 'covers'), '--workers', '4']);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(counts(run.stdout), { imported: 1, present: 0, missing: 0, notImage: 0, refused: 1, rows: 2 });
    assert.match(run.stderr, /^skipped "https:\/\/i0\.hdslb\.com\/bfs\/archive\/x\.jpg": refused: the url repeats an earlier row \(path "coverFiles\/i0\.hdslb\.com\/two\.jpg"\)$/m);
  });

  it('shows progress on long runs: plain lines when stderr is not a TTY, a bar redrawn in place on a TTY', async (t) => {
    const base = await tempDir(t);
    const db = path.join(base, 'coverHub.db');
    // Rows whose files are missing cost no decode: a long run in rows, short in time.
    makeLegacyDb(db, Array.from({ length: 2500 }, (_, i): [string, string] => [`https://i0.hdslb.com/bfs/archive/${i}.jpg`, `coverFiles/i0.hdslb.com/${i}.jpg`]));
    const run = await runImport([db, base, '--data-dir', path.join(base, 'data'), '--covers-dir', path.join(base, 'covers')]);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(counts(run.stdout), { imported: 0, present: 0, missing: 2500, notImage: 0, refused: 0, rows: 2500 });
    const progress = run.stderr.split('\n').filter((line) => line.startsWith('progress: '));
    assert.ok(progress.length >= 2, run.stderr.slice(-500));
    assert.match(progress[0]!, /^progress: 1000 of 2500 rows \(40%\), \d+ rows\/s$/);
    assert.doesNotMatch(run.stderr, /\r/, 'no bar when stderr is not a TTY');

    // On a real terminal (util-linux's `script` gives the process a pseudo-terminal): the bar, no plain lines.
    if (existsSync('/usr/bin/script')) {
      const quote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`;
      const command = [process.execPath, '--import', 'tsx', path.join(root, 'src/tools/importLegacy.ts'), db, base, '--data-dir', path.join(base, 'data'), '--covers-dir', path.join(base, 'covers')].map(quote).join(' ');
      const tty = await new Promise<Run>((resolve) => {
        const child = spawn('/usr/bin/script', ['-qec', command, '/dev/null'], { cwd: root, env: { ...process.env, INIT_CWD: root }, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.once('exit', (code) => resolve({ code, stdout, stderr: '' }));
      });
      assert.equal(tty.code, 0, tty.stdout.slice(-500));
      const clearLine = `\r${String.fromCharCode(27)}[2K`;
      assert.ok(tty.stdout.split(clearLine).some((piece) => /^\[#*-*\] +\d+% {2}\d+\/2500 rows/.test(piece)), 'the bar, redrawn in place');
      assert.doesNotMatch(tty.stdout, /progress: /);
      assert.match(tty.stdout, /imported 0, already present 0, missing 2500, not an image 0, refused 0 \(of 2500 rows\) in \d+\.\ds/);
    } else {
      t.diagnostic('no /usr/bin/script (util-linux): the bar on a real terminal is not checked here');
    }

    // On a TTY: one line redrawn with \r, cleared before a report line and drawn again after it.
    const written: string[] = [];
    const clock = new TestClock(0);
    const bar = new ImportProgress({ total: 10, stream: { isTTY: true, columns: 120, write: (text: string) => written.push(text) }, clock });
    for (let done = 1; done <= 4; done++) {
      await clock.advance(1000);
      bar.update(done);
    }
    assert.equal(written.at(-1), '\r\x1b[2K[########------------]  40%  4/10 rows  1 rows/s  eta 6s');
    written.length = 0;
    bar.line('skipped "x": missing file');
    assert.deepEqual(written.slice(0, 2), ['\r\x1b[2K', 'skipped "x": missing file\n']);
    assert.ok(written[2]!.startsWith('\r\x1b[2K[#'), 'drawn again after the line');
    bar.finish();
    assert.equal(written.at(-1), '\r\x1b[2K', 'the bar is cleared at the end');
  });
});

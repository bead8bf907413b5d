/**
 * No secret in any line the service or its tools print: the one masking
 * function (src/secrets.ts), and the real processes (`node --import tsx
 * src/main.ts`, what `npm start` runs, and the import tool as `npm run
 * import-legacy` runs it) given a password-bearing `--db` that cannot connect.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { maskSecrets } from '../src/secrets.js';
import { runImportTool, runService } from './helpers/service.js';
import type { RunResult } from './helpers/service.js';
import { testPg } from './helpers/stores.js';
import { tempDir } from './helpers/tempDir.js';

const PASSWORD = 'Pw-d0nt-l0g-me';
const QUERY_PASSWORD = 'Qp-d0nt-l0g-me';
/** Nothing listens on port 1: the connection is refused at once. */
const REFUSED_DB = `postgres://coverhelper:${PASSWORD}@127.0.0.1:1/covers?sslmode=disable&password=${QUERY_PASSWORD}`;

const runImport = (args: string[]): Promise<RunResult> => runImportTool(args, {}, 60_000);

function assertNoSecret(run: RunResult, what: string): void {
  const all = `${run.stdout}\n${run.stderr}`;
  for (const secret of [PASSWORD, QUERY_PASSWORD]) assert.ok(!all.includes(secret), `${what}: the password is printed: ${all}`);
}

/** The lines a run printed on stdout and stderr together, empty ones left out. */
function linesOf(run: RunResult): string[] {
  return `${run.stdout}\n${run.stderr}`.split('\n').filter((line) => line.trim() !== '');
}

describe('secrets in output', () => {
  it('maskSecrets hides a URL password and secret query parameters wherever they stand in a text, and nothing else', () => {
    assert.equal(maskSecrets('postgres://app:pw@db:5432/covers'), 'postgres://app:****@db:5432/covers');
    assert.equal(maskSecrets('postgres://:pw@db/covers'), 'postgres://:****@db/covers');
    // A password with unescaped separators is hidden whole.
    assert.equal(maskSecrets('postgres://app:p/w:x@y@db/covers'), 'postgres://app:****@db/covers');
    assert.equal(maskSecrets('postgres://app@db/covers?sslmode=require&password=pw'), 'postgres://app@db/covers?sslmode=require&password=****');
    assert.equal(maskSecrets('could not open postgres://app:pw@db/x (ECONNREFUSED); check --db'), 'could not open postgres://app:****@db/x (ECONNREFUSED); check --db');
    assert.equal(maskSecrets('{"db":"postgres://a:pw@h/x","url":"https://cdn.example/a.jpg?token=t0k&w=1"}'), '{"db":"postgres://a:****@h/x","url":"https://cdn.example/a.jpg?token=****&w=1"}');
    for (const plain of ['postgres://app@db/covers', 'http://host:8080/a.jpg', 'https://example.com/a@b.jpg', 'a plain line', 'key=value']) assert.equal(maskSecrets(plain), plain);
  });

  it('the service that cannot reach a password-bearing --db prints one clear line without the password and exits 1', async (t) => {
    const dir = await tempDir(t);
    const run = await runService(['--port', '0', '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--db', REFUSED_DB]);
    assert.equal(run.code, 1, `${run.stdout}${run.stderr}`);
    assertNoSecret(run, 'start error');
    const lines = linesOf(run);
    assert.equal(lines.length, 1, `one line: ${lines.join('\n')}`);
    assert.match(lines[0]!, /cannot start: could not open or migrate the database postgres:\/\/coverhelper:\*\*\*\*@127\.0\.0\.1:1\/covers\?sslmode=disable&password=\*\*\*\* \(ECONNREFUSED/);

    // Readable log lines too, and --print-config.
    const text = await runService(['--port', '0', '--log-format', 'pretty', '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--db', REFUSED_DB]);
    assert.equal(text.code, 1);
    assertNoSecret(text, 'start error (pretty)');
    const printed = await runService(['--print-config', '--db', REFUSED_DB]);
    assert.equal(printed.code, 0);
    assertNoSecret(printed, '--print-config');
    assert.match(printed.stdout, /postgres:\/\/coverhelper:\*\*\*\*@127\.0\.0\.1:1/);
  });

  it('the service whose database server answers with an error (wrong database) does not print the password', { skip: testPg ? false : 'needs COVERHELPER_TEST_PG' }, async (t) => {
    const dir = await tempDir(t);
    const url = new URL(testPg!);
    url.password = PASSWORD;
    url.pathname = '/coverhelper_no_such_database';
    const run = await runService(['--port', '0', '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--db', url.toString()]);
    assert.equal(run.code, 1, `${run.stdout}${run.stderr}`);
    assertNoSecret(run, 'start error');
    assert.equal(linesOf(run).length, 1, `${run.stdout}${run.stderr}`);
  });

  it('import-legacy into a password-bearing --db that cannot be reached prints one clear line without the password and exits 1', async (t) => {
    const dir = await tempDir(t);
    const legacy = path.join(dir, 'coverHub.db');
    const db = new Database(legacy);
    db.exec('CREATE TABLE url2Path (url text primary key, path text)');
    db.close();
    const run = await runImport([legacy, dir, '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--db', REFUSED_DB]);
    assert.equal(run.code, 1, `${run.stdout}${run.stderr}`);
    assertNoSecret(run, 'import-legacy');
    const lines = linesOf(run);
    assert.equal(lines.length, 1, `one line: ${lines.join('\n')}`);
    assert.match(lines[0]!, /^import-legacy: could not open or migrate the database postgres:\/\/coverhelper:\*\*\*\*@127\.0\.0\.1:1\/covers/);

    const printed = await runImport(['--print-config', '--db', REFUSED_DB]);
    assert.equal(printed.code, 0, printed.stderr);
    assertNoSecret(printed, 'import-legacy --print-config');
  });
});

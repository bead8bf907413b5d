/**
 * A SIGKILL between any two steps of a deletion leaves nothing dangling after
 * the next start. The real process kills itself at a named point
 * (COVERHELPER_CRASH_AT, see src/crashPoints.ts), exactly as an
 * outside `kill -9` would at that moment; the deletion comes from expiry with a
 * tiny --max-age-hours.
 */
import assert from 'node:assert/strict';
import { access, readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { readTable } from './helpers/db.js';
import { startOrigin } from './helpers/origin.js';
import { startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';

const exists = (file: string) => access(file).then(() => true, () => false);

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort();
}

const points = [
  // [crash point, row still there after the crash, file still there after the crash]
  ['deletion:claimed', true, true],
  ['deletion:rows-removed', false, true],
  ['deletion:file-removed', false, false],
] as const;

describe('deletion survives a crash between any two steps', () => {
  for (const [point, rowLeft, fileLeft] of points) {
    it(`SIGKILL at ${point} is finished by the next start`, async (t) => {
      const origin = await startOrigin();
      t.after(() => origin.close());
      const dir = await tempDir(t);
      const db = path.join(dir, 'data', 'coverhelper.sqlite');
      const coversDir = path.join(dir, 'covers');
      const base = ['--data-dir', path.join(dir, 'data'), '--covers-dir', coversDir, '--allow-private-network', '--allow-hosts', '127.0.0.1'];
      const url = `${origin.url}/img/doomed.jpg`;

      // Store a cover and let it expire while the process is set to die mid-deletion.
      const crashing = await startService([...base, '--max-age-hours', '0.0002'], { COVERHELPER_CRASH_AT: point });
      const ws2 = await connect(crashing.wsUrl);
      const { done } = await ws2.check('doomed', [url]);
      const coverPath = (done.results as { path: string }[])[0]!.path;
      const { signal } = await crashing.exit;
      assert.equal(signal, 'SIGKILL', 'the process died at the crash point');

      const row = readTable(db, 'SELECT url FROM covers WHERE url = ?', url);
      assert.equal(row.length > 0, rowLeft, 'row after the crash');
      assert.equal(await exists(path.join(coversDir, coverPath)), fileLeft, 'file after the crash');
      assert.ok(readTable(db, 'SELECT id FROM deletions').length >= 1, 'the deletion record outlives the crash');

      const next = await startService(base);
      t.after(async () => void (await next.stop()));
      assert.deepEqual(readTable(db, 'SELECT id FROM deletions'), [], 'finished at start');
      const rows = readTable<{ path: string }>(db, 'SELECT path FROM covers ORDER BY path');
      assert.deepEqual(rows.map((r) => r.path).sort(), (await filesUnder(coversDir)).filter((f) => !f.startsWith('.tmp')), 'every row has its file and every file its row');
      assert.equal(readTable(db, 'SELECT url FROM covers WHERE url = ?', url).length, 0);
      assert.equal(readTable(db, 'SELECT url FROM tasks WHERE url = ?', url).length, 0);

      const ws3 = await connect(next.wsUrl);
      t.after(() => ws3.close());
      const again = await ws3.check('again', [url]);
      assert.equal((again.done.results as { source: string }[])[0]!.source, 'download', 'a deleted URL is downloaded again');
      assert.equal(origin.hits.get('/img/doomed.jpg'), 2);
    });
  }
});

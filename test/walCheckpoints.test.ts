/**
 * WAL checkpoints on a thread of their own (src/store/walCheckpoints.ts): a
 * real SQLite file through the real store, and better-sqlite3 connections of
 * the test's own. What is observed is the database file itself: a committed
 * page reaches it only through a checkpoint, and the service's connection
 * checkpoints only past FALLBACK_PAGES, so a marker written in a few pages
 * shows in the file while the store is open only if the thread copied it.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { openStore } from '../src/store/index.js';
import { FALLBACK_PAGES, WalCheckpoints } from '../src/store/walCheckpoints.js';
import { coverRow } from './helpers/coverRow.js';
import { tempDir } from './helpers/tempDir.js';
import { waitUntil } from './helpers/db.js';

const inFile = (file: string, marker: string) => readFileSync(file).includes(marker);

describe('WAL checkpoints on a thread', () => {
  it('copy committed pages into the database file while the store is open; without the thread they stay in the WAL', async (t) => {
    for (const upkeepDelayMs of [0, 60_000]) {
      const dir = await tempDir(t, 'wal');
      const file = path.join(dir, 'covers.sqlite');
      const problems: string[] = [];
      const store = await openStore({ db: file, node: 'n', leaseMs: 30_000, onTaskWriteError: (error) => assert.fail(String(error)), onUpkeepProblem: (message) => problems.push(message), upkeepDelayMs });
      try {
        const marker = `https://i0.hdslb.com/marker-${upkeepDelayMs}-${'m'.repeat(40)}.jpg`;
        await store.covers.save(coverRow(marker));
        if (upkeepDelayMs === 0) {
          await waitUntil(() => inFile(file, marker), 'the marker in the database file', 5_000);
        } else {
          // The thread starts a minute after the open: until then nothing copies a few pages.
          await new Promise((resolve) => setTimeout(resolve, 600));
          assert.equal(inFile(file, marker), false, 'still only in the WAL');
          assert.equal(inFile(`${file}-wal`, marker), true);
        }
        assert.deepEqual(problems, []);
      } finally {
        await store.close();
      }
      // Closed: the last connection checkpoints what is left and removes the WAL.
      assert.equal(readFileSync(file).includes('marker-'), true);
    }
  });

  it('start on a WAL file only, push the connection\'s own checkpoints back while they run, and give them back when stopped', async (t) => {
    const dir = await tempDir(t, 'wal');
    const memory = new Database(':memory:');
    t.after(() => memory.close());
    assert.equal(await WalCheckpoints.start(memory, () => assert.fail('no thread, no problem')), undefined, 'an in-memory database: none');
    const rollback = new Database(path.join(dir, 'rollback.sqlite'));
    t.after(() => rollback.close());
    assert.equal(await WalCheckpoints.start(rollback, () => assert.fail('no thread, no problem')), undefined, 'a rollback journal: none');

    const db = new Database(path.join(dir, 'wal.sqlite'));
    t.after(() => db.close());
    db.pragma('journal_mode = WAL');
    const checkpoints = await WalCheckpoints.start(db, () => assert.fail('no problem'), 50);
    assert.ok(checkpoints);
    assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), FALLBACK_PAGES);
    await checkpoints.stop();
    await checkpoints.stop();
    assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), 1000, 'SQLite\'s own bound again');
  });

  it('a thread that cannot open the file is no thread: the connection keeps checkpointing itself', async (t) => {
    const dir = await tempDir(t, 'wal');
    const file = path.join(dir, 'gone.sqlite');
    const db = new Database(file);
    t.after(() => db.close());
    db.pragma('journal_mode = WAL');
    // The file is gone from the folder (this connection holds it open): the thread's open fails.
    rmSync(file);
    assert.equal(await WalCheckpoints.start(db, () => assert.fail('reported by the caller, not here')), undefined);
    assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), 1000);
  });

  it('a thread that ends on its own is reported, and the connection checkpoints itself again', async (t) => {
    const dir = await tempDir(t, 'wal');
    const db = new Database(path.join(dir, 'ends.sqlite'));
    t.after(() => db.close());
    db.pragma('journal_mode = WAL');
    const problems: string[] = [];
    const checkpoints = await WalCheckpoints.start(db, (message) => problems.push(message), 50);
    assert.ok(checkpoints);
    // The thread is ended from outside (it has no failure of its own to give): reached through the private field.
    await (checkpoints as unknown as { worker: Worker }).worker.terminate();
    await waitUntil(() => problems.length > 0, 'the end reported', 5_000);
    assert.match(problems[0]!, /checkpoint thread ended/);
    assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), 1000);
    await checkpoints.stop();
  });
});

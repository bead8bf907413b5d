/**
 * The one path guard on real folders: the link attacks from outside (issue 21)
 * against the functions the service calls — covers written, read and removed,
 * the temp sweep, archives packed, served and expired — and the guard's own
 * rule (no link followed, the real location checked at every call).
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { openArchive, packArchive, removeArchive } from '../src/jobs/index.js';
import { openStoredFile, removeCoverFile, statStoredFiles, sweepTemp, writeCoverFile, TEMP_DIR } from '../src/store/index.js';
import { tempDir } from './helpers/tempDir.js';

const ID = '3f2b8c1e-0a4d-4e5f-9b6c-7d8e9f0a1b2c';

type TestContext = Parameters<typeof tempDir>[0];

/** A covers folder and a folder outside it holding one file that must survive. */
async function folders(t: TestContext) {
  const covers = await tempDir(t);
  const outside = await tempDir(t);
  await writeFile(path.join(outside, 'keep.txt'), 'outside the covers folder');
  return { covers, outside };
}

const exists = (file: string) => lstat(file).then(() => true, () => false);

describe('one path guard: link attacks on the covers folder', () => {
  it('a host folder swapped for a link after a cover was written there: the next write is refused, nothing written outside', async (t) => {
    const { covers, outside } = await folders(t);
    await writeCoverFile(covers, 'h/first.jpg', Buffer.from('one'));
    // The folder goes away and a link leading out takes its place while the service runs.
    await rename(path.join(covers, 'h'), path.join(outside, 'moved'));
    await symlink(outside, path.join(covers, 'h'));
    await assert.rejects(writeCoverFile(covers, 'h/second.jpg', Buffer.from('two')), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ELOOP');
      assert.match(error.message, /refusing to follow a link: .*\/h is a link/);
      return true;
    });
    assert.deepEqual((await readdir(outside)).sort(), ['keep.txt', 'moved']);
    assert.deepEqual(await readdir(path.join(covers, TEMP_DIR)), [], 'no temp file left');
    assert.equal(await openStoredFile(covers, 'h/first.jpg'), undefined, 'nothing read through the link either');
  });

  it('a folder link is refused even when it points inside, and mkdir never replaces one', async (t) => {
    const { covers } = await folders(t);
    await mkdir(path.join(covers, 'real'));
    await writeFile(path.join(covers, 'real', 'a.jpg'), 'A');
    await symlink(path.join(covers, 'real'), path.join(covers, 'alias'));
    assert.equal(await openStoredFile(covers, 'alias/a.jpg'), undefined);
    await assert.rejects(writeCoverFile(covers, 'alias/b.jpg', Buffer.from('B')), /refusing to follow a link/);
    assert.ok((await lstat(path.join(covers, 'alias'))).isSymbolicLink(), 'the link is left as it was');
    assert.deepEqual(await readdir(path.join(covers, 'real')), ['a.jpg']);
  });

  it('a look at files (statStoredFiles) sees regular files only: not a link, not through a folder link, not a folder', async (t) => {
    const { covers, outside } = await folders(t);
    await writeCoverFile(covers, 'h/a.jpg', Buffer.from('AAA'));
    await symlink(path.join(outside, 'keep.txt'), path.join(covers, 'h', 'b.jpg'));
    await mkdir(path.join(covers, 'h', 'c.jpg'));
    const [a, b, c, d] = await statStoredFiles(covers, ['h/a.jpg', 'h/b.jpg', 'h/c.jpg', 'h/d.jpg']);
    assert.equal(a?.size, 3);
    assert.deepEqual([b, c, d], [undefined, undefined, undefined], 'a link to a file outside, a folder, a missing file');
    await symlink(outside, path.join(covers, 'out'));
    assert.deepEqual(await statStoredFiles(covers, ['out/keep.txt']), [undefined], 'not through a folder link');
    await symlink(path.join(covers, 'h'), path.join(covers, 'alias'));
    assert.deepEqual(await statStoredFiles(covers, ['alias/a.jpg', 'h/a.jpg']), [undefined, a], 'not through a folder link pointing inside either; each path its own look');
    assert.deepEqual(await statStoredFiles(covers, ['../x.jpg', 'h/.hidden']), [undefined, undefined], 'not plain: not looked at');
  });

  it('removing a cover through a folder link deletes nothing outside; a link in a cover’s place is removed itself', async (t) => {
    const { covers, outside } = await folders(t);
    await symlink(outside, path.join(covers, 'h'));
    const outcome = await removeCoverFile(covers, 'h/keep.txt');
    assert.ok(await exists(path.join(outside, 'keep.txt')), 'the file outside is still there');
    assert.equal(outcome, 'refused');
    await mkdir(path.join(covers, 'g'));
    await symlink(path.join(outside, 'keep.txt'), path.join(covers, 'g', 'a.jpg'));
    assert.equal(await removeCoverFile(covers, 'g/a.jpg'), 'removed');
    assert.equal(await exists(path.join(covers, 'g', 'a.jpg')), false);
    assert.equal(await readFile(path.join(outside, 'keep.txt'), 'utf8'), 'outside the covers folder');
  });

  it('the temp sweep: a .tmp link leading out deletes nothing outside; links inside .tmp are removed themselves, never their targets', async (t) => {
    const { covers, outside } = await folders(t);
    await writeFile(path.join(outside, 'other.txt'), 'also outside');
    await symlink(outside, path.join(covers, TEMP_DIR));
    assert.equal(await sweepTemp(covers), 0);
    assert.deepEqual((await readdir(outside)).sort(), ['keep.txt', 'other.txt']);

    const second = await folders(t);
    await mkdir(path.join(second.covers, TEMP_DIR));
    await symlink(path.join(second.outside, 'keep.txt'), path.join(second.covers, TEMP_DIR, 'file-link'));
    await symlink(second.outside, path.join(second.covers, TEMP_DIR, 'folder-link'));
    await mkdir(path.join(second.covers, TEMP_DIR, 'half'));
    await symlink(second.outside, path.join(second.covers, TEMP_DIR, 'half', 'nested-link'));
    await writeFile(path.join(second.covers, TEMP_DIR, 'x.part'), 'half');
    assert.equal(await sweepTemp(second.covers), 4);
    assert.deepEqual(await readdir(path.join(second.covers, TEMP_DIR)), []);
    assert.deepEqual(await readdir(second.outside), ['keep.txt']);
  });

  it('a .tmp swapped for a link after a write: the next cover is refused and nothing is written outside', async (t) => {
    const { covers, outside } = await folders(t);
    await writeCoverFile(covers, 'h/first.jpg', Buffer.from('one'));
    await rename(path.join(covers, TEMP_DIR), path.join(outside, 'old-tmp'));
    await symlink(outside, path.join(covers, TEMP_DIR));
    await assert.rejects(writeCoverFile(covers, 'h/second.jpg', Buffer.from('two')), /refusing to follow a link/);
    assert.deepEqual((await readdir(outside)).sort(), ['keep.txt', 'old-tmp']);
    assert.deepEqual(await readdir(path.join(outside, 'old-tmp')), []);
    assert.equal(await exists(path.join(covers, 'h', 'second.jpg')), false);
  });
});

describe('one path guard: link attacks on job archives', () => {
  it('.jobs/<id>.tar as a link to a file outside is not opened, and removing it removes the link only', async (t) => {
    const { covers, outside } = await folders(t);
    await mkdir(path.join(covers, '.jobs'));
    await symlink(path.join(outside, 'keep.txt'), path.join(covers, '.jobs', `${ID}.tar`));
    assert.equal(await openArchive(covers, ID), undefined);
    assert.equal(await removeArchive(covers, ID), 'removed');
    assert.equal(await exists(path.join(covers, '.jobs', `${ID}.tar`)), false);
    assert.equal(await readFile(path.join(outside, 'keep.txt'), 'utf8'), 'outside the covers folder');
  });

  it('a .jobs link leading out: no archive is packed outside, none is served from outside, and expiry deletes nothing outside', async (t) => {
    const { covers, outside } = await folders(t);
    await mkdir(path.join(covers, 'h'));
    await writeFile(path.join(covers, 'h', 'a.jpg'), 'A');
    await symlink(outside, path.join(covers, '.jobs'));
    // An archive-named file outside, reachable through the link: neither served nor deleted.
    await writeFile(path.join(outside, `${ID}.tar`), 'not an archive of ours');
    const outcome = await removeArchive(covers, ID);
    assert.deepEqual((await readdir(outside)).sort(), [`${ID}.tar`, 'keep.txt'], 'expiry deletes nothing through the link');
    assert.equal(outcome, 'refused');
    assert.equal(await openArchive(covers, ID), undefined);
    await rm(path.join(outside, `${ID}.tar`));
    await assert.rejects(packArchive(covers, { id: ID, name: '' }, [{ url: 'u', path: 'h/a.jpg' }]), /refusing to follow a link/);
    assert.deepEqual(await readdir(outside), ['keep.txt'], 'no archive written outside');
  });

  it('a .tmp link leading out: packing writes nothing outside', async (t) => {
    const { covers, outside } = await folders(t);
    await mkdir(path.join(covers, 'h'));
    await writeFile(path.join(covers, 'h', 'a.jpg'), 'A');
    await symlink(outside, path.join(covers, TEMP_DIR));
    await assert.rejects(packArchive(covers, { id: ID, name: '' }, [{ url: 'u', path: 'h/a.jpg' }]), /refusing to follow a link/);
    assert.deepEqual(await readdir(outside), ['keep.txt']);
    assert.equal(await openArchive(covers, ID), undefined);
  });
});

/**
 * The job archive writer on a real folder: what the tar holds (read back with
 * tar-stream), a URL asked twice packed once, a file gone or a hostile path
 * listed as `file_missing`, and nothing left behind when packing is aborted.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import tar from 'tar-stream';
import { archiveFile, openArchive, packArchive, removeArchive } from '../src/jobs/index.js';
import { readme } from '../src/jobs/archive.js';
import { tempDir } from './helpers/tempDir.js';

const ID = '3f2b8c1e-0a4d-4e5f-9b6c-7d8e9f0a1b2c';

async function entriesOf(file: string): Promise<Map<string, Buffer>[]> {
  const extract = tar.extract();
  const seen: Map<string, Buffer>[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      seen.push(new Map([[entry.header.name, Buffer.concat(chunks)]]));
    }
  })();
  Readable.from([await readFile(file)]).pipe(extract);
  await done;
  return seen;
}

describe('job archives', () => {
  it('follows no link found in the covers folder: a link to a file outside, or a folder link leading out, is file_missing', async (t) => {
    const covers = await tempDir(t);
    const outside = await tempDir(t);
    await writeFile(path.join(outside, 'passwd'), 'root:x:0:0');
    await mkdir(path.join(covers, 'h'), { recursive: true });
    await writeFile(path.join(covers, 'h', 'ok.jpg'), 'OK');
    await symlink(path.join(outside, 'passwd'), path.join(covers, 'h', 'passwd.jpg'));
    await symlink(outside, path.join(covers, 'out'));
    const out = await packArchive(covers, { id: ID, name: '' }, [
      { url: 'https://x/ok.jpg', path: 'h/ok.jpg' },
      { url: 'https://x/link.jpg', path: 'h/passwd.jpg' },
      { url: 'https://x/dir.jpg', path: 'out/passwd' },
    ]);
    assert.equal(out.missing, 2);
    const entries = await entriesOf(archiveFile(covers, ID)!);
    assert.deepEqual(entries.map((entry) => [...entry.keys()][0]), ['covers/h/ok.jpg', 'README.txt']);
    for (const entry of entries) assert.ok(![...entry.values()][0]!.toString().includes('root:x'), 'nothing from outside the folder');
  });

  it('packs each ok cover once under covers/, lists every URL in README.txt, and lists a file gone or outside the folder as file_missing', async (t) => {
    const covers = await tempDir(t);
    await mkdir(path.join(covers, 'h'), { recursive: true });
    await writeFile(path.join(covers, 'h', 'a.jpg'), 'AAAA');
    await writeFile(path.join(covers, 'h', 'b.png'), 'BB');
    await writeFile(path.join(covers, 'secret'), 'no');
    const out = await packArchive(covers, { id: ID, name: 'name\nwith a newline' }, [
      { url: 'https://x/a.jpg', path: 'h/a.jpg' },
      { url: 'https://x/b.png', path: 'h/b.png' },
      { url: 'https://x/404', error: { code: 'http_status', message: 'HTTP 404' } },
      { url: 'https://x/a.jpg', path: 'h/a.jpg' },
      { url: 'https://x/gone.jpg', path: 'h/gone.jpg' },
      { url: 'https://x/evil', path: '../secret' },
      { url: 'https://x/tab\there', error: { code: 'skipped', message: 'not\ta cover' } },
    ]);
    assert.equal(out.missing, 2);
    const file = archiveFile(covers, ID)!;
    const entries = await entriesOf(file);
    assert.deepEqual(entries.map((entry) => [...entry.keys()][0]), ['covers/h/a.jpg', 'covers/h/b.png', 'README.txt']);
    assert.equal(entries[0]!.get('covers/h/a.jpg')!.toString(), 'AAAA');
    const readme = entries[2]!.get('README.txt')!.toString();
    assert.match(readme, /^coverhelper archive job 3f2b8c1e-0a4d-4e5f-9b6c-7d8e9f0a1b2c \(name with a newline\)\n/);
    assert.deepEqual(readme.split('\n').filter((line) => line.startsWith('https://')), [
      'https://x/a.jpg\tcovers/h/a.jpg',
      'https://x/b.png\tcovers/h/b.png',
      'https://x/404\terror http_status: HTTP 404',
      'https://x/a.jpg\tcovers/h/a.jpg',
      'https://x/gone.jpg\terror file_missing: the cover file h/gone.jpg was removed before it was packed',
      'https://x/evil\terror file_missing: the cover file ../secret was removed before it was packed',
      'https://x/tab here\terror skipped: not a cover',
    ]);
    const opened = await openArchive(covers, ID);
    assert.equal(opened?.size, out.bytes);
    await opened?.handle.close();
    assert.deepEqual(await readdir(path.join(covers, '.tmp')), [], 'no temp file left');
    await removeArchive(covers, ID);
    assert.equal(await openArchive(covers, ID), undefined);
  });

  it("README lines of ok covers carry the original's size and the colour when known", () => {
    const text = readme({ id: ID, name: '' }, [
      { url: 'https://x/a.jpg', path: 'h/a.jpg', width: 1146, height: 717, color: '#3366cc' },
      { url: 'https://x/old.jpg', path: 'h/old.jpg', width: 320, height: 200 },
      { url: 'https://x/bare.jpg', path: 'h/bare.jpg', color: '#000000' },
    ]);
    assert.deepEqual(text.split('\n').filter((line) => line.startsWith('https://')), [
      'https://x/a.jpg\tcovers/h/a.jpg\t1146x717\t#3366cc',
      'https://x/old.jpg\tcovers/h/old.jpg\t320x200',
      'https://x/bare.jpg\tcovers/h/bare.jpg',
    ]);
  });

  it('refuses what is not a job id, and leaves no temp file when aborted', async (t) => {
    const covers = await tempDir(t);
    assert.equal(archiveFile(covers, '../../etc/passwd'), undefined);
    assert.equal(await openArchive(covers, '../x'), undefined);
    await assert.rejects(packArchive(covers, { id: 'nope', name: '' }, []), /not a job id/);
    await mkdir(path.join(covers, 'h'), { recursive: true });
    await writeFile(path.join(covers, 'h', 'a.jpg'), 'A');
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(packArchive(covers, { id: ID, name: '' }, [{ url: 'u', path: 'h/a.jpg' }], controller.signal));
    assert.deepEqual(await readdir(path.join(covers, '.tmp')), []);
    assert.equal(await openArchive(covers, ID), undefined);
  });
});

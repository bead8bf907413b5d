import assert from 'node:assert/strict';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { CoverBytes } from '../src/servers/coverBytes.js';
import { tempDir } from './helpers/tempDir.js';

describe('CoverBytes (the proxy prefix\'s recent covers in memory)', () => {
  it('keeps covers up to its byte bound, least recently answered dropped first, and streams large ones', async (t) => {
    const dir = await tempDir(t);
    await mkdir(path.join(dir, 'h'));
    for (const name of ['a', 'b', 'c']) await writeFile(path.join(dir, 'h', `${name}.jpg`), Buffer.alloc(400, name));
    await writeFile(path.join(dir, 'h', 'large.png'), Buffer.alloc(2000));
    const recent = new CoverBytes(dir, 1000, 1000);

    const a = await recent.get('h/a.jpg');
    assert.ok(a !== undefined && a !== 'large');
    assert.equal(a.body.toString('latin1', 0, 3), 'aaa');
    assert.equal(a.contentType, 'image/jpeg');
    assert.match(a.etag, /^"190-[0-9a-f]+"$/);
    await recent.get('h/b.jpg');
    assert.equal(recent.size, 800);
    // `a` answered again: `b` is now the least recent, and goes when `c` comes.
    await recent.get('h/a.jpg');
    await recent.get('h/c.jpg');
    assert.equal(recent.size, 800, 'never more than the bound');
    await rm(path.join(dir, 'h', 'a.jpg'));
    await rm(path.join(dir, 'h', 'b.jpg'));
    assert.ok((await recent.get('h/a.jpg')) !== undefined, 'a is still held');
    assert.equal(await recent.get('h/b.jpg'), undefined, 'b was dropped, and its file is gone');
    assert.equal(await recent.get('h/large.png'), 'large', 'a file over the entry bound is streamed, not held');
    assert.equal(recent.size, 800);
  });

  it('reads a file once for concurrent misses, and follows no link', async (t) => {
    const dir = await tempDir(t);
    const outside = await tempDir(t);
    await writeFile(path.join(outside, 'secret.jpg'), 'secret');
    await mkdir(path.join(dir, 'h'));
    await writeFile(path.join(dir, 'h', 'x.jpg'), Buffer.alloc(10, 1));
    await symlink(path.join(outside, 'secret.jpg'), path.join(dir, 'h', 'link.jpg'));
    const recent = new CoverBytes(dir);
    const [one, two] = await Promise.all([recent.get('h/x.jpg'), recent.get('h/x.jpg')]);
    assert.ok(one !== undefined && one !== 'large');
    assert.equal(one, two, 'one read, one entry');
    assert.equal(await recent.get('h/link.jpg'), undefined);
    assert.equal(await recent.get('../x.jpg'), undefined);
  });
});

import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fetchCover } from '../src/downloads/fetchCover.js';
import { createHttpClient } from '../src/fetch/index.js';
import { writeCover } from '../src/store/index.js';
import { makeImage, startOrigin } from './helpers/origin.js';
import { waitUntil } from './helpers/db.js';
import { openTestStore } from './helpers/stores.js';
import { tempDir } from './helpers/tempDir.js';

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort();
}

describe('fetchCover and custom covers', () => {
  it('a custom cover uploaded while the download ran wins: the download is not recorded and its file is removed', async (t) => {
    const dir = await tempDir(t);
    const coversDir = path.join(dir, 'covers');
    const { store } = await openTestStore(t, 'sqlite');
    const origin = await startOrigin();
    t.after(() => origin.close());
    const client = createHttpClient({ allowPrivateNetwork: true, userAgent: 'coverhelper-test/0.0.0' });
    t.after(() => client.close());
    const covers = store.covers;
    const deps = { config: { allowHosts: ['127.0.0.1'], bilibiliApi: origin.url, maxBytes: 10_000_000, resize: null, originalMax: 1920, coversDir }, covers, client };

    const url = `${origin.url}/half/raced.jpg`;
    const download = fetchCover(url, deps, new AbortController().signal);
    await waitUntil(() => origin.hits.get('/half/raced.jpg') === 1, 'the download started');
    const image = await makeImage('the-upload', 'png', 32, 20);
    const custom = await writeCover(url, { data: image, contentType: 'image/png', ext: 'png', width: 32, height: 20 }, { coversDir, source: 'custom', now: 1 });
    await covers.save(custom);
    origin.release();

    const output = await download;
    assert.equal(output.source, 'custom');
    assert.equal(output.cover.path, custom.path);
    assert.deepEqual(await covers.find(url), custom, 'the custom row stays');
    assert.deepEqual(await listFiles(coversDir), [custom.path], "the download's file was removed");

    // With no upload in the way, the download is recorded.
    const plain = await fetchCover(`${origin.url}/img/plain.jpg`, deps, new AbortController().signal);
    assert.equal(plain.source, 'download');
    assert.equal((await covers.find(`${origin.url}/img/plain.jpg`))?.path, plain.cover.path);
    // And asked again, it is answered as stored, without a request.
    assert.equal((await fetchCover(`${origin.url}/img/plain.jpg`, deps, new AbortController().signal)).source, 'cache');
    assert.equal(origin.hits.get('/img/plain.jpg'), 1);
  });
});

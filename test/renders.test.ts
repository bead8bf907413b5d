import assert from 'node:assert/strict';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import sharp from 'sharp';
import { TestClock } from '../src/clock.js';
import { CoverError } from '../src/errors.js';
import { decodeBudget } from '../src/images/index.js';
import { CoverGoneError, Renders, RendersBusyError, TooManyVariantsError } from '../src/images/renders.js';
import type { RendersDeps } from '../src/images/renders.js';
import type { VariantSpec } from '../src/images/variants.js';
import { originalPathOf, removeCoverFiles, writeCoverFile } from '../src/store/index.js';
import { variantPathOf } from '../src/images/variants.js';
import { coverRow } from './helpers/coverRow.js';
import { waitUntil } from './helpers/db.js';
import { makeImage } from './helpers/origin.js';
import { openTestStore } from './helpers/stores.js';
import { tempDir } from './helpers/tempDir.js';

const COVER = 'example.com/abc-0123456789ab-ba9876543210.jpg';
const webp320: VariantSpec = { width: 320, height: 200, fit: 'cover', format: 'webp' };

/** A stored cover (its 320×200 file and its 1146×717 original) with its row, and a Renders on them. */
async function setup(t: TestContext, options: Partial<RendersDeps> = {}, coverPath = COVER) {
  const coversDir = await tempDir(t);
  const { store } = await openTestStore(t, 'sqlite');
  const original = await makeImage(`orig-${coverPath}`, 'jpeg', 1146, 717);
  await writeCoverFile(coversDir, coverPath, await makeImage('cover', 'jpeg', 320, 200));
  await writeCoverFile(coversDir, originalPathOf(coverPath), original);
  await store.covers.save(coverRow(`https://i0.hdslb.com/${coverPath}`, { path: coverPath, width: 320, height: 200, originalPath: originalPathOf(coverPath), originalWidth: 1146, originalHeight: 717, originalBytes: original.length }));
  const renders = new Renders({ coversDir, covers: store.covers, workers: 2, ...options });
  t.after(() => renders.close());
  return { coversDir, store, renders };
}

/** Holds the whole decode budget: renders started meanwhile wait in it (they count as running). */
async function holdDecodes(t: TestContext): Promise<() => void> {
  const release = await decodeBudget.acquire(decodeBudget.capacity);
  t.after(release);
  return release;
}

async function decoded(file: string) {
  const meta = await sharp(await readFile(file)).metadata();
  return [meta.width, meta.height, meta.format === 'heif' ? 'avif' : meta.format];
}

describe('Renders', () => {
  it('200 concurrent asks for one missing variant make one render; all get its file', async (t) => {
    const { coversDir, renders, store } = await setup(t);
    const answers = await Promise.all(Array.from({ length: 200 }, () => renders.variant(COVER, webp320)));
    const counts = renders.counts();
    assert.equal(counts.started, 1, 'one render');
    assert.equal(counts.rendered, 1);
    assert.equal(counts.joined, 199);
    for (const answer of answers) assert.deepEqual(answer, answers[0]);
    // Just made: its bytes at hand, the same as the file's.
    const { made: fresh, ...file } = answers[0]!;
    assert.deepEqual(file, { path: variantPathOf(COVER, webp320), contentType: 'image/webp', bytes: answers[0]!.bytes, width: 320, height: 200 });
    assert.deepEqual(fresh?.data, await readFile(path.join(coversDir, file.path)));
    assert.deepEqual(await decoded(path.join(coversDir, file.path)), [320, 200, 'webp']);
    // Asked again: from disk, no render.
    assert.deepEqual(await renders.variant(COVER, webp320), file, 'from disk: the same, without bytes at hand');
    assert.equal(renders.counts().started, 1);
    assert.equal(renders.counts().onDisk, 1);
    assert.equal(await renders.wouldStart(COVER, webp320), false);
    assert.equal(await renders.wouldStart(COVER, { ...webp320, format: 'avif' }), true);
    // Its bytes are on the cover's row, counted with the cover.
    const avif = await renders.variant(COVER, { ...webp320, format: 'avif' });
    assert.deepEqual(await decoded(path.join(coversDir, avif.path)), [320, 200, 'avif']);
    const row = (await store.covers.leastRecentlyAsked(10, 0))[0]!;
    assert.equal(row.variantBytes, file.bytes + avif.bytes);
  });

  it('runs at most --render-workers renders at once; the rest wait in order', async (t) => {
    const { coversDir, renders } = await setup(t, { workers: 2 });
    const release = await holdDecodes(t);
    const widths = [160, 240, 320, 480, 640, 960];
    const asks = widths.map((width) => renders.variant(COVER, { width, fit: 'inside', format: 'jpeg' }));
    await waitUntil(() => renders.counts().waiting === 6, 'all asked');
    assert.deepEqual([renders.counts().running, renders.counts().queued, renders.counts().waiting], [2, 4, 6]);
    release();
    const answers = await Promise.all(asks);
    for (const [i, answer] of answers.entries()) {
      const height = Math.round((717 * widths[i]!) / 1146);
      assert.deepEqual(await decoded(path.join(coversDir, answer.path)), [widths[i], height, 'jpeg']);
    }
    assert.deepEqual([renders.counts().started, renders.counts().running, renders.counts().queued], [6, 0, 0]);
  });

  it('an asker that aborts leaves; a render nobody waits for any more is dropped before it starts', async (t) => {
    const { coversDir, renders } = await setup(t, { workers: 1 });
    const release = await holdDecodes(t);
    // One at a time: each ask looks at the disk first, so their order is set here.
    const first = renders.variant(COVER, webp320);
    await waitUntil(() => renders.counts().running === 1, 'running 1');
    const controller = new AbortController();
    const second = renders.variant(COVER, { ...webp320, format: 'png' }, controller.signal);
    await waitUntil(() => renders.counts().queued === 1, 'queued 1');
    const stays = renders.variant(COVER, { ...webp320, format: 'jpeg' });
    await waitUntil(() => renders.counts().queued === 2, 'queued 2');
    const leaves = new AbortController();
    const third = renders.variant(COVER, { ...webp320, format: 'jpeg' }, leaves.signal);
    await waitUntil(() => renders.counts().waiting === 4, 'waiting 4');
    const left = [assert.rejects(second, /the page was closed/), assert.rejects(third, /gone too/)];
    controller.abort(new CoverError('cancelled', 'the page was closed'));
    leaves.abort(new CoverError('cancelled', 'gone too'));
    await Promise.all(left);
    assert.equal(renders.counts().dropped, 1, 'the png render nobody waits for is dropped');
    assert.equal(renders.counts().queued, 1, 'the jpeg render still has an asker');
    release();
    await first;
    await stays;
    assert.deepEqual([renders.counts().started, renders.counts().rendered], [2, 2]);
    const files = await readdir(path.join(coversDir, `${COVER}.variants`));
    assert.deepEqual(files.sort(), ['w320-h200-cover-jpeg.jpg', 'w320-h200-cover-webp.webp']);
  });

  it('refuses past the bound on waiting renders, with a clear error', async (t) => {
    const { renders } = await setup(t, { workers: 1, maxQueued: 2 });
    const release = await holdDecodes(t);
    const asks = [160, 240, 320].map((width) => renders.variant(COVER, { width, fit: 'inside', format: 'jpeg' }));
    await waitUntil(() => renders.counts().queued === 2, 'queued 2');
    await assert.rejects(renders.variant(COVER, { width: 480, fit: 'inside', format: 'jpeg' }), (error: unknown) => {
      assert.ok(error instanceof RendersBusyError);
      assert.match(error.message, /^2 renders are waiting for a worker already \(at most 2\); ask again shortly$/);
      return true;
    });
    // Joining a render in flight is not a new render: still answered.
    const joined = renders.variant(COVER, { width: 320, fit: 'inside', format: 'jpeg' });
    assert.equal(renders.counts().refused, 1);
    release();
    await Promise.all([...asks, joined]);
  });

  it('refuses a new variant past the bound per cover, and still serves those made', async (t) => {
    const { renders } = await setup(t, { maxPerCover: 2 });
    const made = await renders.variant(COVER, webp320);
    await renders.variant(COVER, { ...webp320, format: 'png' });
    await assert.rejects(renders.variant(COVER, { ...webp320, format: 'jpeg' }), (error: unknown) => {
      assert.ok(error instanceof TooManyVariantsError);
      assert.match(error.message, /^this cover has 2 variants already \(at most 2\)/);
      return true;
    });
    const { made: _fresh, ...file } = made;
    assert.deepEqual(await renders.variant(COVER, webp320), file);
  });

  it('on a covers folder other nodes share, the bound counts what they added during a burst', async (t) => {
    for (const shared of [true, false]) {
      const { coversDir, renders } = await setup(t, { maxPerCover: 3, workers: 1, shared }, `example.com/${shared ? 's' : 'n'}-0123456789ab-ba9876543210.jpg`);
      const cover = `example.com/${shared ? 's' : 'n'}-0123456789ab-ba9876543210.jpg`;
      const release = await holdDecodes(t);
      // One burst: the first renders (held in its decode), the second waits for the one worker.
      // The second is asked once the first runs: asked together, each looks on disk first, and on a
      // loaded machine the second's look can end first and take the worker (CI saw it once).
      const first = renders.variant(cover, webp320);
      await waitUntil(() => renders.counts().running === 1, 'the first running');
      // Past its count of the folder, waiting at the decode: its listing must not see the writes below.
      await waitUntil(() => decodeBudget.waiting === 1, 'the first held at its decode');
      // Its outcome is read at the end; taken now, so a refusal that comes before `first` settles is never unhandled.
      const second = renders.variant(cover, { ...webp320, format: 'png' }).then(
        () => undefined,
        (error: unknown) => error,
      );
      // The second in the burst before anything else happens (it looks on disk first: on a loaded machine that can outlast the writes below).
      await waitUntil(() => renders.counts().queued === 1, 'the second queued');
      // Meanwhile another node publishes three variants of this cover into the shared folder.
      for (const q of [50, 60, 70]) await writeCoverFile(coversDir, variantPathOf(cover, { ...webp320, quality: q }), Buffer.alloc(10));
      release();
      await first;
      const refused = await second;
      if (shared) assert.ok(refused instanceof TooManyVariantsError && /has 4 variants already \(at most 3\)/.test(refused.message), String(refused));
      else assert.equal(refused, undefined, 'a folder only this node writes: the burst\'s own count (1) stands');
    }
  });

  it('renders of one cover finishing together count every variant\'s bytes on its row', async (t) => {
    const { renders, store } = await setup(t, { workers: 2 });
    const specs: VariantSpec[] = [160, 240, 320, 480].flatMap((width) => (['webp', 'jpeg'] as const).map((format) => ({ width, fit: 'inside' as const, format })));
    const made = await Promise.all(specs.map((spec) => renders.variant(COVER, spec)));
    assert.equal(renders.counts().rendered, specs.length);
    const row = (await store.covers.leastRecentlyAsked(10, 0))[0]!;
    assert.equal(row.variantBytes, made.reduce((sum, variant) => sum + variant.bytes, 0), 'the sum of all, not the last one written');
  });

  it('the last render of a cover\'s burst ending without a file: the bytes of those made are still recorded', async (t) => {
    const { coversDir, renders, store } = await setup(t, { workers: 1 });
    // The png variant's place is taken by a folder: its render fails at the rename.
    const png: VariantSpec = { ...webp320, format: 'png' };
    await mkdir(path.join(coversDir, variantPathOf(COVER, png)), { recursive: true });
    const release = await holdDecodes(t);
    const made = renders.variant(COVER, webp320);
    await waitUntil(() => renders.counts().running === 1, 'running 1');
    const fails = assert.rejects(renders.variant(COVER, png));
    await waitUntil(() => renders.counts().queued === 1, 'queued 1');
    release();
    // The webp render finishes first, with the png one still in flight: it answers without recounting.
    const file = await made;
    await fails;
    const row = await waitUntil(async () => (await store.covers.leastRecentlyAsked(10, 0)).find((r) => (r.variantBytes ?? 0) > 0), 'the bytes recorded');
    assert.equal(row.variantBytes, file.bytes, 'recounted once the burst ended, by its failed last render');
    assert.equal(renders.counts().failed, 1);
  });

  it('an original rewritten at the same path while its variant renders: the variant is not kept (it would be stale)', async (t) => {
    const { coversDir, renders } = await setup(t, { workers: 1 });
    const release = await holdDecodes(t);
    const asked = renders.variant(COVER, webp320);
    await waitUntil(() => renders.counts().running === 1, 'running 1');
    // An upload whose default variant encodes the same keeps the path and rewrites the original.
    await writeCoverFile(coversDir, originalPathOf(COVER), await makeImage('another original', 'jpeg', 1000, 700));
    release();
    await assert.rejects(asked, CoverGoneError);
    assert.deepEqual(await readdir(path.join(coversDir, 'example.com')).then((names) => names.filter((n) => n.endsWith('.variants'))), [], 'no variant made from the old original');
  });

  it('a cover removed while its variant renders leaves no variant behind', async (t) => {
    const { coversDir, renders, store } = await setup(t, { workers: 1 });
    const release = await holdDecodes(t);
    const asked = renders.variant(COVER, webp320);
    await waitUntil(() => renders.counts().running === 1, 'running 1');
    await removeCoverFiles(coversDir, COVER);
    release();
    await assert.rejects(asked, (error: unknown) => error instanceof CoverGoneError && /no cover is stored at/.test(error.message));
    assert.deepEqual(await readdir(path.join(coversDir, 'example.com')), [], 'no variant, no folder, nothing left');
    assert.equal((await store.covers.leastRecentlyAsked(10, 0))[0]?.variantBytes, 0);
    // A path that is no cover's is refused the same way.
    await assert.rejects(renders.variant('example.com/none.jpg', webp320), CoverGoneError);
  });

  it('a render past its time limit ends as tle and publishes nothing', async (t) => {
    const clock = new TestClock();
    const { coversDir, renders } = await setup(t, { workers: 1, clock, timeLimitMs: 5000 });
    const release = await holdDecodes(t);
    const asked = renders.variant(COVER, webp320);
    await waitUntil(() => renders.counts().running === 1, 'running 1');
    const ended = assert.rejects(asked, (error: unknown) => error instanceof CoverError && error.code === 'tle');
    await clock.advance(5000);
    await ended;
    release();
    assert.equal(renders.counts().failed, 1);
    // The decode it was waiting for never happens; nothing is published.
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(await readdir(path.join(coversDir, 'example.com')).then((names) => names.filter((n) => n.endsWith('.variants'))), []);
  });

  it('after close, asks are refused and renders in flight end as shutting_down', async (t) => {
    const { renders } = await setup(t, { workers: 1 });
    const release = await holdDecodes(t);
    const asked = renders.variant(COVER, webp320);
    await waitUntil(() => renders.counts().running === 1, 'running 1');
    const ended = assert.rejects(asked, (error: unknown) => error instanceof CoverError && error.code === 'shutting_down');
    const closed = renders.close();
    await ended;
    await assert.rejects(renders.variant(COVER, webp320), (error: unknown) => error instanceof CoverError && error.code === 'shutting_down');
    release();
    await closed;
  });
});

/**
 * The variants scenario's same-work script: the service's render work with no
 * service around it, in a process of its own so that its CPU is read from
 * /proc/<pid>/stat exactly as the service's is.
 *
 *   node --import tsx bench/lib/variantScript.ts LIST OUT CONCURRENCY
 *
 * LIST has one render a line: `ORIGINAL<TAB>COVER<TAB>W<TAB>F`, the original's
 * absolute file, the cover's stored path, and the request's `w` and `f`.
 * CONCURRENCY at a time, each line is done as the service does it: the spec
 * from the render core's own `specFromRequest` (default widths and formats,
 * rounded), the original read, rendered by the render core's own
 * `renderVariant` (src/images/variants.ts: the shared decode budget and
 * encoder), and written by the service's own `writeCoverFile` (temp file, then
 * rename) at the service's own `variantPathOf` under OUT. Imported, not copied,
 * so it cannot drift from the service. What the service does besides (the HTTP
 * request and its answer, the cover lookup, one actor per render, the bounded
 * pool, the cache's byte count) is not done here.
 *
 * Talks to its parent over stdio so that start-up is not timed: prints `ready`
 * once loaded, starts on the first line of stdin, prints `done OK` (or
 * `failed MESSAGE` and exits 1), and exits when stdin closes, so the parent
 * can read its CPU after the work and before the exit.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { DEFAULT_FORMATS, DEFAULT_WIDTHS, renderVariant, specFromRequest, variantPathOf } from '../../src/images/variants.js';
import { writeCoverFile } from '../../src/store/coverFiles.js';
import { inTurns, serveScript } from './imageCache.js';
import { PHOTO_HEIGHT, PHOTO_WIDTH } from './photoImages.js';

const [listFile, out, concurrencyArg] = process.argv.slice(2);
const concurrency = Number(concurrencyArg);
if (!listFile || !out || !(Number.isInteger(concurrency) && concurrency >= 1)) {
  process.stderr.write('usage: variantScript.ts LIST OUT CONCURRENCY\n');
  process.exit(2);
}

interface Job {
  original: string;
  cover: string;
  w: string;
  f: string;
}

const jobs: Job[] = readFileSync(listFile, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((line) => {
    const [original, cover, w, f] = line.split('\t');
    if (!original || !cover || !w || !f) throw new Error(`variantScript: bad line ${JSON.stringify(line)}`);
    return { original, cover, w, f };
  });

async function one(job: Job): Promise<void> {
  // The service takes the original's size and format from its covers row; these are the bench's own originals.
  const spec = specFromRequest({ w: job.w, format: job.f }, { width: PHOTO_WIDTH, height: PHOTO_HEIGHT, format: 'jpeg' }, { widths: DEFAULT_WIDTHS, formats: DEFAULT_FORMATS, round: true });
  const image = await renderVariant(await readFile(job.original), spec);
  await writeCoverFile(out!, variantPathOf(job.cover, spec), image.data);
}

async function run(): Promise<number> {
  let ok = 0;
  await inTurns(jobs.length, concurrency, async (i) => {
    await one(jobs[i]!);
    ok++;
  });
  return ok;
}

serveScript(run);

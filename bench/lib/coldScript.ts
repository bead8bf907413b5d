/**
 * The cold scenario's hand-written downloaders, each run as a process of its
 * own so that its CPU is read from /proc/<pid>/stat exactly as the service's is.
 *
 *   node --import tsx bench/lib/coldScript.ts MODE LIST OUT RESIZE CONCURRENCY [WARMLIST]
 *
 * - `same`: the service's work with no service around it. CONCURRENCY at a
 *   time, each URL of LIST (one per line) is fetched with undici `request()`
 *   through a plain `Agent`, its body decoded (and, unless RESIZE is `off`,
 *   resized and re-encoded) by the service's own `processImage`
 *   (src/images/processImage.ts), and written by the service's own
 *   `writeCover` (src/store/coverRecord.ts: the original kept beside the cover
 *   when a resize made them two files, then the cover; each a temp file in
 *   `OUT/.tmp`, then a rename) under the paths the service would give them.
 *   Imported, not copied, so it cannot drift from the service. What the service does besides (the WebSocket, the supervisor and
 *   one XState actor per download, the task and cover rows in SQLite, logs,
 *   size limits and redirect checks) is not done here.
 * - `plain`: the reference line kept from the first version of this bench:
 *   fetch and `writeFile(OUT/<i>.jpg)`; no decode, no temp file.
 *
 * The service's undici Agent is built with its guarded connector; with
 * `--allow-private-network` (which the bench passes, the origin being on
 * 127.0.0.1) that connector is undici's own `buildConnector`, so the two agents
 * differ only in keep-alive timeouts.
 *
 * WARMLIST (optional, a file of other URLs) is done the same way before
 * `ready`: the warm-up, so that the timed run is of code V8 has already
 * compiled, as the service's is after its own warm-up (bench/lib/coldRuns.ts).
 *
 * Talks to its parent over stdio so that start-up is not timed: prints `ready`
 * once loaded (and warmed up), starts on the first line of stdin, prints `done OK` (or
 * `failed MESSAGE` and exits 1), and exits when stdin closes, so the parent
 * can read its CPU after the work and before the exit.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Agent, request } from 'undici';
import type { ResizeSpec } from '../../src/config.js';
import { processImage } from '../../src/images/processImage.js';
import { writeCover } from '../../src/store/coverRecord.js';
import { inTurns, serveScript } from './imageCache.js';

const [mode, listFile, out, resizeArg, concurrencyArg, warmFile] = process.argv.slice(2);
if ((mode !== 'same' && mode !== 'plain') || !listFile || !out || !resizeArg || !concurrencyArg) {
  process.stderr.write('usage: coldScript.ts same|plain LIST OUT off|WxH CONCURRENCY [WARMLIST]\n');
  process.exit(2);
}
const size = /^(\d{1,5})x(\d{1,5})$/.exec(resizeArg);
if (resizeArg !== 'off' && !size) {
  process.stderr.write(`coldScript: RESIZE must be off or WxH, got ${resizeArg}\n`);
  process.exit(2);
}
const resize: ResizeSpec | null = size ? { width: Number(size[1]), height: Number(size[2]) } : null;
const concurrency = Number(concurrencyArg);
const readList = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);
const urls = readList(listFile);
const warmUrls = warmFile ? readList(warmFile) : [];
const agent = new Agent({ connections: concurrency });

async function fetchBody(url: string): Promise<Buffer> {
  const { statusCode, body } = await request(url, { dispatcher: agent });
  const data = Buffer.from(await body.arrayBuffer());
  if (statusCode !== 200) throw new Error(`${url}: HTTP ${statusCode}`);
  return data;
}

async function same(url: string): Promise<void> {
  const image = await processImage(await fetchBody(url), resize);
  // The service's own writer: the original first (with a resize, a file of its own), then the cover.
  await writeCover(url, image, { coversDir: out!, source: 'download', now: Date.now() });
}

async function plain(url: string, index: number): Promise<void> {
  await writeFile(path.join(out!, `${index}.jpg`), await fetchBody(url));
}

/** Does every URL of `list`, CONCURRENCY at a time; the number done. `first` numbers the plain mode's files. */
async function runList(list: readonly string[], first = 0): Promise<number> {
  const one = mode === 'same' ? same : plain;
  let ok = 0;
  await inTurns(list.length, concurrency, async (i) => {
    await one(list[i]!, first + i);
    ok++;
  });
  return ok;
}

// The warm-up's files are numbered after the timed run's, so the two never share a name.
runList(warmUrls, urls.length).then(
  (warmed) => {
    if (warmed === warmUrls.length) serveScript(() => runList(urls), () => agent.close());
    else warmUpFailed(`${warmed} of ${warmUrls.length} done`);
  },
  (error: unknown) => warmUpFailed(error instanceof Error ? error.message : String(error)),
);

function warmUpFailed(why: string): void {
  process.stdout.write(`failed warm-up: ${why}\n`);
  process.exit(1);
}

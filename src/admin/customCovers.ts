/**
 * Custom covers uploaded by the administrator (`PUT /admin/api/covers?url=`).
 *
 * The body is streamed to a temp file in the covers folder, stopped as soon as
 * it passes `--max-bytes`, decoded and resized like a download, written under a
 * new content-dependent path with its original beside it, and only then
 * recorded (source `custom`). The file it replaces (and its original) is removed through a deletion record. A bad upload (not an
 * image, too big, cut off mid-body) leaves the row and the files as they were.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../config.js';
import { CoverError } from '../errors.js';
import { processImage } from '../images/index.js';
import { createFile, makeFolder, openFile, removePath, TEMP_DIR, writeCover } from '../store/index.js';
import type { CoverIndex, CoverRow, TaskLedger } from '../store/index.js';

export interface CustomCoverDeps {
  config: Pick<Config, 'coversDir' | 'maxBytes' | 'resize' | 'originalMax'>;
  covers: CoverIndex;
  tasks: TaskLedger;
  /** Called after the replaced file's deletion was recorded. */
  onReplaced: () => void;
}

/** Streams `body` into a temp file, failing with `too_large` past `maxBytes`. Returns the bytes. */
async function receive(body: IncomingMessage, coversDir: string, maxBytes: number): Promise<Buffer> {
  const declared = Number(body.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    throw new CoverError('too_large', `upload of ${declared} bytes is larger than --max-bytes ${maxBytes}`);
  }
  // Through the path guard, like every file under the covers folder.
  await makeFolder(coversDir, [TEMP_DIR]);
  const temp = [TEMP_DIR, `${randomBytes(12).toString('hex')}.upload`];
  let bytes = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      if (bytes > maxBytes) callback(new CoverError('too_large', `upload larger than --max-bytes ${maxBytes}`));
      else callback(null, chunk);
    },
  });
  // Open first, so the file exists before anything can fail and `finally` always finds it.
  const handle = await createFile(coversDir, temp, 0o644);
  try {
    await pipeline(body, limit, handle.createWriteStream());
    if (!body.complete) throw new Error('the upload was cut off before its end');
    const written = await openFile(coversDir, temp);
    if (written === undefined) throw new Error('the upload’s temp file is gone');
    try {
      return await written.handle.readFile();
    } finally {
      await written.handle.close();
    }
  } finally {
    await handle.close().catch(() => undefined);
    await removePath(coversDir, temp).catch(() => undefined);
  }
}

export async function storeCustomCover(url: string, body: IncomingMessage, deps: CustomCoverDeps, now: number): Promise<CoverRow> {
  const { config, covers, tasks } = deps;
  const data = await receive(body, config.coversDir, config.maxBytes);
  if (data.length === 0) throw new CoverError('not_image', 'the upload is empty');
  const image = await processImage(data, config.resize, undefined, config.originalMax);
  const row = await writeCover(url, image, { coversDir: config.coversDir, source: 'custom', now });
  const previous = await covers.find(url);
  if (previous && previous.path !== row.path) {
    await covers.replace(row, previous.path, 'replaced');
    deps.onReplaced();
  } else {
    await covers.save(row);
  }
  tasks.update(url, { status: 'ok', errorCode: null, errorMessage: null, bytesDone: row.bytes, bytesTotal: row.bytes, finishedAt: now });
  return row;
}

/**
 * Generated bench images kept on disk between runs: `count` files in `dir`,
 * each read if there, else made by `make(seed)` (seed 1, 2, …) and written
 * atomically, two at a time (the machine has two cores).
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';

/** Written under a temp name, then renamed: an interrupted run leaves no half image. */
export async function writeAtomically(file: string, data: Buffer | string): Promise<void> {
  const temp = `${file}.${process.pid}.part`;
  await writeFile(temp, data);
  await rename(temp, file);
}

/** The images, and how many had to be made in this call (the rest came from the cache). */
export async function cachedImages(dir: string, count: number, make: (seed: number) => Promise<Buffer>): Promise<{ images: Buffer[]; made: number }> {
  await mkdir(dir, { recursive: true });
  const images: Buffer[] = new Array<Buffer>(count);
  let made = 0;
  await inTurns(count, 2, async (i) => {
    const file = path.join(dir, `${String(i).padStart(5, '0')}.jpg`);
    try {
      images[i] = await readFile(file);
    } catch {
      const image = await make(i + 1);
      await writeAtomically(file, image);
      images[i] = image;
      made++;
    }
  });
  return { images, made };
}

/** Runs `work(0)` … `work(count - 1)`, `concurrency` at a time, each index once, in order of start. */
export async function inTurns(count: number, concurrency: number, work: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await work(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(count, 1)) }, worker));
}

/**
 * A same-work script's side of its protocol with the bench: it prints `ready`,
 * runs once at the first line on stdin, then prints `done <n>` (or `failed
 * <why>` and exits 1); stdin closing ends it, after `close`.
 */
export function serveScript(run: () => Promise<number>, close: () => Promise<unknown> = async () => undefined): void {
  const lines = createInterface({ input: process.stdin });
  let started = false;
  lines.on('line', () => {
    if (started) return;
    started = true;
    run().then(
      (ok) => process.stdout.write(`done ${ok}\n`),
      (error: unknown) => {
        process.stdout.write(`failed ${error instanceof Error ? error.message : String(error)}\n`);
        process.exit(1);
      },
    );
  });
  lines.on('close', () => void close().finally(() => process.exit(0)));
  process.stdout.write('ready\n');
}

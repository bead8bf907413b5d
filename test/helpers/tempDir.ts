import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/**
 * A fresh folder per test, removed afterwards. node:test runs `after` hooks in
 * the order they were added, so this removal comes before the stop of a service
 * started on the folder later, which may still be writing into it: the removal
 * is retried (fs.rm retries ENOTEMPTY and EBUSY), and a failure is reported
 * without throwing, so the hooks after it (stopping that service, closing
 * servers) still run and the test process can end.
 */
export async function tempDir(t: { after: (fn: () => Promise<void>) => void }, prefix = 'coverhelper-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.after(async () => {
    await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }).catch((error: unknown) => {
      process.stderr.write(`warning: could not remove ${dir}: ${String(error)}\n`);
    });
  });
  return dir;
}

/**
 * The package version and the User-Agent of every fetch.
 *
 * The version is read once from coverhelper's package.json: the first one named
 * `coverhelper` in the folders above this module, so it is found both when the
 * service runs from source (src/version.ts) and when it runs built
 * (dist/src/version.js, `npm run build`).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function packageVersion(): string {
  const start = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'coverhelper' && typeof pkg.version === 'string') return pkg.version;
    }
    if (path.dirname(dir) === dir) throw new Error(`no package.json of coverhelper in the folders above ${start}`);
  }
}

/** The package version, read once from package.json. */
export const version: string = packageVersion();

/** The User-Agent of every fetch: names coverhelper and its version, nothing else. */
export const userAgent = `coverhelper/${version}`;

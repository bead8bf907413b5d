/**
 * `npm run build [-- OUT_DIR]`: compiles src/, machines/ and ormconfig.ts to
 * JavaScript (ESM, with source maps) under OUT_DIR (default `dist/`) with
 * tsconfig.build.json, then copies the files the service reads at run time
 * beside their modules (every file under src/ that is not TypeScript, such as
 * the dashboard's files under src/admin/dashboard/), and builds the client
 * package (client/dist/), whose protocol module the service imports.
 * `node dist/src/main.js` then runs without tsx.
 *
 * OUT_DIR is emptied first. It must sit inside this package (or beside a copy of
 * its package.json and node_modules), so that the modules find their packages.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.resolve(process.argv[2] ?? path.join(root, 'dist'));
if (outDir === root || root.startsWith(outDir + path.sep)) throw new Error(`refusing to empty ${outDir}: it holds the sources`);

rmSync(outDir, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json'), '--outDir', outDir], { stdio: 'inherit' });
// The service imports the client package (a workspace, linked in node_modules) for the wire
// protocol: its JavaScript is client/dist/, built as `npm install` builds it, here when a
// source is newer than it (not rewritten under a process that is reading it).
const newest = (dir: string, ext: string) =>
  readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(ext))
    .reduce((most, entry) => Math.max(most, statSync(path.join(entry.parentPath, entry.name)).mtimeMs), 0);
const clientDist = path.join(root, 'client', 'dist');
if (!existsSync(clientDist) || newest(path.join(root, 'client', 'src'), '.ts') > newest(clientDist, '.js')) {
  execFileSync(process.execPath, [tsc, '-p', path.join(root, 'client', 'tsconfig.json')], { stdio: 'inherit' });
}

let assets = 0;
for (const entry of readdirSync(path.join(root, 'src'), { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || entry.name.endsWith('.ts')) continue;
  const from = path.join(entry.parentPath, entry.name);
  cpSync(from, path.join(outDir, path.relative(root, from)));
  assets++;
}
process.stdout.write(`built ${path.relative(process.cwd(), outDir) || '.'}/ (${assets} asset${assets === 1 ? '' : 's'} copied)\n`);

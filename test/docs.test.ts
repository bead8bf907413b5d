/**
 * The docs stand on their own: every relative link in README.md, CHANGELOG.md,
 * docs/ and client/ resolves to a file inside the repository, and none names a
 * document the repository does not have. The code's comments are held to the
 * same: no SPEC section numbers, and a file a comment names is a file we have.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function markdownFiles(): string[] {
  const files = ['README.md', 'CHANGELOG.md'];
  for (const dir of ['docs', 'client']) {
    if (!existsSync(path.join(root, dir))) continue;
    for (const name of readdirSync(path.join(root, dir), { recursive: true }) as string[]) {
      if (name.endsWith('.md') && !name.includes('node_modules')) files.push(path.join(dir, name));
    }
  }
  return files.filter((f) => existsSync(path.join(root, f)));
}

describe('the docs', () => {
  it('link only to files inside the repository', () => {
    const files = markdownFiles();
    assert.ok(files.includes('README.md') && files.some((f) => f.startsWith('docs/')));
    const broken: string[] = [];
    for (const file of files) {
      const text = readFileSync(path.join(root, file), 'utf8');
      for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = match[1]!;
        if (/^(https?:|mailto:|#)/.test(target)) continue;
        const resolved = path.resolve(path.dirname(path.join(root, file)), target.split('#')[0]!);
        if (!resolved.startsWith(root + path.sep) || !existsSync(resolved)) broken.push(`${file}: ${target}`);
      }
    }
    assert.deepEqual(broken, []);
  });

  it('name no document outside the repository', () => {
    const named: string[] = [];
    for (const file of markdownFiles()) {
      const text = readFileSync(path.join(root, file), 'utf8');
      // docs/DESIGN.md is ours (named with its folder); a bare DESIGN.md or any SPEC is not.
      for (const pattern of [/SPEC\.md/, /\bSPEC\b/, /\.\.\/shared/, /(?<![\w/])DESIGN\.md/]) {
        if (pattern.test(text)) named.push(`${file}: ${pattern.source}`);
      }
    }
    assert.deepEqual(named, []);
  });

  it('are held to the code: no SPEC in its comments, and every file a comment or a doc names exists', () => {
    const bad: string[] = [];
    // A path the code names: a known top folder, then a file with an extension we keep.
    const fileRef = /(?<![\w./-])((?:src|machines|test|bench|docs|client|deploy)\/[\w./-]*\.(?:ts|js|md|json|ya?ml|html|css|sh))\b/g;
    for (const file of [...sourceFiles(), ...markdownFiles()]) {
      const text = readFileSync(path.join(root, file), 'utf8');
      for (const pattern of [/\bSPEC\b/, /\.\.\/shared/]) {
        if (pattern.test(text)) bad.push(`${file}: ${pattern.source}`);
      }
      for (const match of text.matchAll(fileRef)) {
        const named = match[1]!.replace(/[.]+$/, '');
        if (named.includes('*') || named.includes('<')) continue;
        // A built file (`dist/…/x.js`) names its source `x.ts`; bench/results/ is written by the benchmarks.
        // From the root, or (a package's own README) from the file's folder.
        const exists = [root, path.join(root, path.dirname(file))].some((from) => existsSync(path.join(from, named)) || existsSync(path.join(from, named.replace(/\.js$/, '.ts'))));
        if (!exists && !named.startsWith('bench/results/')) bad.push(`${file}: names ${named}, which does not exist`);
      }
    }
    assert.deepEqual(bad, []);
  });
});


describe('the README map', () => {
  it('names every folder of src/ and every top folder', () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const map = readme.slice(readme.indexOf('    machines/'), readme.indexOf('    ormconfig.ts'));
    const folders = readdirSync(path.join(root, 'src'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => `${d.name}/`);
    for (const top of ['machines/', 'src/', 'test/', 'bench/', 'client/', 'docs/', 'deploy/']) folders.push(top);
    assert.deepEqual(folders.filter((f) => !new RegExp(`^\\s+${f.replace('/', '\\/')}`, 'm').test(map)), []);
  });
});

/** The code and its comments: every source file of the service, its client package, its tests and benchmarks. */
function sourceFiles(): string[] {
  const files = ['ormconfig.ts'];
  for (const dir of ['src', 'machines', 'test', 'bench', path.join('client', 'src')]) {
    if (!existsSync(path.join(root, dir))) continue;
    for (const name of readdirSync(path.join(root, dir), { recursive: true }) as string[]) {
      if (/\.(ts|js)$/.test(name) && !name.includes('node_modules')) files.push(path.join(dir, name));
    }
  }
  return files.filter((f) => f !== path.join('test', 'docs.test.ts') && existsSync(path.join(root, f)));
}

/**
 * The docs stand on their own: every relative link in README.md, CHANGELOG.md,
 * docs/ and client/ resolves to a file inside the repository, and none names a
 * document the repository does not have.
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
});

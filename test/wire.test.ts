/**
 * The wire contracts (src/wire/, and the `/ws` protocol in the client package)
 * are each declared once: the server modules that build a contract's frames or
 * answers import it, the dashboard and the tests that read them import it, and
 * nobody keeps a copy. The wire modules themselves stay types only, so the
 * dashboard's browser script can name them (tsconfig.dashboard.json has no
 * Node types): a change to a shape then breaks the compile where it is built
 * and where it is read.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');
const withoutComments = (text: string) => text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');

/** Each wire module, and the files that must import it: those that build what it declares, then those that read it. */
const CONTRACTS: Record<string, { builtBy: string[]; readBy: string[] }> = {
  'src/wire/adminStream.ts': {
    builtBy: ['src/admin/adminSocket.ts', 'src/admin/adminFeed.ts', 'src/admin/adminApi.ts', 'src/admin/taskHistory.ts', 'src/upstream/shown.ts'],
    readBy: ['src/admin/dashboard/dashboard.js', 'test/admin.test.ts', 'test/dashboard.test.ts', 'test/dashboardLayout.test.ts'],
  },
  'src/wire/jobs.ts': {
    builtBy: ['src/jobs/jobRunner.ts', 'src/jobs/callbacks.ts', 'src/admin/adminApi.ts'],
    readBy: ['src/admin/dashboard/dashboard.js', 'test/jobs.test.ts', 'test/callbackDeadline.test.ts', 'test/dashboard.test.ts'],
  },
  'src/wire/door.ts': {
    builtBy: ['src/http/respond.ts', 'src/servers/doorRoute.ts', 'src/servers/proxyRoute.ts'],
    readBy: ['test/door.test.ts', 'test/proxy.test.ts', 'test/proxyVariants.test.ts', 'test/jobs.test.ts'],
  },
};

/** Whether `file` imports `module` (a static import, or a JSDoc `import()` type in the dashboard). */
function imports(file: string, module: string): boolean {
  const target = module.replace(/\.ts$/, '.js');
  const specifiers = [...read(file).matchAll(/(?:from\s+|import\()\s*'([^']+)'/g)].map((m) => m[1]!);
  return specifiers.some((spec) => spec.startsWith('.') && path.join(path.dirname(file), spec) === target);
}

const wireModules = () => readdirSync(path.join(root, 'src/wire')).filter((name) => name.endsWith('.ts')).map((name) => `src/wire/${name}`);

/** The names a wire module exports (types, interfaces, constants). */
function exportedNames(file: string): string[] {
  return [...read(file).matchAll(/^export (?:type|interface|const) (\w+)/gm)].map((m) => m[1]!);
}

/** Every source and test file, with its path from the root. */
function sourceFiles(): string[] {
  const files: string[] = [];
  for (const dir of ['src', 'test', 'machines', 'client/src', 'bench']) {
    for (const name of readdirSync(path.join(root, dir), { recursive: true }) as string[]) {
      if (/\.(ts|js)$/.test(name)) files.push(path.join(dir, name));
    }
  }
  return files;
}

describe('the wire contracts', () => {
  it('every wire module is listed here, with who builds and who reads it', () => {
    assert.deepEqual(wireModules().sort(), Object.keys(CONTRACTS).sort());
  });

  for (const [module, { builtBy, readBy }] of Object.entries(CONTRACTS)) {
    it(`${module} is imported by the modules that build it and the code that reads it`, () => {
      const missing = [...builtBy, ...readBy].filter((file) => !imports(file, module));
      assert.deepEqual(missing, [], `these do not import ${module}`);
    });
  }

  it('wire modules are types only: type imports of each other or the /ws protocol, no functions or classes', () => {
    for (const file of wireModules()) {
      const code = withoutComments(read(file));
      for (const line of code.split('\n').filter((l) => /^\s*import\b/.test(l))) {
        assert.match(line, /^import type \{[^}]*\} from '(\.\/\w+\.js|@coverhelper\/client\/protocol)';$/, `${file}: ${line}`);
      }
      assert.doesNotMatch(code, /\b(function|class|new)\b|=>/, `${file} holds code`);
    }
  });

  it('no file declares a wire type again under its name (the machines\' status unions are held equal to the wire\'s)', () => {
    const names = new Set(wireModules().flatMap(exportedNames));
    // The machines import nothing from src/ (lint): their unions stay theirs, and the
    // modules that build the frames hold each equal to the wire's, both ways.
    const heldEqual: Record<string, { name: string; by: string }> = {
      'machines/types.ts': { name: 'TaskStatus', by: 'src/admin/adminApi.ts' },
      'machines/supervisorMachine.ts': { name: 'GateStatus', by: 'src/admin/adminFeed.ts' },
      'machines/jobMachine.ts': { name: 'JobStatus', by: 'src/jobs/jobRunner.ts' },
    };
    for (const { name, by } of Object.values(heldEqual)) assert.match(read(by), new RegExp(`Same<${name}, Wire${name}> = true`), `${by} holds ${name} equal to the wire's`);
    const again: string[] = [];
    for (const file of sourceFiles()) {
      if (file.startsWith('src/wire/')) continue;
      for (const m of read(file).matchAll(/^\s*(?:export )?(?:interface|type) (\w+)\b/gm)) {
        if (names.has(m[1]!) && heldEqual[file]?.name !== m[1]) again.push(`${file}: ${m[0].trim()}`);
      }
    }
    assert.deepEqual(again, []);
  });

  it("the dashboard's @typedefs are the wire's types, or built from them; only what the page measures itself is its own", () => {
    const text = read('src/admin/dashboard/dashboard.js');
    const own = new Set(['Progress']);
    const typedefs = [...text.matchAll(/@typedef\s+\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}\s+(\w+)/g)].map((m) => ({ type: m[1]!.trim(), name: m[2]! }));
    assert.ok(typedefs.length >= 10, `found ${typedefs.length} typedefs`);
    const fromWire = new Set(typedefs.filter((t) => t.type.startsWith("import('../../wire/")).map((t) => t.name));
    assert.ok(['TaskJson', 'TaskEvent', 'JobJson', 'NodeInfo', 'Unchecked'].every((name) => fromWire.has(name)), [...fromWire].join(', '));
    const stray = typedefs.filter(
      (t) => !fromWire.has(t.name) && !own.has(t.name) && !(/^(Pick|Omit)</.test(t.type) && [...fromWire].some((name) => t.type.includes(name))) && !t.type.includes("import('../../wire/"),
    );
    assert.deepEqual(stray.map((t) => `${t.name}: ${t.type}`), [], 'a shape of its own for what the service sends');
    assert.doesNotMatch(text, /@typedef\s+\{object\}\s+(?!Progress\b)\w+/, 'an object typedef other than Progress');
  });
});

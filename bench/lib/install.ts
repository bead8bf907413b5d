/**
 * Peers come from Debian's packages. `ensureTool` finds a binary, or installs
 * its package with apt-get when running as root on a machine that has apt-get,
 * or else says why that peer is skipped.
 *
 * Installing nginx on a Debian with an init system would start a system nginx
 * on port 80. A benchmark must not leave that behind, so while apt-get runs a
 * `policy-rc.d` that refuses service starts is in place (Debian's own
 * mechanism; Docker images ship one). One that exists already is left alone.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { step } from './report.js';

export type ToolLookup = { path: string } | { skip: string };

function which(binary: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin', '/sbin']) {
    if (dir && existsSync(`${dir}/${binary}`)) return `${dir}/${binary}`;
  }
  return undefined;
}

let updated = false;
const POLICY = '/usr/sbin/policy-rc.d';

function aptInstall(pkg: string): { ok: boolean; output: string } {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const ownPolicy = !existsSync(POLICY);
  if (ownPolicy) writeFileSync(POLICY, '#!/bin/sh\n# written by coverhelper bench/lib/install.ts for one apt-get run\nexit 101\n', { mode: 0o755 });
  try {
    const install = () => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], { env, encoding: 'utf8', timeout: 300_000 });
    let run = install();
    if (run.status !== 0 && !updated) {
      // A fresh machine has no package lists yet.
      updated = true;
      spawnSync('apt-get', ['update'], { env, encoding: 'utf8', timeout: 300_000 });
      run = install();
    }
    return { ok: run.status === 0, output: `${run.stdout}${run.stderr}`.trim().split('\n').slice(-3).join(' | ') };
  } finally {
    if (ownPolicy) rmSync(POLICY, { force: true });
  }
}

/** The path of `binary`, installing Debian package `pkg` if needed and possible. */
export function ensureTool(binary: string, pkg: string): ToolLookup {
  const found = which(binary);
  if (found) return { path: found };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return { skip: `${binary} is not installed and this is not root: run \`apt-get install ${pkg}\` to include it` };
  }
  if (!which('apt-get')) return { skip: `${binary} is not installed and there is no apt-get here (Debian package \`${pkg}\`)` };
  step(`installing ${pkg} from Debian's packages (apt-get install -y ${pkg})`);
  const result = aptInstall(pkg);
  const installed = which(binary);
  if (installed) return { path: installed };
  return { skip: `apt-get install ${pkg} did not give ${binary}: ${result.output}` };
}

/** The first line of `binary --version` (or another flag), for the report. */
export function toolVersion(path: string, flag = '--version'): string {
  const run = spawnSync(path, [flag], { encoding: 'utf8', timeout: 10_000 });
  return `${run.stdout ?? ''}${run.stderr ?? ''}`.split('\n')[0]?.trim() || 'unknown';
}

/**
 * Every scenario, one after the other, each in its own process (so one's
 * memory and sockets never weigh on the next), then one summary of the goals.
 *
 *   npm run bench            (node --import tsx bench/all.ts)
 *   BENCH_ONLY=herd,cold npm run bench     some of them
 *   BENCH_SCALE=0.1 npm run bench          a quick smoke run at a tenth of the sizes
 *   BENCH_PROFILE=1 npm run bench:cold     CPU profiles of the service in bench/profiles/
 *
 * `cluster` needs a PostgreSQL server (COVERHELPER_BENCH_PG or COVERHELPER_TEST_PG);
 * without one its rows are SKIP, not a failure.
 *
 * Writes bench/results/<scenario>.json (each scenario) and bench/results/summary.md.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { benchRoot } from './lib/paths.js';
import { log, machineInfo, step } from './lib/report.js';
import type { SavedReport } from './lib/report.js';
import { scale } from './lib/scale.js';

const scenarios = ['hotPath', 'herd', 'cold', 'memory', 'startRestore', 'cluster', 'legacy', 'client', 'door', 'jobs', 'proxy', 'variants'];
const only = (process.env.BENCH_ONLY ?? '').split(',').filter(Boolean);
const chosen = only.length > 0 ? scenarios.filter((name) => only.includes(name)) : scenarios;

function run(name: string): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(benchRoot, `${name}.ts`)], { stdio: 'inherit' });
    child.once('exit', (code) => resolve(code));
  });
}

const started = Date.now();
const outcomes: { name: string; code: number | null; report?: SavedReport }[] = [];
for (const name of chosen) {
  step(`--- ${name} ---`);
  const code = await run(name);
  let report: SavedReport | undefined;
  try {
    const saved = JSON.parse(readFileSync(path.join(benchRoot, 'results', `${name}.json`), 'utf8')) as SavedReport;
    if (Date.parse(saved.machine.date) >= started) report = saved;
  } catch {
    // no result file: the scenario failed before its report
  }
  outcomes.push({ name, code, ...(report ? { report } : {}) });
}

const machine = machineInfo();
const lines: string[] = [
  `# coverhelper benchmarks — ${machine.date.slice(0, 10)}`,
  '',
  `Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memory} memory, Node ${machine.node}, ${machine.kernel}. Scale ${scale()}. Total ${Math.round((Date.now() - started) / 1000)} s.`,
  '',
];
log('');
log('== Summary ==');
let missed = 0;
let failed = 0;
for (const { name, code, report } of outcomes) {
  if (!report || code !== 0) {
    failed++;
    log(`  ${name}: FAILED (exit ${code})`);
    lines.push(`## ${name}`, '', `FAILED (exit ${code})`, '');
    continue;
  }
  lines.push(`## ${report.title}`, '', `\`${report.command}\` — ${report.seconds} s`, '', '| figure | value | goal | | note |', '|---|---:|---|---|---|');
  for (const row of report.rows) {
    lines.push(`| ${row.name} | ${row.value} | ${row.goal} | ${row.verdict} | ${row.note.replaceAll('|', '\\|')} |`);
    const why = row.verdict === 'SKIP' ? ` (${row.note})` : '';
    if (row.verdict) log(`  ${name.padEnd(13)} ${row.verdict.padEnd(4)}  ${row.name}: ${row.value}${row.goal ? ` (goal ${row.goal})` : ''}${why}`);
    if (row.verdict === 'MISS') missed++;
  }
  for (const note of report.notes) lines.push('', `Note: ${note}`);
  lines.push('');
}
writeFileSync(path.join(benchRoot, 'results', 'summary.md'), `${lines.join('\n')}\n`);
log(`  ${missed} goal(s) missed, ${failed} scenario(s) failed; ${Math.round((Date.now() - started) / 1000)} s in all`);
log(`  bench/results/summary.md written`);
process.exit(failed > 0 ? 1 : 0);

/**
 * What every scenario prints and saves: its figures, its goals with PASS/MISS,
 * its ratios against the baseline and the peers, and the machine it ran on.
 *
 * The printed table is for people; `bench/results/<scenario>.json` is for
 * `bench/all.ts` (the summary) and for writing docs/BENCHMARKS.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchRoot } from './paths.js';
import { scale } from './scale.js';

export type Verdict = 'PASS' | 'MISS' | 'SKIP' | '';

export interface Row {
  name: string;
  value: string;
  goal: string;
  verdict: Verdict;
  note: string;
}

export interface Machine {
  cores: number;
  cpu: string;
  memory: string;
  freeH: string;
  node: string;
  kernel: string;
  date: string;
}

export interface SavedReport {
  scenario: string;
  title: string;
  command: string;
  scale: number;
  machine: Machine;
  rows: Row[];
  notes: string[];
  seconds: number;
}

export function machineInfo(): Machine {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    const model = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (model?.[1]) cpu = model[1].trim();
  } catch {
    // not Linux: os.cpus() it is
  }
  let freeH = '';
  try {
    freeH = execFileSync('free', ['-h'], { encoding: 'utf8' }).trim();
  } catch {
    freeH = '';
  }
  return {
    cores: os.availableParallelism(),
    cpu,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    freeH,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    date: new Date().toISOString(),
  };
}

/** `1234567.8` → `1,234,568`; small numbers keep `digits` decimals. */
export function num(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return String(value);
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export const mb = (bytes: number) => `${num(bytes / 2 ** 20, 1)} MB`;
export const ms = (value: number, digits = 2) => `${num(value, digits)} ms`;
export const ratio = (value: number) => `${num(value, 2)}×`;

export class Report {
  readonly rows: Row[] = [];
  readonly notes: string[] = [];
  private readonly started = performance.now();

  constructor(
    readonly scenario: string,
    readonly title: string,
    readonly command: string,
  ) {}

  /** A figure with no goal of its own. */
  figure(name: string, value: string, note = ''): void {
    this.rows.push({ name, value, goal: '', verdict: '', note });
  }

  /** A figure with a goal: PASS when `pass`, else MISS. */
  goal(name: string, value: string, goal: string, pass: boolean, note = ''): void {
    this.rows.push({ name, value, goal, verdict: pass ? 'PASS' : 'MISS', note });
  }

  /** A goal or peer that could not be measured here, and why. */
  skip(name: string, why: string, goal = ''): void {
    this.rows.push({ name, value: '—', goal, verdict: 'SKIP', note: why });
  }

  note(text: string): void {
    this.notes.push(text);
    log(`  note: ${text}`);
  }

  print(): void {
    const head: Row = { name: 'figure', value: 'value', goal: 'goal', verdict: '', note: 'note' };
    const all = [head, ...this.rows];
    const width = (key: keyof Row) => Math.max(...all.map((row) => row[key].length));
    const w = { name: width('name'), value: width('value'), goal: width('goal') };
    const line = (row: Row, verdict: string) =>
      `  ${row.name.padEnd(w.name)}  ${row.value.padStart(w.value)}  ${row.goal.padEnd(w.goal)}  ${verdict.padEnd(4)}  ${row.note}`.trimEnd();
    log('');
    log(`== ${this.title} ==`);
    log(line(head, 'ok?'));
    log(`  ${'-'.repeat(w.name + w.value + w.goal + 12)}`);
    for (const row of this.rows) log(line(row, row.verdict));
    const verdicts = this.rows.filter((row) => row.verdict === 'PASS' || row.verdict === 'MISS');
    const missed = verdicts.filter((row) => row.verdict === 'MISS').length;
    log(`  ${verdicts.length - missed}/${verdicts.length} goals met${missed ? `, ${missed} MISS` : ''}`);
    for (const note of this.notes) log(`  note: ${note}`);
    log('');
  }

  /** Prints the table and writes bench/results/<scenario>.json. */
  finish(): SavedReport {
    this.print();
    const saved: SavedReport = {
      scenario: this.scenario,
      title: this.title,
      command: this.command,
      scale: scale(),
      machine: machineInfo(),
      rows: this.rows,
      notes: this.notes,
      seconds: Math.round((performance.now() - this.started) / 1000),
    };
    const dir = path.join(benchRoot, 'results');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `${this.scenario}.json`), `${JSON.stringify(saved, null, 2)}\n`);
    return saved;
  }
}

/** One line to stdout (the lint rules keep console.* out of the code). */
export function log(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** A progress line, prefixed with the seconds since the process started. */
export function step(text: string): void {
  log(`[${(process.uptime()).toFixed(1).padStart(6)} s] ${text}`);
}

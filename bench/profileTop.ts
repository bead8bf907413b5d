/**
 * The top of a V8 CPU profile, as docs/BENCHMARKS.md quotes it.
 *
 *   node --import tsx bench/profileTop.ts FILE.cpuprofile [--top N] [--window FROM-TO] [--long MS]
 *
 * - self time by function (top N, 25) and by package / project file;
 * - `--window 40-60`: only the samples from 40 s to 60 s after the profile
 *   started (the scenarios print their phases' offsets from the service start);
 * - `--clock 1634.5-1637.9`: the same, in the machine's monotonic clock
 *   (seconds, `process.hrtime()`, the clock V8 stamps profiles with): the cold
 *   scenario prints each timed run's window this way under BENCH_PROFILE=1;
 * - `--inclusive REGEX`: total (inclusive) time of the frames whose
 *   "function  file" label matches, e.g. `--inclusive 'src/|machines/'`;
 * - `--long 4`: the stretches of at least 4 ms in which the event loop never
 *   went idle (what holds a single check back), each with its heaviest frames.
 */
import { readFileSync } from 'node:fs';
import { log } from './lib/report.js';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

// Piped into `head`: a closed pipe ends the listing, not with a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--') && !/^\d/.test(a));
const option = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? undefined : args[i + 1];
};
if (!file) {
  process.stderr.write('usage: node --import tsx bench/profileTop.ts FILE.cpuprofile [--top N] [--window FROM-TO | --clock FROM-TO] [--inclusive REGEX] [--long MS]\n');
  process.exit(2);
}
const top = Number(option('top') ?? 25);
const longMs = option('long') === undefined ? undefined : Number(option('long'));

const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const clock = option('clock');
const [from, to] = (clock ?? option('window') ?? '0-1e9').split('-').map((s) => Number(s) * 1e6 - (clock ? profile.startTime : 0)) as [number, number];
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

const where = (url: string) => {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const own = /\/((?:src|machines|bench|test)\/.+)$/.exec(url);
  if (own) return own[1]!;
  if (url.startsWith('node:')) return url;
  return url === '' ? '(native/vm)' : url;
};
const label = (id: number) => {
  const { callFrame } = byId.get(id)!;
  return `${callFrame.functionName || '(anonymous)'}  ${where(callFrame.url)}${callFrame.url ? `:${callFrame.lineNumber + 1}` : ''}`;
};
const isIdle = (id: number) => byId.get(id)!.callFrame.functionName === '(idle)';

// Each sample with its time (µs since the profile start) and its duration.
const samples: { id: number; at: number; us: number }[] = [];
let at = 0;
for (let i = 0; i < profile.samples.length; i++) {
  at += profile.timeDeltas[i] ?? 0;
  const us = profile.timeDeltas[i + 1] ?? 0;
  if (at >= from && at <= to) samples.push({ id: profile.samples[i]!, at, us });
}
const total = samples.reduce((sum, s) => sum + s.us, 0);
const busy = samples.filter((s) => !isIdle(s.id)).reduce((sum, s) => sum + s.us, 0);

const fns = new Map<string, number>();
const places = new Map<string, number>();
for (const s of samples) {
  fns.set(label(s.id), (fns.get(label(s.id)) ?? 0) + s.us);
  const place = where(byId.get(s.id)!.callFrame.url);
  places.set(place, (places.get(place) ?? 0) + s.us);
}

const pct = (us: number) => `${((us / total) * 100).toFixed(1).padStart(5)} %`;
log(`${file}`);
log(`${(total / 1e6).toFixed(1)} s sampled${option('window') ? ` in the window ${option('window')} s` : ''}; busy (not idle) ${((busy / total) * 100).toFixed(1)} %`);
log('\nself time by function');
for (const [name, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, top)) log(`  ${pct(us)}  ${name}`);
log('\nself time by package / file');
for (const [name, us] of [...places].sort((a, b) => b[1] - a[1]).slice(0, top)) log(`  ${pct(us)}  ${name}`);

const inclusivePattern = option('inclusive');
if (inclusivePattern !== undefined) {
  const pattern = new RegExp(inclusivePattern);
  const inclusive = new Map<string, number>();
  for (const s of samples) {
    const seen = new Set<string>();
    for (let node: number | undefined = s.id; node !== undefined; node = parent.get(node)) {
      const name = label(node);
      if (seen.has(name) || !pattern.test(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + s.us);
    }
  }
  log(`\ninclusive time of frames matching /${inclusivePattern}/`);
  for (const [name, us] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, top)) log(`  ${pct(us)}  ${name}`);
}

if (longMs !== undefined) {
  // Stretches with no idle sample: one event-loop task (or several back to back).
  const runs: { start: number; us: number; ids: number[] }[] = [];
  let current: { start: number; us: number; ids: number[] } | undefined;
  for (const s of samples) {
    if (isIdle(s.id)) {
      if (current && current.us >= longMs * 1000) runs.push(current);
      current = undefined;
      continue;
    }
    current ??= { start: s.at, us: 0, ids: [] };
    current.us += s.us;
    current.ids.push(s.id);
  }
  if (current && current.us >= longMs * 1000) runs.push(current);
  log(`\n${runs.length} stretches of ≥ ${longMs} ms without idle (${(runs.reduce((sum, r) => sum + r.us, 0) / 1000).toFixed(0)} ms in all); what they spent their time in:`);
  // For each frame, the time of the stretches' samples that have it anywhere on their stack.
  const inclusive = new Map<string, number>();
  for (const run of runs) {
    for (const id of run.ids) {
      const seen = new Set<string>();
      for (let node: number | undefined = id; node !== undefined; node = parent.get(node)) {
        const name = label(node);
        if (!seen.has(name)) {
          seen.add(name);
          inclusive.set(name, (inclusive.get(name) ?? 0) + 1);
        }
      }
    }
  }
  const count = runs.reduce((sum, r) => sum + r.ids.length, 0);
  for (const [name, n] of [...inclusive].sort((a, b) => b[1] - a[1]).filter(([name]) => !/^\(root\)|^\(program\)/.test(name)).slice(0, top)) {
    log(`  ${((n / count) * 100).toFixed(1).padStart(5)} %  ${name}`);
  }
  log('\nthe longest ones:');
  for (const run of [...runs].sort((a, b) => b.us - a.us).slice(0, 8)) {
    const self = new Map<string, number>();
    for (const id of run.ids) self.set(label(id), (self.get(label(id)) ?? 0) + 1);
    const heaviest = [...self].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([name, n]) => `${name} (${n})`);
    log(`  at ${(run.start / 1e6).toFixed(2)} s, ${(run.us / 1000).toFixed(1)} ms: ${heaviest.join('; ')}`);
  }
}

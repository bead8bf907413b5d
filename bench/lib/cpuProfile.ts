/**
 * A preload that CPU-profiles the process it is loaded into, for
 * `BENCH_PROFILE=1`: Node 20 refuses `--cpu-prof` in NODE_OPTIONS, and the
 * service is started by test/helpers/service.ts with its own command line, so
 * the profiler is started from inside instead, through `node:inspector` (the
 * same V8 sampling profiler, 1 ms interval, the same `.cpuprofile` format).
 *
 *   NODE_OPTIONS="--import tsx --import file:///…/bench/lib/cpuProfile.ts"
 *   BENCH_CPU_PROFILE_DIR=/where
 *   BENCH_CPU_PROFILE_NAME=service     (the file name's start; `service` unless set)
 *
 * The profile is written when the process exits (the service exits through
 * `process.exit` after SIGTERM); a SIGKILLed process writes none.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';

const dir = process.env.BENCH_CPU_PROFILE_DIR ?? process.cwd();
const name = process.env.BENCH_CPU_PROFILE_NAME ?? 'service';
const session = new Session();
session.connect();
session.post('Profiler.enable');
session.post('Profiler.setSamplingInterval', { interval: 1000 });
session.post('Profiler.start');

process.on('exit', () => {
  // The same-thread session answers synchronously, so this runs to the end here.
  session.post('Profiler.stop', (error, result) => {
    if (error) return;
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
  });
});

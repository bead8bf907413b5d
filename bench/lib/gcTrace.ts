/**
 * A preload that records the process's garbage collections, for
 * `BENCH_GC_TRACE=1`: each collection's start (seconds since the process
 * started, the clock `bench/profileTop.ts --window` reads), its kind and how
 * long the thread was held, one line each, written to a file of its own when
 * the process exits. `--trace-gc` would write to standard output, which the
 * service's log owns.
 *
 *   NODE_OPTIONS="--import file:///…/bench/lib/gcTrace.ts"
 *   BENCH_GC_TRACE_DIR=/where
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { constants, PerformanceObserver, performance } from 'node:perf_hooks';

const dir = process.env.BENCH_GC_TRACE_DIR ?? process.cwd();
const kinds: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak callbacks',
};
const lines: string[] = [];
const observer = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const detail = (entry as { detail?: { kind?: number } }).detail;
    lines.push(`${(entry.startTime / 1000).toFixed(4)} ${entry.duration.toFixed(2)} ms ${kinds[detail?.kind ?? -1] ?? String(detail?.kind)}`);
  }
});
observer.observe({ entryTypes: ['gc'] });

process.on('exit', () => {
  mkdirSync(dir, { recursive: true });
  const heap = process.memoryUsage();
  lines.push(`# at exit: heap used ${(heap.heapUsed / 1048576).toFixed(1)} MiB of ${(heap.heapTotal / 1048576).toFixed(1)} MiB, external ${(heap.external / 1048576).toFixed(1)} MiB, rss ${(heap.rss / 1048576).toFixed(1)} MiB; ${performance.now().toFixed(0)} ms`);
  writeFileSync(path.join(dir, `gc-${process.pid}.txt`), lines.join('\n') + '\n');
});

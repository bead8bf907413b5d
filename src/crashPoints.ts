/**
 * Named points where a crash test may kill the process: when the environment
 * variable COVERHELPER_CRASH_AT names a point, the process sends itself SIGKILL
 * there, exactly as an outside `kill -9` would at that moment. Unset (always, in
 * normal use), each call is one string comparison.
 */
const target = process.env.COVERHELPER_CRASH_AT;

export type CrashPoint = 'deletion:claimed' | 'deletion:rows-removed' | 'deletion:file-removed' | 'render:temp-written' | 'render:published';

export function crashPoint(name: CrashPoint): void {
  if (target === name) process.kill(process.pid, 'SIGKILL');
}

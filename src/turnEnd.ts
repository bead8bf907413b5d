/**
 * The end of an event-loop turn, in two steps, run from one `setImmediate`:
 *
 *   first  the supervisor hears the downloads done in the turn (one FINISHED)
 *          and starts the next ones, whose `downloading` rows that reports
 *   last   the task ledger writes the turn's batch
 *
 * With a `setImmediate` each, the batch (scheduled by the first `ok` of the
 * turn) ran before FINISHED, so the downloads FINISHED started were written in
 * a transaction of their own one turn later: two commits a turn instead of one
 * (docs/BENCHMARKS.md, Issue 27, session 5). A last step handed in by a first
 * step runs in this turn's end; anything else handed in while the steps run
 * waits for the next turn's end, as with `setImmediate`.
 */

type Step = () => void;

let first: Step[] = [];
let last: Step[] = [];
let scheduled = false;

/** Runs each step; one that throws does not keep the others from running (the first error is kept). */
function runSteps(steps: Step[], failure: { error: unknown } | undefined): { error: unknown } | undefined {
  for (const step of steps) {
    try {
      step();
    } catch (error) {
      failure ??= { error };
    }
  }
  return failure;
}

function run(): void {
  scheduled = false;
  const firsts = first;
  first = [];
  const failure = runSteps(firsts, undefined);
  // Taken after the first steps: a last step they hand in runs in this turn's end.
  const lasts = last;
  last = [];
  const failed = runSteps(lasts, failure);
  // Thrown after them all, as a `setImmediate` of its own would have thrown it.
  if (failed) throw failed.error;
}

function schedule(): void {
  if (!scheduled) {
    scheduled = true;
    setImmediate(run);
  }
}

/** Runs `step` at this turn's end, before every `atTurnEndLast` step. */
export function atTurnEndFirst(step: Step): void {
  first.push(step);
  schedule();
}

/** Runs `step` at this turn's end, after every `atTurnEndFirst` step. */
export function atTurnEndLast(step: Step): void {
  last.push(step);
  schedule();
}

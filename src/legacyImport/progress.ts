/**
 * Progress of a long import, on stderr:
 *   on a TTY   one line redrawn in place (`\r`) at most ten times a second:
 *              `[########------------]  40%  4000/10000 rows  812 rows/s  eta 7s`
 *   otherwise  a plain line every `everyRows` rows or `everyMs`, whichever
 *              comes first: `progress: 4000 of 10000 rows (40%), 812 rows/s`
 * Report lines (skipped rows) go through `line`, which clears the bar first
 * and draws it again after, so the two never mix.
 *
 * Written here rather than taken from a package: the bar is one line, and the
 * plain lines for logs (which cli-progress does not write) are the other half.
 */
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  total: number;
  stream: ProgressStream;
  /** A plain line at least this often (not on a TTY). Default 2000 ms. */
  everyMs?: number;
  /** A plain line every this many rows (not on a TTY). Default 1000. */
  everyRows?: number;
  /** The one clock (default the system's): the rate and when lines are drawn. */
  clock?: Clock;
}

const BAR_WIDTH = 20;
const REDRAW_MS = 100;

export class ImportProgress {
  private readonly started: number;
  private readonly tty: boolean;
  private done = 0;
  private lastDraw = 0;
  private lastLineAt: number;
  private lastLineRows = 0;
  private drawn = false;

  constructor(private readonly options: ProgressOptions) {
    this.started = this.now();
    this.lastLineAt = this.started;
    this.tty = options.stream.isTTY === true;
  }

  private now(): number {
    return (this.options.clock ?? systemClock).now();
  }

  private rate(at: number): number {
    const seconds = (at - this.started) / 1000;
    return seconds > 0 ? this.done / seconds : 0;
  }

  /** `done` rows of the total are finished. */
  update(done: number): void {
    this.done = done;
    const at = this.now();
    if (this.tty) {
      if (at - this.lastDraw >= REDRAW_MS || done === this.options.total) this.draw(at);
      return;
    }
    const everyRows = this.options.everyRows ?? 1000;
    const everyMs = this.options.everyMs ?? 2000;
    if (done < this.options.total && (done - this.lastLineRows >= everyRows || at - this.lastLineAt >= everyMs)) {
      this.lastLineAt = at;
      this.lastLineRows = done;
      const { total } = this.options;
      this.options.stream.write(`progress: ${done} of ${total} rows (${percent(done, total)}%), ${Math.round(this.rate(at))} rows/s\n`);
    }
  }

  /** A whole line (a report), kept apart from the bar. */
  line(text: string): void {
    if (this.tty && this.drawn) {
      this.clear();
      this.options.stream.write(`${text}\n`);
      this.draw(this.now());
    } else {
      this.options.stream.write(`${text}\n`);
    }
  }

  /** Clears the bar: the run is over. */
  finish(): void {
    if (this.tty && this.drawn) this.clear();
  }

  private clear(): void {
    this.options.stream.write('\r\x1b[2K');
    this.drawn = false;
  }

  private draw(at: number): void {
    this.lastDraw = at;
    const { total } = this.options;
    const filled = total > 0 ? Math.round((this.done / total) * BAR_WIDTH) : BAR_WIDTH;
    const rate = this.rate(at);
    const eta = rate > 0 && this.done < total ? `  eta ${Math.ceil((total - this.done) / rate)}s` : '';
    let text = `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${String(percent(this.done, total)).padStart(3)}%  ${this.done}/${total} rows  ${Math.round(rate)} rows/s${eta}`;
    const columns = this.options.stream.columns;
    if (columns !== undefined && columns > 1 && text.length >= columns) text = text.slice(0, columns - 1);
    this.options.stream.write(`\r\x1b[2K${text}`);
    this.drawn = true;
  }
}

function percent(done: number, total: number): number {
  return total > 0 ? Math.floor((done / total) * 100) : 100;
}

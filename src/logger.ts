/**
 * The winston logger: JSON lines when not on a terminal, a readable line on one.
 * `format.errors({ stack: true })` sits on the logger so every transport gets
 * the stack. Every finished line, whatever it holds (message, fields, an
 * error's message and stack), goes through `maskSecrets` last: no credential in
 * a URL reaches the log. Call `closeLogger` before exiting so nothing is lost.
 *
 * A line below the level is dropped before it is built: winston itself runs
 * every line through the format (its fields stringified, the time taken, the
 * secrets masked) and only then lets the transport drop it, which made each
 * download's `debug` line cost as much as a written one (docs/BENCHMARKS.md,
 * Cold, the bookkeeping per download). The level methods ask `isLevelEnabled`
 * first (the logger's level as it is then, or a transport's own), the same test
 * the transport makes.
 */
import winston from 'winston';
import TransportStream from 'winston-transport';
import { maskSecrets } from './secrets.js';

/** winston's key of the finished line (triple-beam's MESSAGE), and of the line's level as logged (LEVEL). */
const MESSAGE = Symbol.for('message');
const LEVEL = Symbol.for('level');

/** Characters held for the turn's end past which they are written at once. */
const HELD_MAX = 64 * 1024;

/** Transports holding lines, flushed when the process exits (a crash's last turn is not lost). */
const holding = new Set<TurnLines>();
let exitHook = false;

/**
 * The transport: every line the logger lets through, written to `out`, the
 * lines of one event-loop turn as one write at its end (standard output on a
 * pipe is written synchronously, a system call per write: one per download's
 * line, docs/BENCHMARKS.md, Issue 27, session 5). A warn or error line is
 * written at once, with the lines before it, as is text past HELD_MAX; the
 * process's exit and `closeLogger` write what is held. Unlike winston's Stream
 * transport it emits no `logged` event per line (a `setImmediate` each), which
 * nothing here listens to.
 */
class TurnLines extends TransportStream {
  private held = '';
  private scheduled = false;

  constructor(private readonly out: NodeJS.WritableStream) {
    super();
  }

  private readonly atTurnEnd = (): void => {
    this.scheduled = false;
    this.flushLines();
  };

  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    this.held += `${String(info[MESSAGE])}\n`;
    const level = info[LEVEL];
    if (level === 'error' || level === 'warn' || this.held.length >= HELD_MAX) this.flushLines();
    else if (!this.scheduled) {
      this.scheduled = true;
      holding.add(this);
      if (!exitHook) {
        exitHook = true;
        process.on('exit', () => {
          for (const transport of holding) transport.flushLines();
        });
      }
      setImmediate(this.atTurnEnd);
    }
    next();
  }

  /** Ending the transport (the logger's end) writes what is held first. */
  override _final(callback: (error?: Error | null) => void): void {
    this.flushLines();
    callback();
  }

  /** Writes what is held. */
  flushLines(): void {
    holding.delete(this);
    if (this.held === '') return;
    const text = this.held;
    this.held = '';
    this.out.write(text);
  }
}

/** The last format: the finished line with its credentials masked. */
const masked = winston.format((info) => {
  const line = (info as Record<symbol, unknown>)[MESSAGE];
  if (typeof line === 'string') (info as Record<symbol, unknown>)[MESSAGE] = maskSecrets(line);
  return info;
});

export type Logger = winston.Logger;

/** What the logger takes of the configuration (`--log-level`, `--log-format`). */
export interface LoggerOptions {
  logLevel: 'error' | 'warn' | 'info' | 'debug';
  logFormat: 'pretty' | 'json';
}

export function createLogger(options: LoggerOptions, stream: NodeJS.WritableStream = process.stdout): Logger {
  const line =
    options.logFormat === 'json'
      ? winston.format.json()
      : winston.format.printf((info) => {
          const { level, message, timestamp, stack, ...rest } = info as Record<string, unknown>;
          const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
          return `${String(timestamp)} ${String(level)} ${String(message)}${extra}${typeof stack === 'string' ? `\n${stack}` : ''}`;
        });
  const logger = winston.createLogger({
    level: options.logLevel,
    format: winston.format.combine(winston.format.errors({ stack: true }), winston.format.timestamp(), line, masked()),
    transports: [new TurnLines(stream)],
  });
  const methods = logger as unknown as Record<string, (...args: unknown[]) => Logger>;
  for (const level of Object.keys(logger.levels)) {
    const write = methods[level]!;
    // `this`, not `logger`: a child logger inherits the method and writes with its own fields (winston's own methods fall back to the logger the same way).
    methods[level] = function (this: Logger | undefined, ...args: unknown[]): Logger {
      const self = this ?? logger;
      return self.isLevelEnabled(level) ? write.apply(self, args) : self;
    };
  }
  return logger;
}

/** Ends the logger and waits until every line is written. */
export function closeLogger(logger: Logger): Promise<void> {
  for (const transport of logger.transports) if (transport instanceof TurnLines) transport.flushLines();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 2000);
    logger.once('finish', () => {
      clearTimeout(timer);
      resolve();
    });
    logger.end();
  });
}

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
import { maskSecrets } from './secrets.js';

/** winston's key of the finished line (triple-beam's MESSAGE). */
const MESSAGE = Symbol.for('message');

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
    transports: [new winston.transports.Stream({ stream })],
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
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 2000);
    logger.once('finish', () => {
      clearTimeout(timer);
      resolve();
    });
    logger.end();
  });
}

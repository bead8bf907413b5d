/**
 * Starts the real service process the way a user does: `node --import tsx
 * src/main.ts`, exactly what `npm start` runs (one process, so a SIGKILL kills
 * the service itself), on port 0 with a fresh data folder, and waits for its
 * `listening on http://HOST:PORT` line.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const nodeArgs = ['--import', 'tsx', path.join(root, 'src/main.ts')];

export interface LogLine {
  level: string;
  message: string;
  [key: string]: unknown;
}

export interface Service {
  url: string;
  wsUrl: string;
  port: number;
  logs: LogLine[];
  child: ChildProcessByStdio<null, Readable, Readable>;
  stderr(): string;
  /** Resolves with the next log line matching `predicate` (or one already seen). */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /**
   * SIGTERM, then the exit code. A service still running STOP_TIMEOUT_MS later
   * is killed and the stop fails, with its last log lines: a shutdown that
   * hangs is a failure that says so, not a test file that times out.
   */
  stop(): Promise<number | null>;
  /** SIGKILL, then wait for the exit. */
  kill(): Promise<void>;
  /** Resolves when the process exits by itself, with its code or signal. */
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node <argv>` in `cwd` to its exit (killed after `timeoutMs`), with what it printed. */
export function runNode(argv: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, argv, {
      cwd: options.cwd ?? root,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs the service to its exit (for start-up failures). */
export function runService(args: string[], env: NodeJS.ProcessEnv = {}, cwd = root): Promise<RunResult> {
  return runNode([...nodeArgs, ...args], { env, cwd });
}

/** Runs `npm run import-legacy -- <args>` as npm does (INIT_CWD set), to its exit. */
export function runImportTool(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<RunResult> {
  return runNode(['--import', 'tsx', path.join(root, 'src/tools/importLegacy.ts'), ...args], { env: { INIT_CWD: root, ...env }, timeoutMs });
}

/**
 * Resource limits no test machine reaches, so a busy CI machine (load, a full
 * disk) never makes the service tardy in tests about something else; and
 * per-host limits for the loopback origins of tests that no test reaches
 * (the defaults would hold 20 downloads at once to 16). Tests of the guard and
 * of the host limits pass their own, which come later and win.
 */
export const relaxedLimits = ['--disk-limit', '100', '--mem-limit', '100', '--load-limit', '100000', '--host-limits', '127.0.0.1=10000/s:10000:1000'];

/** How long `stop()` waits for the exit after SIGTERM (the service's own grace is 5 s). */
export const STOP_TIMEOUT_MS = 30_000;

export async function startService(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Service> {
  const child = spawn(process.execPath, [...nodeArgs, '--port', '0', '--log-format', 'json', ...relaxedLimits, ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  let stderr = '';
  const waiters: { predicate: (line: LogLine) => boolean; resolve: (line: LogLine) => void }[] = [];
  let buffer = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let newline: number;
    while ((newline = buffer.indexOf('\n')) !== -1) {
      const text = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (!text.trim()) continue;
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { level: 'raw', message: text };
      }
      logs.push(line);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const exited = exit.then(({ code }) => code);

  const waitForLog = (predicate: (line: LogLine) => boolean, timeoutMs = 20_000) => {
    const seen = logs.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      const waiter = {
        predicate,
        resolve: (line: LogLine) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const fail = (error: Error) => {
        clearTimeout(timer);
        const index = waiters.indexOf(waiter);
        if (index !== -1) waiters.splice(index, 1);
        reject(error);
      };
      const timer = setTimeout(() => fail(new Error(`no such log line within ${timeoutMs} ms; stderr: ${stderr}; logs: ${JSON.stringify(logs.slice(-5))}`)), timeoutMs);
      void exited.then((code) => fail(new Error(`service exited with ${code} before the log line; stderr: ${stderr}`)));
      waiters.push(waiter);
    });
  };

  const listening = await waitForLog((line) => /listening on http:\/\//.test(line.message), 60_000);
  const url = /listening on (http:\/\/\S+)/.exec(listening.message)![1]!;
  return {
    url,
    wsUrl: `${url.replace('http:', 'ws:')}/ws`,
    port: Number(new URL(url).port),
    logs,
    child,
    exit,
    stderr: () => stderr,
    waitForLog,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(async () => {
          child.kill('SIGKILL');
          // Gone before the test's own clean-up removes its folders.
          await exited;
          reject(new Error(`the service did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM (killed now); its last log lines: ${JSON.stringify(logs.slice(-10))}; stderr: ${stderr.slice(-2000)}`));
        }, STOP_TIMEOUT_MS);
      });
      try {
        return await Promise.race([exited, late]);
      } finally {
        clearTimeout(timer);
      }
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

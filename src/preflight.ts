/**
 * The preflight: what a start checks before it touches the database, each failure a
 * `StartError` that says what failed, where, and what to do (`main` prints it
 * as one line and exits 1):
 *
 *   folders   the covers and data folders exist (made if needed) and take a file
 *   port      the HTTP port is bound first, answering 503 until the service is
 *             ready, so a port in use stops the start before migrations run and
 *             before an admin token is written
 *   database  an unreadable or foreign database file is named with its path
 *   cookie    the `--bilibili-cookie` file: a regular file readable by its
 *             owner only, holding one Cookie line (exit 2 otherwise)
 *   cluster   on a shared database, a node whose --node-id a live node holds,
 *             or whose shared secrets differ from the other nodes', does not
 *             start (`joinError`; exit 2)
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import { refuseUpgrade, sendError } from './http/index.js';
import { StartError } from './errors.js';
import { registerSecret } from './secrets.js';
import type { JoinOutcome } from './store/index.js';
import { createFile, makeFolder, removePath } from './store/pathGuard.js';

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'error';
}

function textOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Makes `dir` if needed and writes and removes one probe file in `probeDir`
 * under it (the folder the service writes into, e.g. `['.tmp']`; `dir` itself
 * by default), through the path guard: a link where `probeDir` belongs stops
 * the start, and nothing is written through it.
 */
export async function checkWritable(dir: string, what: string, option: string, probeDir: readonly string[] = []): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    await makeFolder(dir, probeDir);
    const probe = [...probeDir, `.write-probe-${process.pid}-${randomBytes(4).toString('hex')}`];
    await (await createFile(dir, probe, 0o644)).close();
    await removePath(dir, probe);
  } catch (error) {
    throw new StartError(
      `the ${what} ${dir} is not writable (${codeOf(error)}: ${textOf(error)})`,
      `make it a folder writable by the user running coverhelper, or choose another with ${option}`,
      { cause: error },
    );
  }
}

/** Starts `server` listening on `host:port`; rejects with the listen error (EADDRINUSE, EACCES, …). */
export function listenOn(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * An HTTP server bound to `host:port` that answers 503 (and refuses upgrades)
 * until `createHttpServer` takes it over.
 */
export async function bindPort(host: string, port: number): Promise<http.Server> {
  const server = http.createServer(startingRequest);
  server.on('upgrade', startingUpgrade);
  try {
    await listenOn(server, port, host);
  } catch (error) {
    const code = codeOf(error);
    const where = `${host}:${port}`;
    if (code === 'EADDRINUSE') throw new StartError(`port ${where} is already in use`, 'stop the other process or choose another --port', { cause: error });
    if (code === 'EACCES') throw new StartError(`port ${where} needs privileges this user lacks`, 'choose a port above 1023 with --port, or put a reverse proxy in front', { cause: error });
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      throw new StartError(`--host ${host} is not an address of this machine (${code})`, 'give --host an address this machine has, such as 127.0.0.1 or 0.0.0.0', { cause: error });
    }
    throw new StartError(`could not listen on ${where} (${code}: ${textOf(error)})`, 'check --host and --port', { cause: error });
  }
  return server;
}

/** Stops answering "starting": the real handlers are about to be added. */
export function endStarting(server: http.Server): void {
  server.off('request', startingRequest);
  server.off('upgrade', startingUpgrade);
}

function startingRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
  req.resume();
  sendError(res, 503, 'starting', 'coverhelper is starting; try again in a moment', { 'retry-after': '1' });
}

function startingUpgrade(_req: http.IncomingMessage, socket: import('node:stream').Duplex): void {
  refuseUpgrade(socket, 503, undefined, { 'Retry-After': '1' });
}

/** What opening or migrating the database failed with, as a `StartError` naming the file or URL. */
export function databaseError(error: unknown, where: string): StartError {
  const code = codeOf(error);
  const text = textOf(error);
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    return new StartError(
      `the database ${where} is not a SQLite database or is damaged (${code}: ${text})`,
      'move the file away (coverhelper then makes a new one) or point --db at the right file',
      { cause: error },
    );
  }
  if (code === 'SQLITE_CANTOPEN' || code === 'SQLITE_READONLY' || code === 'SQLITE_PERM' || code === 'EACCES') {
    return new StartError(`the database ${where} cannot be opened for writing (${code}: ${text})`, 'make the file and its folder writable by the user running coverhelper, or choose another --db', { cause: error });
  }
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new StartError(`the database ${where} is locked by another process (${code})`, 'stop the other coverhelper using this file, or choose another --db', { cause: error });
  }
  return new StartError(`could not open or migrate the database ${where} (${code}: ${text})`, 'check --db and the file it names', { cause: error });
}

/** Why a join was refused, as a `StartError` that exits 2 (it names the option, never a secret); undefined when the node joined. */
export function joinError(outcome: JoinOutcome, node: string, leaseMs: number, now: number): StartError | undefined {
  if (outcome.joined) return undefined;
  if (outcome.clash === 'node') {
    const ago = Math.max(0, (now - outcome.lastSeen) / 1000).toFixed(1);
    return new StartError(
      `--node-id ${node} is held by a live node (last seen ${new Date(outcome.lastSeen).toISOString()}, ${ago} s ago; a node is gone once it has not been seen for the lease, ${leaseMs / 1000} s)`,
      'give this node another --node-id, or stop the other one first (a node stopped gracefully frees its id at once)',
      { exitCode: 2 },
    );
  }
  const option = `--${outcome.name}`;
  const recorded = `recorded by node ${outcome.recordedBy} at ${new Date(outcome.recordedAt).toISOString()}`;
  const what =
    outcome.how === 'absent here'
      ? `${option} is not set on this node, but the other nodes of this database use one (${recorded})`
      : outcome.how === 'absent there'
        ? `${option} is set on this node, but the other nodes of this database use none (${recorded})`
        : `${option} differs from the one the other nodes of this database use (${recorded})`;
  return new StartError(what, `give every node the same ${option}; to change it, stop every node, then start them with the new one`, { exitCode: 2 });
}

/** A cookie line longer than this is not a cookie line. */
export const MAX_COOKIE_BYTES = 8192;

/**
 * Reads the `--bilibili-cookie` file once: a regular file, not readable or
 * writable by group or others (mode & 0o077 == 0), holding one Cookie line
 * (`SESSDATA=…; buvid3=…`; a leading `Cookie:` and the final newline are
 * dropped), at most 8 KiB, without control characters. Each failure is a
 * `StartError` (exit 2) naming the file and what to do, never its content.
 * The line and its values are registered with `maskSecrets`, so no log line
 * or error can show them.
 */
export async function readApiCookie(file: string): Promise<string> {
  const refuse = (what: string, hint: string, cause?: unknown) =>
    new StartError(`--bilibili-cookie ${file} ${what}`, hint, { exitCode: 2, ...(cause === undefined ? {} : { cause }) });
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    // O_NONBLOCK: a FIFO put where the file belongs does not hang the start.
    handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (error) {
    const code = codeOf(error);
    throw refuse(`cannot be read (${code})`, code === 'ENOENT' ? 'create it (mode 0600) or drop --bilibili-cookie' : 'make it readable by the user running coverhelper', error);
  }
  let text: string;
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw refuse('is not a regular file', 'point --bilibili-cookie at a file holding the Cookie line');
    if ((stat.mode & 0o077) !== 0) {
      throw refuse(`is readable or writable by group or others (mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')})`, `it holds a login: chmod 600 ${file}`);
    }
    if (stat.size > MAX_COOKIE_BYTES) throw refuse(`is ${stat.size} bytes; a Cookie line is at most ${MAX_COOKIE_BYTES}`, 'put the one Cookie line in it (SESSDATA=…; buvid3=…)');
    const bytes = Buffer.alloc(MAX_COOKIE_BYTES + 1);
    const { bytesRead } = await handle.read(bytes, 0, bytes.length, 0);
    if (bytesRead > MAX_COOKIE_BYTES) throw refuse(`is larger than ${MAX_COOKIE_BYTES} bytes`, 'put the one Cookie line in it (SESSDATA=…; buvid3=…)');
    text = bytes.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
  const line = text.replace(/(\r?\n)+$/, '').replace(/^cookie:\s*/i, '').trim();
  if (line === '') throw refuse('is empty', 'put the Cookie line in it (SESSDATA=…; buvid3=…), or drop --bilibili-cookie');
  if (/[^\x20-\x7e\t]/.test(line)) {
    throw refuse('holds a line break, a NUL, a control or a non-ASCII character', 'it must hold one Cookie line (SESSDATA=…; buvid3=…) and nothing else');
  }
  registerSecret(line);
  for (const pair of line.split(';')) {
    const value = pair.slice(pair.indexOf('=') + 1).trim();
    if (pair.includes('=')) registerSecret(value);
  }
  return line;
}

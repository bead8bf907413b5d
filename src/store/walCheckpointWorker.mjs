// The thread behind WalCheckpoints (walCheckpoints.ts), plain JavaScript so
// that it starts without a TypeScript loader: its own connection to the SQLite
// file, and every `intervalMs` a PASSIVE checkpoint (the WAL's committed pages
// copied into the database file, both synced), which neither waits for nor
// blocks the service's connection. A failure is reported once, until a
// checkpoint succeeds again; 'stop' closes the connection and ends the thread.
// Messages to the owner: { kind: 'ready' | 'failing' | 'recovered', message? }.
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

const { file, intervalMs } = workerData;
const db = new Database(file, { fileMustExist: true, timeout: 0 });
let failing = false;
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
    if (failing) parentPort.postMessage({ kind: 'recovered' });
    failing = false;
  } catch (error) {
    if (!failing) parentPort.postMessage({ kind: 'failing', message: String(error && error.message) });
    failing = true;
  }
}, intervalMs);
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
parentPort.postMessage({ kind: 'ready' });

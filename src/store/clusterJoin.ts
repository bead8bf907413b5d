/**
 * A node joining the others on a shared database (`joinCluster`), at start,
 * before it does anything there. In one transaction, under an advisory lock so
 * that nodes starting together take turns:
 *
 *   node id   a row in `nodes` with this id whose heartbeat is fresher than the
 *             lease, and that did not leave (a graceful stop marks it
 *             `stopped`), is a live node: the join is refused (`clash: 'node'`).
 *             A node that died frees its id once its heartbeat is older than
 *             the lease. Otherwise this node's row is written (`starting`), so
 *             a node starting next with the same id sees it live.
 *   secrets   each shared secret (`SECRET_NAMES`) is compared with the digest
 *             the database holds (`ClusterSecretRow`: scrypt with a per-row
 *             random salt, never the secret): one that differs, or is absent
 *             on one side only, refuses the join (`clash: 'secret'`). The first
 *             node records them. When no other node is live (every node was
 *             stopped, or died a lease ago), this node's secrets are recorded
 *             instead of compared (`replaced` names the ones that changed):
 *             that is how an operator changes a secret.
 *
 * A database one node uses (SQLite) has no one to disagree with: nothing is
 * checked or written there (`SqlClusterState.join`).
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import type { DataSource, EntityManager } from 'typeorm';
import { ClusterSecretEntity, NodeEntity } from './entities.js';
import type { ClusterSecretRow, NodeRow } from './entities.js';

/** The secrets every node of a database must be given alike, by option name. */
export const SECRET_NAMES = ['admin-token', 'client-token', 'callback-secret', 'url-key'] as const;
export type SecretName = (typeof SECRET_NAMES)[number];
/** Each shared secret's value on this node (undefined: not set). */
export type SharedSecrets = Record<SecretName, string | undefined>;

export type JoinOutcome =
  | { joined: true; recorded: SecretName[]; replaced: SecretName[] }
  | { joined: false; clash: 'node'; lastSeen: number }
  | {
      joined: false;
      clash: 'secret';
      name: SecretName;
      /** `differs`: both set, not equal; `absent here`: set on the others only; `absent there`: set here only. */
      how: 'differs' | 'absent here' | 'absent there';
      recordedBy: string;
      recordedAt: number;
    };

/** Chosen once: the advisory lock key of joins ("join" in ASCII), not the migrations'. */
const JOIN_LOCK = 0x6a6f696e;
/** scrypt's cost: about 30 ms a secret on a 2020s core, paid once per start. */
const SCRYPT = { N: 1 << 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

/** The digest of one secret (hex): scrypt of a fixed label, the secret's name and the secret, with `salt`. */
export function digestSecret(name: SecretName, secret: string, salt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    scrypt(`coverhelper cluster secret\0${name}\0${secret}`, salt, 32, SCRYPT, (error, key) => (error ? reject(error) : resolve(key.toString('hex'))));
  });
}

async function matches(name: SecretName, secret: string, row: ClusterSecretRow): Promise<boolean> {
  if (row.digest === null) return false;
  const expected = Buffer.from(row.digest, 'hex');
  const actual = Buffer.from(await digestSecret(name, secret, row.salt), 'hex');
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** How this node's secret compares with the recorded one: null when alike. */
async function compare(name: SecretName, secret: string | undefined, row: ClusterSecretRow): Promise<'differs' | 'absent here' | 'absent there' | null> {
  if (secret === undefined) return row.digest === null ? null : 'absent here';
  if (row.digest === null) return 'absent there';
  return (await matches(name, secret, row)) ? null : 'differs';
}

async function record(manager: EntityManager, name: SecretName, secret: string | undefined, node: string, now: number): Promise<void> {
  const salt = randomBytes(16).toString('hex');
  const row: ClusterSecretRow = { name, salt, digest: secret === undefined ? null : await digestSecret(name, secret, salt), recordedBy: node, recordedAt: now };
  await manager.getRepository(ClusterSecretEntity).upsert(row, { conflictPaths: ['name'], skipUpdateIfNoValuesChanged: false });
}

/** Whether a node row is a live node: not stopped, and its heartbeat fresher than the lease. */
export function isLive(row: Pick<NodeRow, 'status' | 'lastSeen'>, now: number, leaseMs: number): boolean {
  return row.status !== 'stopped' && now - row.lastSeen <= leaseMs;
}

export interface JoinInput {
  node: string;
  startedAt: number;
  leaseMs: number;
  now: number;
  secrets: SharedSecrets;
}

/** A refused join, thrown out of the transaction so that nothing it wrote stays. */
class Refused extends Error {
  constructor(readonly outcome: Exclude<JoinOutcome, { joined: true }>) {
    super('refused');
  }
}

/** Joins `node` to the nodes of a shared (PostgreSQL) database; see the module comment. */
export async function joinCluster(dataSource: DataSource, input: JoinInput): Promise<JoinOutcome> {
  try {
    return await joinInTransaction(dataSource, input);
  } catch (error) {
    if (error instanceof Refused) return error.outcome;
    throw error;
  }
}

function joinInTransaction(dataSource: DataSource, input: JoinInput): Promise<JoinOutcome> {
  const { node, leaseMs, now, secrets } = input;
  return dataSource.transaction(async (manager) => {
    await manager.query('SELECT pg_advisory_xact_lock($1)', [JOIN_LOCK]);
    const nodesRepo = manager.getRepository(NodeEntity);
    const nodes = await nodesRepo.find();
    const self = nodes.find((row) => row.id === node);
    if (self !== undefined && isLive(self, now, leaseMs)) throw new Refused({ joined: false, clash: 'node', lastSeen: self.lastSeen });
    const othersLive = nodes.some((row) => row.id !== node && isLive(row, now, leaseMs));

    const recordedRows = new Map((await manager.getRepository(ClusterSecretEntity).find()).map((row) => [row.name, row]));
    const recorded: SecretName[] = [];
    const replaced: SecretName[] = [];
    for (const name of SECRET_NAMES) {
      const row = recordedRows.get(name);
      if (row === undefined) {
        await record(manager, name, secrets[name], node, now);
        recorded.push(name);
        continue;
      }
      const how = await compare(name, secrets[name], row);
      if (how === null) continue;
      if (othersLive) throw new Refused({ joined: false, clash: 'secret', name, how, recordedBy: row.recordedBy, recordedAt: row.recordedAt });
      // Nobody else is running: this node's secret is the one from now on.
      await record(manager, name, secrets[name], node, now);
      replaced.push(name);
    }

    const row: NodeRow = { id: node, startedAt: input.startedAt, lastSeen: now, queued: 0, downloading: 0, status: 'starting' };
    await nodesRepo.upsert(row, { conflictPaths: ['id'], skipUpdateIfNoValuesChanged: false });
    return { joined: true, recorded, replaced };
  });
}

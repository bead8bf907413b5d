/**
 * Checks asked in the same words share one check: a herd of clients sending the
 * same frame (500 sockets asking for the same 200 new covers) is joined as a
 * group, one check and one join per URL for all of them, not one each. Each
 * member gets every answer that had to wait as it comes, then all of them in
 * input order: what the first member gets.
 *
 * A group takes members only until it hands out its first answer: a member
 * that joined later would be told, as having waited, of a cover stored before
 * it asked (its own check answers that from the cache, in `done` only). A check
 * asked in the same words after that starts a group of its own.
 *
 * The shared check is asked for an `Asker` of its own, which leaves when its
 * last member leaves: the downloads that only this group waited for and that
 * have not started are then dropped, as a lone session's would be. A member
 * leaving while others remain drops nothing. The group takes the turn of its
 * first member's party (its queued downloads are that client's, for fairness),
 * and its address.
 *
 * The key is the caller's: text that says the same URLs in the same order
 * (clientSocket.ts uses a frame's text after a plain id, for frames with no
 * bilibili suffix to render: renders count against a client address's limit).
 */
import type { CheckResult, WrappedChecks } from '../checks/index.js';
import type { Stats } from '../stats.js';
import type { Asker } from '../../machines/flights.js';

/** One member of a shared check: where its answers go. */
export interface SharedMember {
  result(index: number, result: CheckResult): void;
  done(results: CheckResult[]): void;
  failed(error: unknown): void;
}

interface Group {
  members: Set<SharedMember>;
  asker: Asker;
}

export class SharedChecks {
  private readonly groups = new Map<string, Group>();

  constructor(private readonly deps: { checks: Pick<WrappedChecks, 'check' | 'leave'>; stats: Pick<Stats, 'checks' | 'urls' | 'misses' | 'coalesced'> }) {}

  /** Checks in progress that still take members. */
  get size(): number {
    return this.groups.size;
  }

  /**
   * Asks `urls` for `member` (of `from`: a session's asker): joins the check in
   * progress under `key`, or starts it. Returns the member's leave: its answers stop, and the last one
   * to leave drops the work only the group waited for.
   */
  ask(key: string, urls: readonly string[], from: Asker, member: SharedMember): () => void {
    let group = this.groups.get(key);
    if (group === undefined) {
      const asker: Asker = { kind: 'shared', ...(from.party !== undefined && { party: from.party }), ...(from.address !== undefined && { address: from.address }) };
      group = { members: new Set([member]), asker };
      this.groups.set(key, group);
      this.start(key, urls, group);
    } else {
      // Counted as the check it is, each URL riding on work already asked.
      const { stats } = this.deps;
      stats.checks++;
      stats.urls += urls.length;
      stats.misses += urls.length;
      stats.coalesced += urls.length;
      group.members.add(member);
    }
    const joined = group;
    return () => {
      if (!joined.members.delete(member) || joined.members.size > 0) return;
      if (this.groups.get(key) === joined) this.groups.delete(key);
      this.deps.checks.leave(joined.asker);
    };
  }

  private start(key: string, urls: readonly string[], group: Group): void {
    /** Takes no more members: it has handed out an answer, or it is over. */
    const closed = () => {
      if (this.groups.get(key) === group) this.groups.delete(key);
    };
    let asked: Promise<CheckResult[]>;
    try {
      asked = this.deps.checks.check(
        urls,
        (index, result) => {
          closed();
          each(group.members, (member) => member.result(index, result));
        },
        group.asker,
      );
    } catch (error) {
      // A check that throws before it returns fails its members as one that rejects.
      asked = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    asked
      .then(
        (results) => {
          closed();
          each(group.members, (member) => member.done(results));
        },
        (error: unknown) => {
          closed();
          each(group.members, (member) => member.failed(error));
        },
      )
      // `each` catches what a member throws; nothing else here can.
      .catch(() => undefined);
  }
}

/** Calls `call` for every member; one that throws fails its own answer only, never the others'. */
function each(members: Set<SharedMember>, call: (member: SharedMember) => void): void {
  for (const member of members) {
    try {
      call(member);
    } catch {
      // The member's own sink logs what it could not send.
    }
  }
}

/**
 * Flights — what is in flight, who waits on it, and which starts next.
 *
 * The one record of downloads in flight. The supervisor's actions change it;
 * everything else (checks, the cluster link, counts) asks it. "In flight?",
 * "remembered?" and "who waits?" are answered here and only here.
 *
 * A flight is one URL from its first ask to its outcome. Its states:
 *
 *   claiming    (several nodes) the claim on its task row is being written
 *   waiting     queued for a worker slot on this node
 *   running     its download actor holds a worker slot
 *   elsewhere   another node holds its claim (`owner`); settled when that node's
 *               outcome is heard, or claimed again when that node is gone
 *   parked      its upstream host is cooling: held (by a keeper asker) outside the
 *               queue, holding no worker slot, queued again when the host reopens
 *
 *   claiming ──claimed here──▶ waiting ──slot──▶ running ──▶ (left: finish)
 *      └──held elsewhere──▶ elsewhere ──reclaimed──▶ claiming
 *   (new) | (left: cooling) ──park──▶ parked ──host reopens──▶ waiting
 *   any state but running ──settle | drop──▶ (left)
 *
 * Askers. Every flight knows who waits on it: an `Asker` is an identity (a
 * WebSocket connection, an HTTP request, a job, the administrator's retry, work
 * resumed at start), compared by reference. When an asker leaves (its socket
 * closed, its request given up), every flight it waited on forgets it, and a
 * flight that is not running and has no asker left is dropped: nobody would
 * read its outcome. A running flight is never dropped; it finishes and is stored.
 *
 * Fair start. Each party (an asker, or the askers sharing its `party`: one
 * client address's HTTP requests) has its own queue of the flights it waits
 * on, in the order it asked; `next()` takes the parties with waiting flights in
 * turn (round robin), one flight each, and a party that had nothing waiting
 * goes first. So one client with 10,000 queued URLs delays another client's new
 * URL by at most one free worker slot, not by 10,000 downloads. A flight
 * several parties wait on sits in each of their queues; the first turn that
 * reaches it starts it, the others skip it.
 *
 * Remembered failures: url → the output answered without a download until
 * `forget` (the supervisor schedules that after the fail TTL).
 *
 * Costs: joining, leaving and starting are O(1) per flight and asker (queues
 * are arrays read from a moving head, compacted when half read); a flight with
 * one asker holds it directly, a Set only from the second.
 *
 * Plain data and promises: it imports nothing, so it is tested on its own.
 */

/** Who waits on a flight. Compared by reference: make one per connection, request or job. */
export interface Asker {
  /** What kind of asker it is, for logs and counts. */
  readonly kind: string;
  /**
   * Whose turn its URLs take (`next()`): askers with the same party share one
   * queue, so a client sending many requests (the HTTP door, one asker per
   * request) gets one turn, not one per request. Without it, the asker is its own party.
   */
  readonly party?: string;
  /** The client's network address, where limits are counted per address (renders a bilibili suffix starts). */
  readonly address?: string;
  /**
   * Bulk work (a job, the administrator's retry-all, work resumed or kept with
   * nobody waiting): a flight only such askers wait on asks the upstream after
   * interactive ones (`isInteractive`).
   */
  readonly bulk?: boolean;
}

export type FlightState = 'claiming' | 'waiting' | 'running' | 'elsewhere' | 'parked';

/** One URL in flight. `Ref` is its download actor's type, `Output` its outcome's. */
export interface Flight<Ref = unknown, Output = unknown> {
  readonly url: string;
  state: FlightState;
  /** Its download actor, while running. */
  ref: Ref | undefined;
  /** The node downloading it, while `elsewhere`. */
  owner: string | undefined;
  /** Settles with the outcome when the flight leaves (done, failed, cancelled, dropped). Never rejects. */
  readonly done: Promise<Output>;
  /** Who waits on it: none, one, or several. */
  askers: Asker | Set<Asker> | undefined;
}

interface Entry<Ref, Output> extends Flight<Ref, Output> {
  resolve: (output: Output) => void;
}

/** Whose turn a queued flight takes: an asker's `party`, or the asker itself. */
type Party = string | Asker;

/** One party's queued flights, in the order asked, read from `head`. Entries may be stale (started, left): skipped. */
interface Queue<Ref, Output> {
  items: Entry<Ref, Output>[];
  head: number;
}

/**
 * What `join` found: the flight (new, or joined), or a remembered failure; or,
 * for an asker that already left, `gone` when nothing is in flight (no work is
 * made for it).
 */
export type Joined<Ref, Output> = { flight: Flight<Ref, Output>; created: boolean } | { output: Output } | { gone: true };

export class Flights<Ref = unknown, Output = unknown> {
  private readonly entries = new Map<string, Entry<Ref, Output>>();
  /** Every asker that waits on something, with the flights it waits on. */
  private readonly askers = new Map<Asker, Set<Entry<Ref, Output>>>();
  private readonly queues = new Map<Party, Queue<Ref, Output>>();
  /** Parties whose queue was empty when a flight joined it: they go first, in that order. */
  private readonly fresh = new Set<Party>();
  /** Parties that had a turn and have more: in turn order. */
  private readonly turns = new Set<Party>();
  private readonly failures = new Map<string, Output>();
  /** Askers that left: one that asks again afterwards (a check still on its way when its socket closed) makes no new work. */
  private readonly departed = new WeakSet<Asker>();
  private readonly counts: Record<FlightState, number> = { claiming: 0, waiting: 0, running: 0, elsewhere: 0, parked: 0 };

  /** Flights in flight, in every state. */
  get size(): number {
    return this.entries.size;
  }

  /** How many flights are in `state`. */
  count(state: FlightState): number {
    return this.counts[state];
  }

  /** The URL's flight, if it is in flight. */
  get(url: string): Flight<Ref, Output> | undefined {
    return this.entries.get(url);
  }

  has(url: string): boolean {
    return this.entries.has(url);
  }

  /** Every flight, in the order they were made. */
  values(): IterableIterator<Flight<Ref, Output>> {
    return this.entries.values();
  }

  /** URLs of the flights in `state`. */
  urls(state: FlightState): string[] {
    const urls: string[] = [];
    for (const entry of this.entries.values()) if (entry.state === state) urls.push(entry.url);
    return urls;
  }

  /** Who waits on the URL now (empty when nobody, or when it is not in flight). */
  waitersOf(url: string): Asker[] {
    const askers = this.entries.get(url)?.askers;
    return askers === undefined ? [] : askers instanceof Set ? [...askers] : [askers];
  }

  /** Whether an interactive asker (one that is not `bulk`) waits on the URL. */
  isInteractive(url: string): boolean {
    const askers = this.entries.get(url)?.askers;
    if (askers === undefined) return false;
    if (!(askers instanceof Set)) return askers.bulk !== true;
    for (const asker of askers) if (asker.bulk !== true) return true;
    return false;
  }

  /** How many askers wait on something now. */
  get askerCount(): number {
    return this.askers.size;
  }

  /** The URL's remembered failure, if any. */
  remembered(url: string): Output | undefined {
    return this.failures.get(url);
  }

  get rememberedCount(): number {
    return this.failures.size;
  }

  remember(url: string, output: Output): void {
    this.failures.set(url, output);
  }

  forget(url: string): void {
    this.failures.delete(url);
  }

  /**
   * `asker` waits on the URL: its remembered failure, its flight in flight, or a
   * new flight made in `initial` state. Joining twice is joining once. An asker
   * that left is not recorded again: it gets a flight in flight (without waiting
   * on it) or `gone`.
   */
  join(url: string, asker: Asker, initial: 'claiming' | 'waiting' | 'parked'): Joined<Ref, Output> {
    const failure = this.failures.get(url);
    if (failure !== undefined) return { output: failure };
    if (this.departed.has(asker)) {
      const existing = this.entries.get(url);
      return existing === undefined ? { gone: true } : { flight: existing, created: false };
    }
    let entry = this.entries.get(url);
    const created = entry === undefined;
    if (entry === undefined) {
      let resolve!: (output: Output) => void;
      const done = new Promise<Output>((settle) => (resolve = settle));
      entry = { url, state: initial, ref: undefined, owner: undefined, done, askers: undefined, resolve };
      this.entries.set(url, entry);
      this.counts[initial]++;
    }
    this.addAsker(entry, asker);
    return { flight: entry, created };
  }

  /** A claiming, elsewhere or parked flight becomes this node's to download: it waits for a slot, in its askers' queues. */
  queue(flight: Flight<Ref, Output>): void {
    const entry = this.own(flight);
    if (entry === undefined || entry.state === 'waiting' || entry.state === 'running') return;
    this.move(entry, 'waiting');
    entry.owner = undefined;
    for (const asker of this.askersOf(entry)) this.enqueue(asker, entry);
  }

  /** Another node holds the flight's claim. */
  heldBy(flight: Flight<Ref, Output>, owner: string): void {
    const entry = this.own(flight);
    if (entry === undefined || entry.state === 'running') return;
    this.move(entry, 'elsewhere');
    entry.owner = owner;
  }

  /** The flight is to be claimed (again): its owner is gone, or it was never claimed. */
  reclaim(flight: Flight<Ref, Output>): void {
    const entry = this.own(flight);
    if (entry === undefined || entry.state === 'running' || entry.state === 'waiting') return;
    this.move(entry, 'claiming');
    entry.owner = undefined;
  }

  /**
   * The next flight to start: the parties with waiting flights take turns, one
   * flight each, in the order each asked; a party that had nothing waiting goes
   * first. Undefined when nothing waits.
   */
  next(): Flight<Ref, Output> | undefined {
    for (const line of [this.fresh, this.turns]) {
      for (const party of line) {
        line.delete(party);
        const queue = this.queues.get(party);
        if (queue === undefined) continue;
        while (queue.head < queue.items.length) {
          const entry = queue.items[queue.head]!;
          queue.items[queue.head++] = undefined as unknown as Entry<Ref, Output>;
          if (entry.state !== 'waiting' || this.entries.get(entry.url) !== entry) continue;
          // Its turn is over: to the back of the line, if it has more.
          if (this.compact(party, queue)) this.turns.add(party);
          return entry;
        }
        this.compact(party, queue);
      }
    }
    return undefined;
  }

  /** The flight got a worker slot and its download actor. */
  start(flight: Flight<Ref, Output>, ref: Ref): void {
    const entry = this.own(flight);
    if (entry === undefined) return;
    this.move(entry, 'running');
    entry.ref = ref;
  }

  /** The flight leaves with its outcome, handed to everyone waiting on it. */
  settle(flight: Flight<Ref, Output>, output: Output): void {
    const entry = this.own(flight);
    if (entry === undefined) return;
    this.remove(entry);
    entry.resolve(output);
  }

  /**
   * `asker` waits on nothing any more. Every flight forgets it; those with no
   * asker left that are not running are dropped (settled with `dropped(url)`)
   * and returned with the state they were in, so their records can be undone.
   */
  leave(asker: Asker, dropped: (url: string) => Output): { url: string; state: FlightState }[] {
    this.departed.add(asker);
    const waitsOn = this.askers.get(asker);
    if (waitsOn === undefined) return [];
    this.forgetAsker(asker);
    const gone: { url: string; state: FlightState }[] = [];
    for (const entry of waitsOn) {
      if (entry.askers === asker) entry.askers = undefined;
      else if (entry.askers instanceof Set) {
        entry.askers.delete(asker);
        if (entry.askers.size === 1) entry.askers = entry.askers.values().next().value!;
      }
      if (entry.askers === undefined && entry.state !== 'running') {
        gone.push({ url: entry.url, state: entry.state });
        this.remove(entry);
        entry.resolve(dropped(entry.url));
      }
    }
    return gone;
  }

  /** The entry behind a flight handed out by this structure, if it is still in flight. */
  private own(flight: Flight<Ref, Output>): Entry<Ref, Output> | undefined {
    const entry = this.entries.get(flight.url);
    return entry === flight ? entry : undefined;
  }

  private move(entry: Entry<Ref, Output>, state: FlightState): void {
    this.counts[entry.state]--;
    this.counts[state]++;
    entry.state = state;
  }

  private remove(entry: Entry<Ref, Output>): void {
    this.entries.delete(entry.url);
    this.counts[entry.state]--;
    entry.ref = undefined;
    for (const asker of this.askersOf(entry)) {
      const waitsOn = this.askers.get(asker);
      if (waitsOn === undefined) continue;
      waitsOn.delete(entry);
      // An asker waiting on nothing is forgotten.
      if (waitsOn.size === 0) this.forgetAsker(asker);
    }
    entry.askers = undefined;
  }

  /** Forgets an asker; its own queue too (a shared party's queue is left to `next()`, which skips what nobody waits on). */
  private forgetAsker(asker: Asker): void {
    this.askers.delete(asker);
    if (asker.party === undefined) {
      this.queues.delete(asker);
      this.fresh.delete(asker);
      this.turns.delete(asker);
    }
  }

  private askersOf(entry: Entry<Ref, Output>): Asker[] {
    const { askers } = entry;
    return askers === undefined ? [] : askers instanceof Set ? [...askers] : [askers];
  }

  private addAsker(entry: Entry<Ref, Output>, asker: Asker): void {
    let waitsOn = this.askers.get(asker);
    if (waitsOn === undefined) {
      waitsOn = new Set();
      this.askers.set(asker, waitsOn);
    }
    if (waitsOn.has(entry)) return;
    waitsOn.add(entry);
    if (entry.askers === undefined) entry.askers = asker;
    else if (entry.askers instanceof Set) entry.askers.add(asker);
    else entry.askers = new Set([entry.askers, asker]);
    if (entry.state === 'waiting') this.enqueue(asker, entry);
  }

  private enqueue(asker: Asker, entry: Entry<Ref, Output>): void {
    if (!this.askers.has(asker)) return;
    const party = asker.party ?? asker;
    let queue = this.queues.get(party);
    if (queue === undefined) {
      queue = { items: [], head: 0 };
      this.queues.set(party, queue);
    }
    // The same flight asked again by the party (one client repeating a request) is queued once.
    if (queue.items[queue.items.length - 1] !== entry) queue.items.push(entry);
    if (!this.fresh.has(party) && !this.turns.has(party)) this.fresh.add(party);
  }

  /** Drops the read part of a queue once it is half of it; forgets an empty one. Says whether it has more. */
  private compact(party: Party, queue: Queue<Ref, Output>): boolean {
    if (queue.head === queue.items.length) {
      this.queues.delete(party);
      return false;
    }
    if (queue.head > 1024 && queue.head * 2 > queue.items.length) {
      queue.items.splice(0, queue.head);
      queue.head = 0;
    }
    return true;
  }
}

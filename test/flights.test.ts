import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Flights } from '../machines/flights.js';
import type { Asker, Flight } from '../machines/flights.js';

type Output = { url: string; status: string };
const dropped = (url: string): Output => ({ url, status: 'dropped' });

function flightOf(joined: ReturnType<Flights<string, Output>['join']>): Flight<string, Output> {
  assert.ok('flight' in joined, 'joined a flight');
  return joined.flight;
}

/** Starts every waiting flight in the order `next()` gives them. */
function drain(flights: Flights<string, Output>): string[] {
  const order: string[] = [];
  for (let flight = flights.next(); flight !== undefined; flight = flights.next()) {
    flights.start(flight, `ref:${flight.url}`);
    order.push(flight.url);
  }
  return order;
}

describe('Flights', () => {
  it('gives every asker of a URL the same flight, made once, and knows who waits on it', () => {
    const flights = new Flights<string, Output>();
    const a: Asker = { kind: 'socket' };
    const b: Asker = { kind: 'door' };
    const first = flights.join('u', a, 'waiting');
    const second = flights.join('u', b, 'waiting');
    const again = flights.join('u', a, 'waiting');
    assert.ok('created' in first && first.created);
    assert.ok('created' in second && !second.created);
    assert.equal(flightOf(second), flightOf(first));
    assert.equal(flightOf(again), flightOf(first));
    assert.deepEqual(new Set(flights.waitersOf('u')), new Set([a, b]));
    assert.equal(flights.size, 1);
    assert.equal(flights.count('waiting'), 1);
    // Joined twice by `a`, started once.
    assert.deepEqual(drain(flights), ['u']);
    assert.equal(flights.count('running'), 1);
  });

  it('answers a remembered failure without a flight until it is forgotten', () => {
    const flights = new Flights<string, Output>();
    flights.remember('u', { url: 'u', status: 'error' });
    assert.deepEqual(flights.join('u', { kind: 'x' }, 'waiting'), { output: { url: 'u', status: 'error' } });
    assert.equal(flights.size, 0);
    flights.forget('u');
    assert.ok('flight' in flights.join('u', { kind: 'x' }, 'waiting'));
  });

  it('drops, when its asker leaves, a flight nobody else waits on that has not started', async () => {
    const flights = new Flights<string, Output>();
    const leaving: Asker = { kind: 'socket' };
    const staying: Asker = { kind: 'socket' };
    const running = flightOf(flights.join('running', leaving, 'waiting'));
    flights.start(flights.next()!, 'ref');
    const alone = flightOf(flights.join('alone', leaving, 'waiting'));
    const shared = flightOf(flights.join('shared', leaving, 'waiting'));
    flights.join('shared', staying, 'waiting');
    const claiming = flightOf(flights.join('claiming', leaving, 'claiming'));

    const gone = flights.leave(leaving, dropped);
    assert.deepEqual(
      gone.sort((x, y) => x.url.localeCompare(y.url)),
      [
        { url: 'alone', state: 'waiting' },
        { url: 'claiming', state: 'claiming' },
      ],
    );
    assert.deepEqual(await alone.done, { url: 'alone', status: 'dropped' });
    assert.deepEqual(await claiming.done, { url: 'claiming', status: 'dropped' });
    assert.equal(flights.get('running'), running, 'a running download is never dropped');
    assert.equal(flights.get('shared'), shared, 'a flight another asker waits on stays');
    assert.deepEqual(flights.waitersOf('shared'), [staying]);
    assert.deepEqual(flights.waitersOf('running'), []);
    assert.equal(flights.count('waiting'), 1);
    assert.equal(flights.count('claiming'), 0);
    // Leaving twice changes nothing.
    assert.deepEqual(flights.leave(leaving, dropped), []);
    // What is left still starts.
    assert.deepEqual(drain(flights), ['shared']);
  });

  it('makes no new work for an asker that left and asks again (a check still on its way when its socket closed)', () => {
    const flights = new Flights<string, Output>();
    const gone: Asker = { kind: 'socket' };
    const other: Asker = { kind: 'socket' };
    flights.join('kept', other, 'waiting');
    flights.leave(gone, dropped);
    assert.deepEqual(flights.join('new', gone, 'waiting'), { gone: true });
    const joined = flights.join('kept', gone, 'waiting');
    assert.ok('flight' in joined && !joined.created, 'a flight in flight is handed back');
    assert.deepEqual(flights.waitersOf('kept'), [other], 'without the departed asker waiting on it');
    assert.equal(flights.size, 1);
    assert.deepEqual(drain(flights), ['kept']);
  });

  it('lets one asker with a long queue delay another asker\'s new URL by one start at most', () => {
    const flights = new Flights<string, Output>();
    const bulk: Asker = { kind: 'socket' };
    for (let i = 0; i < 1000; i++) flights.join(`bulk/${i}`, bulk, 'waiting');
    // Two of the bulk asker's URLs start; then another asker asks for one URL.
    flights.start(flights.next()!, 'r');
    flights.start(flights.next()!, 'r');
    const late: Asker = { kind: 'door' };
    flights.join('late', late, 'waiting');
    assert.equal(flights.next()!.url, 'late', 'an asker with nothing waiting goes first');
    assert.equal(flights.next()!.url, 'bulk/2');
  });

  it('gives the askers of one party (one client address\'s requests) one turn between them', () => {
    const flights = new Flights<string, Output>();
    // 100 door requests from one address, one URL each, then one WebSocket asker.
    for (let i = 0; i < 100; i++) flights.join(`door/${i}`, { kind: 'door', party: 'addr:10.0.0.1' }, 'waiting');
    const socket: Asker = { kind: 'socket' };
    for (let i = 0; i < 3; i++) flights.join(`ws/${i}`, socket, 'waiting');
    assert.deepEqual(drain(flights).slice(0, 6), ['door/0', 'ws/0', 'door/1', 'ws/1', 'door/2', 'ws/2']);
  });

  it('queues a flight once for a party that asks for it again and again (a client repeating one request)', () => {
    const flights = new Flights<string, Output>();
    for (let i = 0; i < 1000; i++) {
      const asker: Asker = { kind: 'proxy', party: 'addr:10.0.0.9' };
      flights.join('same', asker, 'waiting');
      flights.leave(asker, dropped);
      flights.join('same', { kind: 'socket', party: 'addr:10.0.0.9' }, 'waiting');
    }
    const queues = (flights as unknown as { queues: Map<string, { items: unknown[] }> }).queues;
    // The first flight was dropped when its only asker left (a stale entry, skipped); the second is queued once.
    assert.ok((queues.get('addr:10.0.0.9')?.items.length ?? 0) <= 2, `${queues.get('addr:10.0.0.9')?.items.length} entries for 2,000 asks`);
    assert.deepEqual(drain(flights), ['same']);
  });

  it('takes askers in turn, one flight each, each asker in the order it asked', () => {
    const flights = new Flights<string, Output>();
    const [a, b, c]: Asker[] = [{ kind: 'a' }, { kind: 'b' }, { kind: 'c' }];
    for (const url of ['a1', 'a2', 'a3', 'a4']) flights.join(url, a!, 'waiting');
    for (const url of ['b1', 'b2']) flights.join(url, b!, 'waiting');
    flights.join('c1', c!, 'waiting');
    assert.deepEqual(drain(flights), ['a1', 'b1', 'c1', 'a2', 'b2', 'a3', 'a4']);
  });

  it('starts a flight several askers queued once, skipping it in the other queues', () => {
    const flights = new Flights<string, Output>();
    const a: Asker = { kind: 'a' };
    const b: Asker = { kind: 'b' };
    flights.join('shared', a, 'waiting');
    flights.join('a2', a, 'waiting');
    flights.join('shared', b, 'waiting');
    flights.join('b2', b, 'waiting');
    assert.deepEqual(drain(flights), ['shared', 'b2', 'a2']);
    assert.equal(flights.next(), undefined);
  });

  it('moves a flight through claiming, elsewhere and back, and queues it for its askers when it is claimed here', () => {
    const flights = new Flights<string, Output>();
    const a: Asker = { kind: 'a' };
    const flight = flightOf(flights.join('u', a, 'claiming'));
    assert.equal(flights.next(), undefined, 'a flight being claimed does not start');
    flights.heldBy(flight, 'node-2');
    assert.equal(flight.state, 'elsewhere');
    assert.equal(flight.owner, 'node-2');
    assert.deepEqual(flights.urls('elsewhere'), ['u']);
    flights.reclaim(flight);
    assert.equal(flight.state, 'claiming');
    assert.equal(flight.owner, undefined);
    flights.queue(flight);
    assert.equal(flights.count('waiting'), 1);
    assert.equal(flights.next(), flight);
  });

  it('holds a parked flight outside the queue, kept by its keeper when other askers leave, and queues it for its askers when its host reopens', () => {
    const flights = new Flights<string, Output>();
    const keeper: Asker = { kind: 'parked', bulk: true };
    const socket: Asker = { kind: 'socket' };
    const flight = flightOf(flights.join('u', keeper, 'parked'));
    flights.join('u', socket, 'parked');
    flightOf(flights.join('other', socket, 'waiting'));
    assert.equal(flights.count('parked'), 1);
    assert.deepEqual(flights.urls('parked'), ['u']);
    assert.deepEqual(drain(flights), ['other'], 'a parked flight takes no worker slot');
    assert.deepEqual(flights.leave(socket, dropped), [], 'the keeper still holds it');
    assert.equal(flight.state, 'parked');
    assert.equal(flights.isInteractive('u'), false, 'only bulk work waits on it');
    flights.queue(flight);
    assert.equal(flights.count('parked'), 0);
    assert.equal(flight.state, 'waiting');
    assert.deepEqual(drain(flights), ['u']);
  });

  it('settles a flight once with its outcome, and forgets askers that wait on nothing', async () => {
    const flights = new Flights<string, Output>();
    const a: Asker = { kind: 'a' };
    const flight = flightOf(flights.join('u', a, 'waiting'));
    flights.start(flights.next()!, 'ref');
    flights.settle(flight, { url: 'u', status: 'ok' });
    flights.settle(flight, { url: 'u', status: 'late' });
    assert.deepEqual(await flight.done, { url: 'u', status: 'ok' });
    assert.equal(flights.size, 0);
    assert.equal(flights.askerCount, 0);
    assert.deepEqual({ ...['claiming', 'waiting', 'running', 'elsewhere'].map((s) => flights.count(s as 'waiting')) }, { 0: 0, 1: 0, 2: 0, 3: 0 });
    // A new flight for the URL is a new flight; the old one's leftovers do not disturb it.
    const again = flightOf(flights.join('u', a, 'waiting'));
    assert.notEqual(again, flight);
    assert.equal(flights.next(), again);
  });

  it('joins, starts and drops 100,000 flights in linear time', () => {
    // 25,000 and 100,000 in the same run: linear is ~4x, quadratic ~16x.
    const timeFor = (n: number) => {
      const flights = new Flights<string, Output>();
      const askers: Asker[] = Array.from({ length: 10 }, (_, i) => ({ kind: `a${i}` }));
      const start = process.hrtime.bigint();
      for (let i = 0; i < n; i++) flights.join(`u/${i}`, askers[i % 10]!, 'waiting');
      for (let i = 0; i < n / 2; i++) flights.start(flights.next()!, 'r');
      for (const asker of askers) flights.leave(asker, dropped);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      assert.equal(flights.size, n / 2, 'the running half stays');
      return ms;
    };
    timeFor(10_000);
    const small = Math.min(timeFor(25_000), timeFor(25_000));
    const large = Math.min(timeFor(100_000), timeFor(100_000));
    assert.ok(large / small < 9, `100k took ${large.toFixed(0)} ms, 25k took ${small.toFixed(0)} ms`);
  });
});

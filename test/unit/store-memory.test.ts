import t from 'tap';
import { WardgateError } from '../../proxy/errors.js';
import { MemoryStore, StoreClosedError, StoreWrongTypeError } from '../../proxy/store/memory.js';
import type { Json } from '../../proxy/store/store.js';
import { sleep } from '../helpers/wait.js';

/*
 * MemoryStore: the Store contract in one process. Expiry on the real clock uses TTLs of
 * tens of milliseconds and a short sleep past them, and only checks that entries are gone
 * afterwards: on a loaded machine the process can be descheduled for longer than such a
 * TTL between two statements, so "still there before the deadline" is checked on a clock
 * the test moves by hand instead.
 */

const LONG = 60_000;

/** Blocks the event loop: no timer can run, as under a CPU-bound burst in production. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* spin */ }
}

/** A clock for MemoryStore that moves only when told to. Starts above 0, as it must. */
function manualClock(): { now: () => number; advance(ms: number): void } {
  let time = 1_000;
  return { now: () => time, advance: (ms) => { time += ms; } };
}

t.test('get, set and replace', async (t) => {
  const store = new MemoryStore();
  t.equal(await store.get('missing'), undefined);
  await store.set('k', { a: 1, list: [1, 'two', null, true] }, LONG);
  t.same(await store.get('k'), { a: 1, list: [1, 'two', null, true] });
  await store.set('k', 'second', LONG);
  t.equal(await store.get('k'), 'second');
  for (const value of [null, false, 0, '', [], {}] as Json[]) {
    await store.set('scalar', value, LONG);
    t.same(await store.get('scalar'), value, `${JSON.stringify(value)} round-trips`);
  }
  t.equal(store.size, 2);
});

t.test('values expire after their TTL', async (t) => {
  const store = new MemoryStore();
  await store.set('short', 1, 30);
  await store.set('long', 2, LONG);
  await sleep(60);
  t.equal(await store.get('short'), undefined, 'gone after it');
  t.equal(await store.get('long'), 2);
  t.equal(await store.take('short'), undefined);
  t.equal(await store.delete('short'), false, 'an expired key was not there to delete');
});

t.test('values live exactly their TTL (manual clock)', async (t) => {
  const clock = manualClock();
  const store = new MemoryStore({ now: clock.now });
  await store.set('k', 1, 30);
  await store.set('taken', 1, 30);
  await store.set('deleted', 1, 30);
  clock.advance(30);
  t.equal(await store.get('k'), 1, 'present at the deadline');
  t.equal(await store.add('k', 2, 30), false, 'and blocks add');
  clock.advance(1);
  t.equal(await store.get('k'), undefined, 'gone just after it');
  t.equal(await store.take('taken'), undefined);
  t.equal(await store.delete('deleted'), false);
  t.equal(await store.add('k', 2, 30), true);
  await store.get('k');
  clock.advance(20);
  t.equal(await store.get('k'), 2, 'reading does not extend the TTL...');
  clock.advance(11);
  t.equal(await store.get('k'), undefined, '...so it still ends on time');
});

t.test('an expired entry is not returned even when timers have not run', async (t) => {
  // lru-cache would otherwise reuse a clock reading until a timer clears it; with the
  // event loop blocked that timer never runs.
  // Each first read below takes the clock reading lru-cache would keep; what it returns
  // depends on scheduling and is not checked.
  const store = new MemoryStore();
  await store.set('k', 'v', 30);
  await store.get('k');
  busy(50);
  t.equal(await store.get('k'), undefined);
  await store.set('g', 'v', 30);
  await store.add('g', 'first try', LONG);
  busy(50);
  t.equal(await store.add('g', 'other', LONG), true, 'an expired key does not block add');
  t.equal(await store.get('g'), 'other');
});

t.test('set replaces the TTL too', async (t) => {
  const store = new MemoryStore();
  await store.set('k', 1, LONG);
  await store.set('k', 2, 30);
  await sleep(60);
  t.equal(await store.get('k'), undefined);
  await store.set('k', 1, 30);
  await store.set('k', 2, LONG);
  await sleep(60);
  t.equal(await store.get('k'), 2);
});

t.test('add sets only an absent key', async (t) => {
  const store = new MemoryStore();
  t.equal(await store.add('lock', 'a', LONG), true);
  t.equal(await store.add('lock', 'b', LONG), false);
  t.equal(await store.get('lock'), 'a', 'the first value stays');
  await store.set('short', 1, 30);
  await sleep(60);
  t.equal(await store.add('short', 2, LONG), true, 'an expired key counts as absent');
  await store.addMember('set', 'm', LONG);
  t.equal(await store.add('set', 1, LONG), false, 'a set holds the key too');
});

t.test('100 concurrent adds: exactly one wins', async (t) => {
  const store = new MemoryStore();
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => store.add('guard', i, LONG)));
  t.equal(results.filter(Boolean).length, 1);
  t.equal(await store.get('guard'), results.indexOf(true));
});

t.test('take reads and deletes', async (t) => {
  const store = new MemoryStore();
  await store.set('code', { user: 'u1' }, LONG);
  t.same(await store.take('code'), { user: 'u1' });
  t.equal(await store.take('code'), undefined);
  t.equal(await store.get('code'), undefined);
});

t.test('100 concurrent takes: exactly one gets the value', async (t) => {
  const store = new MemoryStore();
  await store.set('code', 'secret', LONG);
  const results = await Promise.all(Array.from({ length: 100 }, () => store.take<string>('code')));
  t.same(results.filter((r) => r !== undefined), ['secret']);
});

t.test('delete says whether the key existed', async (t) => {
  const store = new MemoryStore();
  await store.set('k', 1, LONG);
  t.equal(await store.delete('k'), true);
  t.equal(await store.delete('k'), false);
  t.equal(await store.get('k'), undefined);
  await store.addMember('s', 'm', LONG);
  t.equal(await store.delete('s'), true, 'deletes sets too');
  t.same(await store.members('s'), []);
});

t.test('callers get copies: nobody can change stored state by reference', async (t) => {
  const store = new MemoryStore();
  const original = { roles: ['nurse'], nested: { ward: 7 } };
  await store.set('k', original, LONG);
  original.roles.push('admin');
  original.nested.ward = 1;
  const first = await store.get<{ roles: string[]; nested: { ward: number } }>('k');
  t.same(first, { roles: ['nurse'], nested: { ward: 7 } }, 'changing the argument after set does not change the store');
  first!.roles.push('admin');
  first!.nested.ward = 1;
  t.same(await store.get('k'), { roles: ['nurse'], nested: { ward: 7 } }, 'changing a returned value does not either');
  t.not(await store.get('k'), await store.get('k'), 'every read is a new object');
  const members = await store.members('none');
  members.push('x');
  await store.addMember('s', 'a', LONG);
  (await store.members('s')).push('b');
  t.same(await store.members('s'), ['a'], 'members returns a copy');
});

t.test('values are JSON: the same rules as after an IPC round trip', async (t) => {
  const store = new MemoryStore();
  await store.set('k', { kept: 1, dropped: undefined }, LONG);
  t.same(await store.get('k'), { kept: 1 }, 'undefined properties are dropped');
  await t.rejects(store.set('k', undefined as unknown as Json, LONG), TypeError);
  await t.rejects(store.set('k', (() => 1) as unknown as Json, LONG), TypeError);
  await t.rejects(store.set('k', 1n as unknown as Json, LONG), TypeError, 'a BigInt is refused');
  const cycle: { self?: unknown } = {};
  cycle.self = cycle;
  await t.rejects(store.add('k2', cycle as Json, LONG), TypeError, 'a cycle is refused');
  t.equal(await store.get('k2'), undefined, 'and add wrote nothing');
  await t.rejects(store.publish('c', undefined as unknown as Json), TypeError);
});

t.test('keys, members, channels and TTLs are checked', async (t) => {
  const store = new MemoryStore();
  for (const ttl of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '100' as unknown as number]) {
    await t.rejects(store.set('k', 1, ttl), TypeError, `set TTL ${String(ttl)}`);
    await t.rejects(store.add('k', 1, ttl), TypeError, `add TTL ${String(ttl)}`);
    await t.rejects(store.addMember('k', 'm', ttl), TypeError, `addMember TTL ${String(ttl)}`);
  }
  t.equal(store.size, 0, 'nothing was written with a bad TTL');
  await t.rejects(store.get(''), TypeError);
  await t.rejects(store.delete(42 as unknown as string), TypeError);
  await t.rejects(store.addMember('s', 42 as unknown as string, LONG), TypeError);
  await t.rejects(store.publish('', 1), TypeError);
  t.throws(() => store.subscribe('', () => {}), TypeError);
  t.throws(() => new MemoryStore({ max: 0 }), TypeError);
  t.throws(() => new MemoryStore({ max: 1.5 }), TypeError);
  await store.set('fractional', 1, 0.5);
  t.pass('a fractional TTL is fine');
});

t.test('sets: add, list, remove', async (t) => {
  const store = new MemoryStore();
  t.same(await store.members('user:1'), []);
  await store.addMember('user:1', 'sid-a', LONG);
  await store.addMember('user:1', 'sid-b', LONG);
  await store.addMember('user:1', 'sid-a', LONG);
  t.same(await store.members('user:1'), ['sid-a', 'sid-b'], 'no duplicates, in insertion order');
  await store.removeMember('user:1', 'sid-a');
  await store.removeMember('user:1', 'not-there');
  await store.removeMember('no-such-set', 'x');
  t.same(await store.members('user:1'), ['sid-b']);
  await store.removeMember('user:1', 'sid-b');
  t.same(await store.members('user:1'), []);
  t.equal(store.size, 0, 'an emptied set is gone, as in Redis');
  t.equal(await store.add('user:1', 'now a value', LONG), true);
});

t.test('sets expire', async (t) => {
  const store = new MemoryStore();
  await store.addMember('short', 'a', 30);
  await store.addMember('kept', 'a', LONG);
  await store.addMember('kept', 'b', 30);
  await sleep(60);
  t.same(await store.members('short'), [], 'a set expires');
  t.same(await store.members('kept'), ['a', 'b'], 'a shorter TTL does not shorten a set');
  await store.addMember('short', 'b', LONG);
  t.same(await store.members('short'), ['b'], 'an expired set starts afresh');
});

t.test('a set lives max(what it had left, the new TTL) (manual clock)', async (t) => {
  const clock = manualClock();
  const store = new MemoryStore({ now: clock.now });
  await store.addMember('s', 'a', 100);
  clock.advance(60);
  await store.addMember('s', 'b', 20);
  clock.advance(40);
  t.same(await store.members('s'), ['a', 'b'], 'the longer remaining TTL (40) holds');
  clock.advance(1);
  t.same(await store.members('s'), [], 'and ends on time');

  await store.addMember('s', 'a', 30);
  clock.advance(20);
  await store.addMember('s', 'b', 50);
  clock.advance(50);
  t.same(await store.members('s'), ['a', 'b'], 'a longer new TTL extends the set from now');
  clock.advance(1);
  t.same(await store.members('s'), []);

  await store.addMember('s', 'a', 30);
  clock.advance(10);
  await store.removeMember('s', 'x');
  await store.members('s');
  clock.advance(21);
  t.same(await store.members('s'), [], 'reading or removing does not extend it');
});

t.test('a key holds a value or a set, not both', async (t) => {
  const store = new MemoryStore();
  await store.set('v', 1, LONG);
  await store.addMember('s', 'm', LONG);
  const calls: Array<[string, () => Promise<unknown>]> = [
    ['get on a set', () => store.get('s')],
    ['take on a set', () => store.take('s')],
    ['members on a value', () => store.members('v')],
    ['addMember on a value', () => store.addMember('v', 'm', LONG)],
    ['removeMember on a value', () => store.removeMember('v', 'm')],
  ];
  for (const [what, call] of calls) {
    await t.rejects(call(), { code: 'store-wrong-type', constructor: StoreWrongTypeError }, what);
  }
  t.same(await store.members('s'), ['m'], 'a failed take leaves the set alone');
  await store.set('s', 'replaced', LONG);
  t.equal(await store.get('s'), 'replaced', 'set replaces a set, as in Redis');
});

t.test('the least recently used entry goes when the store is full', async (t) => {
  const evicted: string[] = [];
  const store = new MemoryStore({ max: 2, onEvict: (key) => evicted.push(key) });
  await store.set('a', 1, LONG);
  await store.set('b', 2, LONG);
  await store.get('a');
  await store.set('c', 3, LONG);
  t.equal(await store.get('b'), undefined);
  t.equal(await store.get('a'), 1);
  t.equal(await store.get('c'), 3);
  await store.set('c', 4, LONG);
  await store.delete('c');
  t.same(evicted, ['b'], 'only evictions are reported, not replacements or deletes');
  const quiet = new MemoryStore({ max: 1 });
  await quiet.set('a', 1, LONG);
  await quiet.set('b', 2, LONG);
  t.equal(quiet.size, 1, 'works without onEvict');
});

t.test('publish runs subscribers synchronously, each on its own copy', async (t) => {
  const store = new MemoryStore();
  const seen: Array<[string, Json]> = [];
  store.subscribe('revoke', (m) => {
    seen.push(['first', m]);
    (m as { sid: string }).sid = 'changed';
  });
  store.subscribe('revoke', (m) => seen.push(['second', m]));
  store.subscribe('other', (m) => seen.push(['other', m]));
  const published = store.publish('revoke', { sid: 's1' });
  t.same(seen, [['first', { sid: 'changed' }], ['second', { sid: 's1' }]], 'ran before publish returned; the second handler saw the original');
  await published;
  await store.publish('nobody-listens', 1);
  t.equal(seen.length, 2);
});

t.test('a throwing subscriber stops neither the others nor publish', async (t) => {
  const errors: Array<[unknown, string]> = [];
  const store = new MemoryStore({ onHandlerError: (err, channel) => errors.push([err, channel]) });
  const ran: string[] = [];
  const boom = new Error('boom');
  store.subscribe('c', () => ran.push('before'));
  store.subscribe('c', () => { throw boom; });
  store.subscribe('c', () => ran.push('after'));
  await store.publish('c', 'm');
  t.same(ran, ['before', 'after']);
  t.same(errors, [[boom, 'c']]);

  const reporterThrows = new MemoryStore({ onHandlerError: () => { throw new Error('reporter'); } });
  let after = false;
  reporterThrows.subscribe('c', () => { throw boom; });
  reporterThrows.subscribe('c', () => { after = true; });
  await reporterThrows.publish('c', 'm');
  t.ok(after, 'even when the error reporter throws');
});

t.test('without onHandlerError a throwing subscriber becomes a process warning', async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error): void => { warnings.push(w.message); };
  process.on('warning', onWarning);
  t.teardown(() => { process.off('warning', onWarning); });
  const store = new MemoryStore();
  store.subscribe('c', () => { throw new Error('handler failed'); });
  store.subscribe('c', () => { throw 'not an Error'; });
  await store.publish('c', 1);
  await sleep(10);
  t.equal(warnings.length, 2);
  t.match(warnings[0], /store subscriber on "c" threw: Error: handler failed\n\s+at /, 'with the stack');
  t.match(warnings[1], /store subscriber on "c" threw: 'not an Error'/);
});

t.test('unsubscribe', async (t) => {
  const store = new MemoryStore();
  const ran: string[] = [];
  const handler = (m: Json): void => { ran.push(String(m)); };
  const offA = store.subscribe('c', handler);
  const offB = store.subscribe('c', handler);
  await store.publish('c', 1);
  t.same(ran, ['1', '1'], 'the same function twice is two subscriptions');
  offA();
  offA();
  await store.publish('c', 2);
  t.same(ran, ['1', '1', '2']);
  offB();
  await store.publish('c', 3);
  t.same(ran, ['1', '1', '2']);

  const order: string[] = [];
  let offSecond = (): void => {};
  store.subscribe('d', () => { order.push('first'); offSecond(); });
  offSecond = store.subscribe('d', () => order.push('second'));
  store.subscribe('d', () => order.push('third'));
  await store.publish('d', 1);
  t.same(order, ['first', 'second', 'third'], 'unsubscribing during delivery skips nobody in that delivery');
  await store.publish('d', 2);
  t.same(order, ['first', 'second', 'third', 'first', 'third']);
});

t.test('publish awaits the relay after local delivery', async (t) => {
  const store = new MemoryStore();
  const events: string[] = [];
  store.subscribe('c', () => events.push('local'));
  let release = (): void => {};
  const detach = store.attachRelay(async (channel, text) => {
    events.push(`relay ${channel} ${text}`);
    await new Promise<void>((resolve) => { release = resolve; });
  });
  t.throws(() => store.attachRelay(async () => {}), /already has a relay/);
  let resolved = false;
  const published = store.publish('c', { a: 1 }).then(() => { resolved = true; });
  t.same(events, ['local', 'relay c {"a":1}']);
  await sleep(10);
  t.notOk(resolved, 'still waiting for the relay');
  release();
  await published;
  detach();
  detach();
  await store.publish('c', 2);
  t.equal(events.length, 3, 'a detached relay is not called');
  store.attachRelay(async () => {});
  t.pass('a new relay can be attached after detaching');
});

t.test('a closed store refuses every call', async (t) => {
  const store = new MemoryStore();
  await store.set('k', 1, LONG);
  let delivered = false;
  const unsubscribe = store.subscribe('c', () => { delivered = true; });
  await store.close();
  t.equal(store.size, 0, 'close clears');
  const calls: Array<[string, () => Promise<unknown>]> = [
    ['get', () => store.get('k')],
    ['set', () => store.set('k', 1, LONG)],
    ['add', () => store.add('k', 1, LONG)],
    ['take', () => store.take('k')],
    ['delete', () => store.delete('k')],
    ['addMember', () => store.addMember('s', 'm', LONG)],
    ['removeMember', () => store.removeMember('s', 'm')],
    ['members', () => store.members('s')],
    ['publish', () => store.publish('c', 1)],
  ];
  for (const [name, call] of calls) {
    await t.rejects(call(), { code: 'store-closed', constructor: StoreClosedError }, name);
  }
  t.throws(() => store.subscribe('c', () => {}), StoreClosedError);
  unsubscribe();
  t.pass('unsubscribing after close is harmless');
  t.throws(() => store.attachRelay(async () => {}), StoreClosedError);
  t.notOk(delivered);
  await store.close();
  t.pass('closing twice is harmless');
  const err = new StoreClosedError();
  t.ok(err instanceof WardgateError);
  t.equal(err.name, 'StoreClosedError');
});

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t, { type Test } from 'tap';
import { clearOverride, listOverrides, setOverride } from '../../plugins/device/overrides.js';
import { DEFAULT_STORE_PATH, storeSchema } from '../../proxy/store/config.js';
import { ACCESS_PREFIXES, DURABLE_INDEXES, DURABLE_PREFIXES, isAccessKey, isDurableKey } from '../../proxy/store/durable.js';
import { processIdentity } from '../../proxy/store/file-lock.js';
import { FileStore, FileStoreError, type FileStoreOptions } from '../../proxy/store/file.js';
import { IpcPeerSet, IpcStore, serveStore, type StoreMessage } from '../../proxy/store/ipc.js';
import { MemoryStore, StoreClosedError, StoreWrongTypeError } from '../../proxy/store/memory.js';
import { openStore } from '../../proxy/store/open.js';
import { StoreUnavailableError, type Json } from '../../proxy/store/store.js';
import { until } from '../helpers/wait.js';

/*
 * FileStore: grants and other durable keys survive close and reopen (and, in
 * test/integration/store-file-kill.test.ts, a SIGKILL); everything else behaves as in
 * MemoryStore. Each test works in a fresh directory. Damage is made by editing the file
 * between a close and the next open, as a disk fault or a hand edit would.
 */

const LONG = 3_600_000;

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A real pino logger whose lines are kept for the test to read. */
function capturingLogger(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as LogLine) });
  return { logger, lines };
}

const WARN = 40;
const ERROR = 50;

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'wardgate-file-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A store file in a fresh directory, and a way to open it with a capturing logger. */
function fixture(t: Test, defaults: Partial<FileStoreOptions> = {}) {
  const path = join(tempDir(t), 'state', 'store.jsonl');
  const { logger, lines } = capturingLogger();
  const opened = new Set<FileStore>();
  t.teardown(async () => {
    for (const store of opened) await store.close();
  });
  const open = async (options: Partial<FileStoreOptions> = {}): Promise<FileStore> => {
    const store = await FileStore.open({ path, logger, ...defaults, ...options });
    opened.add(store);
    return store;
  };
  return { path, logger, logs: lines, open };
}

function fileLines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter((line) => line !== '');
}

/** A clock that moves only when told to; starts above 0 as MemoryStore requires. */
function manualClock(start: number): { now: () => number; advance(ms: number): void } {
  let time = start;
  return { now: () => time, advance: (ms) => { time += ms; } };
}

t.test('isDurableKey: grants, their indexes, break-glass, device overrides and subjects', async (t) => {
  t.same(DURABLE_PREFIXES, ['grant:', 'grants:', 'break-glass:', 'device-override:', 'subject:']);
  for (const key of ['grant:g_1', 'grants:all', 'break-glass:bg_1', 'break-glass:all', 'device-override:d1', 'subject:u1']) t.ok(isDurableKey(key), key);
  for (const key of ['session:1', 'grant-lock:g_1', 'replay:x', 'Grant:g_1', '']) t.notOk(isDurableKey(key), key);
});

t.test('access prefixes and index sets: what recovery removes and what it relists', async (t) => {
  t.same(ACCESS_PREFIXES, ['grant:', 'break-glass:']);
  for (const key of ['grant:g_1', 'break-glass:bg_1']) t.ok(isAccessKey(key), key);
  for (const key of ['grants:all', 'grant-lock:g_1', 'break-glass-lock:bg_1', 'device-override:d1', 'subject:user:u1']) t.notOk(isAccessKey(key), key);
  t.same(DURABLE_INDEXES, [
    { key: 'grants:all', prefix: 'grant:' },
    { key: 'break-glass:all', prefix: 'break-glass:' },
    { key: 'device-override:', prefix: 'device-override:' },
  ]);
  for (const { key, prefix } of DURABLE_INDEXES) t.ok(isDurableKey(key) && isDurableKey(`${prefix}x`), `${key} and what it lists are durable`);
});

t.test('every operation on a durable key survives close and reopen', async (t) => {
  const { path, open } = fixture(t);
  const store = await open();
  const kinds: Json[] = [null, false, 0, -1.5, '', 'é 😀 \u2028 "quoted" \\ \n', [], {}, { nested: { list: [1, 'two', null, true] } }];
  for (const [i, value] of kinds.entries()) await store.set(`grant:kind-${i}`, value, LONG);
  await store.set('grant:replaced', 'first', LONG);
  await store.set('grant:replaced', 'second', LONG);
  t.equal(await store.add('grant:added', 'first', LONG), true);
  t.equal(await store.add('grant:added', 'second', LONG), false, 'add leaves an existing key alone');
  await store.set('grant:taken', 'single use', LONG);
  t.equal(await store.take('grant:taken'), 'single use');
  t.equal(await store.take('grant:taken'), undefined);
  await store.set('grant:deleted', 1, LONG);
  t.equal(await store.delete('grant:deleted'), true);
  t.equal(await store.delete('grant:never'), false);
  for (const member of ['a', 'b', 'c']) await store.addMember('grants:all', member, LONG);
  await store.removeMember('grants:all', 'b');
  await store.removeMember('grants:all', 'not a member');
  await store.addMember('grants:emptied', 'x', LONG);
  await store.removeMember('grants:emptied', 'x');
  await store.close();

  const again = await open();
  t.same(again.recovery.dropped, [], 'nothing dropped');
  for (const [i, value] of kinds.entries()) t.same(await again.get(`grant:kind-${i}`), value, `kinds[${i}] round-trips`);
  t.equal(await again.get('grant:replaced'), 'second');
  t.equal(await again.get('grant:added'), 'first');
  t.equal(await again.get('grant:taken'), undefined, 'a take stays taken');
  t.equal(await again.get('grant:deleted'), undefined, 'a delete stays deleted');
  t.same((await again.members('grants:all')).sort(), ['a', 'c']);
  t.same(await again.members('grants:emptied'), [], 'an emptied set stays gone');
  t.equal(await again.add('grant:added', 'third', LONG), false, 'and still blocks add');
  t.equal(fileLines(path).length, kinds.length + 2 + 2, 'reopening compacted the journal to the live records');
  t.equal(statSync(path).mode & 0o777, 0o600, 'the file is private to its owner');
  t.equal(statSync(join(path, '..')).mode & 0o777, 0o700, 'and so is the directory it was created in');
});

t.test('each line carries a checksum over the rest of it', async (t) => {
  const { path, open } = fixture(t);
  const store = await open();
  await store.set('grant:g', { route: 'epic' }, LONG);
  const [line] = fileLines(path);
  t.match(line, /^\{"v":1,"op":"set","key":"grant:g","value":\{"route":"epic"\},"exp":\d+,"sum":"[0-9a-f]{16}"\}$/);
});

t.test('TTLs are kept as wall-clock times: a record expires on time across restarts', async (t) => {
  const wall = manualClock(1_700_000_000_000);
  const { path, open } = fixture(t, { wallClock: wall.now });
  // Each process has its own monotonic clock, restarting low: only the wall clock carries over.
  const store = await open({ now: manualClock(50_000).now });
  await store.set('grant:short', 'short', 1_000);
  await store.set('grant:long', 'long', 60_000);
  await store.addMember('grants:index', 'a', 1_000);
  await store.addMember('grants:index', 'b', 5_000);
  await store.addMember('grants:index', 'c', 2_000);
  const short = fileLines(path).map((l) => JSON.parse(l) as { key: string; exp: number }).find((r) => r.key === 'grant:short');
  t.equal(short?.exp, 1_700_000_001_000, 'exp is the absolute expiry');
  await store.close();

  wall.advance(1_000);
  let again = await open({ now: manualClock(7).now });
  t.equal(await again.get('grant:short'), 'short', 'present at its expiry');
  await again.close();
  wall.advance(1);
  again = await open({ now: manualClock(7).now });
  t.equal(await again.get('grant:short'), undefined, 'gone just after it');
  t.equal(await again.get('grant:long'), 'long');
  t.same((await again.members('grants:index')).sort(), ['a', 'b', 'c'], 'a set lives as long as its longest-lived member asked');
  t.notOk(fileLines(path).some((l) => l.includes('grant:short')), 'the expired record is gone from the file too');
  await again.close();
  wall.advance(4_000);
  again = await open({ now: manualClock(7).now });
  t.same(await again.members('grants:index'), []);
  await again.close();
  t.equal(fileLines(path).length, 1, 'only the long grant is left');
});

t.test('in the process, durable TTLs run on the monotonic clock like MemoryStore\'s', async (t) => {
  const clock = manualClock(1_000);
  const wall = manualClock(1_700_000_000_000);
  const { open } = fixture(t, { now: clock.now, wallClock: wall.now });
  const store = await open();
  await store.set('grant:g', 1, 30);
  await store.addMember('grants:s', 'm', 30);
  wall.advance(LONG);
  t.equal(await store.get('grant:g'), 1, 'a wall-clock step changes nothing');
  clock.advance(30);
  t.equal(await store.get('grant:g'), 1, 'present at the deadline');
  t.equal(await store.add('grant:g', 2, 30), false);
  clock.advance(1);
  t.equal(await store.get('grant:g'), undefined, 'gone just after it');
  t.same(await store.members('grants:s'), []);
  t.equal(await store.delete('grant:g'), false, 'an expired key was not there to delete');
  t.equal(await store.add('grant:g', 2, 30), true, 'and does not block add');
  await store.addMember('grants:s', 'n', 30);
  t.same(await store.members('grants:s'), ['n'], 'a set that expired starts afresh');
  await store.set('grant:unread', 1, 30);
  clock.advance(31);
  await store.compact();
  t.notOk(readFileSync(store.path, 'utf8').includes('grant:unread'), 'compaction drops what expired, read or not');
});

t.test('a set that expired and started again does not bring back its old members after a restart', async (t) => {
  const clock = manualClock(1_000);
  const wall = manualClock(1_700_000_000_000);
  const { open } = fixture(t, { now: clock.now, wallClock: wall.now });
  const store = await open();
  await store.addMember('grants:s', 'old', 100);
  clock.advance(200);
  wall.advance(200);
  await store.addMember('grants:s', 'new', LONG);
  await store.close();
  const again = await open();
  t.same(await again.members('grants:s'), ['new']);
});

t.test('keys that are not durable stay in memory only, exactly as in MemoryStore', async (t) => {
  const { path, open } = fixture(t);
  const store = await open();
  await store.set('grant:g', 'kept', LONG);
  const syncs = store.syncs;
  await store.set('session:s1', { sub: 'u1' }, LONG);
  t.equal(await store.add('replay:jti', 1, LONG), true);
  await store.addMember('user:u1', 's1', LONG);
  t.same(await store.get('session:s1'), { sub: 'u1' });
  await store.set('session:s2', 2, LONG);
  t.equal(await store.take('session:s2'), 2);
  await store.set('session:s3', 3, LONG);
  t.equal(await store.delete('session:s3'), true);
  await store.addMember('user:u1', 's2', LONG);
  await store.removeMember('user:u1', 's2');
  t.same(await store.members('user:u1'), ['s1']);
  t.equal(store.syncs, syncs, 'no sync for them');
  t.notMatch(readFileSync(path, 'utf8'), /session:|replay:|user:/, 'and no line');
  await store.close();
  const again = await open();
  t.equal(await again.get('session:s1'), undefined, 'gone after a restart');
  t.same(await again.members('user:u1'), []);
  t.equal(await again.get('grant:g'), 'kept');
});

t.test('the durable predicate decides what is journaled; records of keys it no longer covers are left out', async (t) => {
  const { path, open } = fixture(t);
  const store = await open({ durable: (key) => key.startsWith('keep:') });
  await store.set('keep:a', 1, LONG);
  await store.set('grant:b', 2, LONG);
  t.same(fileLines(path).map((line) => (JSON.parse(line) as { key: string }).key), ['keep:a']);
  await store.close();
  const again = await open();
  t.equal(await again.get('keep:a'), undefined, 'no longer durable: not carried over');
  t.equal(await again.get('grant:b'), undefined);
  t.equal(fileLines(path).length, 0);
});

t.test('durable keys are never evicted by the LRU bound', async (t) => {
  const evicted: string[] = [];
  const { open } = fixture(t);
  const store = await open({ max: 10, onEvict: (key) => evicted.push(key) });
  for (let i = 0; i < 30; i++) await store.set(`grant:${i}`, i, LONG);
  await store.addMember('grants:all', 'x', LONG);
  for (let i = 0; i < 500; i++) await store.set(`session:${i}`, i, LONG);
  t.equal(evicted.length, 490, 'sessions were evicted to stay within max');
  t.notOk(evicted.some((key) => isDurableKey(key)), 'no durable key among them');
  for (let i = 0; i < 30; i++) t.equal(await store.get(`grant:${i}`), i);
  t.same(await store.members('grants:all'), ['x']);
  t.equal(store.size, 10 + 31, 'size counts both parts');
});

t.test('group commit: calls made while a sync is in flight share the next one', async (t) => {
  const { open } = fixture(t);
  const store = await open();
  let before = store.syncs;
  await Promise.all(Array.from({ length: 200 }, (_, i) => store.set(`grant:burst-${i}`, i, LONG)));
  const burst = store.syncs - before;
  t.ok(burst >= 1 && burst <= 2, `200 sets made at once: ${burst} sync(s)`);

  // Calls arriving one by one, each in its own turn of the event loop, as IPC messages do.
  before = store.syncs;
  const trickle: Promise<void>[] = [];
  for (let i = 0; i < 300; i++) {
    trickle.push(store.set(`grant:trickle-${i}`, i, LONG));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await Promise.all(trickle);
  const trickled = store.syncs - before;
  t.ok(trickled < 300, `300 sets arriving one per loop turn: ${trickled} syncs`);
  t.comment(`syncs: 200 concurrent sets -> ${burst}; 300 trickled sets -> ${trickled}`);

  before = store.syncs;
  for (let i = 0; i < 5; i++) await store.set('grant:one-by-one', i, LONG);
  t.equal(store.syncs - before, 5, 'a caller that waits for each write gets a sync each');
  await store.close();
  const again = await open();
  for (let i = 0; i < 200; i++) t.equal(await again.get(`grant:burst-${i}`), i);
  for (let i = 0; i < 300; i++) t.equal(await again.get(`grant:trickle-${i}`), i);
});

t.test('compaction shrinks the journal, keeps the state and loses nothing written meanwhile', async (t) => {
  const { path, open } = fixture(t);
  const store = await open();
  for (let i = 0; i < 300; i++) await store.set('grant:busy', i, LONG);
  for (let i = 0; i < 50; i++) await store.addMember('grants:all', `m${i}`, LONG);
  for (let i = 0; i < 25; i++) await store.removeMember('grants:all', `m${i}`);
  await store.set('grant:gone', 1, LONG);
  await store.delete('grant:gone');
  const grown = fileLines(path).length;
  t.equal(grown, 300 + 50 + 25 + 2);

  let compacted = false;
  const compaction = store.compact().then(() => { compacted = true; });
  const during: Promise<void>[] = [];
  let i = 0;
  while (!compacted) {
    during.push(store.set(`grant:during-${i}`, i, LONG));
    if (i % 3 === 0) during.push(store.delete(`grant:during-${i - 1}`).then(() => {}));
    i++;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await compaction;
  await Promise.all(during);
  t.ok(i > 1, `${i} sets were made while it ran`);
  const expected = new Map<string, number>();
  for (let n = 0; n < i; n++) expected.set(`grant:during-${n}`, n);
  for (let n = 0; n < i; n += 3) expected.delete(`grant:during-${n - 1}`);
  t.ok(fileLines(path).length <= 1 + 25 + expected.size + i, `journal down from ${grown} to ${fileLines(path).length} lines`);
  await store.close();

  const again = await open();
  t.same(again.recovery.dropped, []);
  t.equal(await again.get('grant:busy'), 299);
  t.same((await again.members('grants:all')).sort(), Array.from({ length: 25 }, (_, n) => `m${n + 25}`).sort());
  t.equal(await again.get('grant:gone'), undefined);
  for (let n = 0; n < i; n++) t.equal(await again.get(`grant:during-${n}`), expected.get(`grant:during-${n}`), `grant:during-${n}`);
  t.equal(fileLines(path).length, 1 + 25 + expected.size, 'one line per live record');
});

t.test('compaction runs by itself once the journal is long and mostly dead', async (t) => {
  const { path, open } = fixture(t, { compactAfter: 50 });
  const store = await open();
  for (let i = 0; i < 40; i++) await store.set(`grant:${i}`, i, LONG);
  for (let i = 0; i < 39; i++) await store.set(`grant:${i}`, i + 100, LONG);
  t.equal(fileLines(path).length, 79, 'past compactAfter but under twice the 40 live records: left alone');
  // The write that tips it over resolves once it is durable; compaction follows it.
  await store.set('grant:39', 139, LONG);
  await until(() => fileLines(path).length === 40, 5_000, 'compaction at twice the live records');
  for (let i = 0; i < 500; i++) await store.set('grant:hot', i, LONG);
  t.ok(fileLines(path).length <= 41 + 82, `500 rewrites of one key leave ${fileLines(path).length} lines`);
  await store.close();
  const again = await open();
  t.equal(await again.get('grant:hot'), 499);
  t.equal(await again.get('grant:0'), 100);
  t.equal(await again.get('grant:39'), 139);
});

t.test('a truncated last line (a write cut short) is dropped and reported; the rest is recovered', async (t) => {
  const { path, open, logs } = fixture(t);
  const store = await open();
  await store.set('grant:a', 'a', LONG);
  await store.set('grant:b', 'b', LONG);
  await store.close();
  appendFileSync(path, '{"v":1,"op":"set","key":"grant:c","value":"c","ex');
  const damaged = readFileSync(path);

  const again = await open();
  t.match(again.recovery, { recovered: 2, dropped: [{ line: 3, reason: /incomplete/ }], removed: [], repaired: [] }, 'a write cut short was never acknowledged: nothing else is doubted');
  t.equal(await again.get('grant:a'), 'a');
  t.equal(await again.get('grant:b'), 'b');
  t.equal(await again.get('grant:c'), undefined, 'the unfinished write did not happen');
  const copy = again.recovery.damagedCopy;
  t.ok(copy?.startsWith(`${path}.damaged-`), `copied aside to ${copy}`);
  t.same(readFileSync(copy!), damaged, 'byte for byte');
  const errors = logs.filter((line) => line.level === ERROR);
  t.equal(errors.length, 1, 'one error');
  t.match(errors[0]?.msg, new RegExp(`${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} was damaged: recovered 2 records, dropped 1 lines \\(line 3: incomplete`));
  t.match(errors[0]?.msg, copy!);
  t.notOk(fileLines(path).some((line) => line.includes('grant:c')), 'the file was repaired');
  await again.close();

  const third = await open();
  t.same(third.recovery, { recovered: 2, dropped: [], removed: [], repaired: [] }, 'and opens cleanly afterwards');
});

/** Changes one character inside the value of the `index`th line (0-based), keeping the line valid JSON. */
function flipInLine(path: string, index: number, from: string, to: string): void {
  const lines = readFileSync(path, 'utf8').split('\n');
  const line = lines[index]!;
  const at = line.indexOf(from);
  if (at < 0) throw new Error(`line ${index + 1} has no ${from}`);
  lines[index] = line.slice(0, at) + to + line.slice(at + from.length);
  JSON.parse(lines[index]!);
  writeFileSync(path, lines.join('\n'));
}

t.test('a flipped byte in a middle line is caught by its checksum; access records before it are removed, later lines recovered', async (t) => {
  const { path, open, logs } = fixture(t);
  const store = await open();
  await store.set('grant:a', { route: 'epic' }, LONG);
  await store.set('grant:b', { route: 'pacs' }, LONG);
  await store.set('grant:c', { route: 'lab' }, LONG);
  await store.close();
  flipInLine(path, 1, 'pacs', 'pacz');
  const damaged = readFileSync(path);

  const again = await open();
  t.match(again.recovery, { recovered: 2, dropped: [{ line: 2, reason: /checksum/, key: 'grant:b' }], removed: ['grant:a'] });
  t.equal(await again.get('grant:a'), undefined, 'the line before it may be what the damaged line changed');
  t.equal(await again.get('grant:b'), undefined, 'the altered record is not served');
  t.same(await again.get('grant:c'), { route: 'lab' }, 'the line after it is');
  t.same(readFileSync(again.recovery.damagedCopy!), damaged, 'the damaged file is kept');
  t.equal(logs.filter((line) => line.level === ERROR).length, 1);
  t.match(logs.find((line) => line.level === ERROR), { file: path, recovered: 2, dropped: [{ line: 2 }] });
});

t.test('a damaged file that cannot be copied aside is not rewritten', async (t) => {
  const wall = manualClock(1_700_000_000_000);
  const { path, open } = fixture(t, { wallClock: wall.now });
  await (await open()).close();
  appendFileSync(path, '{"v":1,"op":"se');
  const first = await open();
  await first.close();
  appendFileSync(path, '{"v":1,"op":"de');
  // The same clock reading names the same copy, which exists: nothing may overwrite it.
  await t.rejects(open(), { code: 'store-file-unwritable', message: /cannot be copied to/ });
  t.equal(readFileSync(path, 'utf8'), '{"v":1,"op":"de', 'the damaged file is left as it was');
  t.equal(readFileSync(first.recovery.damagedCopy!, 'utf8'), '{"v":1,"op":"se', 'and so is the earlier copy');
});

t.test('a lost change is not undone by serving the state before it: the grant is removed (fail closed)', async (t) => {
  const { path, open, logs } = fixture(t);
  const store = await open();
  await store.set('grant:x', { state: 'active' }, LONG);
  await store.set('grant:x', { state: 'revoked' }, LONG);
  await store.set('grant:y', { state: 'active' }, LONG);
  await store.set('grant:y', { state: 'revoked' }, LONG);
  await store.set('grant:y', { state: 'active', again: true }, LONG);
  await store.addMember('grants:all', 'x', LONG);
  await store.close();
  flipInLine(path, 1, 'revoked', 'revokes');
  flipInLine(path, 3, 'revoked', 'revokes');

  const again = await open();
  t.equal(await again.get('grant:x'), undefined, 'the revoked grant does not come back as active');
  t.same(await again.get('grant:y'), { state: 'active', again: true }, 'a grant a later record replaced is kept');
  t.same(await again.members('grants:all'), ['y'], 'the index lists the grant that is left, and only it');
  t.same(again.recovery.removed, ['grant:x']);
  t.same(again.recovery.repaired, [{ key: 'grants:all', added: ['y'], removed: ['x'] }]);
  t.same(again.recovery.dropped.map((d) => [d.line, d.key]), [[2, 'grant:x'], [4, 'grant:y']]);
  t.match(logs.find((line) => line.level === ERROR)?.msg, /Removed "grant:x"/);
});

/** A journal line with a valid checksum around any `fields`, as a newer version or a hand edit might write. */
function sealed(fields: string, version = 1): string {
  const sum = createHash('sha256').update(`{"v":${version},${fields}}`).digest('hex').slice(0, 16);
  return `{"v":${version},${fields},"sum":"${sum}"}\n`;
}

t.test('records that are intact but make no sense are dropped with the reason', async (t) => {
  const { path, open } = fixture(t);
  const store = await open();
  await store.set('grant:v', 'value', LONG);
  await store.close();
  const exp = Date.now() + LONG;
  appendFileSync(path, [
    sealed('"op":"merge","key":"grant:a"'),
    sealed('"op":"set","key":"grant:b","exp":1'),
    sealed('"op":"set","key":"grant:c","value":1'),
    sealed('"op":"sadd","key":"grants:d","member":"m","exp":1'),
    sealed('"op":"srem","key":"grants:e"'),
    sealed('"op":"del"'),
    sealed('"op":"del","key":"grant:f",'),
    `${sealed('"op":"del","key":"grant:g"').slice(0, -1).replace('{"v":1', '{"v":2')}\n`,
    sealed(`"op":"sadd","key":"grant:v","member":"m","exp":${exp},"new":false`),
    sealed('"op":"srem","key":"grant:v","member":"m"'),
    sealed('"op":"srem","key":"grants:absent","member":"m"'),
    sealed('"op":"del","key":"grant:h"', 2),
    '{"op":"del","key":"bad \\q escape"}\n',
    '{"op":"del","key":""}\n',
    sealed(`"op":"sadd","key":"grants:ok","member":"a","exp":${exp},"new":true`),
    sealed(`"op":"sadd","key":"grants:ok","member":"b","exp":${exp},"new":false`),
    sealed('"op":"srem","key":"grants:ok","member":"a"'),
  ].join(''));
  const again = await open();
  t.same(again.recovery.dropped.map((d) => [d.line, d.reason, d.key]), [
    [2, 'unknown op "merge"', 'grant:a'],
    [3, 'set without a value or an expiry', 'grant:b'],
    [4, 'set without a value or an expiry', 'grant:c'],
    [5, 'sadd without a member, an expiry or new', 'grants:d'],
    [6, 'srem without a member', 'grants:e'],
    [7, 'no key', undefined],
    [8, 'not JSON, though its checksum matches', 'grant:f'],
    [9, 'checksum mismatch: the line changed after it was written', 'grant:g'],
    [10, 'adds to a set, but the key holds a value', 'grant:v'],
    [11, 'removes from a set, but the key holds a value', 'grant:v'],
    [13, 'journal version 2, expected 1', 'grant:h'],
    [14, 'not a store record (no checksum)', undefined],
    [15, 'not a store record (no checksum)', undefined],
  ]);
  t.equal(again.recovery.recovered, 5, 'the value, a no-op removal and the set\'s three changes');
  t.same(again.recovery.removed, ['grant:v'], 'the grant written before the dropped lines is removed');
  t.same(again.recovery.repaired, [], 'no index set to repair');
  t.same(await again.members('grants:ok'), ['b']);
});

/** The 0-based index of the one line of the file that contains `fragment`. */
function lineWith(path: string, fragment: string): number {
  const lines = readFileSync(path, 'utf8').split('\n');
  const found = lines.flatMap((line, index) => (line.includes(fragment) ? [index] : []));
  if (found.length !== 1) throw new Error(`${found.length} lines hold ${fragment}`);
  return found[0]!;
}

const QUARANTINE = { compliant: false, by: 'security', reason: 'reported stolen', at: 1_700_000_000_000 };

t.test('a damaged line may have changed any record: every access record last written before it is removed', async (t) => {
  // The revocation of g_a is damaged: its key flipped to another grant's, or made unreadable.
  // Either way the key it shows cannot be trusted, so it cannot say which grant to remove.
  const damages: [string, string, string][] = [
    ['the key flipped to another grant id', '"key":"grant:g_a"', '"key":"grant:g_b"'],
    ['the key unreadable', '"key":"grant:g_a"', '"kex":"grant:g_a"'],
    ['the value unreadable', '"revoked"', '"revoked\\u0000"'],
  ];
  for (const [name, from, to] of damages) {
    await t.test(name, async (t) => {
      const { path, open, logs } = fixture(t);
      const store = await open();
      await store.set('grant:g_a', { state: 'approved' }, LONG);
      await store.addMember('grants:all', 'g_a', LONG);
      await store.set('grant:g_b', { state: 'approved' }, LONG);
      await store.addMember('grants:all', 'g_b', LONG);
      await store.set('break-glass:bg_1', { state: 'active' }, LONG);
      await store.addMember('break-glass:all', 'bg_1', LONG);
      await setOverride(store, 'laptop-1', QUARANTINE);
      await store.set('subject:user:u1', { sub: 'u1' }, LONG);
      await store.set('grant:g_a', { state: 'revoked' }, LONG);
      await store.set('grant:g_c', { state: 'approved' }, LONG);
      await store.addMember('grants:all', 'g_c', LONG);
      await store.set('break-glass:bg_2', { state: 'active' }, LONG);
      await store.addMember('break-glass:all', 'bg_2', LONG);
      await store.set('grant:g_b', { state: 'approved', renewed: true }, LONG);
      await store.close();
      const damaged = lineWith(path, '"revoked"');
      flipInLine(path, damaged, from, to);

      const again = await open();
      t.match(again.recovery.dropped, [{ line: damaged + 1, reason: /checksum/ }]);
      t.equal(await again.get('grant:g_a'), undefined, 'the revoked grant does not come back approved');
      t.equal(await again.get('break-glass:bg_1'), undefined, 'a break-glass use that may have been ended is not served');
      t.same(await again.get('grant:g_c'), { state: 'approved' }, 'a grant written after the damaged line is kept');
      t.same(await again.get('break-glass:bg_2'), { state: 'active' }, 'and so is a break-glass record');
      t.same(await again.get('grant:g_b'), { state: 'approved', renewed: true }, 'and a grant rewritten after it');
      t.same(await again.get('subject:user:u1'), { sub: 'u1' }, 'other records keep their last valid value');
      t.match(await listOverrides(again), [{ deviceId: 'laptop-1', compliant: false }], 'a quarantine stays: removing it would fail open');
      t.same(again.recovery.removed, ['break-glass:bg_1', 'grant:g_a']);
      t.same(await again.members('grants:all'), ['g_b', 'g_c'], 'the removed grant is unlisted');
      t.same(await again.members('break-glass:all'), ['bg_2']);
      t.same(again.recovery.repaired, [
        { key: 'grants:all', added: [], removed: ['g_a'] },
        { key: 'break-glass:all', added: [], removed: ['bg_1'] },
      ]);
      const error = logs.find((line) => line.level === ERROR);
      t.match(error?.msg, /Removed "break-glass:bg_1", "grant:g_a"/);
      t.match(error, { removed: ['break-glass:bg_1', 'grant:g_a'], repaired: again.recovery.repaired });
      await again.close();

      const third = await open();
      t.same(third.recovery, { recovered: 9, dropped: [], removed: [], repaired: [] }, 'the repair was written: the next open is clean');
    });
  }
});

t.test('a damaged line in an index set keeps the set, which then lists exactly the surviving records', async (t) => {
  const { path, open, logs } = fixture(t);
  const store = await open();
  for (const device of ['laptop-1', 'laptop-2', 'laptop-3', 'laptop-4']) await setOverride(store, device, QUARANTINE);
  await clearOverride(store, 'laptop-4', 'security');
  await store.close();
  flipInLine(path, lineWith(path, '"op":"sadd","key":"device-override:","member":"laptop-2"'), 'laptop-2', 'laptop-9');
  flipInLine(path, lineWith(path, '"op":"srem","key":"device-override:","member":"laptop-4"'), 'laptop-4', 'laptop-8');

  const again = await open();
  t.equal(again.recovery.dropped.length, 2);
  t.same((await listOverrides(again)).map((o) => o.deviceId), ['laptop-1', 'laptop-2', 'laptop-3'], 'every quarantine is still listed, the lost addition included');
  t.same(again.recovery.removed, []);
  t.same(again.recovery.repaired, [{ key: 'device-override:', added: ['laptop-2'], removed: ['laptop-4'] }], 'the lost removal is made too');
  t.match(logs.find((line) => line.level === ERROR)?.msg, /Index sets made to list exactly the surviving records: "device-override:" listed "laptop-2", unlisted "laptop-4"\./);
});

t.test('after a damaged index line, records written later stay listed, and every surviving record is listed', async (t) => {
  const { path, open } = fixture(t);
  const store = await open();
  await store.set('break-glass:bg_old', { state: 'active' }, LONG);
  await store.addMember('break-glass:all', 'bg_old', LONG);
  await store.set('break-glass:bg_new', { state: 'active' }, LONG);
  await store.addMember('break-glass:all', 'bg_new', LONG);
  // A record whose index entry is missing, as a hand edit could leave it.
  await store.set('grant:g_unlisted', { state: 'approved' }, LONG);
  await store.close();
  flipInLine(path, lineWith(path, '"member":"bg_old"'), 'bg_old', 'bg_olx');

  const again = await open();
  t.same(again.recovery.removed, ['break-glass:bg_old'], 'written before the damaged line: removed');
  t.same(await again.members('break-glass:all'), ['bg_new'], 'the use written after it is still on the review list');
  t.same(await again.members('grants:all'), ['g_unlisted'], 'a surviving record is listed');
  t.same(again.recovery.repaired, [{ key: 'grants:all', added: ['g_unlisted'], removed: [] }]);
  await again.close();
  const third = await open();
  t.same(await third.members('grants:all'), ['g_unlisted'], 'the new index entry was written, with the index\'s own expiry');
});

t.test('after a damaged last line: an index left empty goes, a value where an index belongs stays, what expired is not reported', async (t) => {
  const wall = manualClock(1_700_000_000_000);
  const { path, open } = fixture(t, { wallClock: wall.now });
  const store = await open();
  await store.set('grant:g_1', { state: 'approved' }, LONG);
  await store.addMember('grants:all', 'g_1', LONG);
  await store.set('grant:g_short', { state: 'approved' }, 1_000);
  await store.set('device-override:', 'not an index', LONG);
  await store.set('device-override:laptop-1', QUARANTINE, LONG);
  await store.set('subject:user:u1', { sub: 'u1' }, LONG);
  await store.close();
  // The last line, whole with its newline: acknowledged, so not a write cut short.
  flipInLine(path, lineWith(path, 'subject:user:u1'), 'u1', 'u2');
  wall.advance(2_000);

  const again = await open();
  t.match(again.recovery.dropped, [{ reason: /checksum/ }]);
  t.same(again.recovery.removed, ['grant:g_1'], 'the grant that had expired anyway is not reported');
  t.same(again.recovery.repaired, [{ key: 'grants:all', added: [], removed: ['g_1'] }]);
  t.same(await again.members('grants:all'), []);
  t.equal(await again.get('device-override:'), 'not an index', 'a value is not made into an index');
  t.same(await again.get('device-override:laptop-1'), QUARANTINE);
  t.equal(await again.get('subject:user:u1'), undefined, 'the damaged record itself is lost');
});

t.test('open refuses what it cannot set up, and leaves no lock behind', async (t) => {
  const dir = tempDir(t);
  const { logger } = capturingLogger();
  writeFileSync(join(dir, 'a-file'), '');
  await t.rejects(FileStore.open({ path: join(dir, 'a-file', 'store.jsonl'), logger }), { code: 'store-file-unwritable', message: /cannot create the directory/ });
  const path = join(dir, 'store.jsonl');
  mkdirSync(`${path}.tmp`);
  await t.rejects(FileStore.open({ path, logger }), { code: 'store-file-unwritable', message: /cannot write the store file/ });
  rmdirSync(`${path}.tmp`);
  await t.rejects(FileStore.open({ path, logger, compactAfter: 0 }), TypeError);
  await t.rejects(FileStore.open({ path, logger, max: 0 }), TypeError);
  t.notOk(existsSync(`${path}.lock`));
  mkdirSync(`${path}.lock`);
  await t.rejects(FileStore.open({ path, logger }), { code: 'store-file-locked', message: /cannot be read/ });
});

t.test('a file that is not a store is refused, and left as it was', async (t) => {
  const { path, open } = fixture(t);
  mkdirSync(join(path, '..'), { recursive: true });
  for (const content of ['hello\nworld\n', 'listen: 0.0.0.0:443', '{"v":1,"op":"set","key":"grant:a","value":1,"exp":1,"sum":"0000000000000000"}\n']) {
    writeFileSync(path, content);
    const err = await open().then(() => undefined, (e: unknown) => e);
    t.ok(err instanceof FileStoreError, JSON.stringify(content));
    t.match(err, { code: 'store-file-invalid', file: path, message: /is not a wardgate store file/ });
    t.equal(readFileSync(path, 'utf8'), content, 'the file is untouched');
    t.notOk(existsSync(`${path}.lock`), 'the lock was released');
  }
  rmSync(path);
  mkdirSync(path);
  t.rejects(open(), { code: 'store-file-invalid', message: /is not a regular file/ }, 'a directory');
});

t.test('a very first write cut short is a store file, not a foreign one', async (t) => {
  const { path, open } = fixture(t);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, '{"v":1,"op":"se');
  const store = await open();
  t.match(store.recovery, { recovered: 0, dropped: [{ line: 1, reason: /incomplete/ }] });
  t.equal(readFileSync(path, 'utf8'), '');
});

t.test('only one process owns the file: a live owner refuses, a dead one is taken over', async (t) => {
  const { path, open, logs } = fixture(t);
  const first = await open();
  const lock = readFileSync(`${path}.lock`, 'utf8');
  t.match(lock, new RegExp(`^${process.pid} \\S+\\n$`), 'the lock holds our pid and identity');
  await t.rejects(open(), { code: 'store-file-locked', message: new RegExp(`in use by process ${process.pid}, this one`) }, 'open already in this process');
  await first.close();
  t.notOk(existsSync(`${path}.lock`), 'close releases the lock');

  const child = spawn(process.execPath, ['-e', '']);
  const dead = child.pid!;
  await new Promise((resolve) => child.once('exit', resolve));
  writeFileSync(`${path}.lock`, `${dead}\n`);
  const second = await open();
  t.equal(readFileSync(`${path}.lock`, 'utf8'), lock, 'the stale lock was taken over');
  t.match(logs.find((line) => line.level === WARN), { pid: dead, msg: /taking over the store lock: process \d+ is gone/ });
  await second.close();

  writeFileSync(`${path}.lock`, 'not a pid');
  await t.rejects(open(), { code: 'store-file-locked', message: /holds no process id/ }, 'a lock without a pid is not guessed at');
});

t.test('a lock that holds this process\'s own pid is left from an earlier life: in a container node is PID 1 at every start', async (t) => {
  const { path, open, logs } = fixture(t);
  mkdirSync(join(path, '..'), { recursive: true });
  for (const content of [`${process.pid}\n`, `${process.pid} an-earlier-life\n`]) {
    writeFileSync(`${path}.lock`, content);
    const store = await open();
    t.match(readFileSync(`${path}.lock`, 'utf8'), new RegExp(`^${process.pid} \\S+\\n$`), `${JSON.stringify(content)} was taken over`);
    t.match(logs.findLast((line) => line.level === WARN), { pid: process.pid, msg: /taking over the store lock: it holds this process's own pid/ });
    await store.close();
  }
  t.equal(logs.filter((line) => line.level === WARN).length, 2);
});

t.test('a lock whose pid now belongs to another process is taken over', { skip: existsSync('/proc/self/stat') ? false : 'needs /proc' }, async (t) => {
  const { path, open, logs } = fixture(t);
  await (await open()).close();
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
  t.teardown(() => { child.kill('SIGKILL'); });
  await once(child, 'spawn');
  const pid = child.pid!;
  const identity = await processIdentity(pid);
  t.match(identity, /^\S+$/, `process ${pid} is ${identity}`);
  writeFileSync(`${path}.lock`, `${pid} ${identity}\n`);
  await t.rejects(open(), { code: 'store-file-locked', message: new RegExp(`in use by process ${pid}`) }, 'the process that wrote it still runs');
  writeFileSync(`${path}.lock`, `${pid}\n`);
  await t.rejects(open(), { code: 'store-file-locked' }, 'a lock without the identity: whether the pid was reused cannot be told');
  writeFileSync(`${path}.lock`, `${pid} 00000000-0000-0000-0000-000000000000@1\n`);
  const store = await open();
  t.match(logs.find((line) => line.level === WARN), { pid, msg: /taking over the store lock: process \d+ is another process now .*: the pid was reused/ });
  await store.close();
});

t.test('a failed write rejects its calls with StoreUnavailableError, is logged, and the store carries on', async (t) => {
  const { path, open, logs } = fixture(t);
  const store = await open();
  await store.set('grant:a', 'a', LONG);
  // Compaction writes <path>.tmp; a directory in its way makes that fail.
  mkdirSync(`${path}.tmp`);
  await t.rejects(store.compact(), StoreUnavailableError);
  await t.rejects(store.set('grant:b', 'b', LONG), { code: 'store-unavailable', message: new RegExp(path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) }, 'until the file can be rewritten, writes fail');
  t.equal(await store.get('grant:b'), 'b', 'a failed change is still in force in memory (an unknown outcome, as after a timeout)');
  t.ok(logs.filter((line) => line.level === ERROR).length >= 2, 'each failure is logged');
  rmdirSync(`${path}.tmp`);
  await store.set('grant:c', 'c', LONG);
  // Now the rename at the end of a rewrite fails: the journal's place is taken by a directory.
  rmSync(path);
  mkdirSync(path);
  await t.rejects(store.compact(), StoreUnavailableError);
  rmdirSync(path);
  await store.set('grant:d', 'd', LONG);
  await store.close();
  const again = await open();
  t.same(again.recovery.dropped, []);
  t.same([await again.get('grant:a'), await again.get('grant:b'), await again.get('grant:c'), await again.get('grant:d')], ['a', 'b', 'c', 'd'], 'the rewrites that succeeded carried every change');
});

t.test('close waits for pending writes; afterwards every call refuses', async (t) => {
  const { open } = fixture(t);
  const store = await open();
  const pending = store.set('grant:late', 'late', LONG);
  await store.close();
  await pending;
  await store.close();
  await t.rejects(store.get('grant:late'), StoreClosedError);
  await t.rejects(store.set('grant:x', 1, LONG), StoreClosedError);
  await t.rejects(store.get('session:x'), StoreClosedError);
  await t.rejects(store.compact(), StoreClosedError);
  const again = await open();
  t.equal(await again.get('grant:late'), 'late');
});

t.test('durable keys refuse what MemoryStore refuses, with the same errors', async (t) => {
  const { open } = fixture(t);
  const store = await open();
  const memory = new MemoryStore();
  await store.set('grant:value', 1, LONG);
  await store.addMember('grants:set', 'm', LONG);
  await memory.set('grant:value', 1, LONG);
  await memory.addMember('grants:set', 'm', LONG);
  for (const s of [store, memory]) {
    await t.rejects(s.get('grants:set'), StoreWrongTypeError);
    await t.rejects(s.take('grants:set'), StoreWrongTypeError);
    await t.rejects(s.addMember('grant:value', 'm', LONG), StoreWrongTypeError);
    await t.rejects(s.members('grant:value'), StoreWrongTypeError);
    await t.rejects(s.set('grant:x', undefined as unknown as Json, LONG), { name: 'TypeError', message: 'store values must be JSON values' });
    await t.rejects(s.set('grant:x', 1, 0), { name: 'TypeError', message: /positive finite/ });
    await t.rejects(s.addMember('grants:x', 1 as unknown as string, LONG), { name: 'TypeError', message: 'set members must be strings' });
    await t.rejects(s.set('', 1, LONG), { name: 'TypeError', message: /non-empty/ });
  }
  t.equal(await store.add('grants:set', 1, LONG), false, 'a set holds the key too');
  await store.set('grants:set', 'now a value', LONG);
  t.equal(await store.get('grants:set'), 'now a value', 'set replaces a set, as in MemoryStore');
  await memory.close();
});

/** Two in-memory ends of an IPC channel; messages travel as JSON, a turn later, as between processes. */
class ChannelEnd extends EventEmitter {
  other: ChannelEnd | undefined;
  send(message: StoreMessage, callback: (error: Error | null) => void): boolean {
    const copy = JSON.parse(JSON.stringify(message)) as unknown;
    setImmediate(() => {
      this.other?.emit('message', copy);
      callback(null);
    });
    return true;
  }
}

t.test('a FileStore served to workers over IPC keeps what the workers write', async (t) => {
  const { open } = fixture(t);
  const store = await open();
  const primary = new ChannelEnd();
  const worker = new ChannelEnd();
  primary.other = worker;
  worker.other = primary;
  const server = serveStore(store, new IpcPeerSet([primary]));
  const remote = new IpcStore(worker);
  await remote.set('grant:w', { by: 'worker' }, LONG);
  await remote.addMember('grants:all', 'w', LONG);
  t.equal(await remote.add('grant:w', 'again', LONG), false);
  t.same(await remote.get('grant:w'), { by: 'worker' });
  await remote.close();
  server.close();
  await store.close();
  const again = await open();
  t.same(await again.get('grant:w'), { by: 'worker' });
  t.same(await again.members('grants:all'), ['w']);
});

t.test('openStore opens the store the config names', async (t) => {
  const dir = tempDir(t);
  const { logger, lines } = capturingLogger();
  const memory = await openStore({ type: 'memory', path: join(dir, 'unused.jsonl'), maxEntries: 1_000 }, logger);
  t.notOk(memory instanceof FileStore);
  t.notOk(existsSync(join(dir, 'unused.jsonl')), 'memory writes nothing');
  await memory.close();
  const file = await openStore({ type: 'file', path: join(dir, 'store.jsonl'), maxEntries: 1_000 }, logger);
  t.ok(file instanceof FileStore);
  t.match(lines.find((line) => line.msg === 'store file opened'), { file: join(dir, 'store.jsonl'), recovered: 0, dropped: 0 });
  await file.close();
});

t.test('storeSchema: type, path (against the config\'s directory) and maxEntries', async (t) => {
  const schema = storeSchema('/etc/wardgate');
  t.same(schema.parse({}), { path: DEFAULT_STORE_PATH, maxEntries: 1_000_000 }, 'type is left to the config schema to settle');
  t.same(schema.parse({ type: 'file', path: 'state/store.jsonl', maxEntries: 5_000 }), { type: 'file', path: '/etc/wardgate/state/store.jsonl', maxEntries: 5_000 });
  t.same(schema.parse({ type: 'file', path: '/srv/store.jsonl' }).path, '/srv/store.jsonl');
  t.same(schema.parse({ type: 'memory' }).type, 'memory');
  const refused = (input: unknown): string[] => schema.safeParse(input).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
  t.match(refused({ type: 'redis' }), [/^type: expected memory or file, got "redis"/]);
  t.match(refused({ type: 'memory', path: 'x.jsonl' }), [/^path: the memory store keeps nothing in a file/]);
  t.match(refused({ type: 'file', path: '' }), [/^path: expected the path of the store file/]);
  t.match(refused({ maxEntries: 10 }), [/^maxEntries: expected at least 1000/]);
  t.match(refused({ maxSize: 1 }), [/maxSize/]);
  t.match(refused('file'), [/expected a mapping/]);
});

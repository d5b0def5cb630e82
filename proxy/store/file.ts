import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, link, mkdir, open, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { WardgateError } from '../errors.js';
import type { Logger } from '../logger.js';
import { isDurableKey } from './durable.js';
import { checkMember, checkTtl, MemoryStore, StoreClosedError, StoreWrongTypeError, toText, type MemoryStoreOptions } from './memory.js';
import { StoreUnavailableError, type Json } from './store.js';

/*
 * The file store: a MemoryStore whose durable keys (grants, break-glass records, ... see
 * durable.ts) are also written to an append-only journal, one self-checking JSON line per
 * change, so they survive a restart or a crash. Everything else stays in memory only.
 *
 * Durability: a change to a durable key resolves only once its line has been written and
 * fdatasync()ed. Changes made while a sync is in flight wait and share the next write and
 * sync (group commit), so a burst of grants costs a few syncs, not one each.
 *
 * Atomicity: like MemoryStore, each call changes the in-memory state synchronously before
 * its first await, so `add` and `take` stay atomic within the process and across workers
 * served over IPC. The price: a concurrent reader can see a change a few milliseconds
 * before it is durable, and a change whose write fails stays in force in memory (its
 * caller gets StoreUnavailableError, an unknown outcome, as after a timeout) and reaches
 * the disk with the next write that succeeds.
 *
 * Expiry: in the process, TTLs run on the monotonic clock as in MemoryStore, so a wall
 * clock step does not end or extend anything early or late. In the journal they are
 * absolute wall-clock times (`exp`, epoch ms), because the monotonic clock restarts with
 * the process; a record past its `exp` is dropped when the file is read or compacted.
 *
 * Durable keys live in a map of their own, outside the LRU: an evicted grant would be a
 * grant silently withdrawn, and an evicted revocation one silently restored.
 *
 * Compaction rewrites the live state to `<path>.tmp`, syncs it, renames it over the
 * journal and syncs the directory, so a crash at any point leaves either the old journal
 * or the new one. It runs at open and whenever the journal has grown past `compactAfter`
 * lines and at least twice the live record count, inside the same writer loop as the
 * appends, so nothing written meanwhile is lost.
 */

/** Journal lines after which compaction is considered. */
export const DEFAULT_COMPACT_AFTER = 10_000;

const VERSION = 1;
/** How every journal line begins: recognises a first write that a crash cut short. */
const RECORD_START = `{"v":${VERSION},"op":"`;

export type FileStoreErrorCode =
  /** The file cannot be read, is not a regular file, or holds no store records at all. */
  | 'store-file-invalid'
  /** Another live process owns the file. */
  | 'store-file-locked'
  /** The directory, the file, the lock or the copy of a damaged file cannot be written. */
  | 'store-file-unwritable';

/** The store file cannot be used; the process must not start on it. */
export class FileStoreError extends WardgateError {
  readonly file: string;
  constructor(code: FileStoreErrorCode, file: string, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.file = file;
  }
}

export interface FileStoreOptions extends MemoryStoreOptions {
  /** The journal. Created with its directory (mode 0700) and mode 0600 when absent. */
  path: string;
  logger: Logger;
  /** Which keys are journaled. Default: isDurableKey. */
  durable?: (key: string) => boolean;
  /** Epoch milliseconds, for the expiry times written to the journal. Default: Date.now. */
  wallClock?: () => number;
  /** Default DEFAULT_COMPACT_AFTER. */
  compactAfter?: number;
}

export interface DroppedLine {
  /** 1-based line number in the file as it was found (and as kept in `damagedCopy`). */
  line: number;
  reason: string;
  /** The key the line names, as far as it can still be read. */
  key?: string;
}

/** What open() found in the file. */
export interface RecoveryReport {
  /** Complete, valid records applied (expired ones included). */
  recovered: number;
  /** Lines that were not applied. */
  dropped: DroppedLine[];
  /**
   * Keys removed because a damaged line named them and no later record replaced them:
   * their last change is lost, and serving the state before it could restore a revoked
   * grant. Removing fails closed; the damaged copy still holds what was there.
   */
  removed: string[];
  /** Where the file was copied before it was rewritten; set when something was dropped. */
  damagedCopy?: string;
}

/**
 * A durable entry. `deadline` is on the store's monotonic clock; while the journal is
 * replayed it holds the wall-clock `exp` instead, and is rebased once replay is done.
 */
type Entry = { kind: 'value'; text: string; deadline: number } | { kind: 'set'; members: Set<string>; deadline: number };

type JournalRecord =
  | { op: 'set'; key: string; value: Json; exp: number }
  | { op: 'del'; key: string }
  /** `new`: this member started the set (it was absent or expired), replacing whatever the key held. */
  | { op: 'sadd'; key: string; member: string; exp: number; new: boolean }
  | { op: 'srem'; key: string; member: string };

/** A call waiting for its line to be durable. compact() waits without a line. */
interface Pending {
  line?: string;
  resolve(): void;
  reject(error: Error): void;
}

export class FileStore extends MemoryStore {
  /** The journal, absolute. */
  readonly path: string;
  readonly recovery: RecoveryReport;
  readonly #logger: Logger;
  readonly #durable: (key: string) => boolean;
  readonly #now: () => number;
  readonly #wallClock: () => number;
  readonly #compactAfter: number;
  readonly #releaseLock: () => Promise<void>;
  readonly #table: Map<string, Entry>;
  /** Lines a compaction would write now: values plus set members. */
  #records: number;
  /** Lines in the journal. */
  #lines: number;
  #syncs = 0;
  #handle: FileHandle;
  #queue: Pending[] = [];
  #draining: Promise<void> | undefined;
  #compactWanted = false;
  /** The last write failed, so the file's tail is unknown: rewrite it before appending. */
  #broken = false;
  #closing: Promise<void> | undefined;

  private constructor(options: FileStoreOptions, opened: Opened) {
    super(options);
    this.path = opened.path;
    this.recovery = opened.recovery;
    this.#logger = options.logger;
    this.#durable = opened.durable;
    this.#now = opened.now;
    this.#wallClock = opened.wallClock;
    this.#compactAfter = opened.compactAfter;
    this.#releaseLock = opened.releaseLock;
    this.#table = opened.table;
    this.#handle = opened.handle;
    this.#records = opened.lines;
    this.#lines = opened.lines;
  }

  /**
   * Locks the file, reads it, recovers what it can (see RecoveryReport), compacts it and
   * returns the store. Refuses (FileStoreError) a file another live process owns, one
   * that cannot be read, and one with content but no valid record at all: that is not a
   * store file, or not one that can be trusted, and starting empty would discard it.
   */
  static async open(options: FileStoreOptions): Promise<FileStore> {
    const path = resolve(options.path);
    const compactAfter = options.compactAfter ?? DEFAULT_COMPACT_AFTER;
    if (!Number.isSafeInteger(compactAfter) || compactAfter < 1) throw new TypeError(`compactAfter must be a positive integer, not ${compactAfter}`);
    const now = options.now ?? (() => performance.now());
    const wallClock = options.wallClock ?? Date.now;
    try {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new FileStoreError('store-file-unwritable', path, `cannot create the directory of the store file ${path}: ${describe(err)}`, { cause: err });
    }
    const releaseLock = await takeLock(path, options.logger);
    let handle: FileHandle | undefined;
    try {
      const replayed = replay(await readJournal(path));
      if (replayed.refusal !== undefined) {
        throw new FileStoreError('store-file-invalid', path, `${path} is not a wardgate store file (${replayed.refusal}) and holds no valid store record; refusing to start on it rather than replace it. Check store.path, or move the file away if it is not needed.`);
      }
      const { entries: table, recovered, dropped, removed } = replayed;
      const recovery: RecoveryReport = { recovered, dropped, removed };
      if (dropped.length > 0) {
        recovery.damagedCopy = await keepDamaged(path, wallClock);
        options.logger.error({ file: path, ...recovery }, damageMessage(path, recovery));
      }
      const durable = options.durable ?? isDurableKey;
      const wall = wallClock();
      const start = now();
      for (const [key, entry] of table) {
        // A key that is no longer durable (the predicate changed) would never be read from here.
        if (entry.deadline < wall || !durable(key)) table.delete(key);
        else entry.deadline = start + (entry.deadline - wall);
      }
      const { text, lines } = snapshot(table, start, wall);
      try {
        handle = await writeJournal(path, text);
      } catch (err) {
        throw new FileStoreError('store-file-unwritable', path, `cannot write the store file ${path}: ${describe(err)}`, { cause: err });
      }
      return new FileStore(options, { path, recovery, durable, now, wallClock, compactAfter, releaseLock, table, handle, lines });
    } catch (err) {
      await handle?.close().catch(() => {});
      await releaseLock();
      throw err;
    }
  }

  override async get<T extends Json>(key: string): Promise<T | undefined> {
    if (!this.#isDurable(key)) return super.get<T>(key);
    this.#ensureOpen();
    const entry = this.#value(key);
    return entry === undefined ? undefined : (JSON.parse(entry.text) as T);
  }

  override async set(key: string, value: Json, ttlMs: number): Promise<void> {
    if (!this.#isDurable(key)) return super.set(key, value, ttlMs);
    this.#ensureOpen();
    checkTtl(ttlMs);
    const text = toText(value);
    this.#put(key, { kind: 'value', text, deadline: this.#now() + ttlMs });
    await this.#commit(setLine(key, text, this.#exp(ttlMs)));
  }

  override async add(key: string, value: Json, ttlMs: number): Promise<boolean> {
    if (!this.#isDurable(key)) return super.add(key, value, ttlMs);
    this.#ensureOpen();
    checkTtl(ttlMs);
    const text = toText(value);
    if (this.#live(key) !== undefined) return false;
    this.#put(key, { kind: 'value', text, deadline: this.#now() + ttlMs });
    await this.#commit(setLine(key, text, this.#exp(ttlMs)));
    return true;
  }

  override async take<T extends Json>(key: string): Promise<T | undefined> {
    if (!this.#isDurable(key)) return super.take<T>(key);
    this.#ensureOpen();
    const entry = this.#value(key);
    if (entry === undefined) return undefined;
    this.#drop(key);
    await this.#commit(delLine(key));
    return JSON.parse(entry.text) as T;
  }

  override async delete(key: string): Promise<boolean> {
    if (!this.#isDurable(key)) return super.delete(key);
    this.#ensureOpen();
    if (this.#live(key) === undefined) return false;
    this.#drop(key);
    await this.#commit(delLine(key));
    return true;
  }

  override async addMember(key: string, member: string, ttlMs: number): Promise<void> {
    if (!this.#isDurable(key)) return super.addMember(key, member, ttlMs);
    this.#ensureOpen();
    checkTtl(ttlMs);
    checkMember(member);
    const entry = this.#set(key);
    if (entry === undefined) {
      this.#put(key, { kind: 'set', members: new Set([member]), deadline: this.#now() + ttlMs });
      await this.#commit(saddLine(key, member, this.#exp(ttlMs), true));
      return;
    }
    if (!entry.members.has(member)) {
      entry.members.add(member);
      this.#records++;
    }
    // Never shortened, as in MemoryStore: the set must outlive the longest of what it indexes.
    entry.deadline = Math.max(entry.deadline, this.#now() + ttlMs);
    await this.#commit(saddLine(key, member, this.#exp(entry.deadline - this.#now()), false));
  }

  override async removeMember(key: string, member: string): Promise<void> {
    if (!this.#isDurable(key)) return super.removeMember(key, member);
    this.#ensureOpen();
    checkMember(member);
    const entry = this.#set(key);
    if (entry === undefined || !entry.members.delete(member)) return;
    this.#records--;
    if (entry.members.size === 0) this.#table.delete(key);
    await this.#commit(sremLine(key, member));
  }

  override async members(key: string): Promise<string[]> {
    if (!this.#isDurable(key)) return super.members(key);
    this.#ensureOpen();
    const entry = this.#set(key);
    return entry === undefined ? [] : [...entry.members];
  }

  /** Rewrites the journal to the live state now (it also happens by itself); resolves once that is durable. */
  async compact(): Promise<void> {
    this.#ensureOpen();
    this.#compactWanted = true;
    await new Promise<void>((resolve, reject) => this.#enqueue({ resolve, reject }));
  }

  /** Waits for pending writes, then closes the journal, releases the lock and closes the memory part. Idempotent. */
  override close(): Promise<void> {
    this.#closing ??= this.#shutDown();
    return this.#closing;
  }

  /** Entries in memory, durable and not, expired ones not yet dropped included. */
  override get size(): number {
    return super.size + this.#table.size;
  }

  /** fsync/fdatasync calls on the journal since open: with group commit, fewer than the writes. Worth a metric. */
  get syncs(): number {
    return this.#syncs;
  }

  async #shutDown(): Promise<void> {
    await this.#draining;
    try {
      await this.#handle.close();
    } catch (err) {
      this.#logger.warn({ file: this.path, err }, 'could not close the store file');
    }
    await this.#releaseLock();
    this.#table.clear();
    await super.close();
  }

  #isDurable(key: string): boolean {
    // Keys MemoryStore would refuse go to it, so both refuse them with the same error.
    return typeof key === 'string' && key !== '' && this.#durable(key);
  }

  #ensureOpen(): void {
    if (this.#closing !== undefined) throw new StoreClosedError();
  }

  /** The wall-clock expiry of something with `ttlMs` left, for the journal. */
  #exp(ttlMs: number): number {
    return Math.round(this.#wallClock() + ttlMs);
  }

  /** The entry at `key` unless it has expired; an expired one is dropped on the way. */
  #live(key: string): Entry | undefined {
    const entry = this.#table.get(key);
    if (entry === undefined) return undefined;
    if (this.#now() <= entry.deadline) return entry;
    this.#drop(key);
    return undefined;
  }

  #value(key: string): Extract<Entry, { kind: 'value' }> | undefined {
    const entry = this.#live(key);
    if (entry !== undefined && entry.kind !== 'value') throw new StoreWrongTypeError(`store key ${JSON.stringify(key)} holds a set, not a value`);
    return entry;
  }

  #set(key: string): Extract<Entry, { kind: 'set' }> | undefined {
    const entry = this.#live(key);
    if (entry !== undefined && entry.kind !== 'set') throw new StoreWrongTypeError(`store key ${JSON.stringify(key)} holds a value, not a set`);
    return entry;
  }

  #put(key: string, entry: Entry): void {
    this.#drop(key);
    this.#table.set(key, entry);
    this.#records += weight(entry);
  }

  #drop(key: string): void {
    const entry = this.#table.get(key);
    if (entry === undefined) return;
    this.#table.delete(key);
    this.#records -= weight(entry);
  }

  #commit(line: string): Promise<void> {
    return new Promise((resolve, reject) => this.#enqueue({ line, resolve, reject }));
  }

  #enqueue(pending: Pending): void {
    this.#queue.push(pending);
    this.#draining ??= this.#drain();
  }

  /** The one writer: appends queued lines a batch at a time, compacting when due. Never rejects. */
  async #drain(): Promise<void> {
    // Calls made in this turn of the event loop (a Promise.all of sets, IPC messages read
    // together) join the first batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.#queue.length > 0 || this.#compactWanted) {
      const batch = this.#queue.splice(0);
      try {
        // The snapshot a rewrite takes includes this batch: its changes are in memory already.
        if (this.#compactWanted || this.#broken) await this.#rewrite();
        else await this.#append(batch);
        for (const pending of batch) pending.resolve();
      } catch (err) {
        this.#broken = true;
        this.#logger.error({ file: this.path, err, calls: batch.length }, 'could not write the store file: these changes are in force in memory but not durable; the next write rewrites the file');
        const error = new StoreUnavailableError(`could not write the store file ${this.path}: ${describe(err)}`, { cause: err });
        for (const pending of batch) pending.reject(error);
      }
    }
    // Synchronously after the loop's last check, so no call can be queued without a writer.
    this.#draining = undefined;
  }

  async #append(batch: Pending[]): Promise<void> {
    const lines = batch.flatMap((pending) => (pending.line === undefined ? [] : [pending.line]));
    if (lines.length === 0) return;
    // FileHandle.writeFile writes at the current position (the end) and retries short writes.
    await this.#handle.writeFile(lines.join(''));
    await this.#handle.datasync();
    this.#syncs++;
    this.#lines += lines.length;
    if (this.#lines > this.#compactAfter && this.#lines >= 2 * this.#records) this.#compactWanted = true;
  }

  async #rewrite(): Promise<void> {
    // Cleared first: if this fails, #broken asks for the next attempt instead.
    this.#compactWanted = false;
    const { text, lines } = snapshot(this.#table, this.#now(), this.#wallClock());
    // Exact here, as the snapshot has just dropped what had expired.
    this.#records = lines;
    const handle = await writeJournal(this.path, text);
    this.#syncs++;
    const previous = this.#handle;
    this.#handle = handle;
    this.#lines = lines;
    this.#broken = false;
    await previous.close().catch((err: unknown) => this.#logger.warn({ file: this.path, err }, 'could not close the replaced store file'));
  }
}

/** What open() hands the store it has made. */
interface Opened {
  path: string;
  recovery: RecoveryReport;
  durable: (key: string) => boolean;
  now: () => number;
  wallClock: () => number;
  compactAfter: number;
  releaseLock: () => Promise<void>;
  table: Map<string, Entry>;
  /** The freshly compacted journal, positioned at its end. */
  handle: FileHandle;
  lines: number;
}

/**
 * `table` as journal lines, with expiry times as of `wall`; drops what has expired from
 * it. Synchronous, so it is one moment's state.
 */
function snapshot(table: Map<string, Entry>, now: number, wall: number): { text: string; lines: number } {
  const parts: string[] = [];
  for (const [key, entry] of table) {
    if (now > entry.deadline) {
      table.delete(key);
      continue;
    }
    const exp = Math.round(wall + (entry.deadline - now));
    if (entry.kind === 'value') {
      parts.push(setLine(key, entry.text, exp));
    } else {
      let first = true;
      for (const member of entry.members) {
        parts.push(saddLine(key, member, exp, first));
        first = false;
      }
    }
  }
  return { text: parts.join(''), lines: parts.length };
}

/**
 * Replaces the journal at `path` with `text`: written to `<path>.tmp`, synced, renamed
 * over it, and the directory synced, so a crash leaves the old file or the new one, whole.
 * Returns the new file's handle, positioned at its end, for the appends that follow.
 */
async function writeJournal(path: string, text: string): Promise<FileHandle> {
  const tmp = `${path}.tmp`;
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
    await rename(tmp, path);
    await syncDirectory(dirname(path));
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
  return handle;
}

function weight(entry: Entry): number {
  return entry.kind === 'value' ? 1 : entry.members.size;
}

// Journal lines. Each is `{"v":1,<fields>,"sum":"<hex>"}` where the sum is the first 16 hex
// digits of the SHA-256 of the same line without it (`{"v":1,<fields>}`): it catches a
// line that still parses after a bit flip, such as a changed expiry or grant id.

function setLine(key: string, text: string, exp: number): string {
  return seal(`"op":"set","key":${JSON.stringify(key)},"value":${text},"exp":${exp}`);
}

function delLine(key: string): string {
  return seal(`"op":"del","key":${JSON.stringify(key)}`);
}

function saddLine(key: string, member: string, exp: number, fresh: boolean): string {
  return seal(`"op":"sadd","key":${JSON.stringify(key)},"member":${JSON.stringify(member)},"exp":${exp},"new":${fresh}`);
}

function sremLine(key: string, member: string): string {
  return seal(`"op":"srem","key":${JSON.stringify(key)},"member":${JSON.stringify(member)}`);
}

function seal(fields: string): string {
  return `{"v":${VERSION},${fields},"sum":"${checksum(`{"v":${VERSION},${fields}}`)}"}\n`;
}

function checksum(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

// `s`: JSON text may hold U+2028/U+2029 unescaped, which `.` does not match otherwise.
const SEALED = /^(\{.*),"sum":"([0-9a-f]{16})"\}$/s;
const KEY_FIELD = /"key":("(?:[^"\\]|\\.)*")/;

/** A journal line (without its newline) as a record, or why it is not one. */
function decode(line: string): { record: JournalRecord } | { reason: string } {
  const sealed = SEALED.exec(line);
  if (sealed === null) return { reason: 'not a store record (no checksum)' };
  const body = `${sealed[1]}}`;
  if (checksum(body) !== sealed[2]) return { reason: 'checksum mismatch: the line changed after it was written' };
  // The body is `{...}`: if it parses, it is an object.
  let fields: Partial<Record<string, Json>>;
  try {
    fields = JSON.parse(body) as Partial<Record<string, Json>>;
  } catch {
    return { reason: 'not JSON, though its checksum matches' };
  }
  if (fields.v !== VERSION) return { reason: `journal version ${JSON.stringify(fields.v)}, expected ${VERSION}` };
  const { op, key, value, exp, member } = fields;
  if (typeof key !== 'string' || key === '') return { reason: 'no key' };
  const timed = typeof exp === 'number' && Number.isFinite(exp);
  switch (op) {
    case 'set':
      return value !== undefined && timed ? { record: { op, key, value, exp } } : { reason: 'set without a value or an expiry' };
    case 'del':
      return { record: { op, key } };
    case 'sadd':
      return typeof member === 'string' && timed && typeof fields.new === 'boolean' ? { record: { op, key, member, exp, new: fields.new } } : { reason: 'sadd without a member, an expiry or new' };
    case 'srem':
      return typeof member === 'string' ? { record: { op, key, member } } : { reason: 'srem without a member' };
    default:
      return { reason: `unknown op ${JSON.stringify(op)}` };
  }
}

/** The key a damaged line names, when it can still be read. */
function keyOf(line: string): string | undefined {
  const match = KEY_FIELD.exec(line);
  if (match === null) return undefined;
  try {
    const key = JSON.parse(match[1]!) as unknown;
    return typeof key === 'string' && key !== '' ? key : undefined;
  } catch {
    return undefined;
  }
}

/** Applies `record`; returns why it does not fit the records before it, if it does not. */
function apply(entries: Map<string, Entry>, record: JournalRecord): string | undefined {
  switch (record.op) {
    case 'set':
      entries.set(record.key, { kind: 'value', text: JSON.stringify(record.value), deadline: record.exp });
      return undefined;
    case 'del':
      entries.delete(record.key);
      return undefined;
    case 'sadd': {
      const entry = entries.get(record.key);
      if (record.new || entry === undefined) {
        entries.set(record.key, { kind: 'set', members: new Set([record.member]), deadline: record.exp });
        return undefined;
      }
      if (entry.kind !== 'set') return 'adds to a set, but the key holds a value';
      entry.members.add(record.member);
      entry.deadline = record.exp;
      return undefined;
    }
    case 'srem': {
      const entry = entries.get(record.key);
      if (entry === undefined) return undefined;
      if (entry.kind !== 'set') return 'removes from a set, but the key holds a value';
      entry.members.delete(record.member);
      if (entry.members.size === 0) entries.delete(record.key);
      return undefined;
    }
  }
}

interface Replayed {
  /** Deadlines are wall-clock `exp` here. */
  entries: Map<string, Entry>;
  recovered: number;
  dropped: DroppedLine[];
  removed: string[];
  /** Why the file is refused, when it is. */
  refusal?: string;
}

/**
 * Applies every complete, valid line of `text` in order. A last line without its newline
 * is a write a crash cut short: it was never acknowledged, so it is dropped and the state
 * before it stands. A complete line that is damaged is a record that was acknowledged
 * and then lost; the key it names, unless a later record replaced that key outright, is
 * removed (see RecoveryReport.removed).
 */
function replay(text: string): Replayed {
  const entries = new Map<string, Entry>();
  const dropped: DroppedLine[] = [];
  /** Keys named by damaged lines and not replaced since. */
  const doubtful = new Set<string>();
  let recovered = 0;
  const lines = text.split('\n');
  // split() gives at least one piece: the text after the last newline, '' when it ends in one.
  const tail = lines.pop()!;
  lines.forEach((line, index) => {
    const drop = (reason: string, key: string | undefined): void => {
      if (key !== undefined) doubtful.add(key);
      dropped.push(key === undefined ? { line: index + 1, reason } : { line: index + 1, reason, key });
    };
    const decoded = decode(line);
    if ('reason' in decoded) {
      drop(decoded.reason, keyOf(line));
      return;
    }
    const { record } = decoded;
    const conflict = apply(entries, record);
    if (conflict !== undefined) {
      drop(conflict, record.key);
      return;
    }
    recovered++;
    if (record.op === 'set' || record.op === 'del' || (record.op === 'sadd' && record.new)) doubtful.delete(record.key);
  });
  if (tail !== '') dropped.push({ line: lines.length + 1, reason: 'incomplete: the file ends inside this line (a write cut short, never acknowledged)' });
  const removed = [...doubtful].filter((key) => entries.delete(key));
  const replayed: Replayed = { entries, recovered, dropped, removed };
  // A store file always has whole records, except for a very first write cut short.
  const firstWriteCut = lines.length === 0 && (tail.startsWith(RECORD_START) || RECORD_START.startsWith(tail));
  if (recovered === 0 && dropped.length > 0 && !firstWriteCut) replayed.refusal = `line 1: ${dropped[0]!.reason}`;
  return replayed;
}

function damageMessage(path: string, recovery: RecoveryReport): string {
  const lines = recovery.dropped.map((d) => `line ${d.line}${d.key === undefined ? '' : ` (${JSON.stringify(d.key)})`}: ${d.reason}`).join('; ');
  const removed = recovery.removed.length === 0 ? '' : ` Removed ${recovery.removed.map((key) => JSON.stringify(key)).join(', ')}: a damaged line held their last change, so what came before it may be stale (a revoked grant would be active again).`;
  return `the store file ${path} was damaged: recovered ${recovery.recovered} records, dropped ${recovery.dropped.length} lines (${lines}).${removed} The file as found is kept at ${recovery.damagedCopy}.`;
}

async function readJournal(path: string): Promise<string> {
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new FileStoreError('store-file-invalid', path, `${path} is not a regular file; store.path must name the store's journal file`);
    return await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof FileStoreError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw new FileStoreError('store-file-invalid', path, `cannot read the store file ${path}: ${describe(err)}`, { cause: err });
  }
}

/** Copies the damaged file aside before compaction rewrites it, so nothing is destroyed. */
async function keepDamaged(path: string, wallClock: () => number): Promise<string> {
  const copy = `${path}.damaged-${new Date(wallClock()).toISOString()}`;
  try {
    await copyFile(path, copy, constants.COPYFILE_EXCL);
    const handle = await open(copy, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw new FileStoreError('store-file-unwritable', path, `the store file ${path} is damaged and cannot be copied to ${copy} before it is repaired: ${describe(err)}`, { cause: err });
  }
  return copy;
}

async function syncDirectory(dir: string): Promise<void> {
  // A rename is durable only once the directory that holds it is.
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

const LOCK_CONTENT = /^([1-9]\d*)\n$/;

/**
 * Takes `<path>.lock` for this process; returns its release. The lock holds the owner's
 * pid: a lock whose process is alive refuses, one whose process is gone (a crash, a
 * SIGKILL) is taken over. A pid reused by an unrelated process keeps the lock: the
 * message says how to check and clear it. Two processes taking over the same stale lock
 * at the same moment could both succeed: this guards against a second wardgate on the
 * same file and a restart after a crash, not against a race between two starts.
 */
async function takeLock(path: string, logger: Logger): Promise<() => Promise<void>> {
  const lock = `${path}.lock`;
  const mine = `${process.pid}\n`;
  const draft = `${lock}.${process.pid}`;
  const unwritable = (err: unknown): FileStoreError => new FileStoreError('store-file-unwritable', path, `cannot create the lock ${lock}: ${describe(err)}`, { cause: err });
  try {
    await writeFile(draft, mine, { mode: 0o600 });
  } catch (err) {
    throw unwritable(err);
  }
  try {
    // link() creates the lock with its content in one step, or fails if it exists: no
    // other process can ever see the lock without its owner's pid.
    for (let attempt = 1; ; attempt++) {
      try {
        await link(draft, lock);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw unwritable(err);
        if (attempt === 3) throw new FileStoreError('store-file-locked', path, `${path} is locked by ${lock}, which keeps being taken by other processes`);
      }
      const holder = await lockHolder(path, lock);
      if (holder === undefined) continue;
      if (isAlive(holder)) {
        throw new FileStoreError('store-file-locked', path, `${path} is in use by process ${holder} (lock ${lock}): only one wardgate may own a store file. If no wardgate runs as process ${holder}, remove ${lock}.`);
      }
      logger.warn({ file: path, lock, pid: holder }, 'taking over the store lock of a process that is gone');
      await rm(lock, { force: true });
    }
  } finally {
    await rm(draft, { force: true });
  }
  return async () => {
    try {
      if ((await readFile(lock, 'utf8')) === mine) await rm(lock, { force: true });
    } catch (err) {
      logger.warn({ file: path, lock, err }, 'could not release the store lock');
    }
  };
}

/** The pid in the lock; undefined when the lock has just gone. */
async function lockHolder(path: string, lock: string): Promise<number | undefined> {
  let content: string;
  try {
    content = await readFile(lock, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FileStoreError('store-file-locked', path, `${path} is locked by ${lock}, which cannot be read: ${describe(err)}`, { cause: err });
  }
  const match = LOCK_CONTENT.exec(content);
  if (match === null) throw new FileStoreError('store-file-locked', path, `${path} is locked by ${lock}, which holds no process id; if no wardgate runs, remove it`);
  return Number(match[1]);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}



import { mkdir, type FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Logger } from '../logger.js';
import { isDurableKey } from './durable.js';
import { takeLock } from './file-lock.js';
import { damageMessage, delLine, describe, FileStoreError, keepDamaged, readJournal, replay, saddLine, setLine, snapshot, sremLine, writeJournal, type Entry, type RecoveryReport } from './journal.js';
import { checkMember, checkTtl, MemoryStore, StoreClosedError, StoreWrongTypeError, toText, type MemoryStoreOptions } from './memory.js';
import { StoreUnavailableError, type Json } from './store.js';

export { FileStoreError, type DroppedLine, type FileStoreErrorCode, type IndexRepair, type RecoveryReport } from './journal.js';

/*
 * The file store: a MemoryStore whose durable keys (grants, break-glass records, ... see
 * durable.ts) are also written to an append-only journal (journal.ts), one self-checking
 * JSON line per change, so they survive a restart or a crash. Everything else stays in
 * memory only. One process owns the file at a time (file-lock.ts).
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
 * Recovery, at open (details at the top of journal.ts): a last line a crash cut short was
 * never acknowledged and is dropped. A damaged complete line is lost, key and all, so it
 * may have revoked any grant: every grant and break-glass record last written before it is
 * removed (fail closed), those written after it stay, other records keep their last valid
 * value, and the index sets are made to list exactly the records that survived. The file
 * as found is copied aside first and the log names everything dropped, removed and
 * relisted (RecoveryReport). A file with content but no valid record is refused.
 *
 * Compaction rewrites the live state to `<path>.tmp`, syncs it, renames it over the
 * journal and syncs the directory, so a crash at any point leaves either the old journal
 * or the new one. It runs at open and whenever the journal has grown past `compactAfter`
 * lines and at least twice the live record count, inside the same writer loop as the
 * appends, so nothing written meanwhile is lost.
 */

/** Journal lines after which compaction is considered. */
export const DEFAULT_COMPACT_AFTER = 10_000;

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
   * Locks the file (file-lock.ts), reads it, recovers what it can (journal.ts), compacts it and
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
      const replayed = replay(await readJournal(path), wallClock());
      if (replayed.refusal !== undefined) {
        throw new FileStoreError('store-file-invalid', path, `${path} is not a wardgate store file (${replayed.refusal}) and holds no valid store record; refusing to start on it rather than replace it. Check store.path, or move the file away if it is not needed.`);
      }
      const { entries: table, recovered, dropped, removed, repaired } = replayed;
      const recovery: RecoveryReport = { recovered, dropped, removed, repaired };
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

function weight(entry: Entry): number {
  return entry.kind === 'value' ? 1 : entry.members.size;
}

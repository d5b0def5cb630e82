import { LRUCache } from 'lru-cache';
import { WardgateError } from '../errors.js';
import type { Json, Store } from './store.js';
import { Subscribers } from './subscribers.js';

/*
 * The Store in one process's memory. A single wardgate process uses it directly; in
 * worker mode the primary owns one and the workers reach it over IPC (ipc.ts).
 *
 * Values are kept as JSON text rather than as objects: one JSON.stringify on write and
 * one JSON.parse on read measured 2–3x cheaper for session-sized objects than a
 * structuredClone on each side, every reader gets its own copy, and a value behaves
 * exactly as it will after the IPC round trip (which is JSON too), so code that works
 * against one process does not break in worker mode.
 *
 * Every method does its whole job synchronously before its first await, so in one
 * process `add` and `take` are atomic: nothing can run between the check and the write.
 */

/** A call on a store after `close()`. */
export class StoreClosedError extends WardgateError {
  constructor(message = 'the store is closed') {
    super('store-closed', message);
  }
}

/** A value operation on a set key or a set operation on a value key (Redis says WRONGTYPE). */
export class StoreWrongTypeError extends WardgateError {
  constructor(message: string) {
    super('store-wrong-type', message);
  }
}

/**
 * Carries a published message to other processes (installed by `serveStore`); `publish`
 * resolves only when the relay has, so a revocation is in force everywhere by then.
 */
export type Relay = (channel: string, text: string) => Promise<void>;

export interface MemoryStoreOptions {
  /** Most entries (values and sets) kept; the least recently used go first. Default 1_000_000. */
  max?: number;
  /**
   * A subscriber threw. The other subscribers still run and publish still resolves, so
   * this is the only trace of it: log it, because that process may not have applied a
   * revocation. Default: `process.emitWarning`.
   */
  onHandlerError?: (error: unknown, channel: string) => void;
  /**
   * An entry was dropped to make room, the least recently used one, which may or may not
   * have expired already (expired entries are only dropped lazily). Worth a metric: an
   * evicted replay guard or lock no longer protects anything.
   */
  onEvict?: (key: string) => void;
  /**
   * Milliseconds on a monotonic clock, always above 0 (lru-cache reads a start time of 0
   * as "no TTL"). Default `performance.now`; tests pass a clock they move by hand.
   */
  now?: () => number;
}

type Entry = { kind: 'value'; text: string } | { kind: 'set'; members: Set<string> };

export const DEFAULT_MAX_ENTRIES = 1_000_000;

export class MemoryStore implements Store {
  readonly #cache: LRUCache<string, Entry>;
  readonly #subscribers: Subscribers;
  #relay: Relay | undefined;
  #closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    const max = options.max ?? DEFAULT_MAX_ENTRIES;
    if (!Number.isSafeInteger(max) || max < 1) throw new TypeError(`store max must be a positive integer, not ${max}`);
    const onEvict = options.onEvict;
    this.#cache = new LRUCache<string, Entry>({
      max,
      // Expired entries go lazily (on read, or when the LRU needs the slot): one timer
      // per entry would cost more than the memory it frees.
      ttlAutopurge: false,
      allowStale: false,
      updateAgeOnGet: false,
      updateAgeOnHas: false,
      // lru-cache otherwise reuses one clock reading for 1 ms and longer if the event loop
      // is blocked, which could hand out an entry that has just expired.
      ttlResolution: 0,
      ...(options.now ? { perf: { now: options.now } } : {}),
      ...(onEvict ? { dispose: (_value: Entry, key: string, reason: LRUCache.DisposeReason) => { if (reason === 'evict') onEvict(key); } } : {}),
    });
    this.#subscribers = new Subscribers(options.onHandlerError);
  }

  async get<T extends Json>(key: string): Promise<T | undefined> {
    this.#open();
    const entry = this.#value(key);
    return entry === undefined ? undefined : (JSON.parse(entry.text) as T);
  }

  async set(key: string, value: Json, ttlMs: number): Promise<void> {
    this.#open();
    checkKey(key);
    checkTtl(ttlMs);
    this.#cache.set(key, { kind: 'value', text: toText(value) }, { ttl: ttlMs });
  }

  async add(key: string, value: Json, ttlMs: number): Promise<boolean> {
    this.#open();
    checkKey(key);
    checkTtl(ttlMs);
    const text = toText(value);
    // has() is false for an expired entry, which set() then overwrites.
    if (this.#cache.has(key)) return false;
    this.#cache.set(key, { kind: 'value', text }, { ttl: ttlMs });
    return true;
  }

  async take<T extends Json>(key: string): Promise<T | undefined> {
    this.#open();
    const entry = this.#value(key);
    if (entry === undefined) return undefined;
    this.#cache.delete(key);
    return JSON.parse(entry.text) as T;
  }

  async delete(key: string): Promise<boolean> {
    this.#open();
    checkKey(key);
    // has() is false for an expired entry; lru's delete() would count it as deleted.
    const existed = this.#cache.has(key);
    this.#cache.delete(key);
    return existed;
  }

  async addMember(key: string, member: string, ttlMs: number): Promise<void> {
    this.#open();
    checkTtl(ttlMs);
    checkMember(member);
    const entry = this.#set(key);
    if (entry === undefined) {
      this.#cache.set(key, { kind: 'set', members: new Set([member]) }, { ttl: ttlMs });
      return;
    }
    entry.members.add(member);
    // A set indexes things that each have their own lifetime (a user's sessions), so it
    // must outlive the longest of them: never shorten it.
    const ttl = Math.max(this.#cache.getRemainingTTL(key), ttlMs);
    this.#cache.set(key, entry, { ttl });
  }

  async removeMember(key: string, member: string): Promise<void> {
    this.#open();
    checkMember(member);
    const entry = this.#set(key);
    if (entry === undefined) return;
    entry.members.delete(member);
    // Like Redis: an empty set does not exist, so it does not take a slot until it expires.
    if (entry.members.size === 0) this.#cache.delete(key);
  }

  async members(key: string): Promise<string[]> {
    this.#open();
    const entry = this.#set(key);
    return entry === undefined ? [] : [...entry.members];
  }

  async publish(channel: string, message: Json): Promise<void> {
    this.#open();
    checkChannel(channel);
    const text = toText(message);
    this.#subscribers.deliver(channel, text);
    if (this.#relay) await this.#relay(channel, text);
  }

  subscribe(channel: string, handler: (message: Json) => void): () => void {
    this.#open();
    checkChannel(channel);
    return this.#subscribers.add(channel, handler);
  }

  /** Idempotent: shutdown paths may close twice. Every other call afterwards rejects. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#cache.clear();
    this.#subscribers.clear();
    this.#relay = undefined;
  }

  /** Live entries, expired ones not yet dropped included (lru-cache counts them until then). */
  get size(): number {
    return this.#cache.size;
  }

  /** For `serveStore`: `publish` awaits `relay` after local delivery. Returns the detach function. */
  attachRelay(relay: Relay): () => void {
    this.#open();
    if (this.#relay !== undefined) throw new Error('this store already has a relay: serve it once');
    this.#relay = relay;
    return () => {
      if (this.#relay === relay) this.#relay = undefined;
    };
  }

  #open(): void {
    if (this.#closed) throw new StoreClosedError();
  }

  #value(key: string): { kind: 'value'; text: string } | undefined {
    checkKey(key);
    const entry = this.#cache.get(key);
    if (entry === undefined) return undefined;
    if (entry.kind !== 'value') throw new StoreWrongTypeError(`store key ${JSON.stringify(key)} holds a set, not a value`);
    return entry;
  }

  #set(key: string): { kind: 'set'; members: Set<string> } | undefined {
    checkKey(key);
    const entry = this.#cache.get(key);
    if (entry === undefined) return undefined;
    if (entry.kind !== 'set') throw new StoreWrongTypeError(`store key ${JSON.stringify(key)} holds a value, not a set`);
    return entry;
  }
}

/** Runs one subscriber on its own copy of the message; a throw goes to `onError`, never up. */
/** Shared with the file store, which must refuse exactly what this store refuses. */
export function toText(value: Json): string {
  // JSON.stringify gives undefined for undefined, functions and symbols: not JSON values.
  const text = JSON.stringify(value) as string | undefined;
  if (text === undefined) throw new TypeError('store values must be JSON values');
  return text;
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key === '') throw new TypeError('store keys must be non-empty strings');
}

function checkChannel(channel: string): void {
  if (typeof channel !== 'string' || channel === '') throw new TypeError('store channels must be non-empty strings');
}

export function checkMember(member: string): void {
  if (typeof member !== 'string') throw new TypeError('set members must be strings');
}

export function checkTtl(ttlMs: number): void {
  // lru-cache reads a TTL of 0 as "never expires"; an entry that outlives its purpose is
  // the one mistake a session store must not make, so anything but a positive finite
  // number is refused.
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) throw new TypeError(`store TTLs must be positive finite milliseconds, not ${String(ttlMs)}`);
}

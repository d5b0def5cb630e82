/*
 * The Store contract: key/value with TTL, small index sets, and publish/subscribe for
 * revocations. Sessions, sign-in transactions, handoff codes, replay guards and refresh
 * locks all live behind it, so one wardgate process, a cluster of workers and (later)
 * several replicas over Redis share one view of who is signed in.
 *
 * Values are JSON: every implementation may serialize them, so callers never rely on
 * object identity.
 */

import { WardgateError } from '../errors.js';

/** The store did not answer (a worker's primary is gone or stuck): callers answer 503. */
export class StoreUnavailableError extends WardgateError {
  constructor(message: string, options?: ErrorOptions) {
    super('store-unavailable', message, options);
  }
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json | undefined };

export interface Store {
  get<T extends Json>(key: string): Promise<T | undefined>;
  /** Sets `key` for `ttlMs` milliseconds, replacing any value. */
  set(key: string, value: Json, ttlMs: number): Promise<void>;
  /** Sets `key` only when it is absent; true when this call set it (locks, replay guards). */
  add(key: string, value: Json, ttlMs: number): Promise<boolean>;
  /** Reads and deletes `key` in one step, so only one caller ever gets it (single-use codes). */
  take<T extends Json>(key: string): Promise<T | undefined>;
  /** Deletes `key`; true when it existed. */
  delete(key: string): Promise<boolean>;
  /** Adds `member` to the set at `key`; the set lives at least `ttlMs` from now. */
  addMember(key: string, member: string, ttlMs: number): Promise<void>;
  removeMember(key: string, member: string): Promise<void>;
  members(key: string): Promise<string[]>;
  /**
   * Delivers `message` to every subscriber of `channel` in every process sharing this
   * store, and resolves once they have all run their handlers: a revocation is in force
   * everywhere when publish resolves.
   */
  publish(channel: string, message: Json): Promise<void>;
  /** Returns the unsubscribe function. Handlers run synchronously on delivery. */
  subscribe(channel: string, handler: (message: Json) => void): () => void;
  close(): Promise<void>;
}

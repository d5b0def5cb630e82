import { randomBytes } from 'node:crypto';
import type { NoticeEvent } from '../notify/notice.js';
import type { Json, Store } from '../store/store.js';
import { GrantError } from './errors.js';

/*
 * Grants and break-glass records in the Store: one key per record plus an index set, under
 * prefixes the file store persists (store/durable.ts). Changes are read-modify-write, so
 * each holds a short lock on its record: two approvers clicking at once must both count,
 * not overwrite each other. The lock key is not durable: after a restart nobody holds it.
 */

export const GRANTS_CHANNEL = 'wardgate:grants';

/** What changed: the same names the webhooks and the metrics use. */
export type ChangeEvent = NoticeEvent;

/**
 * Published on GRANTS_CHANNEL after every change, once the record is stored. It carries
 * the record itself: subscribers run synchronously when a message is delivered, and
 * publish resolves once they have, so each process must be able to apply the change
 * without a store round trip of its own. That is what makes a revocation hold on the
 * very next request.
 */
export interface ChangeMessage {
  kind: 'grant' | 'break-glass';
  id: string;
  event: ChangeEvent;
  at: number;
  /** The principal id that made the change; absent for changes time made. */
  by: string | undefined;
  record: Json;
}

const LOCK_TTL_MS = 5_000;
const LOCK_WAIT_MS = 3_000;
const LOCK_RETRY_MS = 10;
// Time left on the lock below which a change is not written: the write itself takes some.
const LOCK_MARGIN_MS = 1_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Ids people can read out over the phone: a prefix, then 20 base32 characters (100 bits). */
export function newId(prefix: 'g' | 'bg'): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
  const bytes = randomBytes(20);
  let id = '';
  for (const byte of bytes) id += alphabet[byte & 31];
  return `${prefix}_${id}`;
}

export const ID_PATTERN = /^(?:g|bg)_[a-z2-9]{20}$/;

/** Where one kind of record lives in the store: `<prefix><id>`, listed in the set `index`. */
export interface RecordLayout {
  prefix: string;
  index: string;
  kind: ChangeMessage['kind'];
}

export const GRANT_RECORDS: RecordLayout = { prefix: 'grant:', index: 'grants:all', kind: 'grant' };
export const BREAK_GLASS_RECORDS: RecordLayout = { prefix: 'break-glass:', index: 'break-glass:all', kind: 'break-glass' };

export class Records<T extends { id: string }> {
  constructor(private readonly store: Store, private readonly layout: RecordLayout) {}

  async get(id: string): Promise<T | undefined> {
    if (!ID_PATTERN.test(id)) return undefined;
    return (await this.store.get<Json>(`${this.layout.prefix}${id}`)) as T | undefined;
  }

  /** Every record still kept; ids whose record is gone (past retention) leave the index. */
  async all(): Promise<T[]> {
    const ids = await this.store.members(this.layout.index);
    const found: T[] = [];
    for (const id of ids) {
      const record = await this.get(id);
      if (record) found.push(record);
      else await this.store.removeMember(this.layout.index, id);
    }
    return found;
  }

  async put(record: T, ttlMs: number): Promise<void> {
    await this.store.set(`${this.layout.prefix}${record.id}`, record as unknown as Json, ttlMs);
    await this.store.addMember(this.layout.index, record.id, ttlMs);
  }

  /**
   * Runs `change` on the current record under its lock and stores what it returns; the
   * change throws a GrantError to refuse, and then nothing is written.
   */
  update(id: string, notFound: () => GrantError, change: (record: T) => { record: T; ttlMs: number }): Promise<T> {
    return this.exclusive(id, async (stillHeld) => {
      const current = await this.get(id);
      if (!current) throw notFound();
      const { record, ttlMs } = change(current);
      // A lock that ran out while we read may be someone else's now: their change wins.
      if (!stillHeld()) throw new GrantError('grant-busy', `${id} took too long to change; try again`);
      await this.put(record, ttlMs);
      return record;
    });
  }

  /**
   * Runs `work` holding the lock called `name` (one holder across every process sharing
   * the store). The lock expires by itself, so a crashed holder frees it; `stillHeld` says
   * whether it has not yet, and only the holder's own lock is released.
   */
  async exclusive<R>(name: string, work: (stillHeld: () => boolean) => Promise<R>): Promise<R> {
    const lock = `${this.layout.prefix.replace(/:$/, '-lock:')}${name}`;
    const token = randomBytes(12).toString('base64url');
    const deadline = Date.now() + LOCK_WAIT_MS;
    while (!(await this.store.add(lock, token, LOCK_TTL_MS))) {
      if (Date.now() >= deadline) throw new GrantError('grant-busy', `${name} is being changed by someone else; try again`);
      await sleep(LOCK_RETRY_MS);
    }
    const acquired = Date.now();
    try {
      return await work(() => Date.now() - acquired < LOCK_TTL_MS - LOCK_MARGIN_MS);
    } finally {
      if ((await this.store.get(lock)) === token) await this.store.delete(lock);
    }
  }

  /** Tells every process sharing the store; resolves once they all have the news. */
  publish(record: T, event: ChangeEvent, at: number, by: string | undefined): Promise<void> {
    const message: ChangeMessage = { kind: this.layout.kind, id: record.id, event, at, by, record: record as unknown as Json };
    return this.store.publish(GRANTS_CHANNEL, message as unknown as Json);
  }
}

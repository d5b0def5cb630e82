import { createHash } from 'node:crypto';
import { WardgateError } from '../errors.js';
import type { Json, Store } from '../store/store.js';
import type { RevocationCause, SessionRecord } from './sessions.js';

/*
 * Sessions as the store holds them (keys as sessions.ts lays them out), with nothing but
 * the store: no IdP client, no cache. In worker mode the admin API runs in the cluster
 * primary, which has the store and no SessionManager, so ending a session must not need
 * one; SessionManager ends sessions through the same function, so there is one way to end
 * a session whoever asks, and every process hears of it the same way.
 *
 * An administrator sees a session's `ref`, never its id: the id is the bearer secret
 * sealed in the session cookie, and an admin API response or a log line that carried it
 * would let its reader become that clinician.
 */

/** Carries the ids of ended sessions to every process: each drops its copy and closes their WebSockets. */
export const REVOCATIONS = 'wardgate:revocations';

/**
 * Only a token refresh already in flight can write an ended session back, and it looks
 * for the tombstone straight after writing; a refresh is over within the IdP timeout
 * (seconds), so an hour leaves a wide margin without keeping tombstones for the whole
 * session lifetime.
 */
const TOMBSTONE_TTL_MS = 3_600_000;

/** No session with that ref exists (any more): it ended, expired, or never was. */
export class SessionNotFoundError extends WardgateError {
  constructor(readonly ref: string) {
    super('session-not-found', `no session with ref ${JSON.stringify(ref)}`);
  }
}

/** What an administrator may see of a session. Times are epoch milliseconds, as everywhere in the context. */
export interface SessionSummary {
  /** Names the session to `endSession`; derived from the id, which it does not reveal. */
  ref: string;
  sub: string;
  email: string | undefined;
  name: string | undefined;
  groups: string[];
  amr: string[];
  acr: string | undefined;
  createdAt: number;
  expiresAt: number;
  /** The last activity any process has written back (at a granularity of up to a minute). */
  lastSeenAt: number;
}

/**
 * A stable handle for session `id`. SHA-256 of a 256-bit random id cannot be turned back;
 * the prefix keeps the hash from matching any other use of the id, and 22 base64url
 * characters (132 bits) cannot collide among live sessions.
 */
export function sessionRef(id: string): string {
  return createHash('sha256').update(`wardgate-session-ref:${id}`).digest('base64url').slice(0, 22);
}

export interface EndSessionsOptions {
  /** This process's copy of a record, which saves a store read. */
  cached?: (id: string) => SessionRecord | undefined;
  /** Runs for each id once the store no longer holds it; `existed` when this call removed it. */
  ended?: (id: string, existed: boolean) => void;
}

/**
 * Ends sessions `ids` in the store and tells every process; resolves once every process
 * sharing the store has dropped them. Returns how many this call ended (ids already gone
 * do not count).
 */
export async function endSessions(store: Store, ids: readonly string[], cause: RevocationCause, options: EndSessionsOptions = {}): Promise<number> {
  let ended = 0;
  for (const id of ids) {
    const record = (options.cached?.(id) ?? await store.get<Json>(`session:${id}`)) as SessionRecord | undefined;
    await store.set(`ended:${id}`, cause, TOMBSTONE_TTL_MS);
    const existed = await store.delete(`session:${id}`);
    await store.delete(`seen:${id}`);
    if (record) {
      await Promise.all([
        store.removeMember('sessions', id),
        store.removeMember(`sub:${record.sub}`, id),
        store.removeMember(`browser:${record.binding}`, id),
        record.idpSid ? store.removeMember(`sid:${record.idpSid}`, id) : undefined,
      ]);
    }
    if (existed) ended++;
    options.ended?.(id, existed);
  }
  if (ids.length > 0) await store.publish(REVOCATIONS, { ids: [...ids], cause });
  return ended;
}

export interface ListSessionsOptions {
  /** Only this subject's sessions. */
  sub?: string;
  /** Epoch ms; default Date.now. Sessions past their expiry by then are left out. */
  now?: number;
}

/**
 * Live sessions, newest first. Those that expired or went idle without a request to notice
 * are left out: they are ended at their next request or by the next sweep.
 */
export async function listSessions(store: Store, options: ListSessionsOptions = {}): Promise<SessionSummary[]> {
  const now = options.now ?? Date.now();
  const ids = await store.members(options.sub === undefined ? 'sessions' : `sub:${options.sub}`);
  const found = await Promise.all(ids.map(async (id) => {
    const [record, seen] = await Promise.all([store.get<Json>(`session:${id}`), store.get<number>(`seen:${id}`)]);
    return { record: record as SessionRecord | undefined, seen };
  }));
  const summaries: SessionSummary[] = [];
  for (const { record, seen } of found) {
    // `seen:` lives for the idle timeout: gone means idle.
    if (!record || seen === undefined || now >= record.expiresAt) continue;
    summaries.push({
      ref: sessionRef(record.id),
      sub: record.sub,
      email: record.email,
      name: record.name,
      groups: record.groups,
      amr: record.amr,
      acr: record.acr,
      createdAt: record.createdAt,
      expiresAt: record.expiresAt,
      lastSeenAt: seen,
    });
  }
  return summaries.sort((a, b) => b.createdAt - a.createdAt || (a.ref < b.ref ? -1 : 1));
}

/** Where the caller has a revocations metric, `ended` counts with it (existed: this call ended it). */
export type AdminEndOptions = Pick<EndSessionsOptions, 'ended'>;

/**
 * Ends the session named by `ref` everywhere; throws SessionNotFoundError when there is
 * none. Refs are not stored: each live session's is worked out (one hash each), which an
 * admin action can afford and which keeps sign-in as it is.
 */
export async function endSession(store: Store, ref: string, cause: RevocationCause, options: AdminEndOptions = {}): Promise<number> {
  const id = (await store.members('sessions')).find((candidate) => sessionRef(candidate) === ref);
  const ended = id === undefined ? 0 : await endSessions(store, [id], cause, options);
  if (ended === 0) throw new SessionNotFoundError(ref);
  return ended;
}

/** Ends every session of subject `sub` everywhere; returns how many there were. */
export async function endSessionsOf(store: Store, sub: string, cause: RevocationCause, options: AdminEndOptions = {}): Promise<number> {
  return endSessions(store, await store.members(`sub:${sub}`), cause, options);
}

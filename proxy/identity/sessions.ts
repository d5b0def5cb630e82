import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Json, Store } from '../store/store.js';
import { recordSubject } from './directory.js';
import type { Identity } from './identity.js';
import { IdpUnavailableError, type IdpTokens, type RelyingParty } from './relying-party.js';
import { endSessions, REVOCATIONS } from './session-admin.js';

/*
 * Server-side sessions. The cookie carries only a sealed reference; the record lives in
 * the Store, so ending a session there ends it for every host and every worker. Each
 * process keeps a short-lived copy of the sessions it serves, dropped the moment a
 * revocation is published, so the hot path costs one map lookup.
 *
 * Keys in the store:
 *   session:<id>   the record (TTL: absolute lifetime)
 *   seen:<id>      last activity (TTL: idle timeout); gone means the session went idle
 *   ended:<id>     tombstone, so a late write cannot bring an ended session back
 *   sid:<idp sid>, sub:<subject>, browser:<binding>, sessions   index sets
 *
 * Ending sessions needs only the store (session-admin.ts), so that the admin API can do it
 * where there is no SessionManager; this class adds its cache and the revocation metric.
 */

export interface SessionRecord {
  id: string;
  /** The browser binding the sign-in started from; logout ends all of that browser's sessions. */
  binding: string;
  sub: string;
  email: string | undefined;
  name: string | undefined;
  groups: string[];
  idpSid: string | undefined;
  amr: string[];
  acr: string | undefined;
  authTime: number | undefined;
  createdAt: number;
  expiresAt: number;
  idToken: string;
  refreshToken: string | undefined;
  accessTokenExpiresAt: number | undefined;
  /** Created by a step-up sign-in: if it is still too weak, deny rather than step up again. */
  steppedUp: boolean;
  /** The ID token's claims, for policies that test them (`claim`). */
  claims: { [name: string]: Json | undefined };
}

export type RevocationCause = 'logout' | 'backchannel' | 'refresh-failed' | 'idle' | 'expired' | 'admin';

export type SessionLookup =
  | { ok: true; record: SessionRecord; identity: Identity; /** Activity before this lookup, epoch ms. */ lastSeenAt: number }
  | { ok: false; reason: 'session-unknown' | 'session-idle' | 'session-expired' | 'session-refresh-failed' };

export interface SessionManagerOptions {
  store: Store;
  idp: RelyingParty;
  absoluteLifetimeMs: number;
  idleTimeoutMs: number;
  metrics: Metrics;
  logger: Logger;
  /** Called in every process when sessions end (close their WebSockets, forget assertions). */
  onEnded(ids: readonly string[]): void;
  now?: () => number;
}

interface Cached {
  record: SessionRecord;
  identity: Identity;
  lastSeen: number;
  /** When this process last wrote `seen:<id>`. */
  touched: number;
  /** No refresh attempt before this time (back-off after the IdP was unavailable). */
  nextRefreshAt: number;
}

// Tokens are refreshed this long before they expire, without holding up the request.
const REFRESH_AHEAD_MS = 60_000;
const REFRESH_RETRY_MS = 30_000;
const REFRESH_LOCK_MS = 15_000;
// Bounds how long another process's copy can lag the store for anything but revocations,
// which are pushed.
const CACHE_TTL_MS = 30_000;
// Sessions that run out with no request to notice are ended by a sweep this often (one
// process per round), so their WebSockets close and the gauge drops.
const SWEEP_EVERY_MS = 30_000;

const claimString = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);
const claimStrings = (value: unknown): string[] => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);

export class SessionManager {
  private readonly cache = new LRUCache<string, Cached>({ max: 100_000, ttl: CACHE_TTL_MS });
  private readonly refreshing = new Map<string, Promise<boolean>>();
  private readonly now: () => number;
  private readonly touchEveryMs: number;
  private readonly unsubscribe: () => void;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly options: SessionManagerOptions) {
    this.now = options.now ?? Date.now;
    // Activity is written back at this granularity; idle sessions end at most this early.
    this.touchEveryMs = Math.min(60_000, Math.max(1_000, Math.floor(options.idleTimeoutMs / 10)));
    this.sweeper = setInterval(() => {
      // One process per round does the work: the others find the lock taken.
      options.store.add('session-sweep', 1, SWEEP_EVERY_MS - 1_000)
        .then((mine) => (mine ? this.sweep() : undefined))
        .catch((err: unknown) => options.logger.warn({ err: (err as Error).message }, 'session sweep failed'));
    }, SWEEP_EVERY_MS);
    this.sweeper.unref();
    this.unsubscribe = options.store.subscribe(REVOCATIONS, (message) => {
      const ids = (message as { ids?: unknown }).ids;
      if (!Array.isArray(ids)) return;
      const ended = ids.filter((id): id is string => typeof id === 'string');
      for (const id of ended) this.cache.delete(id);
      options.onEnded(ended);
    });
  }

  close(): void {
    clearInterval(this.sweeper);
    this.unsubscribe();
  }

  /** A new session from a completed sign-in. */
  async create(tokens: IdpTokens, binding: string, steppedUp: boolean): Promise<SessionRecord> {
    const now = this.now();
    const { claims } = tokens;
    const record: SessionRecord = {
      id: randomBytes(32).toString('base64url'),
      binding,
      sub: claims.sub,
      email: claimString(claims.email),
      name: claimString(claims.name),
      groups: claimStrings(claims.groups),
      idpSid: claimString(claims.sid),
      amr: claimStrings(claims.amr),
      acr: claimString(claims.acr),
      authTime: typeof claims.auth_time === 'number' ? claims.auth_time : undefined,
      createdAt: now,
      expiresAt: now + this.options.absoluteLifetimeMs,
      idToken: tokens.idToken,
      refreshToken: tokens.refreshToken,
      accessTokenExpiresAt: tokens.accessTokenExpiresAt,
      steppedUp,
      claims: otherClaims(claims),
    };
    const { store, absoluteLifetimeMs: life, idleTimeoutMs } = this.options;
    await store.set(`session:${record.id}`, toJson(record), life);
    await store.set(`seen:${record.id}`, now, idleTimeoutMs);
    await Promise.all([
      store.addMember('sessions', record.id, life),
      store.addMember(`sub:${record.sub}`, record.id, life),
      store.addMember(`browser:${binding}`, record.id, life),
      record.idpSid ? store.addMember(`sid:${record.idpSid}`, record.id, life) : undefined,
    ]);
    // Known from now on: approvers may name this person in a grant (identity/directory.ts).
    await recordSubject(store, record, now);
    this.remember(record, now);
    return record;
  }

  /** The live session behind `id`, or why there is none. Counts as activity. */
  async lookup(id: string): Promise<SessionLookup> {
    const now = this.now();
    let cached = this.cache.get(id);
    if (!cached) {
      const record = await this.options.store.get<Json>(`session:${id}`);
      if (!record) return { ok: false, reason: 'session-unknown' };
      const seen = await this.options.store.get<number>(`seen:${id}`);
      cached = this.remember(record as unknown as SessionRecord, seen ?? 0);
    }
    const { record } = cached;
    if (now >= record.expiresAt) {
      await this.end([id], 'expired');
      return { ok: false, reason: 'session-expired' };
    }
    if (now - cached.lastSeen > this.options.idleTimeoutMs) {
      // Another process may have seen activity this one has not: ask the store first.
      const seen = await this.options.store.get<number>(`seen:${id}`);
      if (seen === undefined || now - seen > this.options.idleTimeoutMs) {
        await this.end([id], 'idle');
        return { ok: false, reason: 'session-idle' };
      }
      cached.lastSeen = seen;
    }
    const lastSeenAt = cached.lastSeen;
    cached.lastSeen = now;
    if (now - cached.touched >= this.touchEveryMs) {
      cached.touched = now;
      this.options.store.set(`seen:${id}`, now, this.options.idleTimeoutMs).catch((err: unknown) => {
        this.options.logger.warn({ err: (err as Error).message }, 'could not record session activity');
      });
    }
    const expiresAt = record.accessTokenExpiresAt;
    if (record.refreshToken && expiresAt !== undefined && now >= expiresAt - REFRESH_AHEAD_MS && now >= cached.nextRefreshAt) {
      const refreshed = this.refresh(cached);
      // Only a token that has run out holds the request; one about to is renewed behind it.
      if (now >= expiresAt && !(await refreshed)) return { ok: false, reason: 'session-refresh-failed' };
    }
    const current = this.cache.get(id) ?? cached;
    return { ok: true, record: current.record, identity: current.identity, lastSeenAt };
  }

  /** Ends sessions everywhere; resolves once every process sharing the store has dropped them. */
  end(ids: readonly string[], cause: RevocationCause): Promise<number> {
    return endSessions(this.options.store, ids, cause, {
      cached: (id) => this.cache.get(id)?.record,
      ended: (id, existed) => {
        this.cache.delete(id);
        if (existed) this.options.metrics.revocations.inc({ cause });
      },
    });
  }

  endByIdpSid(sid: string, cause: RevocationCause): Promise<number> {
    return this.endIndex(`sid:${sid}`, cause);
  }

  endBySubject(sub: string, cause: RevocationCause): Promise<number> {
    return this.endIndex(`sub:${sub}`, cause);
  }

  endByBrowser(binding: string, cause: RevocationCause): Promise<number> {
    return this.endIndex(`browser:${binding}`, cause);
  }

  /** Sessions not yet ended; the sweep keeps the index free of those that ran out. */
  async countActive(): Promise<number> {
    return (await this.options.store.members('sessions')).length;
  }

  /** Ends the sessions that expired or went idle without a request to notice. */
  async sweep(): Promise<void> {
    const { store, idleTimeoutMs } = this.options;
    const now = this.now();
    for (const id of await store.members('sessions')) {
      const record = (await store.get<Json>(`session:${id}`)) as SessionRecord | undefined;
      if (!record) {
        await store.removeMember('sessions', id);
        continue;
      }
      if (now >= record.expiresAt) {
        await this.end([id], 'expired');
        continue;
      }
      const seen = Math.max(this.cache.get(id)?.lastSeen ?? 0, (await store.get<number>(`seen:${id}`)) ?? 0);
      if (now - seen > idleTimeoutMs) await this.end([id], 'idle');
    }
  }

  private async endIndex(key: string, cause: RevocationCause): Promise<number> {
    return this.end(await this.options.store.members(key), cause);
  }

  private remember(record: SessionRecord, lastSeen: number): Cached {
    const cached: Cached = { record, identity: identityOf(record), lastSeen, touched: lastSeen, nextRefreshAt: 0 };
    this.cache.set(record.id, cached);
    return cached;
  }

  /** One refresh per session at a time, across requests here and processes elsewhere. */
  private refresh(cached: Cached): Promise<boolean> {
    const id = cached.record.id;
    let flight = this.refreshing.get(id);
    if (!flight) {
      flight = this.refreshOnce(cached).finally(() => this.refreshing.delete(id));
      this.refreshing.set(id, flight);
    }
    return flight;
  }

  private async refreshOnce(cached: Cached): Promise<boolean> {
    const { store, idp, metrics, logger } = this.options;
    const id = cached.record.id;
    if (!(await store.add(`refresh-lock:${id}`, 1, REFRESH_LOCK_MS))) return this.awaitOtherRefresh(cached);
    try {
      // Another process may have refreshed while this one's copy aged: start from the store.
      const current = (await store.get<Json>(`session:${id}`)) as SessionRecord | undefined;
      if (!current) return false;
      if (current.accessTokenExpiresAt !== cached.record.accessTokenExpiresAt) {
        this.remember(current, cached.lastSeen);
        return true;
      }
      const tokens = await idp.refresh(current.refreshToken!);
      const record: SessionRecord = {
        ...current,
        refreshToken: tokens.refreshToken,
        accessTokenExpiresAt: tokens.accessTokenExpiresAt,
        ...(tokens.idToken ? { idToken: tokens.idToken, groups: claimStrings(tokens.claims.groups), email: claimString(tokens.claims.email) ?? current.email } : {}),
      };
      await store.set(`session:${id}`, toJson(record), Math.max(1, record.expiresAt - this.now()));
      if (await store.get(`ended:${id}`)) {
        // Ended while the IdP was answering: the write above must not revive it.
        await store.delete(`session:${id}`);
        return false;
      }
      this.remember(record, cached.lastSeen);
      metrics.tokenRefreshes.inc({ result: 'success' });
      return true;
    } catch (err) {
      if (err instanceof IdpUnavailableError) {
        // The IdP being down is no reason to end a clinician's session: keep it and retry.
        metrics.tokenRefreshes.inc({ result: 'unavailable' });
        cached.nextRefreshAt = this.now() + REFRESH_RETRY_MS;
        logger.warn({ session: id.slice(0, 8), err: (err as Error).message }, 'token refresh deferred: IdP unavailable');
        return true;
      }
      metrics.tokenRefreshes.inc({ result: 'failed' });
      logger.info({ session: id.slice(0, 8), sub: cached.record.sub, err: (err as Error).message }, 'token refresh refused by the IdP; ending the session');
      await this.end([id], 'refresh-failed');
      return false;
    } finally {
      await store.delete(`refresh-lock:${id}`);
    }
  }

  /** Another process holds the refresh lock: wait for its result rather than burn the token. */
  private async awaitOtherRefresh(cached: Cached): Promise<boolean> {
    const { store } = this.options;
    const id = cached.record.id;
    const deadline = this.now() + REFRESH_LOCK_MS;
    while (this.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const current = (await store.get<Json>(`session:${id}`)) as SessionRecord | undefined;
      if (!current) return false;
      if (current.accessTokenExpiresAt !== cached.record.accessTokenExpiresAt) {
        this.remember(current, cached.lastSeen);
        return true;
      }
      if ((await store.get(`refresh-lock:${id}`)) === undefined) break;
    }
    // The other refresh gave up without a result (the IdP is down): keep the session.
    cached.nextRefreshAt = this.now() + REFRESH_RETRY_MS;
    return true;
  }
}

function identityOf(record: SessionRecord): Identity {
  return {
    kind: 'session',
    sub: record.sub,
    email: record.email,
    name: record.name,
    groups: record.groups,
    idpSid: record.idpSid,
    sessionId: record.id,
    scopes: [],
    amr: record.amr,
    acr: record.acr,
    authTime: record.authTime,
    expiresAt: record.expiresAt,
    claims: record.claims ?? {},
  };
}

function otherClaims(claims: Record<string, unknown>): { [name: string]: Json | undefined } {
  // Nonce and hashes bind the ID token to one exchange; nothing after sign-in needs them.
  const { nonce: _nonce, at_hash: _atHash, c_hash: _cHash, ...kept } = claims;
  return kept as { [name: string]: Json | undefined };
}

/** Store values are JSON: undefined fields are dropped, as JSON does. */
function toJson(record: SessionRecord): Json {
  return JSON.parse(JSON.stringify(record)) as Json;
}

import t from 'tap';
import pino from 'pino';
import { createMetrics } from '../../proxy/metrics.js';
import { RelyingParty, type IdpTokens } from '../../proxy/identity/relying-party.js';
import {
  endSession,
  endSessionsOf,
  listSessions,
  REVOCATIONS,
  SessionNotFoundError,
  sessionRef,
  type SessionSummary,
} from '../../proxy/identity/session-admin.js';
import { SessionManager, type SessionRecord } from '../../proxy/identity/sessions.js';
import { MemoryStore } from '../../proxy/store/memory.js';
import type { Json } from '../../proxy/store/store.js';

/*
 * The store-only session operations the admin API uses where there is no SessionManager
 * (the cluster primary). Sessions are made by real SessionManagers, two on one MemoryStore
 * standing for two workers, and ended with nothing but the store: proved here that an
 * administrator sees refs and never ids or tokens, that ending by ref or by user removes
 * the sessions from the store and reaches every process's SessionManager (its cache and
 * its WebSocket hook) before the call resolves, and that SessionManager.end, which now
 * ends sessions through the same code, still counts what it ended.
 */

const silent = pino({ level: 'silent' });
const HOUR = 3_600_000;

interface Process {
  sessions: SessionManager;
  /** What onEnded was told: the ids whose WebSockets this process would close. */
  endedHere: string[];
  metrics: ReturnType<typeof createMetrics>;
}

function worker(store: MemoryStore): Process {
  const endedHere: string[] = [];
  const metrics = createMetrics({ inFlight: () => 0, websocketsByRoute: () => new Map(), sessionsActive: async () => 0 });
  const idp = new RelyingParty({
    issuer: new URL('https://idp.invalid'), clientId: 'wardgate', clientSecret: 'secret', scopes: ['openid'],
    redirectUri: 'https://access.invalid/.wardgate/callback', timeoutMs: 1_000, now: Date.now, observe: () => {},
  });
  const sessions = new SessionManager({
    store, idp, absoluteLifetimeMs: 12 * HOUR, idleTimeoutMs: HOUR, metrics, logger: silent, onEnded: (ids) => endedHere.push(...ids),
  });
  t.teardown(() => sessions.close());
  return { sessions, endedHere, metrics };
}

let made = 0;
/** A completed sign-in's tokens for `sub`; the token strings are unique so a leak is findable. */
function tokens(sub: string): IdpTokens {
  made++;
  return {
    idToken: `id-token-${made}-of-${sub}`,
    refreshToken: `refresh-token-${made}-of-${sub}`,
    accessTokenExpiresAt: Date.now() + HOUR,
    claims: {
      iss: 'https://idp.invalid', aud: 'wardgate', sub, iat: 0, exp: 0, sid: `idp-sid-${made}`,
      email: `${sub}@hospital.example`, name: sub.toUpperCase(), groups: ['clinicians'], amr: ['pwd', 'otp'], acr: 'urn:mfa',
    } as IdpTokens['claims'],
  };
}

async function revocationsCounted(counted: Process, cause: string): Promise<number> {
  const metric = await counted.metrics.revocations.get();
  return metric.values.find((value) => value.labels.cause === cause)?.value ?? 0;
}

/** A store with two "workers" and sessions: alice on both, bob on one. */
async function setup(): Promise<{ store: MemoryStore; a: Process; b: Process; alice1: SessionRecord; alice2: SessionRecord; bob: SessionRecord }> {
  const store = new MemoryStore();
  t.teardown(() => store.close());
  const a = worker(store);
  const b = worker(store);
  const alice1 = await a.sessions.create(tokens('dr.alice'), 'browser-1', false);
  const alice2 = await b.sessions.create(tokens('dr.alice'), 'browser-2', false);
  const bob = await a.sessions.create(tokens('nurse.bob'), 'browser-3', false);
  return { store, a, b, alice1, alice2, bob };
}

t.test('the list shows each live session by ref, with what an administrator needs and no id or token', async (t) => {
  const { store, alice1, alice2, bob } = await setup();
  const list = await listSessions(store);
  t.equal(list.length, 3, 'three sessions');
  const text = JSON.stringify(list);
  for (const record of [alice1, alice2, bob]) {
    t.notOk(text.includes(record.id), `session id of ${record.sub} appears nowhere: it is the cookie's bearer secret`);
    t.notOk(text.includes(record.idToken), 'nor the ID token');
    t.notOk(text.includes(record.refreshToken!), 'nor the refresh token');
    t.notOk(text.includes(record.idpSid!), 'nor the IdP session id (it ends sessions by back-channel logout)');
  }
  const mine = list.find((summary) => summary.ref === sessionRef(bob.id));
  t.same(mine, {
    ref: sessionRef(bob.id), sub: 'nurse.bob', email: 'nurse.bob@hospital.example', name: 'NURSE.BOB', groups: ['clinicians'],
    amr: ['pwd', 'otp'], acr: 'urn:mfa', createdAt: bob.createdAt, expiresAt: bob.expiresAt, lastSeenAt: bob.createdAt,
  } satisfies SessionSummary, 'exactly these fields, times in epoch ms');
  t.match(mine?.ref, /^[A-Za-z0-9_-]{22}$/, 'a ref is 22 base64url characters');
  t.equal(sessionRef(bob.id), sessionRef(bob.id), 'and stable: the same session always has the same ref');
  t.equal(new Set(list.map((summary) => summary.ref)).size, 3, 'every session its own ref');
});

t.test('the list filters by subject and leaves out sessions that expired or went idle', async (t) => {
  const { store, alice1, alice2, bob } = await setup();
  const alices = await listSessions(store, { sub: 'dr.alice' });
  t.same(alices.map((summary) => summary.ref).sort(), [sessionRef(alice1.id), sessionRef(alice2.id)].sort(), 'only her two sessions');
  t.same(await listSessions(store, { sub: 'nobody' }), [], 'an unknown subject has none');
  await store.delete(`seen:${alice1.id}`);
  t.same((await listSessions(store, { sub: 'dr.alice' })).map((summary) => summary.ref), [sessionRef(alice2.id)],
    'a session whose activity record ran out (idle) is not listed as live');
  t.same(await listSessions(store, { now: bob.expiresAt }), [], 'at their expiry none is live');
});

t.test('ending by ref removes the session from the store and reaches every process before it resolves', async (t) => {
  const { store, a, b, alice1, bob } = await setup();
  const published: Json[] = [];
  const unsubscribe = store.subscribe(REVOCATIONS, (message) => published.push(message));
  t.teardown(unsubscribe);

  t.equal(await endSession(store, sessionRef(bob.id), 'admin'), 1, 'one session ended');

  t.same(published, [{ ids: [bob.id], cause: 'admin' }], 'the revocation was published with the id, for the workers');
  t.same(a.endedHere, [bob.id], 'the process that made the session was told (its WebSockets would close)');
  t.same(b.endedHere, [bob.id], 'and so was the other one');
  t.equal(await store.get(`session:${bob.id}`), undefined, 'the record is gone');
  t.equal(await store.get(`seen:${bob.id}`), undefined, 'its activity too');
  t.equal(await store.get(`ended:${bob.id}`), 'admin', 'a tombstone keeps a refresh in flight from writing it back');
  t.notOk((await store.members('sessions')).includes(bob.id), 'out of the session index');
  t.same(await store.members('sub:nurse.bob'), [], 'out of his subject index');
  t.same(await store.members('browser:browser-3'), [], 'out of the browser index');
  t.same(await store.members(`sid:${bob.idpSid}`), [], 'out of the IdP session index');
  t.match(await a.sessions.lookup(bob.id), { ok: false, reason: 'session-unknown' }, 'the cached copy was dropped: the very next request is refused');
  t.match(await a.sessions.lookup(alice1.id), { ok: true }, 'other sessions carry on');
});

t.test('ending a user\'s sessions ends all of theirs and nobody else\'s', async (t) => {
  const { store, a, b, alice1, alice2, bob } = await setup();
  const counted: string[] = [];
  t.equal(await endSessionsOf(store, 'dr.alice', 'admin', { ended: (id, existed) => existed && counted.push(id) }), 2, 'both of her sessions');
  t.same(counted.sort(), [alice1.id, alice2.id].sort(), 'each counted once by the caller\'s hook (its revocations metric)');
  t.same(a.endedHere.sort(), [alice1.id, alice2.id].sort(), 'every process heard of both');
  t.same(b.endedHere.sort(), [alice1.id, alice2.id].sort(), 'the other too');
  t.match(await b.sessions.lookup(alice2.id), { ok: false }, 'her session is refused where it was made');
  t.match(await a.sessions.lookup(bob.id), { ok: true }, 'bob\'s session is untouched');
  t.same((await listSessions(store)).map((summary) => summary.sub), ['nurse.bob'], 'the list has only bob left');
  t.equal(await endSessionsOf(store, 'dr.alice', 'admin'), 0, 'a user with no sessions left: none ended');
});

t.test('an unknown ref is a SessionNotFoundError, including a session already ended', async (t) => {
  const { store, bob } = await setup();
  const published: Json[] = [];
  t.teardown(store.subscribe(REVOCATIONS, (message) => published.push(message)));
  await t.rejects(endSession(store, 'AAAAAAAAAAAAAAAAAAAAAA', 'admin'), { name: 'SessionNotFoundError', code: 'session-not-found' },
    'a ref that names no session');
  t.same(published, [], 'and nothing was published for it');
  await t.rejects(endSession(store, bob.id, 'admin'), SessionNotFoundError, 'a session id is not a ref: it names nothing here');
  await endSession(store, sessionRef(bob.id), 'admin');
  await t.rejects(endSession(store, sessionRef(bob.id), 'admin'), { code: 'session-not-found', ref: sessionRef(bob.id) },
    'ending it a second time: no such session any more');
});

t.test('SessionManager.end goes through the same code and still counts and forgets what it ended', async (t) => {
  const { store, a, b, alice1, bob } = await setup();
  const before = await revocationsCounted(a, 'logout');
  t.equal(await a.sessions.end([alice1.id, 'no-such-session'], 'logout'), 1, 'one of the two existed');
  t.equal(await revocationsCounted(a, 'logout'), before + 1, 'revocations_total{cause="logout"} counted it once, the unknown id not at all');
  t.same(b.endedHere, [alice1.id, 'no-such-session'], 'every process was told of both ids, as before');
  t.equal(await store.get(`session:${alice1.id}`), undefined, 'the record is gone from the store');
  t.match(await a.sessions.lookup(alice1.id), { ok: false, reason: 'session-unknown' }, 'and from the cache');
  t.notOk((await listSessions(store)).some((summary) => summary.sub === 'dr.alice' && summary.ref === sessionRef(alice1.id)), 'and from the admin list');
  t.match(await a.sessions.lookup(bob.id), { ok: true }, 'others carry on');
});

import pino from 'pino';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { startGrantAuthority } from '../../proxy/grants/authority.js';
import { GrantBook } from '../../proxy/grants/book.js';
import { BreakGlassService } from '../../proxy/grants/break-glass.js';
import { grantsSchema, type GrantsConfig } from '../../proxy/grants/config.js';
import { isKnownSubject, recordSubject } from '../../proxy/identity/directory.js';
import { GrantError } from '../../proxy/grants/errors.js';
import { grantState, type Grant } from '../../proxy/grants/grant.js';
import { grantRequestSchema, type GrantRequestInput } from '../../proxy/grants/input.js';
import { noticeFor } from '../../proxy/grants/notices.js';
import { GRANTS_CHANNEL, type ChangeMessage } from '../../proxy/grants/records.js';
import { GrantService, type Actor } from '../../proxy/grants/service.js';
import type { Identity } from '../../proxy/identity/identity.js';
import type { Notice, Notifier } from '../../proxy/notify/notice.js';
import { MemoryStore } from '../../proxy/store/memory.js';
import type { Json } from '../../proxy/store/store.js';

/*
 * Grants and break-glass, below the pages and the API: every rule of the issue judged by
 * the service (windows, routes, subjects, who approves, n of m, no self-approval, nothing
 * over changes again), the state derived from the clock, the per-process book that the
 * context stage reads, and the authority that counts, alerts and records time's changes.
 * A real MemoryStore and a clock the tests move by hand.
 */

const HOUR = 3_600_000;
const START = Date.UTC(2026, 10, 24, 9, 0);
const silent = pino({ level: 'silent' });

function clock(): { now: () => number; advance(ms: number): void; set(ms: number): void } {
  let time = START;
  return { now: () => time, advance: (ms) => { time += ms; }, set: (ms) => { time = ms; } };
}

const config = (extra: Record<string, unknown> = {}): GrantsConfig => grantsSchema.parse({
  approvers: { groups: ['security-admins'], principals: ['client:itsm'] },
  requesters: { groups: ['vendor-support'] },
  subjectDomains: ['devicevendor.example'],
  ...extra,
});

const person = (id: string, groups: string[], email?: string): Actor => ({ principal: { kind: 'user', id, ...(email ? { email } : {}) }, groups });
const DAVE = person('vendor.dave', ['vendor-support'], 'dave@devicevendor.example');
const ERIN = person('admin.erin', ['security-admins'], 'erin@hospital.example');
const FRANK = person('sec.frank', ['security-admins'], 'frank@hospital.example');
const ALICE = person('dr.alice', ['clinicians'], 'alice@hospital.example');
const ITSM: Actor = { principal: { kind: 'client', id: 'client:itsm' }, groups: [] };

const ROUTES = new Map([['vendor', { grantable: true }], ['epic', { grantable: false }]]);

function rig(extra: Record<string, unknown> = {}) {
  const time = clock();
  const store = new MemoryStore();
  const grants = new GrantService({ store, config: config(extra), routes: ROUTES, now: time.now });
  t.teardown(() => store.close());
  return { time, store, grants };
}

const ask = (over: Partial<GrantRequestInput> = {}): GrantRequestInput => ({
  routes: [{ id: 'vendor' }],
  notBefore: START,
  notAfter: START + 2 * HOUR,
  justification: 'Firmware update on infusion pumps, ticket CHG-1',
  ...over,
});

async function refused(t: Test, promise: Promise<unknown>, code: string): Promise<void> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  t.type(err, GrantError, `refused with a GrantError (${code})`);
  t.equal((err as GrantError).code, code);
}

t.test('a vendor asks for a window and an approver approves: requested, then approved, active, expired by the clock alone', async (t) => {
  const { time, grants } = rig();
  const grant = await grants.request(ask({ notBefore: START + HOUR, notAfter: START + 3 * HOUR, ticket: 'CHG-1' }), DAVE);
  t.match(grant, { subject: { user: 'vendor.dave' }, status: 'requested', requester: { id: 'vendor.dave' }, approvalsRequired: 1, ticket: 'CHG-1' });
  t.match(grant.id, /^g_[a-z2-9]{20}$/);
  t.equal(grantState(grant, time.now()), 'requested');
  const approved = await grants.approve(grant.id, ERIN);
  t.equal(approved.status, 'approved');
  t.equal(approved.timestamps.approved, START);
  t.equal(grantState(approved, time.now()), 'approved', 'approved, but the window has not opened');
  t.equal(grantState(approved, START + HOUR), 'active', 'active once the window opens');
  t.equal(grantState(approved, START + 3 * HOUR - 1), 'active');
  t.equal(grantState(approved, START + 3 * HOUR), 'expired', 'expired the moment it ends, with nothing having to run');
  t.same((await grants.list({ states: ['approved'] })).map((g) => g.id), [grant.id], 'list filters by the state now');
  t.same(await grants.list({ subject: { user: 'someone.else' } }), []);
});

t.test('bad windows are refused with their own codes, and nothing is stored', async (t) => {
  const { store, grants } = rig();
  await refused(t, grants.request(ask({ notBefore: START + HOUR, notAfter: START + HOUR }), DAVE), 'grant-window-invalid');
  await refused(t, grants.request(ask({ notBefore: START + 2 * HOUR, notAfter: START + HOUR }), DAVE), 'grant-window-invalid');
  await refused(t, grants.request(ask({ notAfter: START + 9 * HOUR }), DAVE), 'grant-window-too-long');
  await refused(t, grants.request(ask({ notBefore: START - 3 * HOUR, notAfter: START - HOUR }), DAVE), 'grant-window-past');
  await refused(t, grants.request(ask({ notBefore: START - HOUR, notAfter: START + HOUR }), DAVE), 'grant-window-past');
  await refused(t, grants.request(ask({ notBefore: START + 40 * 24 * HOUR, notAfter: START + 41 * 24 * HOUR }), DAVE), 'grant-window-invalid');
  await refused(t, grants.request(ask({ routes: [{ id: 'nope' }] }), DAVE), 'grant-route-unknown');
  await refused(t, grants.request(ask({ routes: [{ id: 'epic' }] }), DAVE), 'grant-route-not-grantable');
  t.same(await store.members('grants:all'), [], 'no refused request left a record');
});

t.test('a window that began a minute ago (a form filled in slowly) starts now; the cap counts from then', async (t) => {
  const { grants } = rig();
  const grant = await grants.request(ask({ notBefore: START - 60_000, notAfter: START + 8 * HOUR }), DAVE);
  t.equal(grant.notBefore, START);
});

t.test('who may ask: requesters for themselves, approvers for someone known; others are refused', async (t) => {
  const { store, grants } = rig();
  await refused(t, grants.request(ask(), ALICE), 'grant-requester-not-allowed');
  await refused(t, grants.request(ask({ subject: { user: 'dr.alice' } }), DAVE), 'grant-requester-not-allowed');
  await refused(t, grants.request(ask({ subject: { user: 'never.seen' } }), ERIN), 'grant-subject-unknown');
  await refused(t, grants.request(ask({ subject: { email: 'x@elsewhere.example' } }), ITSM), 'grant-subject-unknown');
  await refused(t, grants.request(ask(), ITSM), 'grant-subject-unknown');
  const byDomain = await grants.request(ask({ subject: { email: 'new.engineer@devicevendor.example' } }), ITSM);
  t.same(byDomain.subject, { email: 'new.engineer@devicevendor.example' }, 'an email in subjectDomains needs no earlier sign-in');
  await recordSubject(store, { sub: 'vendor.eve', email: 'Eve@Other.example', name: 'Eve', claims: { email_verified: true } }, START);
  await recordSubject(store, { sub: 'vendor.mallory', email: 'mallory@other.example', name: 'Mallory', claims: {} }, START);
  t.notOk(await isKnownSubject(store, { email: 'mallory@other.example' }, []), 'an email the IdP did not verify makes nobody known by it');
  t.ok(await isKnownSubject(store, { email: 'eve@other.example' }, []), 'a signed-in person is known by email, in any case');
  const forEve = await grants.request(ask({ subject: { user: 'vendor.eve' } }), ERIN);
  t.equal(forEve.requester.id, 'admin.erin');
});

t.test('n of m: two approvals needed, nobody approves twice or their own, and the requester is out', async (t) => {
  const { grants } = rig({ approvals: 2 });
  const grant = await grants.request(ask({ subject: { email: 'dave@devicevendor.example' } }), ERIN);
  await refused(t, grants.approve(grant.id, ERIN), 'grant-self-approval');
  await refused(t, grants.approve(grant.id, DAVE), 'grant-approver-not-allowed');
  const once = await grants.approve(grant.id, FRANK);
  t.equal(once.status, 'requested', 'one of two approvals: still a request');
  t.equal(once.approvals.length, 1);
  await refused(t, grants.approve(grant.id, FRANK), 'grant-already-approved');
  await refused(t, grants.approve(grant.id, { principal: { kind: 'user', id: 'client:itsm' }, groups: [] }), 'grant-approver-not-allowed');
  const twice = await grants.approve(grant.id, ITSM);
  t.equal(twice.status, 'approved', 'the second approver completes it');
  await refused(t, grants.approve(grant.id, person('sec.gina', ['security-admins'])), 'grant-not-pending');
});

t.test('the subject never approves their own access, even when someone else asked for it', async (t) => {
  const { store, grants } = rig();
  await recordSubject(store, { sub: 'sec.frank', email: 'frank@hospital.example', name: 'Frank', claims: { email_verified: true } }, START);
  const forFrank = await grants.request(ask({ subject: { user: 'sec.frank' } }), ERIN);
  await refused(t, grants.approve(forFrank.id, FRANK), 'grant-self-approval');
  const byEmail = await grants.request(ask({ subject: { email: 'FRANK@hospital.example' } }), ITSM).catch(() => undefined);
  t.ok(byEmail, 'a known email subject may be named');
  await refused(t, grants.approve(byEmail!.id, FRANK), 'grant-self-approval');
});

t.test('deny and revoke: only what is still open, and what is over stays over', async (t) => {
  const { time, grants } = rig();
  const denied = await grants.request(ask(), DAVE);
  await grants.deny(denied.id, ERIN, 'no change ticket');
  await refused(t, grants.approve(denied.id, FRANK), 'grant-already-over');
  await refused(t, grants.revoke(denied.id, ERIN, ''), 'grant-already-over');
  const stored = await grants.get(denied.id);
  t.match(stored, { status: 'denied', denial: { by: { id: 'admin.erin' }, reason: 'no change ticket' } });

  const pending = await grants.request(ask(), DAVE);
  await refused(t, grants.revoke(pending.id, ERIN, ''), 'grant-not-pending');
  await grants.approve(pending.id, ERIN);
  const revoked = await grants.revoke(pending.id, FRANK, 'work finished early');
  t.equal(grantState(revoked, time.now()), 'revoked');
  await refused(t, grants.revoke(pending.id, ERIN, ''), 'grant-already-over');
  await refused(t, grants.deny(pending.id, ERIN, ''), 'grant-already-over');
  t.equal((await grants.get(pending.id)).revocation?.reason, 'work finished early', 'the second revocation changed nothing');

  const lapsing = await grants.request(ask({ notAfter: START + 8 * HOUR }), DAVE);
  time.advance(8 * HOUR);
  await refused(t, grants.approve(lapsing.id, ERIN), 'grant-already-over');
  await refused(t, grants.get('g_doesnotexist00000000'), 'grant-not-found');
  await refused(t, grants.get('../../etc'), 'grant-not-found');
});

t.test('requests lapse after requestTtl; the sweep records it once, and windows opening and closing once each', async (t) => {
  const { time, store, grants } = rig({ requestTtl: '1h' });
  const heard: ChangeMessage[] = [];
  store.subscribe(GRANTS_CHANNEL, (m: Json) => heard.push(m as unknown as ChangeMessage));
  const lapse = await grants.request(ask({ notAfter: START + 5 * HOUR }), DAVE);
  t.equal(lapse.requestExpiresAt, START + HOUR);
  const used = await grants.request(ask({ notBefore: START + 30 * 60_000, notAfter: START + 2 * HOUR }), DAVE);
  await grants.approve(used.id, ERIN);
  time.advance(45 * 60_000);
  t.equal(await grants.sweep(), 1, 'the window opened');
  t.equal(await grants.sweep(), 0, 'recorded once');
  time.advance(30 * 60_000);
  t.equal(grantState(await grants.get(lapse.id), time.now()), 'expired');
  t.equal(await grants.sweep(), 1, 'the request lapsed');
  time.advance(HOUR);
  t.equal(await grants.sweep(), 1, 'the window closed');
  t.equal(await grants.sweep(), 0);
  t.same(heard.map((m) => m.event), ['grant-requested', 'grant-requested', 'grant-approved', 'grant-activated', 'grant-request-expired', 'grant-expired']);
  t.ok((await grants.get(used.id)).timestamps.expired, 'the record says when it expired');
});

t.test('two approvers at once both count: changes hold the record\'s lock', async (t) => {
  const { grants } = rig({ approvals: 3 });
  const grant = await grants.request(ask(), DAVE);
  await Promise.all([grants.approve(grant.id, ERIN), grants.approve(grant.id, FRANK), grants.approve(grant.id, ITSM)]);
  const stored = await grants.get(grant.id);
  t.equal(stored.approvals.length, 3);
  t.equal(stored.status, 'approved');
});

t.test('request input: shape checked before the service sees it', async (t) => {
  const ok = grantRequestSchema.safeParse({ routes: [{ id: 'vendor', methods: ['get'], paths: ['/logs'] }], notBefore: '2026-11-24T10:00:00Z', notAfter: '2026-11-24T12:00:00+01:00', justification: '  Needs at least ten chars  ' });
  t.ok(ok.success);
  t.same(ok.data?.routes[0], { id: 'vendor', methods: ['GET'], paths: ['/logs'] });
  t.equal(ok.data?.notAfter, Date.UTC(2026, 10, 24, 11));
  t.equal(ok.data?.justification, 'Needs at least ten chars');
  const bad = (value: Record<string, unknown>) => grantRequestSchema.safeParse({ routes: [{ id: 'vendor' }], notBefore: 0, notAfter: 1, justification: 'long enough reason', ...value }).success;
  t.notOk(bad({ justification: 'short' }), 'a justification needs ten characters');
  t.notOk(bad({ justification: 'looks fine\u202eevil bidi' }), 'bidi overrides are refused');
  t.notOk(bad({ notBefore: '2026-11-24 10:00' }), 'times need an offset');
  t.notOk(bad({ routes: [] }), 'at least one route');
  t.notOk(bad({ routes: [{ id: 'vendor', paths: ['/a/../b'] }] }), 'paths must be canonical');
  t.notOk(bad({ extra: true }), 'unknown fields are refused');
  t.notOk(bad({ subject: { user: 'a', email: 'b@c.d' } }), 'a subject is a user or an email, not both');
});

const identity = (sub: string, email: string | undefined, groups: string[] = []): Identity => ({
  kind: 'session', sub, email, name: undefined, groups, idpSid: undefined, sessionId: 's', scopes: [], amr: [], acr: undefined,
  authTime: undefined, expiresAt: START + 12 * HOUR, claims: email ? { email_verified: true } : {},
});

t.test('the book: each process\'s copy, changed before the publish resolves, so a revocation holds at once', async (t) => {
  const { time, store, grants } = rig();
  const changes: string[] = [];
  const book = new GrantBook({ store, logger: silent, now: time.now, onChange: (m) => changes.push(m.event) });
  t.teardown(() => book.close());
  await book.load();
  const dave = identity('vendor.dave', 'dave@devicevendor.example');
  const grant = await grants.request(ask({ routes: [{ id: 'vendor', paths: ['/logs'], methods: ['GET'] }] }), DAVE);
  t.same(book.grantsFor(dave, 'vendor'), [], 'a request opens nothing');
  await grants.approve(grant.id, ERIN);
  t.same(book.grantsFor(dave, 'vendor'), [{ id: grant.id, notBefore: START, notAfter: START + 2 * HOUR, paths: ['/logs'], methods: ['GET'] }]);
  t.same(book.grantsFor(dave, 'epic'), [], 'only on the routes it names');
  t.same(book.grantsFor(identity('vendor.dave2', undefined), 'vendor'), []);
  const byEmail = await grants.request(ask({ subject: { email: 'DAVE@devicevendor.example' } }), ITSM);
  await grants.approve(byEmail.id, ERIN);
  t.equal(book.grantsFor(identity('other-sub', 'Dave@DeviceVendor.example'), 'vendor').length, 1, 'an email subject matches the signed-in email, in any case');
  t.equal(book.grantsFor({ ...identity('other-sub', 'dave@devicevendor.example'), claims: {} }, 'vendor').length, 0, 'but only an email the IdP verified');
  await grants.revoke(grant.id, ERIN, 'done');
  t.same(book.grantsFor(dave, 'vendor').map((g) => g.id), [byEmail.id], 'revoked: gone from the book when revoke resolved');
  t.same(changes, ['grant-requested', 'grant-approved', 'grant-requested', 'grant-approved', 'grant-revoked']);

  // A second process that starts later reads what is in force from the store.
  const late = new GrantBook({ store, logger: silent, now: time.now });
  t.teardown(() => late.close());
  await late.load();
  t.same(late.grantsFor(dave, 'vendor').map((g) => g.id), [byEmail.id]);
  time.advance(3 * HOUR);
  await late.load();
  t.same(late.grantsFor(dave, 'vendor'), [], 'a reread drops what is over');
});

t.test('the book: a reread that started before a revocation cannot bring the revoked grant back', async (t) => {
  const { time, store, grants } = rig();
  const grant = await grants.request(ask(), DAVE);
  await grants.approve(grant.id, ERIN);
  const book = new GrantBook({ store, logger: silent, now: time.now });
  t.teardown(() => book.close());
  await book.load();
  const dave = identity('vendor.dave', undefined);
  // The reread reads the store first; the revocation lands before it finishes.
  const reread = book.load();
  await grants.revoke(grant.id, ERIN, 'now');
  await reread;
  t.same(book.grantsFor(dave, 'vendor'), [], 'still revoked');
});

t.test('break-glass: who may, a reason, one at a time, end and review once', async (t) => {
  const time = clock();
  const store = new MemoryStore();
  t.teardown(() => store.close());
  const glass = new BreakGlassService({ store, routes: new Map([['epic', { groups: ['clinicians'], duration: HOUR }]]), retentionMs: 24 * HOUR, now: time.now });
  await refused(t, glass.start('pacs', ALICE, 'patient arrested on the ward'), 'break-glass-not-configured');
  await refused(t, glass.start('epic', DAVE, 'patient arrested on the ward'), 'break-glass-not-allowed');
  await refused(t, glass.start('epic', ITSM, 'patient arrested on the ward'), 'break-glass-not-allowed');
  await refused(t, glass.start('epic', ALICE, 'because'), 'break-glass-not-allowed');
  const record = await glass.start('epic', ALICE, 'patient arrested on the ward, chart needed');
  t.match(record, { route: 'epic', user: { id: 'dr.alice', groups: ['clinicians'] }, startedAt: START, endsAt: START + HOUR });
  await refused(t, glass.start('epic', ALICE, 'again, for the same patient'), 'break-glass-already-active');
  const book = new GrantBook({ store, logger: silent, now: time.now });
  t.teardown(() => book.close());
  await book.load();
  const alice = identity('dr.alice', 'alice@hospital.example', ['clinicians']);
  t.same(book.breakGlassFor(alice, 'epic'), { id: record.id, endsAt: START + HOUR });
  t.equal(book.breakGlassFor(alice, 'pacs'), undefined);
  await glass.end(record.id, ERIN.principal);
  t.equal(book.breakGlassFor(alice, 'epic'), undefined, 'ended: gone from the book at once');
  await refused(t, glass.end(record.id, ERIN.principal), 'break-glass-already-ended');
  await refused(t, glass.review(record.id, ALICE.principal, 'it was justified'), 'break-glass-not-allowed');
  await glass.review(record.id, ERIN.principal, 'cardiac arrest confirmed');
  await refused(t, glass.review(record.id, FRANK.principal, 'again'), 'break-glass-already-reviewed');
  t.match(await glass.list(), [{ id: record.id, reviewed: { by: { id: 'admin.erin' }, note: 'cardiac arrest confirmed' } }]);
  await refused(t, glass.get('bg_nothere000000000000'), 'break-glass-not-found');
  time.advance(2 * HOUR);
  const twice = await Promise.allSettled([glass.start('epic', ALICE, 'second emergency, another patient'), glass.start('epic', ALICE, 'second emergency, another patient')]);
  t.same(twice.map((r) => r.status).sort(), ['fulfilled', 'rejected'], 'after the first ended a new one may start, and a form sent twice opens one, not two');
});

t.test('notices: one plain line per change, break-glass high severity', async (t) => {
  const grant = {
    id: 'g_aaaaaaaaaaaaaaaaaaaa', subject: { user: 'vendor.dave' }, routes: [{ id: 'vendor' }], notBefore: START, notAfter: START + HOUR,
    justification: 'pump firmware', ticket: 'CHG-9', requester: DAVE.principal, approvalsRequired: 2, approvals: [{ by: ERIN.principal, at: START }],
    status: 'requested', createdAt: START, requestExpiresAt: START + HOUR, denial: undefined, revocation: undefined, timestamps: {},
  } satisfies Grant;
  const message = (event: ChangeMessage['event'], record: object, kind: ChangeMessage['kind'] = 'grant'): ChangeMessage => ({ kind, id: 'x', event, at: START, by: 'admin.erin', record: record as Json });
  t.match(noticeFor(message('grant-requested', grant)), { severity: 'info', summary: /vendor\.dave asks for vendor, 2026-11-24T09:00:00Z to 2026-11-24T10:00:00Z, because: pump firmware \(ticket CHG-9\)/ });
  t.match(noticeFor(message('grant-approval', grant)).summary, /1 of 2 approvals/);
  t.match(noticeFor(message('grant-revoked', { ...grant, revocation: { by: ERIN.principal, at: START, reason: 'done' } })), { severity: 'warning', summary: /revoked by admin\.erin.*\(done\)/ });
  const glass = { id: 'bg_x', route: 'epic', user: { ...ALICE.principal, groups: ['clinicians'] }, reason: 'arrest', startedAt: START, endsAt: START + HOUR, ended: undefined, reviewed: undefined };
  t.match(noticeFor(message('break-glass-started', glass, 'break-glass')), { severity: 'high', summary: /^BREAK-GLASS bg_x: dr\.alice \(alice@hospital\.example\) opened emergency access to epic/ });
  for (const event of ['grant-approved', 'grant-denied', 'grant-activated', 'grant-expired', 'grant-request-expired'] as const) {
    t.match(noticeFor(message(event, grant)).summary, grant.id, `${event} names the grant`);
  }
  for (const event of ['break-glass-ended', 'break-glass-reviewed'] as const) t.match(noticeFor(message(event, glass, 'break-glass')).summary, 'bg_x');
});

t.test('the authority counts every change once, alerts, and sweeps', async (t) => {
  const { time, store, grants } = rig();
  const registry = new Registry();
  const sent: Notice[] = [];
  const notifier: Notifier = { notify: (n) => sent.push(n), close: async () => {} };
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const glass = new BreakGlassService({ store, routes: new Map([['epic', { groups: ['clinicians'], duration: HOUR }]]), retentionMs: HOUR, now: time.now });
  const authority = startGrantAuthority({ store, grants, breakGlass: glass, registry, notifier, logger, now: time.now, sweepEveryMs: 60_000 });
  t.teardown(() => authority.close());
  const grant = await grants.request(ask({ notBefore: START + HOUR, notAfter: START + 2 * HOUR }), DAVE);
  await grants.approve(grant.id, ERIN);
  time.advance(HOUR);
  await authority.sweep();
  await glass.start('epic', ALICE, 'patient arrested on the ward');
  const text = await registry.metrics();
  t.match(text, /wardgate_grant_events_total\{event="grant-requested"\} 1/);
  t.match(text, /wardgate_grant_events_total\{event="grant-activated"\} 1/);
  t.match(text, /wardgate_break_glass_total\{route="epic"\} 1/);
  t.match(text, /wardgate_grants\{state="active"\} 1/);
  t.match(text, /wardgate_grants\{state="revoked"\} 0/, 'every state is reported, zeros too');
  t.same(sent.map((n) => n.event), ['grant-requested', 'grant-approved', 'grant-activated', 'break-glass-started']);
  const alert = lines.find((line) => line.event === 'break-glass-started');
  t.match(alert, { level: 40, severity: 'high', kind: 'access-change', route: 'epic', user: 'dr.alice' }, 'break-glass is a high-severity event in the log');
});

import { BlockList } from 'node:net';
import t from 'tap';
import { withoutParams } from '../../proxy/normalize.js';
import type { DeviceContext, GrantFacts, NetworkContext, RequestContext, RequestFacts, SessionFacts } from '../../proxy/policy/context.js';
import type { Criterion, Predicate } from '../../proxy/policy/criterion.js';
import { CRITERIA } from '../../proxy/policy/criteria/index.js';
import { acr } from '../../proxy/policy/criteria/acr.js';
import { amr } from '../../proxy/policy/criteria/amr.js';
import { authAge } from '../../proxy/policy/criteria/authAge.js';
import { authenticated } from '../../proxy/policy/criteria/authenticated.js';
import { cidr } from '../../proxy/policy/criteria/cidr.js';
import { claim } from '../../proxy/policy/criteria/claim.js';
import { ASSIGNED_COUNTRY_CODES, country } from '../../proxy/policy/criteria/country.js';
import { device } from '../../proxy/policy/criteria/device.js';
import { domain } from '../../proxy/policy/criteria/domain.js';
import { email } from '../../proxy/policy/criteria/email.js';
import { fhirResource } from '../../proxy/policy/criteria/fhirResource.js';
import { groups } from '../../proxy/policy/criteria/groups.js';
import { idle } from '../../proxy/policy/criteria/idle.js';
import { method } from '../../proxy/policy/criteria/method.js';
import { path } from '../../proxy/policy/criteria/path.js';
import { risk } from '../../proxy/policy/criteria/risk.js';
import { scope } from '../../proxy/policy/criteria/scope.js';
import { sessionAge } from '../../proxy/policy/criteria/sessionAge.js';
import { timeWindow } from '../../proxy/policy/criteria/timeWindow.js';
import { user } from '../../proxy/policy/criteria/user.js';
import type { Identity } from '../../proxy/identity/identity.js';

/*
 * The policy criteria one by one: what each config value may be (and what a wrong one is
 * told), and when each compiled predicate passes and fails. A predicate runs on every
 * request, so beside "right answer" these tests also hold them to "never throws" and to
 * doing their expensive work once (BlockList checks, time zone formatting), not per call.
 *
 * A note for benchmarks: the compiled closures allocate nothing on the common path. Sets
 * and lists are built at compile; per-call work is Set/Map lookups, string comparisons and
 * arithmetic. The few steps that would allocate (lower-casing an email, slicing a domain,
 * formatting a time in a zone, a BlockList check, parsing a FHIR path, reading SMART
 * scopes) are remembered: per user's email string, per UTC minute, per client address,
 * per request, per scope list.
 */

const NOW = Date.UTC(2025, 0, 15, 12, 0, 0); // Wednesday 15 January 2025, 12:00 UTC

const ALICE: Identity = {
  kind: 'session', sub: 'dr.alice', email: 'alice@hospital.example', name: 'Dr Alice', groups: ['clinicians', 'cardiology'],
  idpSid: 'sid-1', sessionId: 's1', scopes: [], amr: ['hwk', 'pin'], acr: 'phr', authTime: NOW / 1000 - 300,
  expiresAt: NOW + 3_600_000, claims: { department: 'cardiology', level: 3, locum: false, roles: ['nurse', 'triage'] },
};

const TRUSTED_DEVICE: DeviceContext = {
  source: 'posture', id: 'ws-0042', known: true, managed: true, compliant: true, observedAt: NOW - 10 * 60_000,
  certificate: true, os: 'windows', diskEncrypted: true, trusted: true, problem: undefined,
};

interface Overrides {
  /** Fields over Alice's identity, or 'none' for an anonymous request. */
  identity?: Partial<Identity> | 'none';
  /** The browser session, or 'none' (bearer tokens, anonymous requests). */
  session?: SessionFacts | 'none';
  device?: Partial<DeviceContext>;
  network?: Partial<NetworkContext>;
  time?: number;
  request?: Partial<RequestFacts>;
  risk?: number;
  grants?: GrantFacts[];
}

/** A request context: Alice, signed in an hour ago, on a trusted workstation, unless told otherwise. */
function ctx(o: Overrides = {}): RequestContext {
  return {
    identity: o.identity === 'none' ? undefined : { ...ALICE, ...o.identity },
    session: o.session === 'none' ? undefined : (o.session ?? { createdAt: NOW - 3_600_000, lastSeenAt: NOW - 60_000 }),
    device: { ...TRUSTED_DEVICE, ...o.device },
    network: { ip: '10.1.2.3', country: 'GB', ...o.network },
    time: o.time ?? NOW,
    request: { method: 'GET', host: 'app.hospital.example', path: '/', ...o.request },
    risk: o.risk ?? 0,
    grants: o.grants ?? [],
    breakGlass: undefined,
  };
}

/** The predicate a config value compiles to (the value passed through the schema first, as the loader does). */
function compiled<V>(criterion: Criterion<V>, input: unknown): Predicate {
  return criterion.compile(criterion.schema.parse(input));
}

/** What the schema says about a value it refuses, as "path: message" lines; [] when accepted. */
function refusals(criterion: Criterion<unknown>, input: unknown): string[] {
  const result = criterion.schema.safeParse(input);
  return result.success ? [] : result.error.issues.map((issue) => (issue.path.length ? `${issue.path.join('.')}: ${issue.message}` : issue.message));
}

// ---------------------------------------------------------------------------------------
// The registry

t.test('CRITERIA holds each of the 21 criteria under its own config name', async (t) => {
  const expectedNames = ['authenticated', 'user', 'email', 'domain', 'groups', 'claim', 'amr', 'acr', 'authAge', 'sessionAge', 'idle',
    'device', 'cidr', 'country', 'timeWindow', 'method', 'path', 'fhirResource', 'scope', 'risk', 'grant'];
  t.same([...CRITERIA.keys()].sort(), [...expectedNames].sort(), 'exactly the 21 criteria, no more, no fewer');
  for (const [key, criterion] of CRITERIA) {
    t.equal(criterion.name, key, `${key} is registered under its own name`);
    t.match(criterion.passReason, /^[a-z]+(?:-[a-z]+)*-ok$/, `${key}'s pass reason is a kebab-case code ending -ok`);
    t.match(criterion.failReason, /^[a-z]+(?:-[a-z]+)*$/, `${key}'s fail reason is a kebab-case code`);
  }
  const reasons = (name: string) => {
    const c = CRITERIA.get(name)!;
    return [c.passReason, c.failReason, c.category, c.needsIdentity];
  };
  t.same(reasons('authenticated'), ['authenticated-ok', 'login-required', 'sign-in', true], 'authenticated: codes, category, needs identity');
  t.same(reasons('domain'), ['domain-ok', 'domain-unauthorized', 'identity', true], 'domain: codes, category, needs identity');
  t.same(reasons('authAge'), ['auth-age-ok', 'auth-age-exceeded', 'authentication', true], 'authAge: codes, category, needs identity');
  t.same(reasons('idle'), ['idle-ok', 'idle-exceeded', 'sign-in', true], 'idle: codes, category, needs identity');
  t.same(reasons('device'), ['device-ok', 'device-untrusted', 'device', false], 'device: codes, category, no identity needed');
  t.same(reasons('cidr'), ['cidr-ok', 'network-unauthorized', 'network', false], 'cidr: codes, category, no identity needed');
  t.same(reasons('timeWindow'), ['time-window-ok', 'outside-hours', 'time', false], 'timeWindow: codes, category, no identity needed');
  t.same(reasons('fhirResource'), ['fhir-resource-ok', 'fhir-resource-unauthorized', 'request', false], 'fhirResource: codes, category, no identity needed');
  t.same(reasons('scope'), ['scope-ok', 'scope-insufficient', 'scope', true], 'scope: codes, category, needs identity');
  t.same(reasons('risk'), ['risk-ok', 'risk-too-high', 'risk', false], 'risk: codes, category, no identity needed');
  t.same(reasons('grant'), ['grant-ok', 'grant-missing', 'grant', true], 'grant: codes, category, needs identity');
});

// ---------------------------------------------------------------------------------------
// Who: identity

t.test('authenticated: true passes a signed-in identity and nothing else is a valid value', async (t) => {
  const test = compiled(authenticated, true);
  t.equal(test(ctx()), true, 'a signed-in user passes');
  t.equal(test(ctx({ identity: 'none' })), false, 'an anonymous request fails');
  t.same(refusals(authenticated, false), ['expected true (authenticated: true), got false'], 'false is refused: leave the criterion out instead');
  t.same(refusals(authenticated, 'yes'), ['expected true (authenticated: true), got "yes"'], 'a string is refused, naming what was got');
});

t.test('user: the subject id must be listed exactly', async (t) => {
  const test = compiled(user, ['dr.alice', 'dr.bob']);
  t.equal(test(ctx()), true, 'dr.alice is listed');
  t.equal(test(ctx({ identity: { sub: 'dr.mallory' } })), false, 'dr.mallory is not');
  t.equal(test(ctx({ identity: { sub: 'DR.ALICE' } })), false, 'subject ids are compared exactly, case included');
  t.same(refusals(user, []), ['expected a non-empty list of subject ids such as [dr.alice], got an empty list'], 'an empty list is refused');
  t.same(refusals(user, 'dr.alice'), ['expected a list of subject ids such as [dr.alice], got "dr.alice"'], 'a bare string is refused: write a list');
  t.same(refusals(user, ['dr.alice', '']), ['1: expected a subject id such as dr.alice, got an empty string'], 'an empty id is refused at its index');
  t.same(refusals(user, [null, () => 1, [], {}]), [
    '0: expected a subject id such as dr.alice, got null (an empty value)',
    '1: expected a subject id such as dr.alice, got a function',
    '2: expected a subject id such as dr.alice, got a list',
    '3: expected a subject id such as dr.alice, got a mapping',
  ], 'what was got is named by its kind, and only the type is complained of');
  t.same(refusals(user, ''), ['expected a list of subject ids such as [dr.alice], got ""'], 'an empty string is not also called an empty list');
  t.same(refusals(cidr, [`10.${'1'.repeat(100)}`]), [
    `0: expected a CIDR such as 10.0.0.0/8 or fd00::/8 (an address, a slash and a prefix length), got "10.${'1'.repeat(74)}..."`,
  ], 'a long value is cut short in the message');
});

t.test('email: listed addresses, compared without regard to case', async (t) => {
  const test = compiled(email, ['Alice@Hospital.Example', 'bob@hospital.example']);
  t.equal(test(ctx()), true, 'alice@hospital.example matches Alice@Hospital.Example');
  t.equal(test(ctx({ identity: { email: 'BOB@HOSPITAL.EXAMPLE' } })), true, 'an upper-case email matches too');
  t.equal(test(ctx({ identity: { email: 'carol@hospital.example' } })), false, 'an unlisted address fails');
  t.equal(test(ctx()), true, 'alternating users gets each its own answer (the remembered answer is per email)');
  t.equal(test(ctx({ identity: { email: undefined } })), false, 'an identity without email fails');
  t.equal(test(ctx({ identity: { email: 'alice@hospital.example.evil' } })), false, 'a longer address is not a match');
  t.same(refusals(email, ['alice']), ['0: expected an email address such as alice@hospital.example, got "alice"'], 'a value without @ is refused');
});

t.test('domain: the part after the last @ must equal a listed domain; no suffix matching', async (t) => {
  const test = compiled(domain, ['Hospital.Example']);
  t.equal(test(ctx()), true, 'alice@hospital.example is in hospital.example');
  t.equal(test(ctx({ identity: { email: 'bob@HOSPITAL.example' } })), true, 'the domain is compared without regard to case');
  t.equal(test(ctx({ identity: { email: 'eve@lab.hospital.example' } })), false, 'a subdomain is not the domain');
  t.equal(test(ctx({ identity: { email: 'eve@evilhospital.example' } })), false, 'a name ending in the domain is not the domain');
  t.equal(test(ctx({ identity: { email: '"hospital.example@x"@evil.example' } })), false, 'the last @ counts, not the first');
  t.equal(test(ctx({ identity: { email: 'no-at-sign' } })), false, 'an email without @ fails');
  t.equal(test(ctx({ identity: { email: undefined } })), false, 'an identity without email fails');
  t.same(refusals(domain, ['@hospital.example']), ['0: expected an email domain such as hospital.example (no @, no wildcard), got "@hospital.example"'], 'a leading @ is refused');
  t.same(refusals(domain, ['*.hospital.example']), ['0: expected an email domain such as hospital.example (no @, no wildcard), got "*.hospital.example"'], 'a wildcard is refused');
  t.same(refusals(domain, ['localhost']), ['0: expected an email domain such as hospital.example (no @, no wildcard), got "localhost"'], 'a single label is refused');
});

t.test('groups: a list or any means one of them; all means every one', async (t) => {
  t.equal(compiled(groups, ['radiology', 'cardiology'])(ctx()), true, 'a list passes a member of any listed group');
  t.equal(compiled(groups, ['radiology'])(ctx()), false, 'a list fails a member of none');
  t.equal(compiled(groups, { any: ['radiology', 'clinicians'] })(ctx()), true, 'any: one is enough');
  t.equal(compiled(groups, { all: ['clinicians', 'cardiology'] })(ctx()), true, 'all: a member of every one passes');
  t.equal(compiled(groups, { all: ['clinicians', 'radiology'] })(ctx()), false, 'all: missing one fails');
  t.equal(compiled(groups, ['cardiology'])(ctx({ identity: { groups: [] } })), false, 'a user in no groups fails');
  t.same(refusals(groups, { any: ['a'], all: ['b'] }), ['expected exactly one of any or all, such as { any: [radiology, cardiology] }'], 'both any and all are refused');
  t.same(refusals(groups, {}), ['expected exactly one of any or all, such as { any: [radiology, cardiology] }'], 'an empty mapping is refused');
  t.same(refusals(groups, { some: ['a'] }), ['unknown key "some": expected any or all'], 'an unknown key is named');
  t.same(refusals(groups, []), ['expected a non-empty list of group names such as [radiology], got an empty list'], 'an empty list is refused');
  t.same(refusals(groups, ['radiology', 7]), ['1: expected a group name such as radiology, got 7'], 'a bad item is named at its index');
  t.same(refusals(groups, { all: ['radiology', 7] }), ['all.1: expected a group name such as radiology, got 7'], 'a bad item under all is named at its path');
  t.same(refusals(groups, 'radiology'), ['expected a list of groups, or { any: [...] } or { all: [...] }, got "radiology"'], 'a bare string is refused');
});

t.test('claim: equal to one value, or a list holding one; types must agree', async (t) => {
  t.equal(compiled(claim, { name: 'department', values: ['cardiology', 'oncology'] })(ctx()), true, 'a string claim equal to a value passes');
  t.equal(compiled(claim, { name: 'department', values: ['oncology'] })(ctx()), false, 'a different string fails');
  t.equal(compiled(claim, { name: 'level', values: [3] })(ctx()), true, 'a number claim equal to a number value passes');
  t.equal(compiled(claim, { name: 'level', values: ['3'] })(ctx()), false, 'the string "3" is not the number 3');
  t.equal(compiled(claim, { name: 'locum', values: [false] })(ctx()), true, 'a boolean claim equal to false passes');
  t.equal(compiled(claim, { name: 'roles', values: ['triage'] })(ctx()), true, 'a list claim holding a value passes');
  t.equal(compiled(claim, { name: 'roles', values: ['surgeon'] })(ctx()), false, 'a list claim holding none fails');
  t.equal(compiled(claim, { name: 'missing', values: ['x'] })(ctx()), false, 'an absent claim fails');
  t.equal(compiled(claim, { name: 'constructor', values: ['x'] })(ctx()), false, 'an inherited property is not a claim');
  t.equal(compiled(claim, { name: 'roles', values: ['nurse'] })(ctx({ identity: { claims: { roles: [{ nurse: true }] } } })), false, 'objects in a list claim never match');
  t.same(refusals(claim, { name: 'department' }), ['values: expected a list of claim values such as [cardiology], got nothing'], 'values are required');
  t.same(refusals(claim, { name: 'x', values: [{}] }), ['values.0: expected a claim value (a string, number or true/false), got a mapping'], 'a mapping is not a claim value');
  t.same(refusals(claim, { name: 'x', values: ['a'], extra: 1 }), ['unknown key "extra": expected name and values'], 'an unknown key is named');
  t.same(refusals(claim, ['department']), ['expected { name: <claim>, values: [...] }, got a list'], 'a list is refused: a claim needs a name');
});

// ---------------------------------------------------------------------------------------
// How: authentication strength and freshness

t.test('amr: every listed method must have been used; a step-up asks for them', async (t) => {
  t.equal(compiled(amr, ['hwk'])(ctx()), true, 'hwk in [hwk, pin] passes');
  t.equal(compiled(amr, ['hwk', 'pin'])(ctx()), true, 'every one of several passes');
  t.equal(compiled(amr, ['hwk', 'otp'])(ctx()), false, 'missing one fails');
  t.same(amr.stepUp!(['hwk']), { amr: ['hwk'] }, 'the step-up hint names the methods');
});

t.test('acr: the session\'s class must be one listed; a step-up asks for them', async (t) => {
  t.equal(compiled(acr, ['phr', 'phrh'])(ctx()), true, 'phr passes [phr, phrh]');
  t.equal(compiled(acr, ['phrh'])(ctx()), false, 'phr fails [phrh]');
  t.equal(compiled(acr, ['phr'])(ctx({ identity: { acr: undefined } })), false, 'no acr fails');
  t.same(acr.stepUp!(['phr']), { acr: ['phr'] }, 'the step-up hint names the classes');
  t.same(refusals(acr, [7]), ['0: expected an authentication context class such as phr, got 7'], 'a number is refused');
});

t.test('authAge: auth_time (seconds) no older than the duration at the request\'s time (ms)', async (t) => {
  t.equal(compiled(authAge, '15m')(ctx()), true, 'a sign-in 5 minutes ago passes 15m');
  t.equal(compiled(authAge, '5m')(ctx()), true, 'exactly at the limit passes');
  t.equal(compiled(authAge, '4m')(ctx()), false, 'a sign-in 5 minutes ago fails 4m');
  t.equal(compiled(authAge, '1h')(ctx({ identity: { authTime: undefined } })), false, 'no auth_time fails: an unknown age is not a young one');
  t.same(authAge.stepUp!(authAge.schema.parse('15m')), { maxAgeMs: 900_000 }, 'the step-up asks for a sign-in within 15 minutes');
  t.same(refusals(authAge, '15 minutes'), ['expected a duration such as 500ms, 30s, 5m or 1h, got "15 minutes"'], 'a malformed duration is refused');
  t.same(refusals(authAge, 900), ['expected a duration such as 500ms, 30s, 5m or 1h, got 900'], 'a bare number is refused: its unit would be a guess');
  t.same(refusals(authAge, '0s'), ['expected a duration such as 500ms, 30s, 5m or 1h, got "0s"'], 'a zero duration is refused');
});

t.test('sessionAge and idle: browser sessions only, measured from creation and last activity', async (t) => {
  const young = compiled(sessionAge, '2h');
  const active = compiled(idle, '5m');
  t.equal(young(ctx()), true, 'a session begun an hour ago passes 2h');
  t.equal(compiled(sessionAge, '30m')(ctx()), false, 'a session begun an hour ago fails 30m');
  t.equal(active(ctx()), true, 'a session last active a minute ago passes 5m');
  t.equal(active(ctx({ session: { createdAt: NOW - 3_600_000, lastSeenAt: NOW - 10 * 60_000 } })), false, 'a session idle for 10 minutes fails 5m');
  t.equal(young(ctx({ session: 'none', identity: { kind: 'bearer', sessionId: undefined } })), false, 'a bearer token has no session, so fails sessionAge');
  t.equal(active(ctx({ session: 'none', identity: { kind: 'bearer', sessionId: undefined } })), false, 'a bearer token has no session, so fails idle');
  t.same(sessionAge.stepUp!(3_600_000), {}, 'a fresh sign-in is all sessionAge asks for');
  t.same(idle.stepUp!(3_600_000), {}, 'a fresh sign-in is all idle asks for');
});

t.test('every criterion that reads the identity fails (never throws) without one', async (t) => {
  const values: Record<string, unknown> = {
    authenticated: true, user: ['dr.alice'], email: ['alice@hospital.example'], domain: ['hospital.example'], groups: ['clinicians'],
    claim: { name: 'department', values: ['cardiology'] }, amr: ['hwk'], acr: ['phr'], authAge: '1h', sessionAge: '12h', idle: '1h',
    scope: { all: ['x'], smart: { base: '/fhir' } }, grant: true,
  };
  for (const [name, criterion] of CRITERIA) {
    if (!criterion.needsIdentity) continue;
    t.ok(name in values, `${name} is covered by this test`);
    const test = compiled(criterion, values[name]);
    t.equal(test(ctx({ identity: 'none' })), false, `${name} fails an anonymous request`);
  }
});

t.test('grant: an approved grant for the route whose window holds the request\'s time, and whose narrowing covers it', async (t) => {
  const grant = CRITERIA.get('grant')!;
  const held = compiled(grant, true);
  const window = { id: 'g_1', notBefore: NOW - 60_000, notAfter: NOW + 60_000, paths: undefined, methods: undefined };
  t.equal(held(ctx()), false, 'no grant: fails');
  t.equal(held(ctx({ grants: [window] })), true, 'a grant in force: passes');
  t.equal(held(ctx({ grants: [{ ...window, notBefore: NOW + 1 }] })), false, 'before the window opens: fails');
  t.equal(held(ctx({ grants: [{ ...window, notAfter: NOW }] })), false, 'at the window\'s end: fails (the end is not included)');
  t.equal(held(ctx({ grants: [{ ...window, notAfter: NOW }, window] })), true, 'any one grant in force is enough');
  t.equal(held(ctx({ grants: [window], identity: 'none' })), false, 'no identity: fails, whatever the context says');
  const narrow = { ...window, paths: ['/logs'], methods: ['GET'] };
  t.equal(held(ctx({ grants: [narrow], request: { path: '/logs/2026' } })), true, 'inside the grant\'s paths and methods: passes');
  t.equal(held(ctx({ grants: [narrow], request: { path: '/logsx' } })), false, 'paths match on segment boundaries');
  t.equal(held(ctx({ grants: [narrow], request: { path: '/logs', method: 'DELETE' } })), false, 'another method: fails');
  t.equal(held(ctx({ grants: [narrow], request: { path: '/logs', method: 'GET', websocket: true } })), false, 'a grant narrowed to methods opens no WebSocket, though its handshake is a GET');
  t.equal(held(ctx({ grants: [window], request: { path: '/logs', method: 'GET', websocket: true } })), true, 'a grant for the whole route does');
  t.same(refusals(grant, false), ['expected grant: true (a grant approved for this route, in force now)'], 'only true is a grant rule');
});

// ---------------------------------------------------------------------------------------
// Where from: device and network

t.test('device: trusted, or every given fact about the device', async (t) => {
  t.equal(compiled(device, 'trusted')(ctx()), true, 'device: trusted passes a trusted device');
  t.equal(compiled(device, 'trusted')(ctx({ device: { trusted: false, problem: 'device-noncompliant' } })), false, 'and fails an untrusted one');
  t.equal(compiled(device, { managed: true, compliant: true })(ctx()), true, 'managed and compliant pass');
  t.equal(compiled(device, { managed: true, compliant: true })(ctx({ device: { compliant: false } })), false, 'one fact not holding fails');
  t.equal(compiled(device, { managed: false })(ctx({ device: { managed: false } })), true, 'a false flag demands false: a deny rule can catch unmanaged devices');
  t.equal(compiled(device, { certificate: true, known: true })(ctx({ device: { certificate: false } })), false, 'certificate: true needs a client certificate');
  t.equal(compiled(device, { known: true })(ctx({ device: { known: false } })), false, 'known: true fails a device not in the inventory');
  t.equal(compiled(device, { managed: true })(ctx({ device: { managed: false } })), false, 'managed: true fails an unmanaged device');
  t.equal(compiled(device, { maxPostureAge: '15m' })(ctx()), true, 'posture observed 10 minutes ago passes 15m');
  t.equal(compiled(device, { maxPostureAge: '5m' })(ctx()), false, 'posture observed 10 minutes ago fails 5m');
  t.equal(compiled(device, { maxPostureAge: '1h' })(ctx({ device: { observedAt: undefined } })), false, 'a posture never observed fails any maxPostureAge');
  t.equal(compiled(device, { ids: ['ws-0042', 'ws-0043'] })(ctx()), true, 'a listed device id passes');
  t.equal(compiled(device, { ids: ['ws-0043'] })(ctx()), false, 'an unlisted device id fails');
  t.equal(compiled(device, { ids: ['ws-0043'] })(ctx({ device: { id: undefined } })), false, 'a device without id fails an id list');
  t.equal(device.detail!(ctx({ device: { trusted: false, problem: 'posture-stale' } })), 'posture-stale', 'detail says why the device is not trusted');
  t.equal(device.detail!(ctx()), undefined, 'no detail for a trusted device');
  t.same(refusals(device, {}), ['expected at least one of trusted, known, managed, compliant, certificate, maxPostureAge, ids, got an empty mapping'], 'an empty mapping is refused');
  t.same(refusals(device, 'managed'), ['expected trusted, or a mapping of any of trusted, known, managed, compliant, certificate, maxPostureAge, ids, got "managed"'], 'another word is refused');
  t.same(refusals(device, { managed: 'yes' }), ['managed: expected true or false for managed, got "yes"'], 'a flag must be true or false');
  t.same(refusals(device, { maxPostureAge: 'soon' }), ['maxPostureAge: expected a duration such as 500ms, 30s, 5m or 1h, got "soon"'], 'maxPostureAge must be a duration');
  t.same(refusals(device, { patched: true }), ['unknown key "patched": expected any of trusted, known, managed, compliant, certificate, maxPostureAge, ids'], 'an unknown key is named');
});

t.test('cidr: IPv4 and IPv6 ranges; an IPv4-mapped IPv6 client matches IPv4 ranges', async (t) => {
  const test = compiled(cidr, ['10.0.0.0/8', '192.168.1.0/24', 'fd00::/8', '2001:db8:1::/48']);
  const at = (ip: string) => test(ctx({ network: { ip } }));
  t.equal(at('10.1.2.3'), true, '10.1.2.3 is in 10.0.0.0/8');
  t.equal(at('192.168.1.255'), true, 'the last address of a /24 is inside');
  t.equal(at('192.168.2.1'), false, 'the next /24 is outside');
  t.equal(at('11.0.0.1'), false, '11.0.0.1 is outside every range');
  t.equal(at('fd12:3456::1'), true, 'fd12:3456::1 is in fd00::/8');
  t.equal(at('2001:db8:1:ffff::1'), true, 'an IPv6 address in a /48');
  t.equal(at('2001:DB8:2::1'), false, 'the next /48 is outside (upper-case hex read as IPv6 all the same)');
  t.equal(at('::ffff:10.1.2.3'), true, '::ffff:10.1.2.3 (a dual-stack socket\'s IPv4 peer) matches 10.0.0.0/8');
  t.equal(at('::ffff:a01:203'), true, 'the same mapped address in hex matches too');
  t.equal(at('::ffff:11.0.0.1'), false, 'a mapped address outside the IPv4 ranges fails');
  t.equal(at('fe80::1%eth0'), false, 'a link-local address with a zone is outside');
  t.equal(at('not-an-ip'), false, 'a malformed address fails, without throwing');
  t.equal(at(''), false, 'an empty address fails');
  t.equal(compiled(cidr, ['0.0.0.0/0'])(ctx({ network: { ip: '203.0.113.9' } })), true, '0.0.0.0/0 holds every IPv4 address');
  t.same(refusals(cidr, ['10.0.0.0/8', '10.0.0.0/33', 'fd00::/129', '10.0.0.0', 'intranet/8', '10.0.0.0/8/8', 'fe80::%eth0/64']), [
    '1: expected a CIDR such as 10.0.0.0/8 or fd00::/8 (an address, a slash and a prefix length), got "10.0.0.0/33"',
    '2: expected a CIDR such as 10.0.0.0/8 or fd00::/8 (an address, a slash and a prefix length), got "fd00::/129"',
    '3: expected a CIDR such as 10.0.0.0/8 or fd00::/8 (an address, a slash and a prefix length), got "10.0.0.0"',
    '4: expected a CIDR such as 10.0.0.0/8 or fd00::/8 (an address, a slash and a prefix length), got "intranet/8"',
    '5: expected a CIDR such as 10.0.0.0/8 or fd00::/8 (an address, a slash and a prefix length), got "10.0.0.0/8/8"',
    '6: expected a CIDR such as 10.0.0.0/8 or fd00::/8 (an address, a slash and a prefix length), got "fe80::%eth0/64"',
  ], 'every bad CIDR is reported, with its index and its value');
});

t.test('cidr: a client\'s address is checked against the BlockList once, then remembered', async (t) => {
  const original = BlockList.prototype.check;
  let checks = 0;
  const counting = function check(this: BlockList, address: string, family?: 'ipv4' | 'ipv6') {
    checks++;
    return original.call(this, address, family);
  };
  BlockList.prototype.check = counting as typeof original;
  t.teardown(() => {
    BlockList.prototype.check = original;
  });
  const test = compiled(cidr, ['10.0.0.0/8']);
  for (let i = 0; i < 1000; i++) test(ctx({ network: { ip: '10.9.9.9' } }));
  t.equal(checks, 1, '1000 requests from one address cost one BlockList check');
  t.equal(test(ctx({ network: { ip: '11.9.9.9' } })), false, 'another address gets its own answer');
  t.equal(checks, 2, 'and its own check');
  for (let i = 0; i < 5000; i++) test(ctx({ network: { ip: `10.0.${i >> 8}.${i & 255}` } }));
  const before = checks;
  t.equal(test(ctx({ network: { ip: '10.9.9.9' } })), true, 'after a flood of 5000 addresses the answers are still right');
  t.equal(checks, before + 1, 'but the remembered answers were let go (the cache is bounded), so the first address is checked again');
  BlockList.prototype.check = () => {
    throw new Error('a future Node refuses this address');
  };
  t.equal(test(ctx({ network: { ip: '10.7.7.7' } })), false, 'a BlockList that throws is a failed check, not a thrown predicate');
});

t.test('country: listed ISO 3166-1 codes, any case written, unknown country fails', async (t) => {
  const test = compiled(country, ['gb', 'IE']);
  t.same(country.schema.parse(['gb', 'Ie']), ['GB', 'IE'], 'codes are upper-cased');
  t.equal(test(ctx()), true, 'GB passes [GB, IE]');
  t.equal(test(ctx({ network: { country: 'FR' } })), false, 'FR fails');
  t.equal(test(ctx({ network: { country: undefined } })), false, 'an unknown country fails');
  t.equal(ASSIGNED_COUNTRY_CODES.size, 249, 'the embedded list holds the 249 assigned codes');
  t.same(refusals(country, ['UK']), ['0: expected an assigned ISO 3166-1 country code such as GB, got "UK", which is not assigned to a country (the United Kingdom is GB)'],
    'UK is refused, with the right code named');
  t.same(refusals(country, ['ZZ', 'XK']), [
    '0: expected an assigned ISO 3166-1 country code such as GB, got "ZZ", which is not assigned to a country',
    '1: expected an assigned ISO 3166-1 country code such as GB, got "XK", which is not assigned to a country',
  ], 'user-assigned codes are refused');
  t.same(refusals(country, ['GBR', 'G1']), [
    '0: expected a two-letter ISO 3166-1 country code such as GB, got "GBR"',
    '1: expected a two-letter ISO 3166-1 country code such as GB, got "G1"',
  ], 'anything but two letters is refused');
});

// ---------------------------------------------------------------------------------------
// When: time windows

/** Epoch ms of a UTC wall time. */
const utc = (y: number, mo: number, d: number, h: number, mi = 0) => Date.UTC(y, mo - 1, d, h, mi);

t.test('timeWindow: days and hours in the zone; end exclusive', async (t) => {
  const test = compiled(timeWindow, { days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: '08:00-18:00', timeZone: 'Europe/London' });
  const at = (time: number) => test(ctx({ time }));
  t.equal(at(utc(2025, 1, 15, 12)), true, 'Wednesday noon is inside');
  t.equal(at(utc(2025, 1, 15, 8)), true, '08:00 is inside (start inclusive)');
  t.equal(at(utc(2025, 1, 15, 7, 59)), false, '07:59 is outside');
  t.equal(at(utc(2025, 1, 15, 17, 59)), true, '17:59 is inside');
  t.equal(at(utc(2025, 1, 15, 18)), false, '18:00 is outside (end exclusive)');
  t.equal(at(utc(2025, 1, 18, 12)), false, 'Saturday noon is outside');
  t.equal(compiled(timeWindow, { timeZone: 'UTC' })(ctx()), true, 'no days and no hours: always inside');
  t.equal(compiled(timeWindow, { days: ['sat', 'sun'], timeZone: 'UTC' })(ctx({ time: utc(2025, 1, 19, 23, 59) })), true, 'days alone: all of Sunday');
  t.equal(compiled(timeWindow, { hours: '00:00-24:00', days: ['wed'], timeZone: 'UTC' })(ctx({ time: utc(2025, 1, 15, 23, 59) })), true,
    '24:00 ends a window at midnight');
});

t.test('timeWindow: the zone\'s own clock, across daylight saving and odd offsets', async (t) => {
  const test = compiled(timeWindow, { hours: '08:00-18:00', timeZone: 'Europe/London' });
  const at = (time: number) => test(ctx({ time }));
  // The clocks went forward at 01:00 UTC on Sunday 30 March 2025: GMT (UTC+0) to BST (UTC+1).
  t.equal(at(utc(2025, 3, 29, 7, 30)), false, 'Saturday 07:30 UTC is 07:30 GMT: outside');
  t.equal(at(utc(2025, 3, 29, 17, 30)), true, 'Saturday 17:30 UTC is 17:30 GMT: inside');
  t.equal(at(utc(2025, 3, 30, 7, 30)), true, 'Sunday 07:30 UTC is 08:30 BST: inside after the change');
  t.equal(at(utc(2025, 3, 30, 17, 30)), false, 'Sunday 17:30 UTC is 18:30 BST: outside after the change');
  t.equal(at(utc(2025, 3, 30, 6, 59)), false, 'Sunday 06:59 UTC is 07:59 BST: outside');
  // The clocks went back at 01:00 UTC on Sunday 26 October 2025.
  t.equal(at(utc(2025, 10, 26, 7, 30)), false, 'after going back, 07:30 UTC is 07:30 GMT again: outside');
  const kolkata = compiled(timeWindow, { hours: '09:00-17:00', timeZone: 'Asia/Kolkata' });
  t.equal(kolkata(ctx({ time: utc(2025, 1, 15, 3, 30) })), true, '03:30 UTC is 09:00 in Kolkata (UTC+5:30): inside');
  t.equal(kolkata(ctx({ time: utc(2025, 1, 15, 3, 29) })), false, '03:29 UTC is 08:59 in Kolkata: outside');
});

t.test('timeWindow: an overnight window belongs to the day it started on', async (t) => {
  const test = compiled(timeWindow, { days: ['fri'], hours: '22:00-06:00', timeZone: 'Europe/London' });
  const at = (time: number) => test(ctx({ time }));
  // Friday 17 January 2025; London is on GMT (UTC+0).
  t.equal(at(utc(2025, 1, 17, 22)), true, 'Friday 22:00 is inside');
  t.equal(at(utc(2025, 1, 17, 21, 59)), false, 'Friday 21:59 is outside');
  t.equal(at(utc(2025, 1, 18, 3)), true, 'Saturday 03:00 is inside: the window began on Friday');
  t.equal(at(utc(2025, 1, 18, 5, 59)), true, 'Saturday 05:59 is inside');
  t.equal(at(utc(2025, 1, 18, 6)), false, 'Saturday 06:00 is outside (end exclusive)');
  t.equal(at(utc(2025, 1, 18, 22, 30)), false, 'Saturday 22:30 is outside: sat is not listed');
  t.equal(at(utc(2025, 1, 17, 3)), false, 'Friday 03:00 is outside: that window began on Thursday, not listed');
  t.equal(at(utc(2025, 1, 17, 12)), false, 'Friday noon is outside');
});

t.test('timeWindow: the zone is formatted once per minute, not once per request', async (t) => {
  const original = Intl.DateTimeFormat.prototype.formatToParts;
  let formats = 0;
  Intl.DateTimeFormat.prototype.formatToParts = function formatToParts(this: Intl.DateTimeFormat, date?: Date | number) {
    formats++;
    return original.call(this, date);
  };
  t.teardown(() => {
    Intl.DateTimeFormat.prototype.formatToParts = original;
  });
  const test = compiled(timeWindow, { hours: '08:00-18:00', timeZone: 'Europe/London' });
  const start = utc(2025, 1, 15, 17, 59);
  for (let ms = 0; ms < 60_000; ms += 60) test(ctx({ time: start + ms }));
  t.equal(formats, 1, '1000 requests within one minute format the time once');
  t.equal(test(ctx({ time: start + 59_999 })), true, '17:59:59.999 is inside');
  t.equal(test(ctx({ time: start + 60_000 })), false, '18:00:00.000, the next minute, is worked out afresh: outside');
  t.equal(formats, 2, 'and costs the second format');
});

t.test('timeWindow: malformed values are refused with what was expected', async (t) => {
  const hoursError = (hours: string) => `hours: expected hours such as 08:00-18:00 or 22:00-06:00 (HH:MM-HH:MM, 24-hour clock, end up to 24:00), got "${hours}"`;
  t.same(refusals(timeWindow, { hours: '8-18', timeZone: 'UTC' }), [hoursError('8-18')], 'hours without minutes');
  t.same(refusals(timeWindow, { hours: '24:00-06:00', timeZone: 'UTC' }), [hoursError('24:00-06:00')], '24:00 cannot start a window');
  t.same(refusals(timeWindow, { hours: '08:60-18:00', timeZone: 'UTC' }), [hoursError('08:60-18:00')], 'minute 60');
  t.same(refusals(timeWindow, { hours: '08:00-24:30', timeZone: 'UTC' }), [hoursError('08:00-24:30')], 'past 24:00');
  t.same(refusals(timeWindow, { hours: '08:00-08:00', timeZone: 'UTC' }),
    ['hours: expected hours with different start and end (00:00-24:00, or no hours, for the whole day), got "08:00-08:00"'], 'a window that is empty, or all day, is ambiguous');
  t.same(refusals(timeWindow, { days: ['Mon', 'funday'], timeZone: 'UTC' }), [
    'days.0: expected a day: one of mon, tue, wed, thu, fri, sat, sun (lower case), got "Mon"',
    'days.1: expected a day: one of mon, tue, wed, thu, fri, sat, sun (lower case), got "funday"',
  ], 'unknown days, at their indexes');
  t.same(refusals(timeWindow, { days: [], timeZone: 'UTC' }),
    ['days: expected a non-empty list of days such as [mon, tue, wed, thu, fri] (leave days out for every day), got an empty list'], 'no days');
  t.same(refusals(timeWindow, { timeZone: 'Mars/Olympus_Mons' }),
    ['timeZone: expected an IANA time zone such as Europe/London, got "Mars/Olympus_Mons", which is not a known zone'], 'an unknown zone');
  t.same(refusals(timeWindow, { hours: '08:00-18:00' }), ['timeZone: expected an IANA time zone such as Europe/London, got nothing'], 'the zone is required');
  t.same(refusals(timeWindow, { timeZone: 'UTC', weekdays: ['mon'] }), ['unknown key "weekdays": expected days, hours and timeZone'], 'an unknown key');
  t.same(refusals(timeWindow, '08:00-18:00'), ['expected { days: [...], hours: HH:MM-HH:MM, timeZone: <IANA zone> }, got "08:00-18:00"'], 'hours alone are refused: a zone is needed');
  t.same(timeWindow.schema.parse({ timeZone: 'europe/london' }).timeZone, 'Europe/London', 'a zone in another case becomes its canonical name');
});

// ---------------------------------------------------------------------------------------
// What: the request

t.test('method: listed methods, written in any case', async (t) => {
  const test = compiled(method, ['get', 'HEAD']);
  t.equal(test(ctx()), true, 'GET passes [get, HEAD]');
  t.equal(test(ctx({ request: { method: 'HEAD' } })), true, 'HEAD passes');
  t.equal(test(ctx({ request: { method: 'POST' } })), false, 'POST fails');
  t.same(refusals(method, ['GET', 'GE T', '']), ['1: expected an HTTP method such as GET, got "GE T"', '2: expected an HTTP method such as GET, got ""'],
    'strings that are not tokens are refused');
});

t.test('path: prefixes on segment boundaries, read without ;params', async (t) => {
  const test = compiled(path, ['/api/reports', '/static']);
  const at = (p: string) => test(ctx({ request: { path: p } }));
  t.equal(at('/api/reports'), true, 'the prefix itself passes');
  t.equal(at('/api/reports/2025/q1'), true, 'a path below it passes');
  t.equal(at('/api/reportsx'), false, 'a longer segment is not below it');
  t.equal(at('/api'), false, 'a parent fails');
  // ;params never reach a rule: the context carries the path as the router matched it.
  t.equal(at(withoutParams('/api/reports;jsessionid=1/x')), true, 'a ;param is dropped, as the router and a servlet drop it');
  t.equal(compiled(path, ['/admin'])(ctx({ request: { path: withoutParams('/admin;x/users') } })), true, 'so /admin;x/users cannot slip past a rule on /admin');
  t.equal(compiled(path, ['/'])(ctx({ request: { path: '/anything/at/all' } })), true, '/ holds every path');
  t.same(refusals(path, ['/api/', 'api', '/a/../b', '/%7Eme']), [
    '0: expected a canonical path prefix such as /api (leading slash, no trailing slash, no dot segments or encoded characters), got "/api/"',
    '1: expected a canonical path prefix such as /api (leading slash, no trailing slash, no dot segments or encoded characters), got "api"',
    '2: expected a canonical path prefix such as /api (leading slash, no trailing slash, no dot segments or encoded characters), got "/a/../b"',
    '3: expected a canonical path prefix such as /api (leading slash, no trailing slash, no dot segments or encoded characters), got "/%7Eme"',
  ], 'prefixes must be canonical, as route prefixes are');
});

t.test('fhirResource: type, compartment and interaction of a FHIR REST request under base', async (t) => {
  const req = (m: string, p: string) => ctx({ request: { method: m, path: p } });
  const observations = compiled(fhirResource, { base: '/fhir', types: ['Observation', 'DiagnosticReport'], interactions: ['read', 'search'] });
  t.equal(observations(req('GET', '/fhir/Observation/1')), true, 'reading an Observation passes');
  t.equal(observations(req('GET', '/fhir/DiagnosticReport')), true, 'searching DiagnosticReports passes');
  t.equal(observations(req('PUT', '/fhir/Observation/1')), false, 'updating an Observation fails: not a listed interaction');
  t.equal(observations(req('GET', '/fhir/Patient/1')), false, 'reading a Patient fails: not a listed type');
  t.equal(observations(req('GET', '/fhir/Patient/1/*')), false, 'a search of every type is not a search of Observations');
  t.equal(observations(req('GET', '/fhir/metadata')), false, 'the capability statement is about no listed type');
  t.equal(observations(req('GET', '/fhir/Observation/a_b')), false, 'a path that is not FHIR REST fails');
  t.equal(observations(req('GET', '/other/Observation/1')), false, 'a path outside base fails');

  const everything = compiled(fhirResource, { base: '/fhir', types: ['*'] });
  t.equal(everything(req('GET', '/fhir/Patient/1/*')), true, 'types [*] holds a search of every type');
  t.equal(everything(req('POST', '/fhir/$export')), true, 'types [*] holds a system operation');
  t.equal(everything(req('GET', '/fhir/Observation/1')), true, 'types [*] holds one type too');
  t.equal(everything(req('POST', '/fhir')), true, 'types [*] holds a batch');

  const inPatient = compiled(fhirResource, { base: '/fhir', compartments: ['Patient'] });
  t.equal(inPatient(req('GET', '/fhir/Patient/1/Observation')), true, 'a search in a Patient compartment passes compartments [Patient]');
  t.equal(inPatient(req('GET', '/fhir/Encounter/1/Observation')), false, 'a search in an Encounter compartment fails');
  t.equal(inPatient(req('GET', '/fhir/Observation?patient=1')), false, 'a request in no compartment fails');
  t.equal(inPatient(req('GET', '/fhir/Patient/1')), false, 'reading the Patient itself is not a request in its compartment');

  const batch = compiled(fhirResource, { base: '/fhir', interactions: ['batch'] });
  t.equal(batch(req('POST', '/fhir')), true, 'interactions [batch] holds POST [base]');

  t.same(refusals(fhirResource, { types: ['Observation'] }), [
    'base: expected a path prefix such as /api, got nothing',
  ], 'base is required');
  t.same(refusals(fhirResource, { base: '/fhir' }), ['expected at least one of types, compartments or interactions beside base'], 'base alone is refused');
  t.same(refusals(fhirResource, { base: '/fhir', types: ['observation'], compartments: ['Organization'], interactions: ['write'] }), [
    'types.0: expected a FHIR resource type such as Observation (or * for every type), got "observation"',
    'compartments.0: expected a compartment type: one of Patient, Encounter, RelatedPerson, Practitioner, Device, got "Organization"',
    'interactions.0: expected a FHIR interaction: one of read, vread, update, patch, delete, history, create, search, capabilities, batch, operation, got "write"',
  ], 'every bad item is named at its path');
  t.same(refusals(fhirResource, { base: '/fhir', types: ['*'], resource: 'x' }), ['unknown key "resource": expected base, types, compartments, interactions'], 'an unknown key');
});

t.test('scope: all, any, and the list form', async (t) => {
  const holding = (...scopes: string[]) => ctx({ identity: { kind: 'bearer', scopes } });
  const list = compiled(scope, ['reports.read', 'reports.export']);
  t.equal(list(holding('reports.read', 'reports.export', 'openid')), true, 'the list form needs every scope: all held passes');
  t.equal(list(holding('reports.read')), false, 'one missing fails');
  const either = compiled(scope, { any: ['a', 'b'] });
  t.equal(either(holding('b')), true, 'any: one held passes');
  t.equal(either(holding('c')), false, 'any: none held fails');
  const both = compiled(scope, { all: ['a'], any: ['b', 'c'] });
  t.equal(both(holding('a', 'c')), true, 'all and any together: both must hold');
  t.equal(both(holding('c')), false, 'all and any together: all missing fails');
  t.same(refusals(scope, {}), ['expected at least one of all, any, smart, got an empty mapping'], 'an empty mapping is refused');
  t.same(refusals(scope, { every: ['a'] }), ['unknown key "every": expected any of all, any, smart'], 'an unknown key is named');
  t.same(refusals(scope, ['a b']), ['0: expected an OAuth scope such as reports.read (visible ASCII, no spaces, quotes or backslashes), got "a b"'], 'a scope with a space is refused');
  t.same(refusals(scope, { smart: { base: 'fhir' } }), [
    'smart.base: expected a canonical path prefix such as /api (leading slash, no trailing slash, no dot segments or encoded characters), got "fhir"',
  ], 'smart needs a canonical base');
  t.same(refusals(scope, { smart: true }), ['smart: expected { base: /fhir }, got true'], 'smart needs a mapping');
  t.same(refusals(scope, 'openid'), ['expected a list of scopes, or { all: [...], any: [...], smart: { base: /fhir } }, got "openid"'], 'a bare string is refused');
});

t.test('scope smart: SMART v1 and v2 scopes covering the request\'s type and interaction', async (t) => {
  const smart = compiled(scope, { smart: { base: '/fhir' } });
  const can = (scopes: string[], m: string, p: string) => smart(ctx({ identity: { kind: 'bearer', scopes }, request: { method: m, path: p } }));

  // v1: read (includes search), write, *
  t.equal(can(['patient/Observation.read'], 'GET', '/fhir/Observation/1'), true, 'v1 read covers a read');
  t.equal(can(['patient/Observation.read'], 'GET', '/fhir/Observation'), true, 'v1 read covers a search');
  t.equal(can(['patient/Observation.read'], 'POST', '/fhir/Observation'), false, 'v1 read does not cover a create');
  t.equal(can(['patient/Observation.read'], 'GET', '/fhir/Patient/1'), false, 'a scope for Observation does not cover a Patient');
  t.equal(can(['user/Observation.write'], 'POST', '/fhir/Observation'), true, 'v1 write covers a create');
  t.equal(can(['user/Observation.write'], 'PUT', '/fhir/Observation/1'), true, 'v1 write covers an update');
  t.equal(can(['user/Observation.write'], 'PATCH', '/fhir/Observation/1'), true, 'v1 write covers a patch');
  t.equal(can(['user/Observation.write'], 'DELETE', '/fhir/Observation/1'), true, 'v1 write covers a delete');
  t.equal(can(['user/Observation.write'], 'GET', '/fhir/Observation/1'), false, 'v1 write does not cover a read');
  t.equal(can(['user/*.read'], 'GET', '/fhir/Patient/1/_history/2'), true, 'user/*.read covers a vread of any type');
  t.equal(can(['system/*.*'], 'POST', '/fhir/$export'), true, 'system/*.* covers a system operation');

  // v2: c r u d s, in that order
  t.equal(can(['patient/Observation.rs'], 'GET', '/fhir/Observation/1'), true, 'v2 rs covers a read');
  t.equal(can(['patient/Observation.rs'], 'GET', '/fhir/Patient/1/Observation'), true, 'v2 rs covers a search in a compartment');
  t.equal(can(['patient/Observation.r'], 'GET', '/fhir/Observation'), false, 'v2 r alone does not cover a search');
  t.equal(can(['patient/Observation.s'], 'GET', '/fhir/Observation/1'), false, 'v2 s alone does not cover a read');
  t.equal(can(['patient/Observation.r'], 'GET', '/fhir/Observation/1/_history'), true, 'instance history needs r');
  t.equal(can(['patient/Observation.r'], 'GET', '/fhir/Observation/_history'), false, 'type history needs s, not r');
  t.equal(can(['patient/Observation.s'], 'GET', '/fhir/Observation/_history'), true, 'type history is covered by s');
  t.equal(can(['patient/Observation.c'], 'POST', '/fhir/Observation'), true, 'v2 c covers a create');
  t.equal(can(['patient/Observation.cu'], 'PATCH', '/fhir/Observation/1'), true, 'v2 u covers a patch');
  t.equal(can(['patient/Observation.cu'], 'DELETE', '/fhir/Observation/1'), false, 'v2 cu does not cover a delete');
  t.equal(can(['patient/Observation.d'], 'DELETE', '/fhir/Observation/1'), true, 'v2 d covers a delete');
  t.equal(can(['patient/Observation.sr'], 'GET', '/fhir/Observation/1'), false, 'letters out of order are not a SMART scope');
  t.equal(can(['patient/Observation.'], 'GET', '/fhir/Observation/1'), false, 'no letters at all is not a SMART scope');
  t.equal(can(['patient/Observation.rs?category=laboratory'], 'GET', '/fhir/Observation'), false,
    'a v2 scope narrowed by search parameters covers nothing here: the query is not checked');
  t.equal(can(['patient/Observation.rs?category=laboratory', 'patient/Observation.s'], 'GET', '/fhir/Observation'), true,
    'beside an unnarrowed scope, the unnarrowed one counts');

  // operations: GET reads, POST writes
  t.equal(can(['patient/Patient.r'], 'GET', '/fhir/Patient/1/$everything'), true, 'an operation invoked with GET needs read');
  t.equal(can(['patient/Patient.r'], 'POST', '/fhir/Patient/1/$everything'), false, 'an operation invoked with POST needs write');
  t.equal(can(['patient/Patient.cud'], 'POST', '/fhir/Patient/1/$everything'), true, 'v2 cud is write');
  t.equal(can(['patient/Patient.cu'], 'POST', '/fhir/Patient/1/$everything'), false, 'v2 cu is not all of write');

  // every type, no type, not FHIR
  t.equal(can(['patient/Observation.rs'], 'GET', '/fhir/Patient/1/*'), false, 'a request for every type is not covered by one type');
  t.equal(can(['patient/*.rs'], 'GET', '/fhir/Patient/1/*'), true, 'a * scope covers a request for every type');
  t.equal(can(['user/*.read'], 'GET', '/fhir/_history'), true, 'system history is covered by a * read scope');
  t.equal(can(['system/*.*'], 'POST', '/fhir'), false, 'a batch is never covered: its requests are inside it, unseen');
  t.equal(can(['patient/Observation.r'], 'GET', '/fhir/metadata'), true, 'any read grant covers the capability statement');
  t.equal(can(['patient/Observation.c', 'openid'], 'GET', '/fhir/metadata'), false, 'a grant without read does not');
  t.equal(can(['system/*.*'], 'GET', '/api/reports'), false, 'a path that is not FHIR REST under base fails');
  t.equal(can(['openid', 'launch/patient', 'fhirUser'], 'GET', '/fhir/Observation/1'), false, 'scopes that are not resource scopes grant nothing');

  const combined = compiled(scope, { all: ['launch/patient'], smart: { base: '/fhir' } });
  t.equal(combined(ctx({ identity: { scopes: ['patient/*.rs'] }, request: { path: '/fhir/Observation/1' } })), false, 'smart beside all: all must hold too');
});

t.test('risk: the score must be at most the limit', async (t) => {
  t.equal(compiled(risk, 40)(ctx({ risk: 40 })), true, '40 passes a limit of 40');
  t.equal(compiled(risk, 40)(ctx({ risk: 41 })), false, '41 fails a limit of 40');
  t.equal(compiled(risk, { max: 0 })(ctx({ risk: 0 })), true, '{ max: 0 } passes no risk at all');
  t.equal(compiled(risk, { max: 0 })(ctx({ risk: 1 })), false, '{ max: 0 } fails any risk');
  t.equal(compiled(risk, 100)(ctx({ risk: Number.NaN })), false, 'a score that is not a number fails');
  t.same(refusals(risk, 101), ['expected a risk score from 0 to 100, got 101'], 'above 100 is refused');
  t.same(refusals(risk, { max: -1 }), ['max: expected a risk score from 0 to 100, got -1'], 'below 0 is refused');
  t.same(refusals(risk, 'low'), ['expected a risk score from 0 to 100, got "low"'], 'a word is refused');
  t.same(refusals(risk, { min: 3 }), ['max: expected a risk score from 0 to 100, got nothing', 'unknown key "min": expected max'], 'an unknown key is named, and the missing max');
});

// ---------------------------------------------------------------------------------------
// Never throws

t.test('no predicate throws, whatever the context holds', async (t) => {
  const values: Record<string, unknown> = {
    authenticated: true, user: ['dr.alice'], email: ['alice@hospital.example'], domain: ['hospital.example'], groups: { all: ['clinicians'] },
    claim: { name: 'roles', values: ['nurse'] }, amr: ['hwk'], acr: ['phr'], authAge: '1h', sessionAge: '12h', idle: '1h',
    device: { trusted: true, maxPostureAge: '1h', ids: ['ws-0042'] }, cidr: ['10.0.0.0/8', 'fd00::/8'], country: ['GB'],
    timeWindow: { days: ['fri'], hours: '22:00-06:00', timeZone: 'Europe/London' }, method: ['GET'], path: ['/api'],
    fhirResource: { base: '/fhir', types: ['Observation'], compartments: ['Patient'], interactions: ['search'] },
    scope: { all: ['a'], any: ['b'], smart: { base: '/fhir' } }, risk: 50, grant: true,
  };
  const odd: RequestContext[] = [
    ctx({ identity: 'none', session: 'none' }),
    ctx({ identity: { email: undefined, groups: [], amr: [], acr: undefined, authTime: undefined, scopes: [], claims: {} } }),
    ctx({ identity: { claims: { roles: [null, undefined, { a: 1 }, [1]] }, scopes: ['a', 'b', 'patient/*.*'] } }),
    ctx({ time: Number.NaN }),
    ctx({ time: Number.POSITIVE_INFINITY }),
    ctx({ time: 9e15 }),
    ctx({ time: -1 }),
    ctx({ network: { ip: '', country: '' } }),
    ctx({ network: { ip: ':::::', country: 'gb' } }),
    ctx({ request: { method: '', path: '' } }),
    ctx({ request: { method: 'GET', path: '/fhir/Patient/%FF/Observation' } }),
    ctx({ request: { method: 'POST', path: `/fhir/${'a/'.repeat(1000)}` } }),
    ctx({ device: { observedAt: Number.NaN, id: undefined, problem: 'posture-invalid' } }),
    ctx({ session: { createdAt: Number.NaN, lastSeenAt: Number.NaN } }),
    ctx({ risk: Number.NaN }),
    ctx({ grants: [{ id: 'g', notBefore: Number.NaN, notAfter: Number.NaN, paths: [], methods: [] }] }),
  ];
  for (const [name, criterion] of CRITERIA) {
    const test = compiled(criterion, values[name]);
    let threw: unknown;
    const answers: unknown[] = [];
    for (const c of odd) {
      try {
        answers.push(test(c));
      } catch (err) {
        threw = err;
      }
    }
    t.equal(threw, undefined, `${name} throws for no odd context`);
    t.ok(answers.every((a) => typeof a === 'boolean'), `${name} always answers true or false`);
  }
});

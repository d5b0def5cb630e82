import t from 'tap';
import { parse } from 'yaml';
import { ConfigError } from '../../proxy/errors.js';
import { UNKNOWN_DEVICE, type RequestContext } from '../../proxy/policy/context.js';
import {
  explainDecision, explanationJson, formatDuration, formatExplanation, parseContext, parseContextJson, type ContextOptions,
} from '../../proxy/policy/explain.js';
import { policySchema } from '../../proxy/policy/rules.js';

/*
 * `policy explain`, its pure parts: the context file read into the RequestContext the
 * gateway would have built (and refused, naming the JSON path, when the gateway could never
 * build it), and the decision told in plain words or JSON.
 */

const NOW = Date.UTC(2026, 10, 24, 10, 0); // a Tuesday, 10:00 UTC
const FILE = 'ctx.json';
const EPIC = { id: 'epic', host: 'epic.test', paths: ['/'] };
const ADMIN = { id: 'epic-admin', host: 'epic.test', paths: ['/admin'] };
const FHIR = { id: 'fhir', host: 'fhir.test', paths: ['/fhir'] };
const OPTIONS: ContextOptions = { file: FILE, route: EPIC, routes: [EPIC, ADMIN, FHIR], now: NOW };

const MINIMAL = { network: { ip: '10.1.2.3' }, request: { path: '/chart' } };

/** The message parseContext throws for `input`, or 'no error'. */
function errorOf(input: unknown, options: ContextOptions = OPTIONS): string {
  try {
    parseContext(input, options);
    return 'no error';
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.message;
  }
}

t.test('a full context becomes the RequestContext the gateway would build', async (t) => {
  const ctx = parseContext({
    identity: {
      sub: 'dr.alice', email: 'alice@hospital.example', name: 'Dr Alice', groups: ['clinicians'], amr: ['hwk', 'pin'], acr: 'phr',
      authTime: '2026-11-24T09:55:00Z', claims: { department: 'cardiology' },
    },
    session: { createdAt: '2026-11-24T09:55:00Z', lastSeenAt: NOW - 5_000 },
    device: { id: 'WS-1', known: true, managed: true, compliant: true, certificate: true, observedAt: '2026-11-24T09:00:00+01:00', os: 'Windows 11', diskEncrypted: true },
    network: { ip: '10.1.2.3', country: 'gb' },
    time: '2026-11-24T10:00:00Z',
    request: { method: 'POST', path: '/chart/notes', host: 'epic.test' },
    risk: 20,
    grants: [{ notBefore: '2026-11-24T09:00:00Z', notAfter: NOW + 3_600_000, paths: ['/chart'] }],
    breakGlass: { endsAt: '2026-11-24T11:00:00Z' },
  }, OPTIONS);
  t.same(ctx, {
    identity: {
      kind: 'session', sub: 'dr.alice', email: 'alice@hospital.example', name: 'Dr Alice', groups: ['clinicians'], amr: ['hwk', 'pin'], acr: 'phr',
      authTime: NOW / 1000 - 300, scopes: [], claims: { department: 'cardiology' }, idpSid: undefined, sessionId: undefined, expiresAt: NOW + 3_600_000,
    },
    session: { createdAt: NOW - 300_000, lastSeenAt: NOW - 5_000 },
    device: {
      source: 'certificate', id: 'WS-1', known: true, managed: true, compliant: true, observedAt: NOW - 7_200_000, certificate: true,
      os: 'Windows 11', diskEncrypted: true, trusted: true, problem: undefined,
    },
    network: { ip: '10.1.2.3', country: 'GB' },
    time: NOW,
    request: { method: 'POST', host: 'epic.test', path: '/chart/notes' },
    risk: 20,
    grants: [{ id: 'g_explain', notBefore: NOW - 3_600_000, notAfter: NOW + 3_600_000, paths: ['/chart'], methods: undefined }],
    breakGlass: { id: 'bg_explain', endsAt: NOW + 3_600_000 },
  }, 'authTime in epoch seconds, other times in epoch ms, the zone offset applied, the country upper-cased, a trusted device derived');
});

t.test('a minimal context: anonymous, unknown device, now, GET on the route\'s host, no risk', async (t) => {
  const ctx = parseContext(MINIMAL, OPTIONS);
  t.equal(ctx.identity, undefined, 'no identity is an anonymous request');
  t.equal(ctx.session, undefined, 'which has no session');
  t.equal(ctx.device, UNKNOWN_DEVICE, 'no device is the unknown device, as without a devices: section');
  t.same(ctx.network, { ip: '10.1.2.3', country: undefined }, 'no country is an unknown one');
  t.equal(ctx.time, NOW, 'time defaults to now');
  t.same(ctx.request, { method: 'GET', host: 'epic.test', path: '/chart' }, 'GET on the route\'s host');
  t.equal(ctx.risk, 0, 'risk defaults to 0');
  t.same([ctx.grants, ctx.breakGlass], [[], undefined], 'no grants and no break-glass by default');
  t.equal(parseContext({ ...MINIMAL, identity: null }, OPTIONS).identity, undefined, 'identity: null is anonymous too');
});

t.test('identity defaults: a session that has just begun; bearer tokens have scopes and no session', async (t) => {
  const signedIn = parseContext({ ...MINIMAL, identity: { sub: 'nurse.bob' }, time: NOW }, OPTIONS);
  t.same(signedIn.identity, {
    kind: 'session', sub: 'nurse.bob', email: undefined, name: undefined, groups: [], amr: [], acr: undefined, authTime: undefined,
    scopes: [], claims: {}, idpSid: undefined, sessionId: undefined, expiresAt: NOW + 3_600_000,
  }, 'lists default to empty, the rest to undefined');
  t.same(signedIn.session, { createdAt: NOW, lastSeenAt: NOW }, 'a browser identity without a session gets one begun at the request\'s time');
  const app = parseContext({ ...MINIMAL, identity: { sub: 'cardio-app', kind: 'bearer', scopes: ['patient/Observation.rs'], authTime: NOW / 1000 - 60 } }, OPTIONS);
  t.equal(app.identity?.kind, 'bearer', 'kind bearer');
  t.same(app.identity?.scopes, ['patient/Observation.rs'], 'with its scopes');
  t.equal(app.identity?.authTime, NOW / 1000 - 60, 'authTime in epoch seconds is taken as is');
  t.equal(app.session, undefined, 'and no session');
});

t.test('device facts: defaults from trusted, the problem derived in the device provider\'s order', async (t) => {
  const device = (given: object) => parseContext({ ...MINIMAL, device: given }, OPTIONS).device;
  t.same(device({ trusted: true }), { ...UNKNOWN_DEVICE, source: 'posture', known: true, managed: true, compliant: true, trusted: true, problem: undefined },
    '{ trusted: true } is a known, managed, compliant device');
  t.same(device({}), { ...UNKNOWN_DEVICE }, '{} is the unknown device');
  t.match(device({ known: true }), { trusted: false, problem: 'device-unmanaged' }, 'known only: unmanaged');
  t.match(device({ known: true, managed: true }), { trusted: false, problem: 'device-noncompliant' }, 'known and managed: noncompliant');
  t.match(device({ known: true, managed: true, compliant: true }), { trusted: true, problem: undefined }, 'all three: trusted');
  t.match(device({ known: true, managed: true, compliant: true, trusted: false }), { trusted: false, problem: 'posture-stale' },
    'all three and not trusted: only a stale posture is left');
  t.match(device({ known: true, managed: true, compliant: true, problem: 'posture-replayed' }), { trusted: false, problem: 'posture-replayed' },
    'a problem given makes the device untrusted');
  t.match(device({ certificate: true }), { source: 'certificate', certificate: true, trusted: false, problem: 'device-unknown' },
    'a certificate the inventory does not list');
});

interface Bad {
  name: string;
  input: unknown;
  /** The whole message: every line `ctx.json: PATH: what was expected`. */
  message: string;
}

const BAD: Bad[] = [
  { name: 'not an object', input: [], message: 'ctx.json: expected a JSON object with at least network and request, got a list' },
  {
    name: 'no network or request',
    input: {},
    message: 'ctx.json: network: expected a mapping such as { "ip": "10.1.2.3", "country": "GB" }, got nothing\n'
      + 'ctx.json: request: expected a mapping such as { "method": "GET", "path": "/chart" }, got nothing',
  },
  { name: 'an unknown top-level key', input: { ...MINIMAL, user: 'x' }, message: 'ctx.json: user: unknown key "user": expected identity, session, device, network, time, request, risk, grants, breakGlass' },
  { name: 'grants without a person', input: { ...MINIMAL, grants: [{ notBefore: NOW, notAfter: NOW + 1 }] }, message: 'ctx.json: grants: grants belong to a signed-in person; give an identity, or leave grants out' },
  { name: 'a grant that ends before it starts', input: { ...MINIMAL, identity: { sub: 'a' }, grants: [{ notBefore: NOW, notAfter: NOW }] }, message: 'ctx.json: grants[0].notAfter: a grant\'s window ends after it starts' },
  { name: 'break-glass without a person', input: { ...MINIMAL, breakGlass: { endsAt: NOW } }, message: 'ctx.json: breakGlass: break-glass access belongs to a signed-in person; give an identity, or leave breakGlass out' },
  { name: 'identity of the wrong kind', input: { ...MINIMAL, identity: 'dr.alice' }, message: 'ctx.json: identity: expected a mapping such as { "sub": "dr.alice" }, or null for an anonymous request, got "dr.alice"' },
  { name: 'an identity without sub', input: { ...MINIMAL, identity: { groups: [] } }, message: 'ctx.json: identity.sub: expected a subject such as "dr.alice", got nothing' },
  { name: 'an empty sub', input: { ...MINIMAL, identity: { sub: '' } }, message: 'ctx.json: identity.sub: expected a subject such as "dr.alice", got an empty string' },
  { name: 'groups that are not a list', input: { ...MINIMAL, identity: { sub: 'a', groups: 'clinicians' } }, message: 'ctx.json: identity.groups: expected a list of strings, got "clinicians"' },
  { name: 'a group that is not a string', input: { ...MINIMAL, identity: { sub: 'a', groups: ['ok', 3] } }, message: 'ctx.json: identity.groups[1]: expected a group name (a string), got 3' },
  { name: 'amr as a string', input: { ...MINIMAL, identity: { sub: 'a', amr: 'hwk' } }, message: 'ctx.json: identity.amr: expected a list of strings, got "hwk"' },
  { name: 'acr as a list', input: { ...MINIMAL, identity: { sub: 'a', acr: ['phr'] } }, message: 'ctx.json: identity.acr: expected an authentication context class such as "phr", got a list' },
  { name: 'claims as a list', input: { ...MINIMAL, identity: { sub: 'a', claims: [] } }, message: 'ctx.json: identity.claims: expected a mapping of claim names to values, got a list' },
  { name: 'an unknown kind', input: { ...MINIMAL, identity: { sub: 'a', kind: 'cookie' } }, message: 'ctx.json: identity.kind: expected "session" or "bearer", got "cookie"' },
  { name: 'an unknown identity key', input: { ...MINIMAL, identity: { sub: 'a', grops: [] } }, message: 'ctx.json: identity.grops: unknown key "grops": expected sub, email, name, groups, amr, acr, authTime, scopes, claims, kind' },
  {
    name: 'two unknown identity keys, each named',
    input: { ...MINIMAL, identity: { sub: 'a', roles: [], exp: 1 } },
    message: 'ctx.json: identity.roles: unknown key "roles": expected sub, email, name, groups, amr, acr, authTime, scopes, claims, kind\n'
      + 'ctx.json: identity.exp: unknown key "exp": expected sub, email, name, groups, amr, acr, authTime, scopes, claims, kind',
  },
  { name: 'authTime in milliseconds', input: { ...MINIMAL, identity: { sub: 'a', authTime: NOW } }, message: `ctx.json: identity.authTime: expected epoch seconds, got ${NOW}, which looks like milliseconds (divide by 1000)` },
  { name: 'authTime without a zone', input: { ...MINIMAL, identity: { sub: 'a', authTime: '2026-11-24T09:00:00' } }, message: 'ctx.json: identity.authTime: expected an ISO date-time with a zone such as "2026-11-24T10:00:00Z", or epoch seconds, got "2026-11-24T09:00:00"' },
  { name: 'an impossible date', input: { ...MINIMAL, time: '2026-13-45T10:00:00Z' }, message: 'ctx.json: time: expected an ISO date-time with a zone such as "2026-11-24T10:00:00Z", or epoch milliseconds, got "2026-13-45T10:00:00Z"' },
  { name: 'time in seconds', input: { ...MINIMAL, time: NOW / 1000 }, message: `ctx.json: time: expected epoch milliseconds, got ${NOW / 1000}, which looks like seconds (multiply by 1000)` },
  { name: 'a negative time', input: { ...MINIMAL, time: -1 }, message: 'ctx.json: time: expected an ISO date-time with a zone such as "2026-11-24T10:00:00Z", or epoch milliseconds, got -1' },
  {
    name: 'a session without lastSeenAt',
    input: { ...MINIMAL, identity: { sub: 'a' }, session: { createdAt: NOW } },
    message: 'ctx.json: session.lastSeenAt: expected an ISO date-time with a zone such as "2026-11-24T10:00:00Z", or epoch milliseconds, got nothing',
  },
  { name: 'a session that is not a mapping', input: { ...MINIMAL, identity: { sub: 'a' }, session: true }, message: 'ctx.json: session: expected a mapping { "createdAt": ..., "lastSeenAt": ... }, got true' },
  { name: 'a device flag that is not a boolean', input: { ...MINIMAL, device: { managed: 'yes' } }, message: 'ctx.json: device.managed: expected true or false, got "yes"' },
  {
    name: 'an unknown device problem',
    input: { ...MINIMAL, device: { problem: 'broken' } },
    message: 'ctx.json: device.problem: expected a device problem: one of device-unknown, device-unmanaged, device-noncompliant, device-mismatch, posture-stale, posture-invalid, posture-signature-invalid, posture-expired, posture-replayed, certificate-unknown, got "broken"',
  },
  { name: 'an unknown device key', input: { ...MINIMAL, device: { encrypted: true } }, message: 'ctx.json: device.encrypted: unknown key "encrypted": expected id, known, managed, compliant, certificate, observedAt, os, diskEncrypted, trusted, problem' },
  { name: 'no network.ip', input: { ...MINIMAL, network: { country: 'GB' } }, message: 'ctx.json: network.ip: expected an IP address such as "10.1.2.3", got nothing' },
  { name: 'a network.ip that is not an address', input: { ...MINIMAL, network: { ip: '10.1.2' } }, message: 'ctx.json: network.ip: expected an IPv4 or IPv6 address such as "10.1.2.3", got "10.1.2"' },
  { name: 'a country that is not a code', input: { ...MINIMAL, network: { ip: '::1', country: 'GBR' } }, message: 'ctx.json: network.country: expected a two-letter ISO 3166-1 country code such as "GB", got "GBR"' },
  { name: 'no request.path', input: { ...MINIMAL, request: { method: 'GET' } }, message: 'ctx.json: request.path: expected a path such as "/chart", got nothing' },
  { name: 'a lower-case method', input: { ...MINIMAL, request: { method: 'get', path: '/' } }, message: 'ctx.json: request.method: expected an HTTP method in upper case such as "GET", got "get"' },
  { name: 'CONNECT', input: { ...MINIMAL, request: { method: 'CONNECT', path: '/' } }, message: 'ctx.json: request.method: CONNECT is refused before any policy sees it' },
  { name: 'a path with a query', input: { ...MINIMAL, request: { path: '/chart?id=1' } }, message: 'ctx.json: request.path: expected the path alone, without a query or fragment (policies read the path only), got "/chart?id=1"' },
  {
    name: 'a path that is not canonical',
    input: { ...MINIMAL, request: { path: '/public/../admin/%75sers' } },
    message: 'ctx.json: request.path: expected a canonical path, got "/public/../admin/%75sers": wardgate would decide on "/admin/users"; write that',
  },
  {
    name: 'a path wardgate refuses outright',
    input: { ...MINIMAL, request: { path: '/a%2fb' } },
    message: 'ctx.json: request.path: wardgate refuses "/a%2fb" (400) before any policy sees it: it has no canonical form (an encoded slash, a backslash, a bad escape, or .. above the root)',
  },
  {
    name: 'a host that is not canonical',
    input: { ...MINIMAL, request: { path: '/', host: 'EPIC.test:443' } },
    message: 'ctx.json: request.host: expected a canonical host name (lower case, no port), got "EPIC.test:443": wardgate would route "epic.test"; write that',
  },
  { name: 'a host that is no host name', input: { ...MINIMAL, request: { path: '/', host: 'epic test' } }, message: 'ctx.json: request.host: expected a host name such as "epic.example", got "epic test"' },
  {
    name: 'a session last seen after the request',
    input: { ...MINIMAL, identity: { sub: 'a' }, session: { createdAt: NOW - 1000, lastSeenAt: NOW + 1000 } },
    message: 'ctx.json: session.lastSeenAt: after the request\'s time (2026-11-24T10:00:00.000Z)',
  },
  { name: 'a risk out of range', input: { ...MINIMAL, risk: 101 }, message: 'ctx.json: risk: expected a risk score from 0 to 100, got 101' },
  { name: 'a risk that is not a number', input: { ...MINIMAL, risk: 'low' }, message: 'ctx.json: risk: expected a risk score from 0 to 100, got "low"' },
  // Combinations the gateway never builds.
  {
    name: 'a session for a bearer token',
    input: { ...MINIMAL, identity: { sub: 'app', kind: 'bearer' }, session: { createdAt: NOW - 1000, lastSeenAt: NOW } },
    message: 'ctx.json: session: a bearer token has no session (sessions are for browsers); leave session out, or make identity.kind "session"',
  },
  {
    name: 'a session for an anonymous request',
    input: { ...MINIMAL, session: { createdAt: NOW - 1000, lastSeenAt: NOW } },
    message: 'ctx.json: session: an anonymous request has no session; give an identity, or leave session out',
  },
  {
    name: 'scopes on a browser session',
    input: { ...MINIMAL, identity: { sub: 'a', scopes: ['x'] } },
    message: 'ctx.json: identity.scopes: only bearer tokens carry scopes; add "kind": "bearer", or leave scopes out',
  },
  {
    name: 'a session last seen before it began, and timestamps after the request',
    input: { ...MINIMAL, identity: { sub: 'a', authTime: NOW / 1000 + 60 }, session: { createdAt: NOW + 1000, lastSeenAt: NOW - 1000 }, device: { trusted: true, observedAt: NOW + 1 } },
    message: 'ctx.json: identity.authTime: after the request\'s time (2026-11-24T10:00:00.000Z)\n'
      + 'ctx.json: session.lastSeenAt: before session.createdAt (2026-11-24T10:00:01.000Z)\n'
      + 'ctx.json: session.createdAt: after the request\'s time (2026-11-24T10:00:00.000Z)\n'
      + 'ctx.json: device.observedAt: after the request\'s time (2026-11-24T10:00:00.000Z)',
  },
  {
    name: 'a trusted device that is not managed',
    input: { ...MINIMAL, device: { trusted: true, managed: false } },
    message: 'ctx.json: device.trusted: a trusted device is known, managed and compliant; set those true, or trusted false',
  },
  {
    name: 'a trusted device with a problem',
    input: { ...MINIMAL, device: { trusted: true, problem: 'posture-stale' } },
    message: 'ctx.json: device.problem: a trusted device has no problem; leave problem out, or set trusted false',
  },
  { name: 'another route\'s host', input: { ...MINIMAL, request: { path: '/', host: 'fhir.test' } }, message: 'ctx.json: request.host: route "epic" serves epic.test, got "fhir.test"' },
  {
    name: 'a path the router sends to another route',
    input: { ...MINIMAL, request: { path: '/admin/users' } },
    message: 'ctx.json: request.path: epic.test/admin/users goes to route "epic-admin", not "epic"; explain it with --route epic-admin',
  },
];

for (const bad of BAD) {
  t.test(`refused: ${bad.name}`, async (t) => {
    t.equal(errorOf(bad.input), bad.message, 'every fault on its own line: file, JSON path, what was expected');
  });
}

t.test('a path no route serves is refused; ;params are routed as the router does', async (t) => {
  const fhirOptions: ContextOptions = { ...OPTIONS, route: FHIR };
  t.equal(errorOf({ ...MINIMAL, request: { path: '/other' } }, fhirOptions),
    'ctx.json: request.path: route "fhir" serves /fhir on fhir.test; "/other" reaches no route (404)', 'outside every prefix of the route\'s host');
  t.equal(parseContext({ ...MINIMAL, request: { path: '/fhir;x/Patient' } }, fhirOptions).request.path, '/fhir/Patient',
    'a path under the prefix once its ;params are dropped reaches the route, and is decided without them, as the gateway decides it');
  t.equal(errorOf({ ...MINIMAL, request: { path: '/admin;x/users' } }),
    'ctx.json: request.path: epic.test/admin;x/users goes to route "epic-admin", not "epic"; explain it with --route epic-admin',
    '/admin;x is /admin to the router');
});

t.test('the error is a ConfigError (exit 2) whose path is the first fault\'s', async (t) => {
  const err = t.throws(() => parseContext({ ...MINIMAL, risk: -1 }, OPTIONS)) as ConfigError;
  t.ok(err instanceof ConfigError, 'a ConfigError');
  t.equal(err.code, 'config-invalid', 'which the CLI exits 2 for, without the usage');
  t.equal(err.file, FILE, 'naming the context file');
  t.equal(err.path, 'risk', 'and the JSON path');
});

t.test('parseContextJson: JSON syntax errors name the file', async (t) => {
  t.same(parseContextJson(JSON.stringify(MINIMAL), OPTIONS).request, { method: 'GET', host: 'epic.test', path: '/chart' }, 'good JSON is parsed');
  const err = t.throws(() => parseContextJson('{ "network": ', OPTIONS)) as ConfigError;
  t.ok(err instanceof ConfigError, 'bad JSON is a ConfigError');
  t.match(err.message, /^ctx\.json: invalid JSON: /, 'naming the file and saying it is not JSON');
});

// --- deciding and formatting ------------------------------------------------------------

const ROUTE = {
  id: 'epic',
  host: 'epic.test',
  policy: policySchema.parse(parse(`
deny:
  - name: embargo
    country: [KP]
allow:
  - name: clinicians-with-key
    all:
      - groups: [clinicians]
      - acr: [phr]
      - amr: [hwk]
      - authAge: 15m
  - name: vendor-hours
    all:
      - groups: [vendor-support]
      - timeWindow: { days: [mon, tue, wed, thu, fri], hours: "08:00-18:00", timeZone: Europe/London }
remediation: Call the service desk on 1234.
`)),
};

function ctxOf(overrides: object): RequestContext {
  return parseContext({ ...MINIMAL, network: { ip: '10.1.2.3', country: 'GB' }, time: NOW, ...overrides }, OPTIONS);
}
const ALICE = { sub: 'dr.alice', groups: ['clinicians'], acr: 'phr', amr: ['hwk', 'pin'], authTime: NOW / 1000 - 60 };

t.test('allow: the rule and its criteria', async (t) => {
  const e = explainDecision(ROUTE, false, ctxOf({ identity: ALICE }));
  t.equal(e.devices, 'any', 'without a devices: section, devices default to any');
  t.equal(formatExplanation(e), `route:    epic (epic.test), devices: any
time:     2026-11-24T10:00:00.000Z
outcome:  allow
rule:     allow[0] clinicians-with-key
reasons:
  groups-ok
  acr-ok
  amr-ok
  auth-age-ok
`, 'the pass reasons, without explanations (they have none)');
});

t.test('deny by a deny rule: the reason in plain words, what was missing, the remediation', async (t) => {
  const e = explainDecision(ROUTE, false, ctxOf({ identity: ALICE, network: { ip: '175.45.176.1', country: 'KP' } }));
  t.equal(formatExplanation(e), `route:    epic (epic.test), devices: any
time:     2026-11-24T10:00:00.000Z
outcome:  deny
rule:     deny[0] embargo
reasons:
  country-unauthorized  This application cannot be reached from the country you are connecting from.
missing:
  an allowed network or country (network)
remediation: Call the service desk on 1234.
`, 'the deny page\'s words');
});

t.test('deny by default: no rule matched, the closest named, and hideDetails noted', async (t) => {
  const hidden = { ...ROUTE, policy: { ...ROUTE.policy, remediation: undefined, hideDetails: true } };
  const e = explainDecision(hidden, false, ctxOf({ identity: { sub: 'vendor.dave', groups: ['vendor-support'] }, time: Date.UTC(2026, 10, 24, 20, 0) }));
  t.equal(e.decision.outcome, 'deny', 'a vendor at 20:00 is refused');
  t.equal(formatExplanation(e), `route:    epic (epic.test), devices: any
time:     2026-11-24T20:00:00.000Z
outcome:  deny
rule:     none matched; closest: allow[1] vendor-hours
reasons:
  outside-hours  This application is closed at this time.
missing:
  the application's opening hours (time)
note:     the deny page hides these details (hideDetails: true)
`, 'the closest allow rule and what it lacked');
});

t.test('login: no identity', async (t) => {
  const e = explainDecision(ROUTE, false, ctxOf({}));
  t.equal(formatExplanation(e), `route:    epic (epic.test), devices: any
time:     2026-11-24T10:00:00.000Z
outcome:  login
rule:     none: not signed in (no identity), so no allow rule can match yet
reasons:
  login-required  Sign in to reach this application.
missing:
  a current sign-in (sign-in)
`, 'sign in first');
});

t.test('step-up: what the fresh sign-in must bring', async (t) => {
  const e = explainDecision(ROUTE, false, ctxOf({ identity: { ...ALICE, acr: 'pwd', amr: ['pwd'], authTime: NOW / 1000 - 3600 } }));
  t.equal(formatExplanation(e), `route:    epic (epic.test), devices: any
time:     2026-11-24T10:00:00.000Z
outcome:  step-up
rule:     none matched; closest: allow[0] clinicians-with-key
reasons:
  acr-insufficient   This application needs a stronger sign-in, such as with a security key.
  amr-insufficient   This application needs a stronger sign-in, such as with a security key.
  auth-age-exceeded  This application needs a more recent sign-in.
missing:
  a stronger or more recent sign-in, such as with a security key (authentication)
step-up:  sign in again with acr phr, amr hwk, signed in within 15m
`, 'acr, amr and the maximum age');
  t.same(JSON.parse(explanationJson(e)), {
    route: 'epic', devices: 'any', time: '2026-11-24T10:00:00.000Z', outcome: 'step-up',
    reasons: ['acr-insufficient', 'amr-insufficient', 'auth-age-exceeded'], rule: null, closest: 'allow[0] clinicians-with-key',
    missing: ['authentication'], stepUp: { acr: ['phr'], amr: ['hwk'], maxAgeMs: 900_000 },
  }, '--json: the Decision with its route; absent fields are null');
});

t.test('the device mode default is the gateway\'s: trusted once devices: is configured', async (t) => {
  const e = explainDecision(ROUTE, true, ctxOf({ identity: ALICE }));
  t.equal(e.devices, 'trusted', 'a route that says nothing demands trusted devices once devices: is configured');
  t.equal(formatExplanation(e), `route:    epic (epic.test), devices: trusted
time:     2026-11-24T10:00:00.000Z
outcome:  deny
rule:     devices: trusted
reasons:
  device-untrusted  This application can be used only from a device the hospital manages and has checked recently.
  device-unknown    wardgate does not know this device.
missing:
  a trusted device: managed by the hospital, compliant and recently checked (device)
remediation: Call the service desk on 1234.
`, 'an unknown device is refused before the rules');
  t.equal(explainDecision(ROUTE, true, ctxOf({ identity: ALICE, device: { trusted: true } })).decision.outcome, 'allow', 'a trusted device is let through to the rules');
  const any = { ...ROUTE, policy: { ...ROUTE.policy, devices: 'any' as const } };
  t.equal(explainDecision(any, true, ctxOf({ identity: ALICE })).decision.outcome, 'allow', 'devices: any on the route wins over the default');
  t.same(JSON.parse(explanationJson(explainDecision(ROUTE, false, ctxOf({ identity: ALICE })))).stepUp, null, 'no step-up is null in JSON');
});

t.test('formatDuration: the largest unit that divides', async (t) => {
  t.equal(formatDuration(900_000), '15m');
  t.equal(formatDuration(7_200_000), '2h');
  t.equal(formatDuration(90_000), '90s');
  t.equal(formatDuration(1500), '1500ms');
});

t.test('step-up to a new session: a sessionAge rule asks only for a fresh sign-in', async (t) => {
  const route = { id: 'kiosk', host: 'epic.test', policy: policySchema.parse({ allow: [{ all: [{ groups: ['nurses'] }, { sessionAge: '8h' }] }]}) };
  const e = explainDecision(route, false, ctxOf({ identity: { sub: 'nurse.bob', groups: ['nurses'] }, session: { createdAt: NOW - 9 * 3_600_000, lastSeenAt: NOW - 1000 } }));
  t.equal(e.decision.outcome, 'step-up', 'a session older than 8h is stepped up');
  t.match(formatExplanation(e), '\nstep-up:  sign in again (a new session)\n', 'with nothing more asked than a new sign-in');
});

t.test('a policy that throws is a deny with policy-error, as the decide stage answers; the error is shown', async (t) => {
  // Only a context the gateway never builds makes a criterion throw: groups missing.
  const broken = { ...ctxOf({ identity: ALICE }), identity: { ...ctxOf({ identity: ALICE }).identity, groups: undefined } } as unknown as RequestContext;
  const e = explainDecision(ROUTE, false, broken);
  t.equal(e.decision.outcome, 'deny', 'refused');
  t.same(e.decision.reasons, ['policy-error'], 'with policy-error');
  t.match(formatExplanation(e), /rule: {5}none: the policy failed\n[\s\S]*\nerror: {4}\S/, 'the rule line says the policy failed, and the error is printed');
  t.type((JSON.parse(explanationJson(e)) as { error: unknown }).error, 'string', 'and given in JSON');
});

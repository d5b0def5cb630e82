import t from 'tap';
import { parse } from 'yaml';
import type { Identity } from '../../proxy/identity/identity.js';
import { compilePolicy } from '../../proxy/policy/compile.js';
import { UNKNOWN_DEVICE, type DeviceContext, type RequestContext } from '../../proxy/policy/context.js';
import { policySchema } from '../../proxy/policy/rules.js';

/*
 * The policy engine: rules compiled from config, decided against contexts. Deny wins over
 * allow, nothing is allowed by default, a missing sign-in is a login, a sign-in too weak
 * for a rule that would otherwise match is a step-up, and every refusal says which rule
 * and which criteria stood in the way.
 */

const NOW = Date.UTC(2026, 10, 24, 10, 0); // a Tuesday, 10:00 UTC

const TRUSTED: DeviceContext = {
  source: 'certificate', id: 'ws-1', known: true, managed: true, compliant: true, observedAt: NOW - 60_000,
  certificate: true, os: 'Windows 11', diskEncrypted: true, trusted: true, problem: undefined,
};

function person(overrides: Partial<Identity> = {}): Identity {
  return {
    kind: 'session', sub: 'dr.alice', email: 'alice@hospital.example', name: 'Dr Alice', groups: ['clinicians'],
    idpSid: 'sid', sessionId: 's1', scopes: [], amr: ['hwk', 'pin'], acr: 'phr', authTime: NOW / 1000 - 60,
    expiresAt: NOW + 3_600_000, claims: {}, ...overrides,
  };
}

function context(overrides: Partial<RequestContext> = {}): RequestContext {
  return {
    identity: person(),
    session: { createdAt: NOW - 600_000, lastSeenAt: NOW - 5_000 },
    device: TRUSTED,
    network: { ip: '10.1.2.3', country: 'GB' },
    time: NOW,
    request: { method: 'GET', host: 'epic.example', path: '/chart' },
    risk: 0,
    grants: [],
    breakGlass: undefined,
    ...overrides,
  };
}

function policy(yaml: string, requireTrustedDevice = false) {
  return compilePolicy(policySchema.parse(parse(yaml)), { requireTrustedDevice });
}

const EPIC = policy(`
deny:
  - name: embargo
    country: [KP]
allow:
  - name: clinicians-with-key
    all:
      - groups: [clinicians]
      - acr: [phr]
  - name: vendor-hours
    all:
      - groups: [vendor-support]
      - timeWindow: { days: [mon, tue, wed, thu, fri], hours: "08:00-18:00", timeZone: Europe/London }
`);

t.test('an allow rule that matches allows, naming the rule and its criteria', async (t) => {
  const decision = EPIC.decide(context());
  t.equal(decision.outcome, 'allow', 'a clinician with a security key is allowed');
  t.equal(decision.rule, 'allow[0] clinicians-with-key', 'the deciding rule is named with its index and name');
  t.same(decision.reasons, ['groups-ok', 'acr-ok'], 'the reasons are the pass codes of the rule\'s criteria');
  t.equal(EPIC.decide(context()), decision, 'the same rule allows with the same frozen decision (no allocation)');
  t.ok(Object.isFrozen(decision), 'allow decisions are shared, so frozen');
});

t.test('deny wins over allow', async (t) => {
  const decision = EPIC.decide(context({ network: { ip: '175.45.176.1', country: 'KP' } }));
  t.equal(decision.outcome, 'deny', 'a clinician allowed by allow[0] is refused by the deny rule');
  t.equal(decision.rule, 'deny[0] embargo', 'the deny rule decided');
  t.same(decision.reasons, ['country-unauthorized'], 'the reason is the criterion that matched');
  t.same(decision.missing, ['network'], 'the page will say an allowed network or country was missing');
});

t.test('no matching allow rule denies, with what the closest rule lacked', async (t) => {
  const outsider = context({ identity: person({ groups: ['finance'], acr: 'phr' }) });
  const decision = EPIC.decide(outsider);
  t.equal(decision.outcome, 'deny', 'someone in no allowed group is refused');
  t.equal(decision.rule, undefined, 'no rule decided: nothing matched');
  t.equal(decision.closest, 'allow[0] clinicians-with-key', 'the closest rule is the one with fewest failures');
  t.same(decision.reasons, ['groups-unauthorized'], 'it lacked only the group');
  const vendorAtNight = context({ identity: person({ groups: ['vendor-support'], acr: 'pwd' }), time: Date.UTC(2026, 10, 24, 22, 0) });
  const night = EPIC.decide(vendorAtNight);
  t.equal(night.outcome, 'deny', 'a vendor outside the window is refused');
  t.equal(night.closest, 'allow[1] vendor-hours', 'the vendor rule came closest');
  t.same(night.reasons, ['outside-hours'], 'the reason is the hours');
  t.same(night.missing, ['time'], 'the page will name the opening hours');
});

t.test('a sign-in too weak for a rule that would otherwise match is a step-up', async (t) => {
  const nurse = context({ identity: person({ sub: 'nurse.bob', amr: ['pwd'], acr: 'pwd' }) });
  const decision = EPIC.decide(nurse);
  t.equal(decision.outcome, 'step-up', 'a password session is stepped up, not denied');
  t.same(decision.stepUp, { acr: ['phr'] }, 'the IdP is to be asked for acr phr');
  t.same(decision.reasons, ['acr-insufficient'], 'the reason names the missing strength');
  t.equal(decision.closest, 'allow[0] clinicians-with-key', 'the rule a step-up would satisfy is named');

  const stale = policy('allow:\n  - all:\n    - authAge: 15m\n    - amr: [hwk]\n    - groups: [clinicians]\n');
  const old = stale.decide(context({ identity: person({ amr: ['pwd'], authTime: NOW / 1000 - 3600 }) }));
  t.equal(old.outcome, 'step-up', 'an old, weak sign-in is stepped up');
  t.same(old.stepUp, { amr: ['hwk'], maxAgeMs: 900_000 }, 'asking for the method and a fresh authentication together');
  const notAMember = stale.decide(context({ identity: person({ groups: [], amr: ['pwd'] }) }));
  t.equal(notAMember.outcome, 'deny', 'a step-up that could not make the rule match is not offered');
  t.same(notAMember.reasons, ['amr-insufficient', 'groups-unauthorized'], 'every failing criterion of the rule is named');
});

t.test('without a signed-in user: login, unless a deny rule that needs no identity matches', async (t) => {
  const anonymous = context({ identity: undefined, session: undefined });
  const decision = EPIC.decide(anonymous);
  t.equal(decision.outcome, 'login', 'an anonymous request is sent to sign in');
  t.same(decision.reasons, ['login-required'], 'with login-required');
  const fromKp = EPIC.decide({ ...anonymous, network: { ip: '175.45.176.1', country: 'KP' } });
  t.equal(fromKp.outcome, 'deny', 'a request from an embargoed country is refused before any sign-in');
  const identityDeny = policy('deny:\n  - not: { groups: [clinicians] }\nallow:\n  - authenticated: true\n');
  t.equal(identityDeny.decide(anonymous).outcome, 'login', 'a deny rule about the user waits for the sign-in: no one is refused for not being signed in yet');
  t.equal(identityDeny.decide(context({ identity: person({ groups: [] }) })).outcome, 'deny', 'and applies once they are');
});

t.test('devices: trusted refuses untrusted devices before the rules, saying why', async (t) => {
  const gated = policy('allow:\n  - authenticated: true\n', true);
  t.equal(gated.decide(context()).outcome, 'allow', 'a trusted device passes the gate');
  const forged: DeviceContext = { ...UNKNOWN_DEVICE, source: 'posture', problem: 'posture-signature-invalid' };
  const decision = gated.decide(context({ device: forged }));
  t.equal(decision.outcome, 'deny', 'an untrusted device is refused');
  t.same(decision.reasons, ['device-untrusted', 'posture-signature-invalid'], 'with device-untrusted and the finer reason');
  t.equal(decision.rule, 'devices: trusted', 'the device gate is named as the deciding rule');
  t.equal(gated.decide(context({ identity: undefined, session: undefined, device: UNKNOWN_DEVICE })).outcome, 'deny',
    'an unknown device is refused even before sign-in');
});

t.test('not, any and all combine; explanations follow the logic', async (t) => {
  const p = policy(`
allow:
  - name: staff-off-vpn
    all:
      - any:
          - groups: [clinicians]
          - email: [locum@agency.example]
      - not: { cidr: [192.0.2.0/24] }
`);
  t.equal(p.decide(context()).outcome, 'allow', 'a clinician off the excluded network is allowed');
  t.equal(p.decide(context({ identity: person({ groups: [], email: 'locum@agency.example' }) })).outcome, 'allow', 'the locum matches the any');
  const excluded = p.decide(context({ network: { ip: '192.0.2.7', country: 'GB' } }));
  t.equal(excluded.outcome, 'deny', 'the excluded network is refused');
  t.same(excluded.reasons, ['network-unauthorized'], 'the negated criterion is named as what stood in the way');
  const neither = p.decide(context({ identity: person({ groups: [], email: 'x@y.example' }) }));
  t.same(neither.reasons, ['groups-unauthorized'], 'for a failed any, the first of its shortest explanations is given');
});

t.test('device details ride along with a failed device criterion', async (t) => {
  const p = policy('allow:\n  - all:\n    - authenticated: true\n    - device: { managed: true, compliant: true }\n');
  const noncompliant: DeviceContext = { ...TRUSTED, compliant: false, trusted: false, problem: 'device-noncompliant' };
  const decision = p.decide(context({ device: noncompliant }));
  t.same(decision.reasons, ['device-untrusted', 'device-noncompliant'], 'the device problem is added to the reason');
  t.same(decision.missing, ['device'], 'and the page names a trusted device');
});

t.test('the first sign-in asks for the acr every allow rule needs', async (t) => {
  t.same(policy('allow:\n  - all: [{ groups: [a] }, { acr: [phr] }]\n  - acr: [phr]\n').signInHint, { acr: ['phr'] }, 'all rules ask for phr: ask at once');
  t.equal(EPIC.signInHint, undefined, 'rules that differ ask for nothing up front');
  t.equal(policy('allow:\n  - authenticated: true\n').signInHint, undefined, 'no strength criteria: nothing asked');
});

t.test('the policy schema refuses what it cannot compile, at the exact path', async (t) => {
  const issues = (yaml: string): string[] => {
    const result = policySchema.safeParse(parse(yaml));
    return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };
  t.match(issues('allow: []'), [/allow: expected at least one allow rule/], 'an empty allow list');
  t.match(issues('allow:\n  - colour: [red]'), [/allow\.0\.colour: unknown criterion "colour"; expected one of: .*groups/], 'an unknown criterion, with the known ones');
  t.match(issues('allow:\n  - groups: [a]\n    acr: [phr]'), [/allow\.0: a rule holds one criterion, got groups, acr; combine several with all/], 'two criteria in one rule');
  t.match(issues('allow:\n  - all: []'), [/allow\.0\.all: expected a non-empty list of rules under all/], 'an empty all');
  t.match(issues('allow:\n  - cidr: [10.0.0.0/33]'), [/allow\.0\.cidr\.0: /], 'a bad CIDR, at its index');
  t.match(issues('allow:\n  - timeWindow: { timeZone: Mars/Olympus }'), [/allow\.0\.timeWindow\.timeZone: /], 'an unknown time zone');
  t.match(issues('allow:\n  - 42'), [/allow\.0: expected a rule/], 'a rule that is not a mapping');
  t.match(issues('allow:\n  - name: "<b>"\n    authenticated: true'), [/allow\.0\.name: expected a rule name/], 'a rule name with markup');
  let deep = '{ authenticated: true }';
  for (let i = 0; i < 14; i++) deep = `{ not: ${deep} }`;
  t.match(issues(`allow:\n  - ${deep}`), [/rules nest deeper than 12 levels/], 'nesting is bounded');
  t.match(issues('deny:\n  - authenticated: true'), [/allow: expected a policy|allow: /], 'a policy with only deny rules');
  t.match(issues('allow:\n  - authenticated: true\ndevices: sometimes'), [/devices: /], 'an unknown device mode');
});

t.test('claim rules read the IdP\'s claims: arrays by membership, and a missing claim refuses', async (t) => {
  const p = policy('allow:\n  - claim: { name: ward, values: [icu] }\n');
  const hostile = context({ identity: person({ claims: { ward: ['icu'] } }) });
  t.equal(p.decide(hostile).outcome, 'allow', 'array claims containing a value match');
  t.equal(p.decide(context({ identity: person({ claims: {} }) })).outcome, 'deny', 'a missing claim is refused');
});

t.test('a matched deny rule names everything it matched; a failed any names its closest branch', async (t) => {
  const p = policy(`
deny:
  - name: app-no-psychiatry
    all:
      - claim: { name: client_id, values: [cardiology-app] }
      - fhirResource: { base: /fhir, types: [DocumentReference] }
allow:
  - authenticated: true
`);
  const app = person({ kind: 'bearer', sessionId: undefined, claims: { client_id: 'cardiology-app' } });
  const decision = p.decide(context({ identity: app, session: undefined, request: { method: 'GET', host: 'fhir.example', path: '/fhir/DocumentReference/d1' } }));
  t.equal(decision.rule, 'deny[0] app-no-psychiatry', 'the deny rule decided');
  t.same(decision.reasons, ['claim-unauthorized', 'fhir-resource-unauthorized'], 'both the app and the record type are named: each is part of what the rule refuses');
  t.same(decision.missing, ['identity', 'request'], 'and both categories are on the page');
});

t.test('break-glass: a person in its groups, with emergency access open on the route, gets in whatever the rules say, and nobody else', async (t) => {
  const glassPolicy = policy(`
deny: [{ name: outside-uk, not: { country: [GB] } }]
allow: [{ groups: [radiology] }]
breakGlass: { groups: [clinicians], duration: 1h }
`, true);
  const open = { id: 'bg_1', endsAt: NOW + 60_000 };
  const glass = glassPolicy.decide(context({ breakGlass: open, device: UNKNOWN_DEVICE, network: { ip: '203.0.113.9', country: 'US' } }));
  t.same([glass.outcome, glass.rule, glass.reasons], ['allow', 'break-glass', ['break-glass']], 'deny rules, the device gate and the allow rules all give way');
  t.equal(glassPolicy.decide(context()).outcome, 'deny', 'without emergency access open, the rules decide');
  t.equal(glassPolicy.decide(context({ breakGlass: { ...open, endsAt: NOW } })).outcome, 'deny', 'once it has ended, too');
  t.equal(glassPolicy.decide(context({ breakGlass: open, identity: person({ groups: ['vendors'] }) })).outcome, 'deny', 'someone taken out of the group loses it at once');
  t.equal(glassPolicy.decide(context({ breakGlass: open, identity: person({ kind: 'bearer', sessionId: undefined }), session: undefined })).outcome, 'deny', 'an API token with the same subject keeps its rules: break-glass is for a person in a browser');
  t.equal(glassPolicy.decide(context({ breakGlass: open, identity: undefined, session: undefined, device: TRUSTED })).outcome, 'login', 'and a sign-in comes first');
  const without = policy('allow: [{ groups: [radiology] }]', false);
  t.equal(without.decide(context({ breakGlass: open })).outcome, 'deny', 'a route without breakGlass ignores any record');
});

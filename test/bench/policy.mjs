// The policy engine alone: what deciding one request costs, outside any HTTP. A realistic
// 20-rule policy (8 deny, 12 allow) for a hospital's clinical portal and FHIR API, compiled
// once as the gateway compiles it, decided over contexts as the pipeline builds them.
//
//   npm run bench:policy                           # builds, then: node test/bench/policy.mjs
//   node --cpu-prof --cpu-prof-dir=/tmp/prof test/bench/policy.mjs   # then profile.mjs --own
//
// Each context kind is measured alone (the same request over and over: its own cost with
// warm caches), then all kinds interleaved (the mix a gateway sees, where single-entry
// caches such as fhirRequestOf's are missed). Every batch of BENCH_BATCH decisions is timed
// with process.hrtime.bigint; a decision's time is its batch's time / BENCH_BATCH (a clock
// read costs more than many decisions, so single decisions cannot be timed fairly). Median,
// p99 and mean are over batches. Target: median <= 2 µs per decision.
//
// Environment: BENCH_BATCH (decisions per batch, default 200), BENCH_BATCHES (batches per
// kind, and for the mix per kind too; default 500), BENCH_WARMUP (decisions, default 300000).
// Exits 1 when a context's outcome is not the one it stands for (the figures would be of
// something else); a missed target is reported, not an error.
import { parse } from 'yaml';
import { compilePolicy } from '../../dist/proxy/policy/compile.js';
import { UNKNOWN_DEVICE } from '../../dist/proxy/policy/context.js';
import { policySchema } from '../../dist/proxy/policy/rules.js';

const BATCH = Number(process.env.BENCH_BATCH ?? 200);
const BATCHES = Number(process.env.BENCH_BATCHES ?? 500);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 300_000);
const TARGET_NS = 2000;

const POLICY = `
deny:
  - name: embargoed-countries
    country: [KP, IR, SY, CU]
  - name: abroad-off-vpn
    all:
      - not: { country: [GB, IE] }
      - not: { cidr: [10.0.0.0/8, 172.16.0.0/12] }
  - name: risky
    not: { risk: 70 }
  - name: apps-no-psychiatric-records
    all:
      - claim: { name: client_id, values: [cardiology-app, research-app] }
      - fhirResource: { base: /fhir, types: [DocumentReference, QuestionnaireResponse] }
  - name: vendors-read-only
    all:
      - groups: [vendor-support]
      - method: [POST, PUT, PATCH, DELETE]
  - name: admin-for-admins
    all:
      - path: [/admin]
      - not: { groups: [it-admins] }
  - name: no-exports-from-unmanaged
    all:
      - path: [/export, /fhir/$export]
      - device: { managed: false }
  - name: writes-need-fresh-posture
    all:
      - method: [POST, PUT, PATCH, DELETE]
      - groups: [clinicians, nurses]
      - not: { device: { maxPostureAge: 4h } }
allow:
  - name: clinicians-with-key
    all:
      - groups: [clinicians]
      - acr: [phr]
      - authAge: 12h
      - device: trusted
  - name: nurses-on-ward
    all:
      - groups: [nurses]
      - amr: [hwk]
      - authAge: 8h
      - path: [/chart, /meds, /fhir]
      - cidr: [10.0.0.0/8]
  - name: nurses-remote
    all:
      - groups: [nurses]
      - acr: [phr]
      - authAge: 30m
      - country: [GB]
      - device: { managed: true, compliant: true }
  - name: radiology-viewing
    all:
      - groups: [radiology]
      - method: [GET, HEAD]
      - path: [/imaging]
  - name: vendor-hours
    all:
      - groups: [vendor-support]
      - grant: true
      - amr: [hwk]
      - cidr: [203.0.113.0/24]
      - timeWindow: { days: [mon, tue, wed, thu, fri], hours: "08:00-18:00", timeZone: Europe/London }
  - name: on-call-out-of-hours
    all:
      - groups: { all: [clinicians, on-call] }
      - acr: [phr]
      - any:
          - timeWindow: { days: [mon, tue, wed, thu, fri], hours: "18:00-08:00", timeZone: Europe/London }
          - timeWindow: { days: [sat, sun], timeZone: Europe/London }
  - name: smart-apps-read-fhir
    all:
      - scope: { smart: { base: /fhir } }
      - method: [GET, HEAD]
      - fhirResource: { base: /fhir, types: [Patient, Observation, Condition, MedicationRequest, AllergyIntolerance], interactions: [read, search] }
  - name: research-app-observations
    all:
      - claim: { name: client_id, values: [research-app] }
      - scope: [research.read]
      - fhirResource: { base: /fhir, types: [Observation], interactions: [search] }
  - name: pharmacy
    all:
      - groups: [pharmacy]
      - amr: [hwk]
      - path: [/meds]
  - name: it-admins
    all:
      - groups: [it-admins]
      - acr: [phr]
      - authAge: 15m
      - path: [/admin]
      - device: { trusted: true, certificate: true }
  - name: students-read-only
    all:
      - groups: [students]
      - method: [GET, HEAD]
      - not: { path: [/admin, /export] }
      - timeWindow: { days: [mon, tue, wed, thu, fri], hours: "07:00-20:00", timeZone: Europe/London }
  - name: auditors
    all:
      - domain: [audit.nhs.example]
      - method: [GET]
      - risk: 30
`;

// Every request happens "now": a Tuesday, 19:30 in London (out of hours for vendors).
const NOW = Date.UTC(2026, 10, 24, 19, 30);
const SECONDS = Math.floor(NOW / 1000);

const TRUSTED_DEVICE = {
  source: 'certificate', id: 'WS-0042', known: true, managed: true, compliant: true, observedAt: NOW - 20 * 60_000,
  certificate: true, os: 'Windows 11', diskEncrypted: true, trusted: true, problem: undefined,
};
const UNMANAGED_DEVICE = {
  source: 'posture', id: 'BYOD-7', known: true, managed: false, compliant: false, observedAt: NOW - 3_600_000,
  certificate: false, os: 'macOS 15', diskEncrypted: false, trusted: false, problem: 'device-unmanaged',
};

function person(sub, fields) {
  return {
    kind: 'session', sub, email: `${sub}@hospital.example`, name: sub, groups: [], idpSid: `sid-${sub}`, sessionId: `s-${sub}`,
    scopes: [], amr: ['pwd'], acr: undefined, authTime: SECONDS - 600, expiresAt: NOW + 3_600_000, claims: {}, ...fields,
  };
}

function app(clientId, scopes) {
  return {
    kind: 'bearer', sub: clientId, email: undefined, name: undefined, groups: [], idpSid: undefined, sessionId: undefined,
    scopes, amr: [], acr: undefined, authTime: undefined, expiresAt: NOW + 300_000, claims: { client_id: clientId, scope: scopes.join(' ') },
  };
}

function context(fields) {
  const identity = fields.identity;
  return {
    identity,
    session: identity?.kind === 'session' ? { createdAt: NOW - 2 * 3_600_000, lastSeenAt: NOW - 30_000 } : undefined,
    device: UNKNOWN_DEVICE,
    network: { ip: '10.20.30.40', country: undefined },
    time: NOW,
    request: { method: 'GET', host: 'epic.hospital.example', path: '/chart/patient/123' },
    risk: 5,
    grants: [],
    breakGlass: undefined,
    ...fields,
  };
}

/** The vendor's approved grant for the route, in force now. */
const VENDOR_GRANT = [{ id: 'g_bench', notBefore: NOW - 3_600_000, notAfter: NOW + 3_600_000, paths: undefined, methods: undefined }];

/** [kind, expected outcome, context]: who asks what, and what they should get. */
const KINDS = [
  ['allowed clinician', 'allow', context({
    identity: person('dr.alice', { groups: ['clinicians', 'cardiology'], acr: 'phr', amr: ['hwk', 'pin'] }),
    device: TRUSTED_DEVICE,
  })],
  ['on-call clinician at home', 'allow', context({
    identity: person('dr.frank', { groups: ['clinicians', 'on-call'], acr: 'phr', amr: ['hwk'] }),
    network: { ip: '81.2.69.160', country: 'GB' },
  })],
  ['nurse on ward', 'allow', context({
    identity: person('nurse.bob', { groups: ['nurses'], amr: ['hwk', 'pin'], authTime: SECONDS - 4 * 3600 }),
    device: TRUSTED_DEVICE,
    request: { method: 'GET', host: 'epic.hospital.example', path: '/meds/ward-7' },
  })],
  ['nurse stepped up, remote', 'allow', context({
    identity: person('nurse.bob', { groups: ['nurses'], acr: 'phr', amr: ['hwk'], authTime: SECONDS - 120 }),
    network: { ip: '81.2.69.160', country: 'GB' },
    device: { ...TRUSTED_DEVICE, certificate: false, source: 'posture' },
  })],
  ['nurse needing step-up', 'step-up', context({
    identity: person('nurse.carl', { groups: ['nurses'], acr: 'pwd', amr: ['pwd'], authTime: SECONDS - 3 * 3600 }),
    network: { ip: '81.2.69.161', country: 'GB' },
    device: { ...TRUSTED_DEVICE, certificate: false, source: 'posture' },
  })],
  ['vendor out of hours', 'deny', context({
    identity: person('vendor.dave', { email: 'dave@vendor.example', groups: ['vendor-support'], amr: ['hwk'] }),
    network: { ip: '203.0.113.9', country: 'GB' },
    grants: VENDOR_GRANT,
  })],
  ['vendor writing', 'deny', context({
    identity: person('vendor.dave', { email: 'dave@vendor.example', groups: ['vendor-support'], amr: ['hwk'] }),
    network: { ip: '203.0.113.9', country: 'GB' },
    grants: VENDOR_GRANT,
    request: { method: 'POST', host: 'epic.hospital.example', path: '/chart/patient/123/notes' },
  })],
  ['clinician on untrusted device', 'deny', context({
    identity: person('dr.grace', { groups: ['clinicians'], acr: 'phr', amr: ['hwk'] }),
    device: UNMANAGED_DEVICE,
    network: { ip: '81.2.69.162', country: 'GB' },
  })],
  ['clinician abroad', 'deny', context({
    identity: person('dr.alice', { groups: ['clinicians', 'cardiology'], acr: 'phr', amr: ['hwk', 'pin'] }),
    device: TRUSTED_DEVICE,
    network: { ip: '198.51.100.20', country: 'US' },
  })],
  ['FHIR app reading Observations', 'allow', context({
    identity: app('cardiology-app', ['launch/patient', 'patient/Observation.rs', 'patient/Condition.rs', 'openid']),
    network: { ip: '10.8.0.15', country: undefined },
    request: { method: 'GET', host: 'fhir.hospital.example', path: '/fhir/Observation' },
  })],
  ['FHIR app reading psychiatric notes', 'deny', context({
    identity: app('cardiology-app', ['patient/*.read']),
    network: { ip: '10.8.0.15', country: undefined },
    request: { method: 'GET', host: 'fhir.hospital.example', path: '/fhir/DocumentReference/77' },
  })],
  ['anonymous', 'login', context({ identity: undefined })],
];

// devices: any, as for a route that bearer apps (which have no device) reach too.
const config = policySchema.parse(parse(POLICY));
const policy = compilePolicy(config, { requireTrustedDevice: false });
const ruleCount = config.allow.length + config.deny.length;

// The bench measures what it says only if every context gets the outcome it stands for.
let wrong = 0;
const rows = KINDS.map(([kind, want, ctx]) => {
  const decision = policy.decide(ctx);
  if (decision.outcome !== want) {
    wrong++;
    console.error(`${kind}: expected ${want}, got ${decision.outcome} (${decision.rule ?? `closest ${decision.closest}`}: ${decision.reasons.join(', ')})`);
  }
  return { kind, ctx, decision };
});
if (wrong > 0) process.exit(1);

let sink = 0; // consumed results, so no call can be optimised away

/** ns per decision of each batch, for one context or for the interleaved mix. */
function measure(contexts) {
  const perBatch = new Float64Array(BATCHES * (contexts.length > 1 ? contexts.length : 1));
  const perRound = Math.max(1, Math.floor(BATCH / contexts.length));
  const size = perRound * contexts.length;
  for (let b = 0; b < perBatch.length; b++) {
    const start = process.hrtime.bigint();
    for (let r = 0; r < perRound; r++) {
      for (let c = 0; c < contexts.length; c++) sink += policy.decide(contexts[c]).reasons.length;
    }
    perBatch[b] = Number(process.hrtime.bigint() - start) / size;
  }
  return perBatch;
}

function stats(values) {
  const sorted = Float64Array.from(values).sort();
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  let sum = 0;
  for (const v of sorted) sum += v;
  return { median: at(0.5), p99: at(0.99), mean: sum / sorted.length };
}

// Warm-up: every path compiled and optimised before anything is timed.
const all = rows.map((row) => row.ctx);
for (let i = 0; i < WARMUP / all.length; i++) for (const ctx of all) sink += policy.decide(ctx).reasons.length;

const results = rows.map((row) => ({ ...row, ...stats(measure([row.ctx])) }));
const mixed = stats(measure(all));

const pad = (text, n) => String(text).padEnd(n);
const num = (ns) => String(Math.round(ns)).padStart(7);
const kindWidth = Math.max(...results.map((r) => r.kind.length), 'all, interleaved'.length) + 2;
const ruleOf = (d) => (d.rule ?? (d.closest ? `(closest ${d.closest})` : '(not signed in)')).slice(0, 38);
console.log(`wardgate policy micro-benchmark: ${ruleCount} rules (${config.deny.length} deny, ${config.allow.length} allow), ${results.length} context kinds`);
console.log(`node ${process.version}; ${BATCHES} batches of ~${BATCH} decisions per kind (and per kind in the mix) after ${WARMUP} warm-up decisions`);
console.log(`ns per decision = batch time / batch size; median, p99 and mean over batches\n`);
console.log(`${pad('context', kindWidth)}${pad('outcome', 9)}${pad('deciding rule', 40)} median     p99    mean`);
for (const r of results) {
  console.log(`${pad(r.kind, kindWidth)}${pad(r.decision.outcome, 9)}${pad(ruleOf(r.decision), 40)}${num(r.median)} ${num(r.p99)} ${num(r.mean)}`);
}
console.log(`${pad('all, interleaved', kindWidth)}${pad('', 49)}${num(mixed.median)} ${num(mixed.p99)} ${num(mixed.mean)}`);
const met = mixed.median <= TARGET_NS;
console.log(`\ntarget: median <= ${TARGET_NS} ns (2 µs) per decision, interleaved: ${met ? 'met' : 'MISSED'} (${Math.round(mixed.median)} ns)`);
const slow = results.filter((r) => r.median > TARGET_NS).map((r) => r.kind);
if (slow.length > 0) console.log(`context kinds over the target alone: ${slow.join(', ')}`);
if (sink === -1) console.log(''); // keeps sink alive

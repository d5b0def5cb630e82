import { X509Certificate, createHash, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { buildMmdb, countryRecord } from '../helpers/mmdb.js';
import { makePki } from '../helpers/pki.js';
import t, { type Test } from 'tap';
import { parseConfig } from '../../config/loader.js';
import type { WardgateConfig } from '../../config/schema.js';
import { ConfigError } from '../../proxy/errors.js';
import { UpstreamSet } from '../../proxy/forward/upstream.js';
import type { Identity } from '../../proxy/identity/identity.js';
import type { Decision } from '../../proxy/policy/decision.js';
import { createMetrics } from '../../proxy/metrics.js';
import { UNKNOWN_DEVICE, type DeviceContext, type RequestContext } from '../../proxy/policy/context.js';
import { compileRoute, type CompiledRoute } from '../../proxy/routes.js';

/*
 * config/hospital.yaml is documentation that must not rot. The loader reads every file it
 * names (PEM certificates and keys, the device inventory, the MDM's public key, the GeoIP
 * database), and those live under /etc/wardgate/ on a real deployment, so this test makes
 * throwaway ones, points the text at them and loads it for real. Its two secrets come from
 * the environment, as the example documents; the test sets them. What its policies do is
 * checked here on the compiled policies, and end to end in
 * test/integration/hospital-policy.test.ts.
 */

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const configFile = join(root, 'config', 'hospital.yaml');
const text = readFileSync(configFile, 'utf8');
const PREFIX = '/etc/wardgate/';

/** Every string value (not comment) in the YAML under /etc/wardgate/, in document order. */
function deploymentPaths(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') {
    if (value.startsWith(PREFIX)) out.push(value);
  } else if (Array.isArray(value)) {
    for (const item of value) deploymentPaths(item, out);
  } else if (value !== null && typeof value === 'object') {
    for (const item of Object.values(value)) deploymentPaths(item, out);
  }
  return out;
}

const referenced = deploymentPaths(parse(text));

/** The environment variables the example reads its secrets from. */
const SECRET_ENV = ['WARDGATE_OIDC_CLIENT_SECRET', 'WARDGATE_COOKIE_KEY', 'WARDGATE_SECURITY_WEBHOOK'] as const;
const WEBHOOK = 'https://hooks.slack.com/services/T000/B000/stand-in';

/** Sets (or, with `values` undefined, unsets) the example's secrets for one test. */
function secrets(t: Test, values: Record<(typeof SECRET_ENV)[number], string> | undefined): void {
  const saved = SECRET_ENV.map((name) => process.env[name]);
  t.teardown(() => SECRET_ENV.forEach((name, i) => (saved[i] === undefined ? delete process.env[name] : (process.env[name] = saved[i]))));
  for (const name of SECRET_ENV) {
    if (values) process.env[name] = values[name];
    else delete process.env[name];
  }
}

/** `FILE:line:col` of the first non-comment occurrence of `needle` in the example. */
function where(needle: string): string {
  const lines = text.split('\n');
  const index = lines.findIndex((l) => !l.trimStart().startsWith('#') && l.includes(needle));
  if (index < 0) throw new Error(`test bug: ${needle} is not in hospital.yaml`);
  return `${configFile}:${index + 1}:${lines[index]!.indexOf(needle) + 1}`;
}

/**
 * Stand-ins for every file the example names under /etc/wardgate/: certificates and TLS
 * keys from a throwaway PKI; a fresh EC P-256 key (PKCS#8 PEM) for each assertion key
 * (keys/*.key); a fresh EC public key (SPKI PEM) for each posture key (keys/*.pub); a
 * device inventory listing one workstation (*.yaml); a GeoLite2-Country shaped database
 * (*.mmdb). A file of any other kind is a test bug: this function must learn about it.
 * Returns the directory standing in for /etc/wardgate/, the assertion and posture keys.
 */
function standIns(t: Test): { dir: string; assertionKey: string; postureKey: string } {
  const made = makePki();
  const dir = made.dir;
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const leaf = made.issue('wardgate.stmary-hospital.example');
  const device = made.issue('ws-0042.devices.stmary-hospital.example');
  const pki = { caCert: made.caCert, leafCert: leaf.cert, leafKey: leaf.key };
  const assertionKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const postureKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const spki = createHash('sha256').update(new X509Certificate(made.read(device.cert)).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  const inventory = stringify({ devices: [{ id: 'WS-0042', spki: `sha256/${spki}`, managed: true, compliant: true, observedAt: new Date().toISOString() }] });
  const geoip = buildMmdb([['81.2.69.0/24', countryRecord('GB')], ['203.0.113.0/24', countryRecord('US')]]);
  for (const path of referenced) {
    const target = join(dir, path.slice(PREFIX.length));
    mkdirSync(dirname(target), { recursive: true });
    const name = basename(path);
    if (path.startsWith(`${PREFIX}keys/`) && name.endsWith('.key')) writeFileSync(target, assertionKey);
    else if (name.endsWith('.pub')) writeFileSync(target, postureKey);
    else if (name.endsWith('.yaml')) writeFileSync(target, inventory);
    else if (name.endsWith('.mmdb')) writeFileSync(target, geoip);
    else if (/\.(crt|pem|key)$/.test(name)) copyFileSync(name.endsWith('.key') ? pki.leafKey : /(^|-)ca\./.test(name) ? pki.caCert : pki.leafCert, target);
    else throw new Error(`test bug: no stand-in for ${path}; teach standIns what it holds`);
  }
  return { dir, assertionKey, postureKey };
}

/** The routes compiled as the gateway compiles them (policies included). */
async function compiledRoutes(config: WardgateConfig): Promise<CompiledRoute[]> {
  const upstreams = new UpstreamSet();
  const metrics = createMetrics({ inFlight: () => 0, websocketsByRoute: () => new Map(), sessionsActive: async () => 0 });
  try {
    return config.routes.map((route) => compileRoute(route, upstreams, metrics, {
      devicesConfigured: config.devices !== undefined,
      credentialHeaders: config.devices?.posture ? [config.devices.posture.header] : [],
    }));
  } finally {
    await upstreams.close(true);
  }
}

/** Which routes wardgate would open to bearer tokens, resolved as the gateway resolves them. */
async function bearerRoutes(config: WardgateConfig): Promise<string[]> {
  return (await compiledRoutes(config)).filter((route) => route.auth.bearer).map((route) => route.id);
}

/** The example, loaded with its stand-ins and secrets. */
function loadExample(t: Test): { config: WardgateConfig; dir: string; assertionKey: string; postureKey: string } {
  const made = standIns(t);
  secrets(t, { WARDGATE_OIDC_CLIENT_SECRET: 'stmary-client-secret', WARDGATE_COOKIE_KEY: randomBytes(32).toString('base64'), WARDGATE_SECURITY_WEBHOOK: WEBHOOK });
  return { ...made, config: parseConfig(text.replaceAll(PREFIX, `${made.dir}/`), configFile) };
}

t.test('the hospital example loads once its TLS and key files exist and its secrets are set', async (t) => {
  const { dir, assertionKey } = standIns(t);
  const cookieKey = randomBytes(32).toString('base64');
  secrets(t, { WARDGATE_OIDC_CLIENT_SECRET: 'stmary-client-secret', WARDGATE_COOKIE_KEY: cookieKey, WARDGATE_SECURITY_WEBHOOK: WEBHOOK });

  t.ok(referenced.length >= 6, 'the example names its listener, upstream TLS and assertion key files under /etc/wardgate/');
  t.ok(referenced.some((path) => path.startsWith(`${PREFIX}keys/`) && path.endsWith('.key')), 'among them an assertion key under /etc/wardgate/keys/');

  const config = parseConfig(text.replaceAll(PREFIX, `${dir}/`), configFile);

  t.same(config.routes.map((r) => r.id), ['epic', 'fhir', 'lab', 'pacs', 'vendor', 'enroll'],
    'the five documented applications and the device enrollment portal are routed, in order');
  t.same(config.routes.map((r) => r.host), [
    'epic.stmary-hospital.example',
    'fhir.stmary-hospital.example',
    'lab.stmary-hospital.example',
    'pacs.stmary-hospital.example',
    'vendor.stmary-hospital.example',
    'enroll.stmary-hospital.example',
  ], 'each application has its own host under the hospital domain');
  t.same(config.routes.filter((r) => r.websockets).map((r) => r.id), ['pacs', 'vendor'],
    'WebSockets are open only where the PACS viewer and the vendor terminal need them');

  const byId = new Map(config.routes.map((r) => [r.id, r]));
  t.same(byId.get('fhir')?.paths, ['/fhir'], 'only the FHIR base is published on the FHIR host');
  t.same(byId.get('epic')?.paths, ['/'], 'routes without paths publish the whole host');
  t.equal(byId.get('pacs')?.timeouts.body, 600_000, 'PACS gets a 10m body timeout for large studies');
  t.equal(byId.get('fhir')?.timeouts.body, 60_000, 'FHIR keeps the default body timeout');
  t.ok(byId.get('fhir')?.upstream.tls?.cert && byId.get('fhir')?.upstream.tls?.key,
    'wardgate presents a client certificate to the FHIR integration engine');
  for (const route of config.routes) {
    t.equal(route.upstream.url.protocol, 'https:', `route ${route.id} reaches its upstream over TLS`);
    t.ok(route.upstream.tls?.ca, `route ${route.id} verifies its upstream against the internal CA`);
  }

  t.equal(config.listen.http, undefined, 'there is no plain HTTP listener');
  t.same(config.listen.https?.address, { host: '0.0.0.0', port: 8443 }, 'HTTPS listens on 0.0.0.0:8443');
  t.ok(config.listen.https?.clientCa, 'device client certificates are requested against the MDM CA');
  t.same(config.admin.listen, { host: '127.0.0.1', port: 9090 }, 'the admin listener stays on loopback');
  t.same(config.trustedProxies, ['10.10.0.4/31'], 'only the load balancers may set X-Forwarded-For');
  t.equal(config.shutdown.drainTimeout, 25_000, 'the drain fits inside a 30s termination grace period');

  // Identity.
  const { identity } = config;
  t.equal(identity.issuer.protocol, 'https:', 'the IdP is reached over https');
  t.equal(identity.authUrl.protocol, 'https:', 'the sign-in origin is https');
  t.equal(identity.authUrl.hostname, 'access.stmary-hospital.example', 'sign-in has its own host under the hospital domain');
  t.notOk(config.routes.some((r) => r.host === identity.authUrl.hostname), 'no route takes the sign-in host');
  t.equal(identity.clientSecret, 'stmary-client-secret', 'the client secret comes from WARDGATE_OIDC_CLIENT_SECRET');
  t.ok(identity.scopes.includes('openid'), 'the scopes include openid');
  t.equal(config.workers, 4, 'the example runs 4 workers...');
  t.same(identity.cookieKeys?.map((k) => k.toString('base64')), [cookieKey], '...so it sets the cookie key, from WARDGATE_COOKIE_KEY, shared by every worker');
  t.equal(identity.assertion.keys?.length, 1, '...and one assertion key, shared by every worker');
  t.equal(identity.assertion.keys?.[0]?.toString(), assertionKey, 'the assertion key is the EC P-256 key file under /etc/wardgate/keys/');
  t.same(identity.session, { absoluteLifetime: 12 * 3_600_000, idleTimeout: 30 * 60_000 }, 'sessions last one 12h shift and end after 30m idle');
  t.equal(identity.assertion.ttl, 60_000, 'assertions live 60s');
  t.same(identity.bearer, { audience: 'https://fhir.stmary-hospital.example/fhir', algorithms: ['RS256', 'ES256'] },
    'bearer tokens are accepted for the FHIR audience, signed with RS256 or ES256');

  t.same(byId.get('epic')?.auth.methods, ['session'], 'Epic takes browser sessions only');
  for (const route of config.routes) t.equal(route.auth.passAuthorization, false, `route ${route.id} strips the client's Authorization header`);
  t.same(await bearerRoutes(config), ['fhir'], 'bearer tokens (issued for the FHIR audience) open the FHIR route only');
});

/*
 * What the example's policies mean, decided on the compiled policies against contexts made
 * here: the intent the comments in hospital.yaml state, so a change to the rules that
 * breaks it fails here, naming the route. The moment is a Wednesday, 10:00 in London,
 * inside the vendor's support window.
 */
const NOW = Date.parse('2026-07-15T10:00:00+01:00');

const TRUSTED: DeviceContext = {
  source: 'certificate', id: 'WS-0042', known: true, managed: true, compliant: true, observedAt: NOW - 60_000,
  certificate: true, os: 'Windows 11', diskEncrypted: true, trusted: true, problem: undefined,
};
const UNMANAGED: DeviceContext = { ...UNKNOWN_DEVICE, source: 'posture', id: 'LT-0666', known: true, observedAt: NOW - 60_000, problem: 'device-unmanaged' };

/** Someone in every group the example names, fresh from a security-key sign-in: what is refused to them is refused to anyone. */
function everyone(overrides: Partial<Identity> = {}): Identity {
  return {
    kind: 'session', sub: 'dr.alice', email: 'alice@stmary-hospital.example', name: 'Dr Alice Hart',
    groups: ['clinicians', 'radiology', 'laboratory', 'vendor-support'], idpSid: 'sid-1', sessionId: 's-1', scopes: [],
    amr: ['hwk', 'pin'], acr: 'phr', authTime: NOW / 1000 - 60, expiresAt: NOW + 3_600_000, claims: {}, ...overrides,
  };
}

/** A SMART backend app's bearer identity. */
function app(clientId: string, scope: string): Identity {
  return {
    kind: 'bearer', sub: clientId, email: undefined, name: undefined, groups: [], idpSid: undefined, sessionId: undefined,
    scopes: scope.split(' '), amr: [], acr: undefined, authTime: undefined, expiresAt: NOW + 600_000,
    claims: { sub: clientId, client_id: clientId, scope },
  };
}

/** A GET of `path` (default: the route's first published path) on `route`, from a trusted device in Britain. */
function request(route: CompiledRoute, overrides: Partial<RequestContext> & { path?: string; method?: string } = {}): RequestContext {
  const { path, method, ...rest } = overrides;
  const identity = 'identity' in overrides ? overrides.identity : everyone();
  return {
    identity,
    session: identity?.kind === 'session' ? { createdAt: NOW - 600_000, lastSeenAt: NOW - 5_000 } : undefined,
    device: TRUSTED,
    network: { ip: '81.2.69.160', country: 'GB' },
    time: NOW,
    request: { method: method ?? 'GET', host: route.host, path: path ?? (route.paths[0] === '/' ? '/' : `${route.paths[0]}/Patient/p1`) },
    risk: 0,
    grants: [],
    breakGlass: undefined,
    ...rest,
  };
}

t.test('the example\'s devices and network sections: inventory by key, MDM posture, GeoIP behind the hospital\'s own ranges', async (t) => {
  const { config, dir, postureKey } = loadExample(t);
  const devices = config.devices;
  t.ok(devices, 'the example configures devices');
  t.equal(devices?.inventory?.file, `${dir}/devices.yaml`, 'the MDM\'s inventory export is read from /etc/wardgate/devices.yaml');
  t.same(devices?.inventory?.initial.devices.map((d) => d.id), ['WS-0042'], '(the stand-in lists one workstation)');
  t.equal(devices?.certificates.match, 'spki', 'workstation certificates are matched to the inventory by public key (survives re-issuing)');
  t.equal(devices?.maxObservedAge, 24 * 3_600_000, 'a workstation the MDM has not seen for a day counts as unchecked');
  t.equal(devices?.posture?.issuer, 'https://mdm.stmary-hospital.example', 'posture assertions come from the hospital\'s MDM');
  t.same(devices?.posture?.keys.map((key) => key.jwk), [createPublicKey(postureKey).export({ format: 'jwk' })], 'verified with its public key from /etc/wardgate/keys/');
  t.equal(devices?.posture?.maxAge, 15 * 60_000, 'and no older than 15 minutes');
  t.equal(devices?.posture?.header, 'x-device-posture', 'carried in the default x-device-posture header');
  t.same(config.listen.https?.clientCa, readFileSync(join(dir, 'tls/device-ca.pem')), 'the listener requests certificates from the MDM\'s device CA');

  t.equal(config.network?.geoip, `${dir}/geoip/GeoLite2-Country.mmdb`, 'countries come from the GeoLite2 database geoipupdate keeps current');
  t.same(config.network?.countries, { '10.0.0.0/8': 'GB' }, 'except the hospital\'s own (private) network, which is GB');
});

t.test('the example\'s policies: clinical routes close outside the UK and Ireland and to untrusted devices; fhir and vendor take any device; enroll is the quarantine route', async (t) => {
  const { config } = loadExample(t);
  const routes = await compiledRoutes(config);
  const route = (id: string): CompiledRoute => routes.find((r) => r.id === id)!;

  t.same(Object.fromEntries(routes.map((r) => [r.id, r.policy.devices])), {
    epic: 'trusted', fhir: 'any', lab: 'trusted', pacs: 'trusted', vendor: 'any', enroll: 'quarantine',
  }, 'trusted devices by default; fhir (SMART apps carry no posture) and vendor (the vendor\'s laptops) take any device; enroll is the quarantine route');

  const clinical = ['epic', 'fhir', 'lab', 'pacs', 'enroll'];
  for (const id of clinical) {
    const r = route(id);
    t.equal(r.policy.decide(request(r)).outcome, 'allow', `${id}: open to the right person on a trusted device in Britain`);
    t.equal(r.policy.decide(request(r, { network: { ip: '198.51.100.7', country: 'IE' } })).outcome, 'allow', `${id}: and in Ireland`);
    for (const [ip, country] of [['203.0.113.9', 'US'], ['175.45.176.1', 'KP'], ['192.0.2.10', undefined]] as const) {
      for (const identity of [everyone(), undefined]) {
        const decision = r.policy.decide(request(r, { identity, network: { ip, country } }));
        t.same([decision.outcome, decision.rule, decision.reasons], ['deny', 'deny[0] outside-uk-and-ireland', ['country-unauthorized']],
          `${id}: closed from ${country ?? 'an unplaced address'} ${identity ? 'to anyone' : 'before sign-in'}`);
      }
    }
  }
  t.same(routes.map((r) => r.id).filter((id) => !clinical.includes(id)), ['vendor'], 'every route but the vendor console is country-bound');

  for (const id of ['epic', 'lab', 'pacs']) {
    const r = route(id);
    for (const identity of [everyone(), undefined]) {
      const decision = r.policy.decide(request(r, { identity, device: UNMANAGED }));
      t.same([decision.outcome, decision.rule, decision.reasons], ['deny', 'devices: trusted', ['device-untrusted', 'device-unmanaged']],
        `${id}: an unmanaged device is refused ${identity ? 'to anyone' : 'before sign-in'}`);
    }
  }
  const enroll = route('enroll');
  t.equal(enroll.policy.decide(request(enroll, { device: UNMANAGED })).outcome, 'allow', 'enroll: an unmanaged device may reach the enrollment portal');
  t.equal(enroll.policy.decide(request(enroll, { device: UNKNOWN_DEVICE })).outcome, 'allow', 'enroll: so may an unknown one');
  t.equal(enroll.policy.decide(request(enroll, { identity: undefined, device: UNKNOWN_DEVICE })).outcome, 'login', 'enroll: once signed in');

  // Security keys where patient data is shown.
  for (const id of ['epic', 'pacs']) {
    const r = route(id);
    t.same(r.policy.signInHint, { acr: ['phr'] }, `${id}: the first sign-in already asks the IdP for a security key`);
    const decision = r.policy.decide(request(r, { identity: everyone({ acr: 'pwd', amr: ['pwd'] }) }));
    t.same([decision.outcome, decision.stepUp], ['step-up', { acr: ['phr'] }], `${id}: a password session is stepped up to a security key`);
  }
  for (const id of ['fhir', 'lab', 'vendor', 'enroll']) t.equal(route(id).policy.signInHint, undefined, `${id}: no particular sign-in is asked for up front`);
  t.equal(route('pacs').policy.decide(request(route('pacs'), { identity: everyone({ groups: ['clinicians'] }) })).closest, 'allow[0] radiology-with-security-key',
    'pacs: radiology only; other clinicians are refused');

  // FHIR: SMART scopes for apps, a trusted device for clinicians' browsers, and never psychiatric records for the cardiology app.
  const fhir = route('fhir');
  const read = (identity: Identity, path: string, device: DeviceContext = UNKNOWN_DEVICE): Decision => fhir.policy.decide(request(fhir, { identity, device, path }));
  const cardiology = app('cardiology-app', 'patient/*.read');
  t.equal(read(cardiology, '/fhir/Patient/p1/Observation').rule, 'allow[1] smart-scopes', 'fhir: the cardiology app reads observations with patient/*.read, from a device nobody knows');
  for (const path of ['/fhir/DocumentReference/psych-1', '/fhir/Patient/p1/QuestionnaireResponse', '/fhir/Questionnaire/phq-9']) {
    t.equal(read(cardiology, path).rule, 'deny[1] cardiology-app-no-psychiatric-records', `fhir: but never ${path}`);
  }
  t.equal(read(app('other-app', 'patient/*.read'), '/fhir/DocumentReference/psych-1').outcome, 'allow', 'fhir: the deny rule is the cardiology app\'s alone');
  const obs = app('smart-obs', 'patient/Observation.read');
  t.equal(read(obs, '/fhir/Observation/o1').outcome, 'allow', 'fhir: patient/Observation.read reads observations');
  t.same(read(obs, '/fhir/MedicationRequest/m1').reasons, ['scope-insufficient'], 'fhir: and nothing else');
  t.equal(read(everyone(), '/fhir/Patient/p1', TRUSTED).rule, 'allow[0] clinicians-read', 'fhir: a clinician with a security key reads on a trusted device');
  t.equal(read(everyone(), '/fhir/Patient/p1').outcome, 'deny', 'fhir: not from a device nobody knows');
  t.equal(fhir.policy.decide(request(fhir, { method: 'POST' })).outcome, 'deny', 'fhir: and reads only (a clinician\'s browser never writes)');

  // Vendor: an approved grant in force, in weekday office hours in London, with a sign-in
  // no older than an hour, from any device. The grant here spans every time asked about.
  const vendor = route('vendor');
  const dave = everyone({ groups: ['vendor-support'], acr: 'pwd', amr: ['pwd'] });
  const grant = { id: 'g_test', notBefore: Date.parse('2026-01-01T00:00:00Z'), notAfter: Date.parse('2027-01-01T00:00:00Z'), paths: undefined, methods: undefined };
  const at = (iso: string, authAgo = 60, grants = [grant]): Decision => {
    const time = Date.parse(iso);
    return vendor.policy.decide(request(vendor, { identity: { ...dave, authTime: time / 1000 - authAgo }, device: UNKNOWN_DEVICE, time, grants }));
  };
  t.same(at('2026-07-15T10:00:00+01:00', 60, []).reasons, ['grant-missing'], 'vendor: closed without a grant, even in office hours');
  t.same(at('2026-07-15T10:00:00+01:00', 60, [{ ...grant, notAfter: Date.parse('2026-07-15T09:00:00Z') }]).reasons, ['grant-missing'], 'vendor: closed once the grant has ended');
  t.equal(at('2026-07-15T10:00:00+01:00').outcome, 'allow', 'vendor: open on a Wednesday morning to vendor support, on their own laptop, with a password');
  t.equal(at('2026-07-15T17:59:00+01:00').outcome, 'allow', 'vendor: at 17:59 London time');
  t.same(at('2026-07-15T18:00:00+01:00').reasons, ['outside-hours'], 'vendor: closed from 18:00 London time (17:00 UTC in summer)');
  t.same(at('2026-01-14T07:59:00Z').reasons, ['outside-hours'], 'vendor: and before 08:00 (GMT in winter)');
  t.same(at('2026-07-18T10:00:00+01:00').reasons, ['outside-hours'], 'vendor: closed on Saturday');
  const stale = at('2026-07-15T10:00:00+01:00', 2 * 3600);
  t.same([stale.outcome, stale.stepUp], ['step-up', { maxAgeMs: 3_600_000 }], 'vendor: a sign-in older than an hour is renewed at the IdP');
});

t.test('with 4 workers the example cannot go without its shared keys', async (t) => {
  const { dir } = standIns(t);
  secrets(t, { WARDGATE_OIDC_CLIENT_SECRET: 'stmary-client-secret', WARDGATE_COOKIE_KEY: randomBytes(32).toString('base64'), WARDGATE_SECURITY_WEBHOOK: WEBHOOK });
  const cookieLines = /\n  cookieKeys:\n    - "\$\{env:WARDGATE_COOKIE_KEY\}"\n/;
  t.match(text, cookieLines, 'the example lists its cookie key in a form this test can remove');
  const without = text.replace(cookieLines, '\n').replaceAll(PREFIX, `${dir}/`);
  let caught: unknown;
  try {
    parseConfig(without, configFile);
  } catch (err) {
    caught = err;
  }
  t.type(caught, ConfigError, 'without cookieKeys the example is refused');
  t.match(caught instanceof Error ? caught.message : '', /hospital\.yaml:\d+:\d+: identity\.cookieKeys: expected cookieKeys when workers > 1/, 'naming identity.cookieKeys and why');
});

t.test('the Dockerfile health check probes the admin address the example configures', async (t) => {
  // Join backslash continuations so the instruction reads as Docker sees it.
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8').replace(/\\\r?\n/g, ' ');
  const healthcheck = dockerfile.split('\n').find((line) => line.startsWith('HEALTHCHECK'));
  const raw: unknown = parse(text);
  const admin = (raw as { admin?: { listen?: unknown } }).admin?.listen;
  t.type(admin, 'string', 'the example sets admin.listen');
  t.ok(healthcheck?.includes(`'http://${String(admin)}/healthz'`), `HEALTHCHECK fetches /healthz on admin.listen (${String(admin)})`);
});

t.test('as shipped, with its secrets set, the example fails naming the file, the line and every missing file', async (t) => {
  secrets(t, { WARDGATE_OIDC_CLIENT_SECRET: 'stmary-client-secret', WARDGATE_COOKIE_KEY: randomBytes(32).toString('base64'), WARDGATE_SECURITY_WEBHOOK: WEBHOOK });
  const first = referenced[0]!;
  t.equal(first, '/etc/wardgate/tls/wardgate.crt', 'the first TLS file is the listener certificate');

  let caught: unknown;
  try {
    parseConfig(text, configFile);
  } catch (err) {
    caught = err;
  }
  t.type(caught, ConfigError, 'missing TLS and key files are a ConfigError, not a crash');
  if (!(caught instanceof ConfigError)) return;
  const [firstLine = ''] = caught.message.split('\n');
  t.match(firstLine, `${where(first)}: listen.https.cert: `, 'the first message names the file, the line and column of the bad value and the path inside the config');
  t.match(firstLine, `cannot read certificate file ${first}: ENOENT`, 'the first message names the TLS file that could not be read');
  t.equal(caught.path, 'listen.https.cert', 'the error carries the config path of the first fault');
  for (const path of new Set(referenced)) {
    t.match(caught.message, path, `every unreadable file is reported in one round: ${path}`);
  }
  const assertionKey = referenced.find((path) => path.startsWith(`${PREFIX}keys/`))!;
  t.match(caught.message, `${where(assertionKey)}: identity.assertion.keys[0]: cannot read private key file ${assertionKey}: ENOENT`,
    'the assertion key is reported at its own line with its path');
  t.equal(caught.message.split('\n').length, referenced.length, 'one line per reference to a missing file, and nothing else');
});

t.test('as shipped, without its secrets, the operator is told which variables to set', async (t) => {
  secrets(t, undefined);
  let caught: unknown;
  try {
    parseConfig(text, configFile);
  } catch (err) {
    caught = err;
  }
  t.type(caught, ConfigError, 'unset secrets are a ConfigError, not a crash');
  if (!(caught instanceof ConfigError)) return;
  const lines = caught.message.split('\n');
  t.equal(lines[0], `${where('"${env:WARDGATE_OIDC_CLIENT_SECRET}"')}: identity.clientSecret: environment variable WARDGATE_OIDC_CLIENT_SECRET is not set`,
    'the client secret: file:line:col, path, and the variable to set');
  t.equal(lines[1], `${where('"${env:WARDGATE_COOKIE_KEY}"')}: identity.cookieKeys[0]: environment variable WARDGATE_COOKIE_KEY is not set`,
    'the cookie key: file:line:col, path, and the variable to set');
  t.equal(caught.path, 'identity.clientSecret', 'the error carries the path of the first unset secret');
  for (const path of new Set(referenced)) {
    t.match(caught.message, path, `the same round also reports the unreadable ${path}: one round names every fault`);
  }
});

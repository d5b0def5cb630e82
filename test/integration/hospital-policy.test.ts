import { createHash, generateKeyPairSync, randomBytes, randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createLocalJWKSet, decodeJwt, jwtVerify, SignJWT, type JSONWebKeySet } from 'jose';
import pino from 'pino';
import t from 'tap';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { parseConfig } from '../../config/loader.js';
import { startGateway } from '../../proxy/gateway.js';
import { Browser, NAVIGATION_ACCEPT, type NavigateResult } from '../helpers/browser.js';
import { TEST_CLIENT, sample, total, type LogLine } from '../helpers/gateway.js';
import { clientCredentialsToken, signIn, startTestIdp } from '../helpers/idp.js';
import { writeCountryMmdb } from '../helpers/mmdb.js';
import { makePki } from '../helpers/pki.js';
import { freePort } from '../helpers/process.js';
import { rigClients } from '../helpers/sign-in-rig.js';
import { startUpstream } from '../helpers/upstream.js';
import { until } from '../helpers/wait.js';

/*
 * config/hospital.yaml made true: a real wardgate, built in this process from the example
 * itself, its route policies and its `devices:` and `network:` sections exactly as the file
 * has them (read from it, never retyped here), in front of a real IdP, with real sign-ins,
 * real client certificates, real signed posture assertions and a real MaxMind database.
 *
 * Only what cannot exist on a test machine is replaced, on the parsed YAML, each replacement
 * explained where it is made (see `hospitalForTest`). The test plays three parts:
 *
 *   - the managed workstation on the clinical network: it connects to wardgate directly and
 *     presents the certificate the MDM issued it (mutual TLS, via node:https);
 *   - the DMZ load balancer (the one trusted proxy): it forwards remote laptops, which prove
 *     their posture with an MDM-signed assertion, and SMART apps, and says in
 *     X-Forwarded-For who connected to it;
 *   - the browser (test/helpers/browser.ts): it signs in at the IdP and keeps the cookies.
 *     It cannot present a client certificate, so the requests for an application that the
 *     workstation makes are sent by node:https with the browser's cookies, and the sign-in
 *     hops in between (wardgate's sign-in host, the IdP, the hand-off) by the browser.
 */

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const HOSPITAL_FILE = join(root, 'config', 'hospital.yaml');
const HOSPITAL_TEXT = readFileSync(HOSPITAL_FILE, 'utf8');

// ---------------------------------------------------------------------------------------
// The example, as YAML

interface RouteYaml {
  id: string;
  host: string;
  upstream: { url: string; tls?: unknown; [key: string]: unknown };
  policy: unknown;
  [key: string]: unknown;
}

interface HospitalYaml {
  listen: Record<string, unknown>;
  admin: { listen: string; [key: string]: unknown };
  notifications: { webhooks: Array<{ url: string; [key: string]: unknown }> };
  store: { type: string; path: string };
  workers: number;
  trustedProxies: string[];
  identity: {
    issuer: string;
    authUrl: string;
    assertion: { keys: string[]; [key: string]: unknown };
    bearer: { audience: string; [key: string]: unknown };
    [key: string]: unknown;
  };
  devices: {
    inventory: string;
    posture: { issuer: string; audience?: string; keys: string[]; [key: string]: unknown };
    [key: string]: unknown;
  };
  network: { geoip: string; countries: Record<string, string> };
  routes: RouteYaml[];
  [key: string]: unknown;
}

const hospital = (): HospitalYaml => parseYaml(HOSPITAL_TEXT) as HospitalYaml;
const original = hospital();

/** The example's hosts, under .localhost here (see hospitalForTest). */
const LOCAL_DOMAIN = 'stmary-hospital.localhost';
const localHost = (host: string): string => host.replace(/\.stmary-hospital\.example$/, `.${LOCAL_DOMAIN}`);

const FHIR_AUDIENCE = original.identity.bearer.audience;
const POSTURE_ISSUER = original.devices.posture.issuer;
// hospital.yaml leaves the posture audience at wardgate's default.
const POSTURE_AUDIENCE = original.devices.posture.audience ?? 'wardgate';

// ---------------------------------------------------------------------------------------
// Fixtures: certificates, the device inventory, the MDM key, the GeoIP database

const dir = mkdtempSync(join(tmpdir(), 'wardgate-hospital-'));
const serverPki = makePki('St Mary test server CA');
const deviceCa = makePki('St Mary test device CA');
const strangerCa = makePki('someone else\'s CA');
const serverCert = serverPki.issue(`*.${LOCAL_DOMAIN}`);

interface Device {
  readonly cert: Buffer;
  readonly key: Buffer;
}
const deviceOf = (pki: typeof deviceCa, name: string): Device => {
  const issued = pki.issue(name);
  return { cert: pki.read(issued.cert), key: pki.read(issued.key) };
};
/** The clinical workstation the MDM manages: listed in the inventory, managed and compliant. */
const WORKSTATION = deviceOf(deviceCa, 'ws-0042.devices.stmary-hospital.example');
/** A laptop the MDM knows but does not manage (enrolled for e-mail only): listed, unmanaged. */
const PERSONAL_LAPTOP = deviceOf(deviceCa, 'lt-0666.devices.stmary-hospital.example');
/** A workstation the MDM has not heard from for two days: listed, managed, compliant, but stale. */
const FORGOTTEN_WORKSTATION = deviceOf(deviceCa, 'ws-0099.devices.stmary-hospital.example');
/** A certificate from a CA wardgate does not trust. */
const STRANGER = deviceOf(strangerCa, 'ws-0042.devices.stmary-hospital.example');

/** The SPKI pin, computed here (not with wardgate's own code): sha256/<base64 of the DER SPKI>. */
const spkiPin = (pem: Buffer): string => `sha256/${createHash('sha256').update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })).digest('base64')}`;

const inventoryFile = join(dir, 'devices.yaml');
// Observed an hour ago: well inside hospital.yaml's maxObservedAge (24h).
const observedAt = new Date(Date.now() - 3_600_000).toISOString();
writeFileSync(inventoryFile, stringifyYaml({
  devices: [
    { id: 'WS-0042', spki: spkiPin(WORKSTATION.cert), managed: true, compliant: true, os: 'Windows 11 24H2', diskEncrypted: true, observedAt },
    { id: 'LT-0666', spki: spkiPin(PERSONAL_LAPTOP.cert), managed: false, compliant: false, os: 'Windows 11 24H2', observedAt },
    { id: 'WS-0099', spki: spkiPin(FORGOTTEN_WORKSTATION.cert), managed: true, compliant: true, os: 'Windows 11 24H2', observedAt: new Date(Date.now() - 48 * 3_600_000).toISOString() },
  ],
}));

const mdm = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const forger = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const mdmPublicKeyFile = join(dir, 'mdm-posture.pub');
writeFileSync(mdmPublicKeyFile, mdm.publicKey.export({ type: 'spki', format: 'pem' }));

const assertionKeyFile = join(dir, 'assertion.key');
writeFileSync(assertionKeyFile, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));

/*
 * Client addresses, one network per country, consistently: 81.2.69.0/24 is GB in MaxMind's
 * own test database; the TEST-NETs stand for Ireland and the United States; 175.45.176.0/22
 * is North Korea's. 192.0.2.0/24 is left out: an address no database knows.
 */
const GB = '81.2.69.160';
const IE = '198.51.100.7';
const US = '203.0.113.9';
const KP = '175.45.176.1';
const NOWHERE = '192.0.2.10';
const geoipFile = join(dir, 'GeoLite2-Country.mmdb');
await writeCountryMmdb(geoipFile, [['81.2.69.0/24', 'GB'], ['198.51.100.0/24', 'IE'], ['203.0.113.0/24', 'US'], ['175.45.176.0/22', 'KP']]);

/** Headers the load balancer adds for a client that connected to it from `ip`. */
const viaLoadBalancer = (ip: string): Record<string, string> => ({ 'x-forwarded-for': ip });

// ---------------------------------------------------------------------------------------
// The IdP, the upstream, wardgate

const port = await freePort();
const AUTH_ORIGIN = `https://${localHost(new URL(original.identity.authUrl).hostname)}:${port}`;
const APPS = {
  cardiology: { id: 'cardiology-app', secret: 'cardiology-app-secret' },
  smartObs: { id: 'smart-obs', secret: 'smart-obs-secret' },
} as const;
const idp = await startTestIdp({
  clients: [
    // wardgate's client, with its redirect, post-logout and back-channel URIs registered on
    // the sign-in origin as an operator would (the first of rigClients; its API client is not needed).
    rigClients(AUTH_ORIGIN)[0]!,
    // Two SMART backend apps (client_credentials).
    { client_id: APPS.cardiology.id, client_secret: APPS.cardiology.secret, grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
    { client_id: APPS.smartObs.id, client_secret: APPS.smartObs.secret, grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
  ],
  // JWT access tokens for hospital.yaml's own FHIR audience.
  resources: { [FHIR_AUDIENCE]: { scope: 'patient/*.read patient/Observation.read' } },
});
t.teardown(() => idp.close());
const upstream = await startUpstream();
// Stands in for the security team's Slack channel: records the notices it is sent.
const hooks = await startUpstream();
t.teardown(() => Promise.all([upstream.close(), hooks.close()]));

/**
 * hospital.yaml with what a test machine cannot have replaced, and nothing else: the route
 * policies, the `devices:` and `network:` settings, sessions, bearer settings, timeouts and
 * WebSocket switches are the file's own.
 */
function hospitalForTest(): HospitalYaml {
  const doc = hospital();
  // One HTTPS listener on loopback, as in the example, with a test certificate for every
  // host and the test device CA as `clientCa`. No plain HTTP listener: sign-in only returns
  // to the scheme and port of identity.authUrl, so the workstation's requests, the load
  // balancer's (which re-encrypts to wardgate's HTTPS port, as the example's trustedProxies
  // comment says) and the sign-in hops all use this one listener, as in production.
  doc.listen = { https: { address: `127.0.0.1:${port}`, cert: serverCert.cert, key: serverCert.key, clientCa: deviceCa.caCert } };
  // An ephemeral admin port; one process, so the test can set its clock and read its metrics.
  doc.admin.listen = '127.0.0.1:0';
  doc.workers = 1;
  // The hosts move from .example to .localhost: the test browser, like Chromium, reaches
  // only *.localhost names (always loopback, no DNS), and treats them as secure contexts.
  for (const route of doc.routes) route.host = localHost(route.host);
  // identity: the test IdP, and the sign-in origin on this listener; a fresh assertion key.
  // clientId, clientSecret and cookieKeys stay as written: the secrets come from the
  // environment variables the example names (set below, around the load).
  doc.identity.issuer = idp.issuer;
  doc.identity.authUrl = AUTH_ORIGIN;
  doc.identity.assertion.keys = [assertionKeyFile];
  // Upstreams: one local echo server over plain HTTP (no TLS, so no `tls:`); preserveHost stays.
  for (const route of doc.routes) {
    delete route.upstream.tls;
    route.upstream.url = upstream.url;
  }
  // The test is the load balancer, and sends from 127.0.0.1.
  doc.trustedProxies = ['127.0.0.1/32'];
  // The fixture inventory and the test MDM's public key; the rest of `devices:` as written.
  doc.devices.inventory = inventoryFile;
  doc.devices.posture.keys = [mdmPublicKeyFile];
  // A MaxMind database written for the test. The example's own countries table stays, and
  // loopback joins it as GB: a request that does not come through the load balancer (no
  // X-Forwarded-For) comes from 127.0.0.1, which here stands for a workstation on the
  // clinical network (10.0.0.0/8: GB in the example).
  doc.network.geoip = geoipFile;
  doc.network.countries = { ...doc.network.countries, '127.0.0.0/8': 'GB' };
  // The file store, as in the example, in the test's own directory instead of /var/lib.
  doc.store.path = join(dir, 'store.jsonl');
  // The security channel's webhook: a local receiver standing in for Slack.
  doc.notifications.webhooks[0]!.url = `${hooks.url}/services/T000/B000/stand-in`;
  return doc;
}

const testYaml = hospitalForTest();
const configFile = join(dir, 'hospital.yaml');
writeFileSync(configFile, stringifyYaml(testYaml));
const SECRETS = { WARDGATE_OIDC_CLIENT_SECRET: TEST_CLIENT.secret, WARDGATE_COOKIE_KEY: randomBytes(32).toString('base64'), WARDGATE_SECURITY_WEBHOOK: 'https://hooks.slack.com/services/T000/B000/replaced' };
const savedEnv = Object.keys(SECRETS).map((name) => [name, process.env[name]] as const);
Object.assign(process.env, SECRETS);
const config = (() => {
  try {
    return parseConfig(readFileSync(configFile, 'utf8'), configFile);
  } finally {
    for (const [name, value] of savedEnv) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
})();

const logs: LogLine[] = [];
const logger = pino({ level: 'info' }, new Writable({
  write(chunk: Buffer, _encoding, callback) {
    for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
    callback();
  },
}));
// The clock is read through Date.now at every call (not captured once), so the vendor
// scenario's shift of Date.now moves wardgate's sessions, policy time and device freshness too.
const gateway = await startGateway({ config, logger, admin: true, now: () => Date.now() });
t.teardown(async () => {
  await gateway.shutdown();
  // After wardgate, which watches the inventory and the database until it stops.
  for (const path of [dir, serverPki.dir, deviceCa.dir, strangerCa.dir]) rmSync(path, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------
// Clients

const hostOf = (id: string): string => localHost(original.routes.find((route) => route.id === id)!.host);
const url = (id: string, path = '/'): string => `https://${hostOf(id)}:${port}${path}`;
const browser = (): Browser => new Browser({ ca: serverPki.read(serverPki.caCert) });

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

interface SendOptions {
  /** Present this device's certificate (the managed workstation, or another). */
  device?: Device;
  headers?: Record<string, string>;
  /** A top-level navigation (HTML, may be sent to sign in); otherwise an API call wanting JSON. */
  navigate?: boolean;
  /** Leave the browser's cookies out. */
  noCookies?: boolean;
}

/**
 * One request to wardgate as `who`'s browser would send it, with its cookies, optionally
 * over a connection that presents a device certificate. Cookies set in the answer go back
 * into the browser's jar. Redirects are not followed.
 */
function send(who: Browser, target: string, options: SendOptions = {}): Promise<Reply> {
  const url = new URL(target);
  const cookie = options.noCookies ? '' : who.cookieHeader(target);
  const headers: Record<string, string> = {
    host: url.host,
    ...(options.navigate
      ? { accept: NAVIGATION_ACCEPT, 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', 'sec-fetch-site': 'none' }
      : { accept: 'application/json' }),
    ...(cookie ? { cookie } : {}),
    ...options.headers,
  };
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1',
      port,
      path: `${url.pathname}${url.search}`,
      headers,
      servername: url.hostname,
      ca: serverPki.read(serverPki.caCert),
      ...(options.device ? { cert: options.device.cert, key: options.device.key } : {}),
      agent: false,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        for (const line of res.headers['set-cookie'] ?? []) who.setCookie(target, line);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${target} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

const json = (reply: Reply): Record<string, unknown> => JSON.parse(reply.body) as Record<string, unknown>;

/** The sign-in link of a redirect to wardgate's sign-in host, or undefined. */
function signInLink(reply: Reply): URL | undefined {
  const location = reply.headers.location;
  if (reply.status !== 302 || location === undefined) return undefined;
  const link = new URL(location, AUTH_ORIGIN);
  return link.origin === AUTH_ORIGIN && link.pathname === '/.wardgate/sign-in' ? link : undefined;
}

interface Visit {
  /** The answer to the first request. */
  first: Reply;
  /** The sign-in, when the first answer sent the browser to sign in and a user was given. */
  signIn: NavigateResult | undefined;
  /** The answer to the request made again once signed in (or the first, if none was needed). */
  reply: Reply;
}

/**
 * A navigation to `target` that signs in as `user` when sent to: the application's requests
 * by `send` (with the device, if any), the sign-in hops by the browser, which stops once
 * the hand-off has set the application host's cookie. When the sign-in ends anywhere else
 * (a refusal at the callback, say) `reply` is the first answer and `signIn` says where it ended.
 */
async function visit(who: Browser, target: string, options: SendOptions & { user?: string; method?: 'hwk' | 'pwd' } = {}): Promise<Visit> {
  const first = await send(who, target, { ...options, navigate: true });
  const link = signInLink(first);
  if (!link || options.user === undefined) return { first, signIn: undefined, reply: first };
  const app = new URL(target);
  const page = await signIn(who, link.href, options.user, options.method ?? 'pwd', {
    ...(options.headers ? { headers: options.headers } : {}),
    stopBefore: (next) => next.host === app.host && next.pathname !== '/.wardgate/handoff',
  });
  if (page.stoppedAt === undefined) return { first, signIn: page, reply: first };
  return { first, signIn: page, reply: await send(who, target, { ...options, navigate: true }) };
}

interface PostureClaims {
  sub: string;
  managed: boolean;
  compliant?: boolean;
  /** How long ago the MDM observed the device, seconds (default 60). */
  observedAgo?: number;
  /** exp relative to now, seconds (default 600). */
  expiresIn?: number;
}

/** A posture assertion in hospital.yaml's format, signed with the MDM's key (or `key`). */
function posture(claims: PostureClaims, key: KeyObject = mdm.privateKey): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const observedAt = now - (claims.observedAgo ?? 60);
  return new SignJWT({ managed: claims.managed, compliant: claims.compliant ?? claims.managed, observed_at: observedAt, os: 'Windows 11 24H2', disk_encryption: true })
    .setProtectedHeader({ alg: 'ES256', typ: 'device-posture+jwt' })
    .setIssuer(POSTURE_ISSUER)
    .setAudience(POSTURE_AUDIENCE)
    .setSubject(claims.sub)
    .setJti(randomUUID())
    .setIssuedAt(observedAt)
    .setExpirationTime(now + (claims.expiresIn ?? 600))
    .sign(key);
}

/** The refusal JSON wardgate answers an API call with. */
function refusal(reply: Reply): { reason: string; reasons: string[]; rule: string; missing: string[]; remediation?: string } {
  return json(reply) as unknown as { reason: string; reasons: string[]; rule: string; missing: string[]; remediation?: string };
}

const EPIC_REMEDIATION = (original.routes.find((r) => r.id === 'epic')!.policy as { remediation: string }).remediation;
const PACS_REMEDIATION = (original.routes.find((r) => r.id === 'pacs')!.policy as { remediation: string }).remediation;

// The people of this story, each with a browser of their own.
const alice = browser();
const carol = browser();
const bob = browser();

// ---------------------------------------------------------------------------------------

t.test('the gateway runs hospital.yaml: every route policy, the devices and network sections as the file has them', async (t) => {
  const file = hospital();
  t.same(testYaml.routes.map((route) => route.policy), file.routes.map((route) => route.policy), 'every route policy is the file\'s, verbatim');
  t.same(testYaml.routes.map((route) => route.id), file.routes.map((route) => route.id), 'the same routes, in the same order');
  const { inventory: _i, posture: { keys: _k, ...postureRest }, ...devicesRest } = testYaml.devices;
  const { inventory: _fi, posture: { keys: _fk, ...filePostureRest }, ...fileDevicesRest } = file.devices;
  t.same({ ...devicesRest, posture: postureRest }, { ...fileDevicesRest, posture: filePostureRest }, 'devices: only the inventory and posture key files are replaced');
  t.same(Object.entries(testYaml.network.countries).filter(([cidr]) => cidr !== '127.0.0.0/8'), Object.entries(file.network.countries),
    'network: the example\'s own countries table is kept (loopback is added)');
  t.same(testYaml.identity.bearer, file.identity.bearer, 'bearer tokens: the example\'s FHIR audience and algorithms');
  t.ok(gateway.ports.https, 'wardgate listens on HTTPS');
});

t.test('1. dr.alice, security key, managed workstation: Epic opens; PACS refuses her, naming the closest rule', async (t) => {
  const seen = upstream.seen.length;
  const epic = await visit(alice, url('epic', '/chart/p1'), { device: WORKSTATION, user: 'dr.alice', method: 'hwk' });
  const link = signInLink(epic.first);
  t.ok(link, 'unsigned, the trusted workstation is sent to sign in');
  t.equal(link?.searchParams.get('acr'), 'phr', 'asking the IdP for a security key from the start (every Epic rule wants acr phr)');
  t.ok(epic.signIn?.hops.some((hop) => hop.startsWith(idp.issuer)), 'she signed in at the IdP');
  t.equal(epic.reply.status, 200, `Epic answers (${epic.reply.body.slice(0, 300)})`);
  t.equal(upstream.seen.length, seen + 1, 'one request reached the upstream');
  const forwarded = upstream.seen.at(-1)!;
  t.equal(forwarded.url, '/chart/p1', 'the request the workstation made');
  t.equal(forwarded.headers.host, `${hostOf('epic')}:${port}`, 'with the client\'s Host (preserveHost)');
  const assertion = forwarded.headers['x-wardgate-assertion'];
  t.type(assertion, 'string', 'the upstream got X-Wardgate-Assertion');
  const jwks = json(await send(alice, url('epic', '/.well-known/wardgate/jwks.json'))) as unknown as JSONWebKeySet;
  const { payload } = await jwtVerify(String(assertion), createLocalJWKSet(jwks), { issuer: AUTH_ORIGIN, audience: 'epic' });
  t.equal(payload.sub, 'dr.alice', 'which verifies with wardgate\'s published keys and names dr.alice');
  t.equal(payload.acr, 'phr', 'signed in with a security key');

  const pacs = await visit(alice, url('pacs', '/'), { device: WORKSTATION, user: 'dr.alice', method: 'hwk' });
  t.ok(signInLink(pacs.first) && pacs.signIn, 'PACS sends her to sign in too (a session cookie is per host)');
  t.notOk(pacs.signIn?.hops.some((hop) => hop.startsWith(idp.issuer)), 'PACS needs no new trip to the IdP: her sign-in is handed over');
  t.equal(pacs.reply.status, 403, 'PACS refuses her');
  t.match(pacs.reply.headers['content-type'], /^text\/html/, 'a navigation gets the HTML explanation');
  t.match(pacs.reply.body, '<code>groups-unauthorized</code>', 'naming why: not in a group with access');
  t.match(pacs.reply.body, 'Rule: <code>none matched (closest: allow[0] radiology-with-security-key)</code>', 'naming the closest rule');
  t.match(pacs.reply.body, PACS_REMEDIATION, 'with the route\'s remediation');
  const api = refusal(await send(alice, url('pacs', '/studies'), { device: WORKSTATION }));
  t.same(api, { ...api, reason: 'groups-unauthorized', reasons: ['groups-unauthorized'], missing: ['identity'], rule: 'none matched (closest: allow[0] radiology-with-security-key)', remediation: PACS_REMEDIATION },
    'the JSON explanation says the same');
  t.equal(upstream.seen.length, seen + 1, 'nothing of PACS reached the upstream');
});

t.test('2. rad.carol, security key, managed workstation: PACS opens', async (t) => {
  const seen = upstream.seen.length;
  const pacs = await visit(carol, url('pacs', '/studies/ct-1'), { device: WORKSTATION, user: 'rad.carol', method: 'hwk' });
  t.equal(pacs.reply.status, 200, `PACS answers (${pacs.reply.body.slice(0, 300)})`);
  t.equal(upstream.seen.length, seen + 1, 'the request reached the upstream');
  t.equal(upstream.seen.at(-1)!.url, '/studies/ct-1');
  t.equal(decodeJwt(String(upstream.seen.at(-1)!.headers['x-wardgate-assertion'])).sub, 'rad.carol', 'as rad.carol');
});

t.test('3. nurse.bob, password only: stepped up before the records, and refused when he answers with a password again', async (t) => {
  const metricsBefore = await metricsText();
  // His shift starts in the lab system, which asks for no particular sign-in.
  const lab = await visit(bob, url('lab', '/results'), { device: WORKSTATION, user: 'nurse.bob', method: 'pwd' });
  t.equal(lab.reply.status, 200, `a password opens the lab system (${lab.reply.body.slice(0, 200)})`);

  // FHIR in his browser: the clinicians-read rule wants a security key, the one thing a
  // fresh sign-in could bring, so the decision is step-up.
  const fhir = await visit(bob, url('fhir', '/fhir/Patient/p1'), { device: WORKSTATION, user: 'nurse.bob', method: 'pwd' });
  const stepUp = signInLink(fhir.reply);
  t.ok(stepUp, `his password session reaches FHIR and is sent to sign in again (${fhir.reply.status})`);
  t.equal(stepUp?.searchParams.get('step-up'), '1', 'as a step-up');
  t.equal(stepUp?.searchParams.get('acr'), 'phr', 'for a security key (acr phr)');
  t.equal(new URL(stepUp?.searchParams.get('rd') ?? 'x:').href, url('fhir', '/fhir/Patient/p1'), 'and back to the record afterwards');
  const call = await send(bob, url('fhir', '/fhir/Patient/p1'), { device: WORKSTATION });
  t.equal(call.status, 401, 'a script in his browser gets 401 instead of a redirect');
  t.match(call.headers['www-authenticate'], /error="insufficient_user_authentication", acr_values="phr"/, 'saying what would do (RFC 9470)');

  // Epic: he has no Epic session yet, so Epic sends him to sign in asking for a security
  // key; wardgate's sign-in host finds his password session too weak and makes it a step-up.
  const epic = await send(bob, url('epic', '/chart/p1'), { device: WORKSTATION, navigate: true });
  const link = signInLink(epic);
  t.ok(link, 'Epic sends him to sign in');
  t.equal(link?.searchParams.get('acr'), 'phr', 'asking for a security key');
  const toIdp = await bob.navigate(link!.href, { stopBefore: (next) => next.origin === idp.issuer });
  const authorize = new URL(toIdp.stoppedAt ?? 'x:');
  t.equal(authorize.origin, idp.issuer, 'the sign-in host sends him to the IdP');
  t.equal(authorize.searchParams.get('acr_values'), 'phr', 'asking the IdP for acr phr');
  t.equal(authorize.searchParams.get('prompt'), 'login', 'and for a fresh authentication (a step-up: his IdP session is a password one)');
  const answered = await signIn(bob, toIdp.stoppedAt!, 'nurse.bob', 'pwd');
  t.equal(answered.status, 403, 'answering with a password again is refused');
  t.equal(new URL(answered.url).pathname, '/.wardgate/callback', 'at the callback, not sent round again');
  t.match(answered.body, '<code>auth-strength-insufficient</code>', 'auth-strength-insufficient');
  t.notOk(bob.cookies(hostOf('epic')).some((cookie) => cookie.name === '__Host-wardgate'), 'and Epic never got a session for him');

  const metrics = await metricsText();
  t.ok(total(metrics, 'wardgate_step_up_total', { result: 'requested' }) > total(metricsBefore, 'wardgate_step_up_total', { result: 'requested' }), 'a step-up was requested');
  t.ok(total(metrics, 'wardgate_step_up_total', { result: 'insufficient' }) > total(metricsBefore, 'wardgate_step_up_total', { result: 'insufficient' }), 'and came back insufficient');
});

t.test('4. an untrusted device is refused; the enrollment portal (quarantine) still lets it in', async (t) => {
  const seen = upstream.seen.length;
  const remote = viaLoadBalancer(GB);
  const epic = url('epic', '/chart/p1');
  const deny = async (reply: Reply | Promise<Reply>, problem: string, what: string): Promise<void> => {
    const answer = refusal(await reply);
    t.equal((await reply).status, 403, `${what}: 403`);
    t.same([answer.reasons, answer.rule], [['device-untrusted', problem], 'devices: trusted'], `${what}: device-untrusted, ${problem}, by the trusted-device gate`);
  };

  await deny(send(alice, epic, { headers: { ...remote, 'x-device-posture': await posture({ sub: 'LT-0666', managed: false }) } }),
    'device-unmanaged', 'dr.alice, security key, with the MDM saying her laptop is unmanaged');
  const bare = send(alice, epic, { headers: remote });
  await deny(bare, 'device-unknown', 'no certificate and no posture');
  t.equal(refusal(await bare).remediation, EPIC_REMEDIATION, 'and Epic\'s remediation says what to do about it');
  await deny(send(alice, epic, { headers: { ...remote, 'x-device-posture': await posture({ sub: 'LT-0017', managed: true }, forger.privateKey) } }),
    'posture-signature-invalid', 'a posture assertion signed with another key');
  await deny(send(alice, epic, { headers: { ...remote, 'x-device-posture': await posture({ sub: 'LT-0017', managed: true, observedAgo: 1_200, expiresIn: -300 }) } }),
    'posture-expired', 'an expired posture assertion');
  await deny(send(alice, epic, { headers: { ...remote, 'x-device-posture': await posture({ sub: 'LT-0017', managed: true, observedAgo: 1_200 }) } }),
    'posture-expired', 'a device observed longer ago than maxAge (15m)');
  await deny(send(alice, epic, { device: PERSONAL_LAPTOP }), 'device-unmanaged', 'the inventory\'s unmanaged laptop, by its certificate');
  await deny(send(alice, epic, { device: FORGOTTEN_WORKSTATION }), 'posture-stale', 'a workstation the MDM last saw two days ago (maxObservedAge 24h)');
  await deny(send(alice, epic, { device: STRANGER }), 'device-unknown', 'a certificate from a CA wardgate does not trust');

  const laptop = await posture({ sub: 'LT-0017', managed: true });
  const fine = await send(alice, epic, { headers: { ...remote, 'x-device-posture': laptop } });
  t.equal(fine.status, 200, `the same user on a managed laptop, with its assertion, through the load balancer: Epic opens (${fine.body.slice(0, 200)})`);
  t.equal(upstream.seen.at(-1)!.headers['x-device-posture'], undefined, 'the posture assertion stays with wardgate');
  await deny(send(carol, url('pacs', '/'), { headers: { ...remote, 'x-device-posture': laptop } }), 'posture-replayed', 'rad.carol replaying dr.alice\'s assertion');
  t.equal(upstream.seen.length, seen + 1, 'only the managed laptop\'s request reached an upstream');
  t.ok(logs.some((line) => line.msg === 'device posture assertion replayed by another user' && line.sub === 'rad.carol'), 'and the replay is logged for the security team');

  // The enrollment portal is where the unmanaged laptop goes to be fixed.
  const unmanaged = { ...remote, 'x-device-posture': await posture({ sub: 'LT-0666', managed: false }) };
  const enroll = await visit(alice, url('enroll', '/devices/LT-0666'), { headers: unmanaged, user: 'dr.alice', method: 'hwk' });
  t.equal(enroll.reply.status, 200, `the unmanaged laptop reaches the enrollment portal (${enroll.reply.body.slice(0, 200)})`);
  t.equal(decodeJwt(String(upstream.seen.at(-1)!.headers['x-wardgate-assertion'])).sub, 'dr.alice', 'signed in as dr.alice');
  t.equal((await send(alice, url('enroll', '/'), { headers: remote })).status, 200, 'so does a device nothing is known about');
  t.equal((await send(alice, url('enroll', '/'), { device: PERSONAL_LAPTOP })).status, 200, 'and the unmanaged laptop by its certificate');
});

t.test('5. outside the UK and Ireland the clinical applications are closed, before and after sign-in', async (t) => {
  const seen = upstream.seen.length;
  const managed = async (ip: string): Promise<Record<string, string>> => ({ ...viaLoadBalancer(ip), 'x-device-posture': await posture({ sub: 'LT-0017', managed: true }) });
  const epic = url('epic', '/chart/p1');

  const abroad = await send(alice, epic, { headers: await managed(US), navigate: true });
  t.equal(abroad.status, 403, 'dr.alice, security key, managed laptop, connecting from the United States: refused');
  t.match(abroad.body, '<code>country-unauthorized</code>', 'country-unauthorized');
  t.match(abroad.body, 'Rule: <code>deny[0] outside-uk-and-ireland</code>', 'naming the rule deny[0] outside-uk-and-ireland');
  const api = refusal(await send(alice, epic, { headers: await managed(US) }));
  t.same([api.reasons, api.rule, api.missing], [['country-unauthorized'], 'deny[0] outside-uk-and-ireland', ['network']], 'the JSON says the same');
  t.equal(refusal(await send(alice, epic, { device: WORKSTATION, headers: viaLoadBalancer(US) })).rule, 'deny[0] outside-uk-and-ireland',
    'her managed workstation\'s certificate does not help either');
  t.equal(refusal(await send(alice, epic, { headers: { ...(await managed(US)), 'x-forwarded-for': `${GB}, ${US}` } })).rule, 'deny[0] outside-uk-and-ireland',
    'nor a British address the client wrote in front of the load balancer\'s entry');
  t.equal(refusal(await send(alice, epic, { headers: await managed(NOWHERE) })).reason, 'country-unauthorized', 'an address no database places is refused too');
  t.equal((await send(alice, epic, { headers: await managed(IE) })).status, 200, 'from Ireland she is let in');

  const stranger = browser();
  const before = await send(stranger, epic, { headers: viaLoadBalancer(US), navigate: true });
  t.equal(before.status, 403, 'before any sign-in, a client in the United States is refused');
  t.equal(before.headers.location, undefined, 'and not sent to the IdP');
  t.match(before.body, 'Rule: <code>deny[0] outside-uk-and-ireland</code>', 'by the same rule');
  const fromKp = await send(stranger, url('lab', '/'), { headers: viaLoadBalancer(KP), navigate: true });
  t.same([fromKp.status, fromKp.headers.location], [403, undefined], 'North Korea gets the lab system\'s refusal, not its sign-in');
  t.equal(upstream.seen.length, seen + 1, 'only the request from Ireland reached an upstream');
});

const tokens = {
  cardiology: clientCredentialsToken(idp, APPS.cardiology.id, APPS.cardiology.secret, FHIR_AUDIENCE, 'patient/*.read'),
  smartObs: clientCredentialsToken(idp, APPS.smartObs.id, APPS.smartObs.secret, FHIR_AUDIENCE, 'patient/Observation.read'),
};
// Keep a rejected token request from being unhandled before a test awaits it.
for (const token of Object.values(tokens)) token.catch(() => {});

/** A SMART backend app's call through the load balancer, from the app's server in the UK. */
async function app(token: Promise<string>, path: string): Promise<Reply> {
  return send(browser(), url('fhir', path), { headers: { authorization: `Bearer ${await token}`, ...viaLoadBalancer(GB) } });
}

t.test('6. the cardiology app reads observations, never psychiatric records', async (t) => {
  const claims = decodeJwt(await tokens.cardiology);
  t.same([claims.client_id, claims.scope, claims.aud], [APPS.cardiology.id, 'patient/*.read', FHIR_AUDIENCE], 'its token names the app (client_id), its scope and the FHIR audience');
  const seen = upstream.seen.length;
  const observations = await app(tokens.cardiology, '/fhir/Patient/p1/Observation');
  t.equal(observations.status, 200, `Patient/p1/Observation (${observations.body.slice(0, 200)})`);
  t.equal(upstream.seen.at(-1)!.url, '/fhir/Patient/p1/Observation', 'reached the FHIR server');
  t.equal(upstream.seen.at(-1)!.headers.authorization, undefined, 'without the app\'s token');
  for (const path of ['/fhir/DocumentReference/psych-1', '/fhir/Patient/p1/QuestionnaireResponse']) {
    const reply = await app(tokens.cardiology, path);
    t.equal(reply.status, 403, `${path} is refused although patient/*.read covers it`);
    t.equal(refusal(reply).rule, 'deny[1] cardiology-app-no-psychiatric-records', 'by the deny rule for the cardiology app');
  }
  t.equal(upstream.seen.length, seen + 1, 'only the observations reached the upstream');
});

t.test('7. patient/Observation.read reads and searches observations and nothing else', async (t) => {
  const seen = upstream.seen.length;
  t.equal((await app(tokens.smartObs, '/fhir/Observation/o1')).status, 200, 'reads Observation/o1');
  t.equal((await app(tokens.smartObs, '/fhir/Observation?patient=p1&code=8867-4')).status, 200, 'searches Observation');
  t.equal(upstream.seen.at(-1)!.url, '/fhir/Observation?patient=p1&code=8867-4', 'the search reached the FHIR server as sent');
  for (const path of ['/fhir/MedicationRequest/m1', '/fhir/DocumentReference/psych-1']) {
    const reply = await app(tokens.smartObs, path);
    const answer = refusal(reply);
    t.same([reply.status, answer.reasons, answer.rule], [403, ['scope-insufficient'], 'none matched (closest: allow[1] smart-scopes)'],
      `${path}: scope-insufficient (the cardiology deny rule is not about this app)`);
  }
  t.equal(upstream.seen.length, seen + 2, 'only the observations reached the upstream');
});

t.test('8. the vendor console opens to a grant two approvers approved, on weekdays 08:00-18:00 London time only', async (t) => {
  /*
   * wardgate's clock (its `now`, which reads Date.now at each call) drives sessions, policy
   * time and device freshness, but the in-process IdP stamps auth_time and token times from
   * Date.now itself, and the vendor rule also wants authAge <= 1h: so Date.now moves for the
   * whole process here, both sides keep agreeing, and it is put back when this test ends.
   * The times are in July (BST, UTC+1): read as UTC, 18:05 would still be "open". The
   * sign-in is at 17:45, not earlier, so that at 18:05 neither authAge (1h) nor the
   * example's idle timeout (30m) has run out and only the hours can refuse.
   */
  const realNow = Date.now.bind(Date);
  let offset = 0;
  Date.now = () => realNow() + offset;
  t.teardown(() => {
    Date.now = realNow;
  });
  const setClock = (iso: string): void => {
    offset = Date.parse(iso) - realNow();
  };
  const consoleUrl = url('vendor', '/console');
  const headers = viaLoadBalancer(GB);

  setClock('2026-07-15T17:45:00+01:00'); // a Wednesday, 17:45 in London
  const dave = browser();
  const without = await visit(dave, consoleUrl, { headers, user: 'vendor.dave', method: 'pwd' });
  t.equal(without.reply.status, 403, 'without a grant, the console stays closed');
  t.match(without.reply.body, '<code>grant-missing</code>', 'for want of a grant');
  // Dave asks for the evening; one of the security team and the ticketing system approve.
  const grants = gateway.access.grants!;
  const asked = await grants.request({
    routes: [{ id: 'vendor' }], notBefore: Date.now(), notAfter: Date.now() + 4 * 3_600_000,
    justification: 'Replace the detector firmware on CT 2', ticket: 'CHG0031337',
  }, { principal: { kind: 'user', id: 'vendor.dave', email: 'dave@devicevendor.example' }, groups: ['vendor-support'] });
  await grants.approve(asked.id, { principal: { kind: 'user', id: 'admin.erin', email: 'erin@hospital.example' }, groups: ['security-admins'] });
  t.equal((await send(dave, consoleUrl, { headers })).status, 403, 'one approval of the two the example asks for opens nothing');
  await grants.approve(asked.id, { principal: { kind: 'client', id: 'client:servicenow' }, groups: [] });
  await until(() => hooks.seen.some((hook) => hook.url.endsWith('/stand-in')), 10_000, 'the security channel to hear of the grant');
  const open = await visit(dave, consoleUrl, { headers });
  t.equal(open.reply.status, 200, `vendor.dave signs in with a password on his own laptop at 17:45 on a Wednesday: the console opens (${open.reply.body.slice(0, 200)})`);

  setClock('2026-07-15T18:05:00+01:00'); // 20 minutes later: the session and his sign-in are still young
  const late = await send(dave, consoleUrl, { headers });
  const answer = refusal(late);
  t.same([late.status, answer.reasons, answer.rule], [403, ['outside-hours'], 'none matched (closest: allow[0] vendor-support-window)'],
    'at 18:05 it is closed, for the hours alone');
  t.match(answer.remediation, /08:00 to 18:00 UK time/, 'and the refusal says when it opens');

  setClock('2026-07-18T10:00:00+01:00'); // Saturday morning
  const saturday = await visit(browser(), consoleUrl, { headers, user: 'vendor.dave', method: 'pwd' });
  t.ok(saturday.signIn?.hops.some((hop) => hop.startsWith(idp.issuer)), 'on Saturday he signs in afresh');
  t.equal(saturday.reply.status, 403, 'and is refused');
  t.match(saturday.reply.body, '<code>outside-hours</code>', 'outside-hours');
});

t.test('9. the decisions are counted by route, outcome and reason', async (t) => {
  const text = await metricsText();
  const decisions = (route: string, outcome: string, reason: string): number => total(text, 'wardgate_decisions_total', { route, outcome, reason });
  t.ok(decisions('epic', 'allow', 'groups-ok') > 0, 'allow: epic, groups-ok');
  t.ok(decisions('pacs', 'deny', 'groups-unauthorized') > 0, 'deny: pacs, groups-unauthorized');
  t.ok(decisions('epic', 'deny', 'device-untrusted') > 0, 'deny: epic, device-untrusted');
  t.ok(decisions('epic', 'deny', 'country-unauthorized') > 0, 'deny: epic, country-unauthorized');
  t.ok(decisions('fhir', 'deny', 'scope-insufficient') > 0, 'deny: fhir, scope-insufficient');
  t.ok(decisions('vendor', 'deny', 'outside-hours') > 0, 'deny: vendor, outside-hours');
  t.ok(decisions('fhir', 'step-up', 'acr-insufficient') > 0, 'step-up: fhir, acr-insufficient');
  t.ok(decisions('epic', 'login', 'login-required') > 0, 'login: epic, login-required');
  const count = sample(text, 'wardgate_policy_evaluation_seconds_count');
  t.type(count, 'number', 'wardgate_policy_evaluation_seconds is exported');
  // One decision in 64 is timed.
  if (total(text, 'wardgate_decisions_total') >= 64) t.ok(count! > 0, 'and has timed decisions');
});

async function metricsText(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${gateway.ports.admin}/metrics`);
  return res.text();
}

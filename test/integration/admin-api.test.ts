import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { SignJWT, generateKeyPair } from 'jose';
import pino from 'pino';
import t from 'tap';
import { parseConfig } from '../../config/loader.js';
import { startGateway } from '../../proxy/gateway.js';
import { recordSubject } from '../../proxy/identity/directory.js';
import { explainDecision, explanationJson, formatExplanation, parseContext } from '../../proxy/policy/explain.js';
import { Browser } from '../helpers/browser.js';
import { API_AUDIENCE, API_CLIENT, identityYaml, type LogLine } from '../helpers/gateway.js';
import { clientCredentialsToken, signIn, startTestIdp } from '../helpers/idp.js';
import { makePki } from '../helpers/pki.js';
import { freePort } from '../helpers/process.js';
import { rigClients } from '../helpers/sign-in-rig.js';
import { startUpstream } from '../helpers/upstream.js';

/*
 * The admin API on a real wardgate's admin listener, over HTTPS with client certificates,
 * with tokens from a real IdP (the demo's oidc-provider): who gets in (tokens for the
 * admin audience with the admin scope, certificates from the admin client CA with a listed
 * subject) and every way of not getting in; grants driven through their whole life by
 * approver principals (two clients and a certificate) and the effect of each step on the
 * data plane; break-glass review; ending sessions made by a real browser sign-in;
 * quarantining a device; policy explain answering as the CLI does; and the log line each
 * call leaves, with who made it, and never a token.
 */

const ADMIN_AUDIENCE = 'https://wardgate-admin.test';
const ADMIN_CLIENTS = ['itsm', 'change-board', 'monitor', 'reader'] as const;
type AdminClient = (typeof ADMIN_CLIENTS)[number];
const secretOf = (client: string): string => `${client}-secret`;

const port = await freePort();
const authOrigin = `http://auth.localhost:${port}`;
const idp = await startTestIdp({
  clients: [
    ...rigClients(authOrigin),
    ...ADMIN_CLIENTS.map((id) => ({ client_id: id, client_secret: secretOf(id), grant_types: ['client_credentials'], redirect_uris: [], response_types: [] })),
  ],
  resources: { [API_AUDIENCE]: { scope: 'patient/*.read' }, [ADMIN_AUDIENCE]: { scope: 'wardgate:admin wardgate:read' } },
});
t.teardown(() => idp.close());

// The admin listener's server certificate, the CA of admin client certificates, and a CA nobody trusts.
const serverPki = makePki('admin server CA');
const serverCert = serverPki.issue('admin.localhost');
const clientPki = makePki('admin clients CA');
const soc = clientPki.issue('soc-automation');
const intruder = clientPki.issue('intruder');
const rogue = makePki('rogue CA').issue('soc-automation');

// The MDM that vouches for laptop-7.
const mdm = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const mdmKey = join(serverPki.dir, 'mdm.pub');
writeFileSync(mdmKey, mdm.publicKey.export({ type: 'spki', format: 'pem' }));

const upstream = await startUpstream();
t.teardown(() => upstream.close());

let offset = 0;
const now = (): number => Date.now() + offset;

const config = parseConfig(`
listen:
  http: "127.0.0.1:${port}"
admin:
  listen: "127.0.0.1:0"
  tls: { cert: "${serverCert.cert}", key: "${serverCert.key}", clientCa: "${clientPki.caCert}" }
  api:
    bearer: { audience: "${ADMIN_AUDIENCE}" }
    certificates: { subjects: ["CN=soc-automation"] }
workers: 1
# Grants default to the file store at its production path; this test keeps nothing.
store: { type: memory }
${identityYaml(idp.issuer, port)}
grants:
  approvals: 2
  approvers:
    groups: [security-admins]
    principals: [client:itsm, client:change-board, "cert:CN=soc-automation"]
devices:
  posture: { issuer: https://mdm.test, keys: ["${mdmKey}"] }
routes:
  - id: app
    host: app.localhost
    upstream: { url: "${upstream.url}" }
    policy: { devices: any, allow: [{ authenticated: true }] }
  - id: vendor
    host: vendor.localhost
    auth: { methods: [bearer] }
    upstream: { url: "${upstream.url}" }
    policy: { devices: any, allow: [{ grant: true }] }
  - id: chart
    host: chart.localhost
    upstream: { url: "${upstream.url}" }
    policy: { devices: any, allow: [{ groups: [clinicians] }], breakGlass: { groups: [clinicians] } }
  - id: device
    host: device.localhost
    auth: { methods: [bearer] }
    upstream: { url: "${upstream.url}" }
    policy: { devices: trusted, allow: [{ authenticated: true }] }
`, 'admin-api-test.yaml');

const logs: LogLine[] = [];
const sink = new Writable({
  write(chunk: Buffer, _encoding, callback) {
    for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
    callback();
  },
});
const gateway = await startGateway({ config, logger: pino({ level: 'info' }, sink), admin: true, now });
t.teardown(() => gateway.shutdown());
const adminPort = gateway.ports.admin!;

const tokens = new Map<AdminClient, string>();
for (const client of ADMIN_CLIENTS) {
  tokens.set(client, await clientCredentialsToken(idp, client, secretOf(client), ADMIN_AUDIENCE, client === 'reader' ? 'wardgate:read' : 'wardgate:admin'));
}
const tokenOf = (client: AdminClient): string => tokens.get(client)!;
const apiToken = await clientCredentialsToken(idp, API_CLIENT.id, API_CLIENT.secret, API_AUDIENCE, 'patient/*.read');
const issued = [...tokens.values(), apiToken];

type Body = Record<string, unknown>;
interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Body;
}

interface CallOptions {
  token?: string;
  cert?: { cert: string; key: string };
  /** Sent as JSON. */
  json?: unknown;
  /** Sent as it is. */
  raw?: { body: string | Buffer; type: string };
}

/** A call to the admin listener over HTTPS, as an API client makes it. */
function admin(method: string, path: string, options: CallOptions = {}): Promise<Answer> {
  const payload = options.json !== undefined ? JSON.stringify(options.json) : options.raw?.body;
  const type = options.json !== undefined ? 'application/json' : options.raw?.type;
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1',
      port: adminPort,
      servername: 'admin.localhost',
      ca: serverPki.read(serverPki.caCert),
      ...(options.cert ? { cert: serverPki.read(options.cert.cert), key: serverPki.read(options.cert.key) } : {}),
      // A connection per call: each carries its own client certificate.
      agent: false,
      method,
      path: path.startsWith('/api/') || path.startsWith('/metrics') ? path : `/api/v1${path}`,
      headers: {
        ...(options.token !== undefined ? { authorization: `Bearer ${options.token}` } : {}),
        ...(type ? { 'content-type': type } : {}),
        ...(payload !== undefined ? { 'content-length': Buffer.byteLength(payload) } : {}),
      },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const isJson = String(res.headers['content-type']).startsWith('application/json');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: isJson && text ? JSON.parse(text) as Body : { text } });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const as = (client: AdminClient): CallOptions => ({ token: tokenOf(client) });
const SOC: CallOptions = { cert: soc };

/** A request to a routed host on wardgate's main listener. */
function routed(host: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Body }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/', headers: { host, accept: 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, body: text.startsWith('{') ? JSON.parse(text) as Body : {} });
      });
    });
    req.on('error', reject);
    req.end();
  });
}
const apiAuth = { authorization: `Bearer ${apiToken}` };

/** The admin-action log lines so far. */
const actions = (): LogLine[] => logs.filter((line) => line.kind === 'admin-action');

const iso = (ms: number): string => new Date(ms).toISOString();
const HOUR = 3_600_000;

// ---------------------------------------------------------------------------------------
// Who gets in

t.test('a call without any credential is refused with 401 and a Bearer challenge, and logged', async (t) => {
  const res = await admin('GET', '/grants');
  t.equal(res.status, 401);
  t.equal(res.body['error'], 'admin-unauthenticated');
  t.equal(res.headers['www-authenticate'], 'Bearer realm="wardgate-admin"', 'RFC 6750: the challenge names the scheme');
  t.match(actions().at(-1), { actor: null, action: 'grant.list', outcome: 'refused', status: 401, error: 'admin-unauthenticated' }, 'the refusal is logged, with no actor');
});

t.test('tokens that do not hold up are refused with 401 invalid_token', async (t) => {
  const b64 = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  const claims = { iss: idp.issuer, aud: ADMIN_AUDIENCE, sub: 'itsm', client_id: 'itsm', scope: 'wardgate:admin' };
  const at = Math.floor(Date.now() / 1000);
  const discovery = await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json() as { jwks_uri: string };
  const idpKeys = ((await (await fetch(discovery.jwks_uri)).json()) as { keys: Array<{ kid?: string; alg?: string }> }).keys;
  const realKid = idpKeys.find((key) => key.alg === 'ES256')?.kid ?? idpKeys[0]?.kid;
  const { privateKey: attackerKey } = await generateKeyPair('ES256');
  const otherIdp = await startTestIdp({
    clients: [{ client_id: 'itsm', client_secret: secretOf('itsm'), grant_types: ['client_credentials'], redirect_uris: [], response_types: [] }],
    resources: { [ADMIN_AUDIENCE]: { scope: 'wardgate:admin' } },
  });
  t.teardown(() => otherIdp.close());
  const cases: Array<[string, string]> = [
    ['garbage', 'not-a-token'],
    ['an unsigned token (alg none)', `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64({ ...claims, iat: at, exp: at + 600 })}.`],
    ['a token signed by an attacker under the IdP\'s kid', await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', ...(realKid ? { kid: realKid } : {}) }).setIssuedAt().setExpirationTime('10m').sign(attackerKey)],
    ['an HMAC token signed with the client secret', await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' }).setIssuedAt().setExpirationTime('10m').sign(new TextEncoder().encode(secretOf('itsm')))],
    ['a token for another audience (the FHIR API\'s)', await clientCredentialsToken(idp, 'itsm', secretOf('itsm'), API_AUDIENCE, 'patient/*.read')],
    ['a token from another issuer', await clientCredentialsToken(otherIdp, 'itsm', secretOf('itsm'), ADMIN_AUDIENCE, 'wardgate:admin')],
  ];
  for (const [what, token] of cases) {
    issued.push(token);
    const res = await admin('GET', '/grants', { token });
    t.equal(res.status, 401, `${what}: 401 (${String(res.body['message'])})`);
    t.equal(res.body['error'], 'admin-token-invalid', '  admin-token-invalid');
    t.match(res.headers['www-authenticate'], /^Bearer realm="wardgate-admin", error="invalid_token"/, '  with an invalid_token challenge');
  }
  const empty = await admin('GET', '/grants', { token: '' });
  t.same([empty.status, empty.body['error']], [401, 'admin-unauthenticated'], '"Bearer" without a token is no credential: 401');
  const audience = await admin('GET', '/grants', { token: cases[4]![1] });
  t.match(audience.body['message'], /audience/, 'the wrong audience is said as such');
});

t.test('an expired token is refused, by wardgate\'s clock', async (t) => {
  const token = await clientCredentialsToken(idp, 'monitor', secretOf('monitor'), ADMIN_AUDIENCE, 'wardgate:admin');
  issued.push(token);
  t.equal((await admin('GET', '/sessions', { token })).status, 200, 'fresh, it is taken');
  offset = 2 * HOUR;
  try {
    const res = await admin('GET', '/sessions', { token });
    t.equal(res.status, 401, 'two hours later (it lived one) it is not');
    t.match(res.body['message'], /expired/);
  } finally {
    offset = 0;
  }
});

t.test('a valid token without the admin scope gets 403 insufficient_scope', async (t) => {
  const res = await admin('GET', '/grants', as('reader'));
  t.equal(res.status, 403);
  t.equal(res.body['error'], 'admin-token-insufficient-scope');
  t.equal(res.headers['www-authenticate'], 'Bearer realm="wardgate-admin", error="insufficient_scope", scope="wardgate:admin"');
  t.match(actions().at(-1), { actor: 'client:reader', outcome: 'refused', error: 'admin-token-insufficient-scope' }, 'logged with who it was');
});

t.test('client certificates: the CA and the subject both decide', async (t) => {
  const rogueRes = await admin('GET', '/grants', { cert: rogue });
  t.equal(rogueRes.status, 401, 'a certificate with the allowed subject from another CA is refused');
  t.equal(rogueRes.body['error'], 'admin-certificate-untrusted');
  const intruderRes = await admin('GET', '/grants', { cert: intruder });
  t.equal(intruderRes.status, 403, 'a certificate from the admin CA whose subject is not listed gets 403');
  t.equal(intruderRes.body['error'], 'admin-certificate-not-allowed');
  t.match(actions().at(-1), { actor: 'cert:CN=intruder', error: 'admin-certificate-not-allowed' });
  const ok = await admin('GET', '/grants', SOC);
  t.equal(ok.status, 200, 'the listed subject from the admin CA gets in');
  t.match(actions().at(-1), { actor: 'cert:CN=soc-automation', action: 'grant.list', outcome: 'ok' });
  const both = await admin('GET', '/grants', { ...SOC, token: 'not-a-token' });
  t.equal(both.status, 401, 'a bad token is refused even beside a good certificate: the token decides');
});

t.test('the listener still serves probes and metrics to callers without credentials, over TLS', async (t) => {
  t.equal((await admin('GET', '/metrics')).status, 200);
  t.equal((await admin('GET', '/api/v1/openapi.json')).status, 200, 'and the API description');
  t.equal((await admin('GET', '/api/v1/openapi.json')).body['openapi'], '3.1.0');
});

// ---------------------------------------------------------------------------------------
// Requests that are not right

t.test('unknown paths, wrong methods, and bodies that are not strict JSON are refused before anything happens', async (t) => {
  const unknown = await admin('GET', '/nothing-here', as('itsm'));
  t.equal(unknown.status, 404);
  t.equal(unknown.body['error'], 'not-found');
  const wrong = await admin('PATCH', '/grants', as('itsm'));
  t.equal(wrong.status, 405);
  t.equal(wrong.headers['allow'], 'GET, POST', 'Allow names the methods the path takes');
  const text = await admin('POST', '/policy/explain', { ...as('itsm'), raw: { body: 'route=app', type: 'application/x-www-form-urlencoded' } });
  t.equal(text.status, 415, 'a form body: 415');
  const broken = await admin('POST', '/policy/explain', { ...as('itsm'), raw: { body: '{"route":', type: 'application/json' } });
  t.equal(broken.status, 400, 'broken JSON: 400');
  t.equal(broken.body['error'], 'body-invalid');
  const huge = await admin('POST', '/policy/explain', { ...as('itsm'), raw: { body: Buffer.alloc(70 * 1024, 0x20), type: 'application/json' } });
  t.equal(huge.status, 413, 'over 64 KiB: 413');
  const query = await admin('GET', '/grants?colour=red', as('itsm'));
  t.equal(query.status, 400, 'an unknown query parameter: 400');
  t.equal(query.body['path'], 'colour');
});

// ---------------------------------------------------------------------------------------
// Grants

interface GrantJson {
  id: string;
  state: string;
  notBefore: string;
  notAfter: string;
  createdAt: string;
  requester: { id: string };
  approvals: Array<{ by: { id: string }; at: string }>;
  revocation: { by: { id: string }; reason: string } | null;
}

const windowOf = (startMs: number, lengthMs: number): { notBefore: string; notAfter: string } => ({ notBefore: iso(now() + startMs), notAfter: iso(now() + startMs + lengthMs) });
const grantFor = (user: string, window = windowOf(0, HOUR)): Body => ({
  subject: { user },
  routes: [{ id: 'vendor' }],
  ...window,
  justification: 'pump firmware update, change CHG-1042',
  ticket: 'CHG-1042',
});

await recordSubject(gateway.store, { sub: API_CLIENT.id, email: undefined, name: undefined, claims: {} }, now());

t.test('a grant through its whole life: asked, approved by two approvers, in force, revoked', async (t) => {
  t.equal((await routed('vendor.localhost', apiAuth)).status, 403, 'before: the subject cannot reach the vendor route');

  const created = await admin('POST', '/grants', { ...as('itsm'), json: grantFor(API_CLIENT.id) });
  t.equal(created.status, 201, 'an approver principal asks for a grant for a known subject');
  const grant = created.body as unknown as GrantJson;
  t.equal(grant.state, 'requested', 'with its state');
  t.equal(grant.requester.id, 'client:itsm', 'the requester is the calling client');
  t.match(grant.notBefore, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, 'times in RFC 3339');
  t.match(actions().at(-1), { actor: 'client:itsm', action: 'grant.create', target: grant.id, outcome: 'ok' });

  const self = await admin('POST', `/grants/${grant.id}/approve`, as('itsm'));
  t.equal(self.status, 403, 'the requester does not approve their own request');
  t.equal(self.body['error'], 'grant-self-approval');
  t.match(actions().at(-1), { actor: 'client:itsm', action: 'grant.approve', target: grant.id, outcome: 'refused', error: 'grant-self-approval' });

  const notApprover = await admin('POST', `/grants/${grant.id}/approve`, as('monitor'));
  t.equal(notApprover.status, 403, 'the admin scope alone does not make an approver');
  t.equal(notApprover.body['error'], 'grant-approver-not-allowed');

  const first = await admin('POST', `/grants/${grant.id}/approve`, SOC);
  t.equal(first.status, 200, 'a certificate principal approves');
  t.equal((first.body as unknown as GrantJson).state, 'requested', 'one of the two approvals: still a request');
  t.equal((await routed('vendor.localhost', apiAuth)).status, 403, 'and still no way in');

  const twice = await admin('POST', `/grants/${grant.id}/approve`, SOC);
  t.equal(twice.status, 409, 'the same approver approving again does not count twice');
  t.equal(twice.body['error'], 'grant-already-approved');

  const second = await admin('POST', `/grants/${grant.id}/approve`, { ...as('change-board'), json: {} });
  t.equal(second.status, 200, 'a second approver approves');
  t.equal((second.body as unknown as GrantJson).state, 'active', 'the grant is in force');
  t.same((second.body as unknown as GrantJson).approvals.map((a) => a.by.id), ['cert:CN=soc-automation', 'client:change-board']);
  t.equal((await routed('vendor.localhost', apiAuth)).status, 200, 'the subject reaches the vendor route on the very next request');

  const active = await admin('GET', '/grants?state=active,approved', as('monitor'));
  t.same((active.body['grants'] as GrantJson[]).map((g) => g.id), [grant.id], 'listed under state=active');
  const requested = await admin('GET', '/grants?state=requested', as('monitor'));
  t.notOk((requested.body['grants'] as GrantJson[]).some((g) => g.id === grant.id), 'and not under state=requested');
  const bySubject = await admin('GET', `/grants?subject=user:${API_CLIENT.id}`, as('monitor'));
  t.ok((bySubject.body['grants'] as GrantJson[]).some((g) => g.id === grant.id), 'and under its subject');
  t.equal((await admin('GET', '/grants?state=pending', as('monitor'))).body['error'], 'query-invalid', 'an unknown state is refused');
  t.equal((await admin('GET', `/grants/${grant.id}`, as('monitor'))).body['id'], grant.id, 'one grant by id');
  t.equal((await admin('GET', '/grants/g_aaaaaaaaaaaaaaaaaaaa', as('monitor'))).status, 404, 'an unknown id: 404');

  const noReason = await admin('POST', `/grants/${grant.id}/revoke`, as('itsm'));
  t.equal(noReason.status, 400, 'a revocation says why');
  t.equal(noReason.body['path'], 'reason');

  const revoked = await admin('POST', `/grants/${grant.id}/revoke`, { ...as('itsm'), json: { reason: 'work finished early' } });
  t.equal(revoked.status, 200);
  t.equal((revoked.body as unknown as GrantJson).state, 'revoked');
  t.same((revoked.body as unknown as GrantJson).revocation, { by: { kind: 'client', id: 'client:itsm' }, at: (revoked.body as { revocation: { at: string } }).revocation.at, reason: 'work finished early' });
  t.equal((await routed('vendor.localhost', apiAuth)).status, 403, 'the very next request is refused again');

  const again = await admin('POST', `/grants/${grant.id}/revoke`, { ...as('itsm'), json: { reason: 'again' } });
  t.equal(again.status, 409, 'revoking it again: 409');
  t.equal(again.body['error'], 'grant-already-over');
});

t.test('a request can be denied, once', async (t) => {
  const created = await admin('POST', '/grants', { ...SOC, json: grantFor(API_CLIENT.id) });
  t.equal(created.status, 201, 'a certificate principal asks');
  const id = String(created.body['id']);
  const denied = await admin('POST', `/grants/${id}/deny`, { ...as('change-board'), json: { reason: 'no change ticket approved' } });
  t.equal(denied.status, 200);
  t.equal(denied.body['state'], 'denied');
  const again = await admin('POST', `/grants/${id}/deny`, { ...as('itsm'), json: { reason: 'twice' } });
  t.equal(again.status, 409);
  t.equal(again.body['error'], 'grant-already-over');
});

t.test('grant requests the service refuses answer 400 with its code', async (t) => {
  const cases: Array<[string, Body, number, string]> = [
    ['a window that ends before it starts', grantFor(API_CLIENT.id, { notBefore: iso(now() + 2 * HOUR), notAfter: iso(now() + HOUR) }), 400, 'grant-window-invalid'],
    ['a window longer than 8h', grantFor(API_CLIENT.id, windowOf(0, 9 * HOUR)), 400, 'grant-window-too-long'],
    ['a window in the past', grantFor(API_CLIENT.id, windowOf(-3 * HOUR, HOUR)), 400, 'grant-window-past'],
    ['an unknown route', { ...grantFor(API_CLIENT.id), routes: [{ id: 'payroll' }] }, 400, 'grant-route-unknown'],
    ['a route no grant opens', { ...grantFor(API_CLIENT.id), routes: [{ id: 'app' }] }, 400, 'grant-route-not-grantable'],
    ['a subject who never signed in', grantFor('nobody.known'), 400, 'grant-subject-unknown'],
    ['no subject (an API caller names one)', { ...grantFor(API_CLIENT.id), subject: undefined }, 400, 'body-invalid'],
    ['an unknown field', { ...grantFor(API_CLIENT.id), approveNow: true }, 400, 'body-invalid'],
  ];
  for (const [what, json, status, code] of cases) {
    const res = await admin('POST', '/grants', { ...as('itsm'), json });
    t.equal(res.status, status, `${what}: ${status}`);
    t.equal(res.body['error'], code, `  ${code} (${String(res.body['message'])})`);
  }
  const created = await admin('POST', '/grants', { ...as('monitor'), json: grantFor(API_CLIENT.id) });
  t.equal(created.status, 403, 'a caller that is no approver cannot name someone for a grant');
  t.equal(created.body['error'], 'grant-requester-not-allowed');
});

// ---------------------------------------------------------------------------------------
// Break-glass

t.test('break-glass uses are listed, ended and reviewed by approvers only', async (t) => {
  const record = await gateway.access.breakGlass.start('chart', { principal: { kind: 'user', id: 'dr.alice' }, groups: ['clinicians'] }, 'cardiac arrest in bay 4, chart needed now');
  const list = await admin('GET', '/break-glass', as('monitor'));
  t.match((list.body['breakGlass'] as Body[])[0], { id: record.id, state: 'active', route: 'chart', ended: null, reviewed: null });
  const notApprover = await admin('POST', `/break-glass/${record.id}/review`, { ...as('monitor'), json: { note: 'looked fine' } });
  t.equal(notApprover.status, 403, 'the admin scope alone does not review');
  t.equal(notApprover.body['error'], 'admin-not-approver');
  const ended = await admin('POST', `/break-glass/${record.id}/end`, SOC);
  t.equal(ended.status, 200, 'an approver ends it early');
  t.equal(ended.body['state'], 'ended');
  const reviewed = await admin('POST', `/break-glass/${record.id}/review`, { ...as('itsm'), json: { note: 'confirmed with the ward: genuine emergency' } });
  t.equal(reviewed.status, 200, 'an approver reviews it');
  t.match(reviewed.body['reviewed'], { by: { id: 'client:itsm' }, note: 'confirmed with the ward: genuine emergency' });
  const again = await admin('POST', `/break-glass/${record.id}/review`, { ...as('change-board'), json: { note: 'again' } });
  t.equal(again.status, 409);
  t.equal(again.body['error'], 'break-glass-already-reviewed');
});

// ---------------------------------------------------------------------------------------
// Sessions

const appUrl = `http://app.localhost:${port}/`;
const idpOrigin = new URL(idp.issuer).origin;
/** The browser's next request to the app: true when wardgate sends it to sign in again. */
async function sentToSignIn(browser: Browser): Promise<boolean> {
  const page = await browser.navigate(appUrl, { stopBefore: (url) => url.origin === idpOrigin });
  return page.stoppedAt !== undefined;
}

t.test('sessions: listed by ref, ended one at a time or all of a person\'s, and the next request is refused', async (t) => {
  const first = new Browser();
  t.equal((await signIn(first, appUrl, 'dr.alice', 'pwd')).status, 200, 'dr.alice signed in with a real browser');
  t.notOk(await sentToSignIn(first), 'her session works');

  const listed = await admin('GET', '/sessions?sub=dr.alice', as('monitor'));
  t.equal(listed.status, 200);
  const sessions = listed.body['sessions'] as Array<Body & { ref: string }>;
  t.equal(sessions.length, 1, 'one session of dr.alice');
  t.match(sessions[0], { sub: 'dr.alice', email: 'alice@hospital.example' });
  t.same(Object.keys(sessions[0]!).sort(), ['acr', 'amr', 'createdAt', 'email', 'expiresAt', 'groups', 'lastSeenAt', 'name', 'ref', 'sub'], 'no id, no tokens: nothing that would let a reader become her');

  t.equal((await admin('DELETE', '/sessions/nosuchref', as('monitor'))).status, 404, 'an unknown ref: 404');
  const ended = await admin('DELETE', `/sessions/${encodeURIComponent(sessions[0]!.ref)}`, as('monitor'));
  t.same([ended.status, ended.body], [200, { ended: 1 }], 'ended by its ref');
  t.match(actions().at(-1), { actor: 'client:monitor', action: 'session.end', target: sessions[0]!.ref, outcome: 'ok' });
  t.ok(await sentToSignIn(first), 'her very next request is sent to sign in again');

  const laptop = new Browser();
  const phone = new Browser();
  await signIn(laptop, appUrl, 'dr.alice', 'pwd');
  await signIn(phone, appUrl, 'dr.alice', 'pwd');
  const all = await admin('DELETE', '/sessions', as('monitor'));
  t.equal(all.status, 400, 'ending sessions without saying whose is refused');
  const hers = await admin('DELETE', '/sessions?sub=dr.alice', SOC);
  t.same([hers.status, hers.body], [200, { ended: 2 }], 'every session of dr.alice ended');
  t.ok(await sentToSignIn(laptop) && await sentToSignIn(phone), 'on both her browsers');
  t.same((await admin('GET', '/sessions?sub=dr.alice', as('monitor'))).body, { sessions: [] });
});

// ---------------------------------------------------------------------------------------
// Devices

/** laptop-7's posture assertion, as the MDM signs one. */
function posture(): Promise<string> {
  const at = Math.floor(Date.now() / 1000);
  return new SignJWT({ managed: true, compliant: true, observed_at: at })
    .setProtectedHeader({ alg: 'ES256', typ: 'device-posture+jwt' })
    .setIssuer('https://mdm.test').setAudience('wardgate').setSubject('laptop-7')
    .setIssuedAt(at).setExpirationTime(at + 600).setJti(randomUUID())
    .sign(mdm.privateKey);
}

t.test('a device marked not compliant is refused on its next request, until the mark is cleared', async (t) => {
  const device = { ...apiAuth, 'x-device-posture': await posture() };
  t.equal((await routed('device.localhost', device)).status, 200, 'laptop-7, compliant by its MDM, gets in');

  const noReason = await admin('PUT', '/devices/laptop-7/compliance', { ...as('monitor'), json: { compliant: false } });
  t.equal(noReason.status, 400, 'a quarantine says why');
  const marked = await admin('PUT', '/devices/laptop-7/compliance', { ...as('monitor'), json: { compliant: false, reason: 'reported stolen, INC-2210' } });
  t.equal(marked.status, 200);
  t.match(marked.body, { deviceId: 'laptop-7', compliant: false, by: 'client:monitor', reason: 'reported stolen, INC-2210' });
  const refused = await routed('device.localhost', device);
  t.equal(refused.status, 403, 'the very next request with its posture is refused');
  t.ok((refused.body['reasons'] as string[]).includes('device-noncompliant'), 'as a non-compliant device');

  const listed = await admin('GET', '/devices', as('monitor'));
  t.match((listed.body['devices'] as Body[]).find((d) => d['id'] === 'laptop-7'), { inInventory: false, compliant: false, override: { compliant: false, by: 'client:monitor' } });

  const cleared = await admin('DELETE', '/devices/laptop-7/compliance', SOC);
  t.same([cleared.status, cleared.body], [200, { deviceId: 'laptop-7', cleared: true }]);
  t.equal((await routed('device.localhost', device)).status, 200, 'cleared: its MDM\'s word stands again');
  const again = await admin('DELETE', '/devices/laptop-7/compliance', SOC);
  t.equal(again.status, 404, 'nothing left to clear: 404');
  t.equal(again.body['error'], 'device-override-not-found');
});

// ---------------------------------------------------------------------------------------
// Policy explain

t.test('policy explain answers as `wardgate policy explain --json` does, with the plain words beside it', async (t) => {
  const context = {
    identity: { sub: 'nurse.bob', groups: ['nursing'] },
    network: { ip: '10.1.2.3' },
    time: '2026-11-24T10:00:00Z',
    request: { method: 'GET', path: '/chart' },
  };
  const res = await admin('POST', '/policy/explain', { ...as('monitor'), json: { route: 'chart', context } });
  t.equal(res.status, 200);
  // The functions the CLI calls, on the same config and context.
  const route = config.routes.find((r) => r.id === 'chart')!;
  const explanation = explainDecision(route, true, parseContext(context, { file: 'context', route, routes: config.routes, now: Date.now() }));
  t.same(res.body, { ...JSON.parse(explanationJson(explanation)) as Body, text: formatExplanation(explanation) });
  t.equal(res.body['outcome'], 'deny', 'nurse.bob is not a clinician');
  t.match(res.body['text'], /reasons:/, 'and the text says why in words');
  t.match(actions().at(-1), { actor: 'client:monitor', action: 'policy.explain', target: 'chart', outcome: 'ok' });

  const unknown = await admin('POST', '/policy/explain', { ...as('monitor'), json: { route: 'payroll', context } });
  t.same([unknown.status, unknown.body['error']], [400, 'route-unknown']);
  const bad = await admin('POST', '/policy/explain', { ...as('monitor'), json: { route: 'chart', context: { ...context, request: { path: 'chart' } } } });
  t.same([bad.status, bad.body['error']], [400, 'context-invalid'], 'a context the CLI would refuse is refused the same way');
  t.match(bad.body['path'], /^context\.request/);
});

// ---------------------------------------------------------------------------------------
// The record

t.test('every call is in the log with who made it; no token ever is', async (t) => {
  const lines = actions();
  for (const action of ['grant.create', 'grant.approve', 'grant.revoke', 'grant.deny', 'break-glass.end', 'break-glass.review', 'session.end', 'session.end-all', 'device.set-compliance', 'device.clear-compliance', 'policy.explain']) {
    t.ok(lines.some((line) => line['action'] === action && line['outcome'] === 'ok' && typeof line['actor'] === 'string'), `${action}: logged with its actor`);
  }
  t.ok(lines.every((line) => line.level >= 30 && 'outcome' in line && 'target' in line), 'every line says what it acted on and how it went');
  const text = logs.map((line) => JSON.stringify(line)).join('\n');
  for (const token of issued.filter((value) => value.length > 20)) t.notOk(text.includes(token), 'no token in the log');
  const metrics = await admin('GET', '/metrics');
  t.match(metrics.body['text'], /wardgate_grant_events_total\{event="grant-revoked"\} 1/, 'the grant authority counted the changes the API made');
});

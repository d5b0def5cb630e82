import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { WebSocket } from 'ws';
import { DEMO_ADMIN_CLIENT, DEMO_API_CLIENT, DEMO_CARDIOLOGY_CLIENT } from '../../proxy/demo/identity.js';
import { Browser, decodeEntities, parseForms, type BrowserResponse } from '../helpers/browser.js';
import { isIdpLoginPage, signIn } from '../helpers/idp.js';
import { sample } from '../helpers/gateway.js';
import { freePort, spawnWardgate, waitFor200, type WardgateProcess } from '../helpers/process.js';
import { until, within } from '../helpers/wait.js';

/*
 * The README's demo works as documented: `wardgate demo` starts the demo IdP, the sample
 * apps (Epic, PACS, FHIR, the vendor console and the demo MDM) and wardgate in front of
 * them (config/demo.yaml, moved to free ports by its environment variables), and the
 * hospital example of config/hospital.yaml holds against the real, spawned demo:
 *
 *  (a) a clinician with a security key on a managed device reaches Epic, but not PACS;
 *  (b) radiology reaches PACS, WebSocket included;
 *  (c) a password session is stepped up at the IdP before Epic;
 *  (d) an unmanaged (or unknown) device, and a client outside the UK and Ireland, are refused;
 *  (e) the cardiology app cannot read psychiatric records, whatever its scopes;
 *  (f) a token with patient/Observation.read reads Observations, not MedicationRequests;
 *  (g) the vendor console opens to an approved grant, and closes when it is revoked.
 *
 * Devices prove their posture with assertions from the demo MDM, fetched through wardgate
 * by a signed-in user and sent in the x-device-posture header; remote clients are played
 * with X-Forwarded-For, which the demo believes from loopback (trustedProxies).
 */

t.setTimeout(90_000);

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** GET `path` from wardgate with an explicit Host header (as a browser at HOST:PORT would send). */
function get(port: number, host: string, path: string, accept = 'application/json', extra: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 10_000, headers: { host: `${host}:${port}`, accept, ...extra } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${host}${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** The JSON refusal wardgate answers API clients with. */
interface Refusal {
  status: number;
  reason: string;
  reasons?: string[];
  rule?: string;
  remediation?: string;
}

const refusalOf = (answer: { body: string }): Refusal => JSON.parse(answer.body) as Refusal;

/** A JWT's payload, read without verifying (wardgate verifies; the test looks). */
function claimsOf(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
}

let demo: WardgateProcess;
let port = 0;
let adminPort = 0;
let idpPort = 0;
const appPorts: Record<string, number> = {};
const url = (host: string, path = '/'): string => `http://${host}.localhost:${port}${path}`;
const POSTURE_HEADER = 'x-device-posture';

const stateDir = mkdtempSync(join(tmpdir(), 'wardgate-demo-test-'));
t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));

t.before(async () => {
  port = await freePort();
  adminPort = await freePort();
  idpPort = await freePort();
  for (const app of ['EPIC', 'PACS', 'FHIR', 'VENDOR', 'MDM']) appPorts[app] = await freePort();
  demo = spawnWardgate(['demo'], {
    WARDGATE_DEMO_PORT: String(port),
    WARDGATE_DEMO_IDP_PORT: String(idpPort),
    WARDGATE_DEMO_ADMIN: `127.0.0.1:${adminPort}`,
    WARDGATE_DEMO_EPIC_PORT: String(appPorts.EPIC),
    WARDGATE_DEMO_PACS_PORT: String(appPorts.PACS),
    WARDGATE_DEMO_FHIR_PORT: String(appPorts.FHIR),
    WARDGATE_DEMO_VENDOR_PORT: String(appPorts.VENDOR),
    WARDGATE_DEMO_MDM_PORT: String(appPorts.MDM),
    // A store file of this run's own: nothing left from an earlier demo, nothing shared.
    WARDGATE_DEMO_STORE: join(stateDir, 'store.jsonl'),
  });
  t.teardown(() => {
    if (demo.child.exitCode === null && demo.child.signalCode === null) demo.child.kill('SIGKILL');
  });
  await waitFor200(`http://127.0.0.1:${adminPort}/readyz`, 20_000);
});

/** A fresh browser signed in at the demo MDM (which wants no device), as `user` with `method`. */
async function signedIn(user: string, method: 'hwk' | 'pwd'): Promise<Browser> {
  const browser = new Browser();
  const page = await signIn(browser, url('mdm'), user, method);
  if (page.status !== 200) throw new Error(`${user} could not sign in at the demo MDM: ${page.status} ${page.body.slice(0, 300)}`);
  return browser;
}

/**
 * A fresh posture assertion for `device`, from the demo MDM through wardgate, as the
 * signed-in user of `browser`: the header to send with it. Each call gets a new jti, and
 * wardgate binds an assertion to the first signed-in user who presents it.
 */
async function postureOf(browser: Browser, device: 'ward-laptop-07' | 'home-pc-01'): Promise<Record<string, string>> {
  const res = await browser.request(url('mdm', `/devices/${device}/posture`));
  if (res.status !== 200) throw new Error(`the demo MDM answered ${res.status} for ${device}: ${res.body.slice(0, 300)}`);
  return { [POSTURE_HEADER]: res.body.trim() };
}

/** An access token from the demo IdP's token endpoint for one of the demo's API clients. */
async function apiToken(client: { id: string; secret: string }, scope: string, resource = `http://fhir.localhost:${port}/fhir`): Promise<string> {
  const response = await tokenResponse(client, scope, resource);
  const body = await response.json() as { access_token?: string };
  if (response.status !== 200 || typeof body.access_token !== 'string') throw new Error(`token endpoint answered ${response.status}: ${JSON.stringify(body)}`);
  return body.access_token;
}

function tokenResponse(client: { id: string; secret: string }, scope: string, resource: string): Promise<Response> {
  return fetch(`http://localhost:${idpPort}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope }),
  });
}

/** On the IdP's sign-in page, picks `user` and `method`, sending `headers` on every request that follows. */
async function pickUser(browser: Browser, page: BrowserResponse, user: string, method: string, headers: Record<string, string>) {
  const form = parseForms(page.body, page.url).find((f) => f.fields.some(([name, value]) => name === 'user' && value === user));
  if (!form) throw new Error(`no sign-in form for ${user} on ${page.url}`);
  return browser.submit(page, form, {}, { name: 'method', value: method }, { headers });
}

t.test('the demo tells the user where to go, on the ports it was given', async (t) => {
  const banner = demo.stderr();
  for (const url of [
    `http://epic.localhost:${port}/`,
    `http://pacs.localhost:${port}/`,
    `http://fhir.localhost:${port}/fhir`,
    `http://vendor.localhost:${port}/`,
    `http://mdm.localhost:${port}/`,
    `http://127.0.0.1:${adminPort}/metrics`,
    `http://localhost:${idpPort}`,
  ]) t.match(banner, url, `the start-up banner lists ${url}`);
  t.match(banner, 'x-device-posture', 'and says which header carries a device\'s posture');
});

t.test('every app asks for sign-in first; nothing reaches it unauthenticated', async (t) => {
  // A trusted device, so that the sign-in is what stands in the way (the device check comes first).
  const device = await postureOf(await signedIn('admin.erin', 'hwk'), 'ward-laptop-07');
  for (const host of ['epic.localhost', 'pacs.localhost', 'vendor.localhost', 'mdm.localhost']) {
    const page = await get(port, host, '/', 'text/html', device);
    t.equal(page.status, 302, `a browser at ${host} is redirected`);
    t.match(page.headers.location, `http://auth.localhost:${port}/.wardgate/sign-in?rd=`, 'to the sign-in on the auth host');
  }
  const api = await get(port, 'fhir.localhost', '/fhir/Patient');
  t.equal(api.status, 401, 'an API call without credentials gets 401');
});

t.test('the demo MDM hands a signed-in user fresh posture assertions for its two devices', async (t) => {
  const anonymous = await get(port, 'mdm.localhost', '/', 'text/html');
  t.equal(anonymous.status, 302, 'the MDM is behind wardgate too: sign in first (no device needed)');
  const erin = await signedIn('admin.erin', 'pwd');
  const page = await erin.navigate(url('mdm'));
  t.equal(page.status, 200, 'a user with no device and only a password reaches the MDM: it is the remediation route');
  t.match(page.body, 'ward-laptop-07', 'it lists the managed ward laptop');
  t.match(page.body, 'home-pc-01', 'and the unmanaged home PC');
  t.match(page.body, `curl -i -H &#39;x-device-posture: ey`, 'with the curl line that sends an assertion');
  t.match(page.body, `http://epic.localhost:${port}/`, 'to the Epic portal on this demo\'s port');

  const first = (await postureOf(erin, 'ward-laptop-07'))[POSTURE_HEADER]!;
  const second = (await postureOf(erin, 'ward-laptop-07'))[POSTURE_HEADER]!;
  const header = JSON.parse(Buffer.from(first.split('.')[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;
  t.same(header, { alg: 'ES256', typ: 'device-posture+jwt' }, 'an ES256 JWT typed device-posture+jwt');
  const claims = claimsOf(first);
  t.match(claims, {
    iss: `http://mdm.localhost:${port}`,
    aud: 'wardgate',
    sub: 'ward-laptop-07',
    managed: true,
    compliant: true,
    disk_encryption: true,
    os: String,
    jti: String,
  }, 'vouching for the ward laptop as devices.posture in demo.yaml expects');
  t.equal(Number(claims.exp) - Number(claims.iat), 900, 'valid for 15 minutes');
  t.ok(Math.abs(Number(claims.observed_at) * 1000 - Date.now()) < 60_000, 'observed just now');
  t.not(claimsOf(second).jti, claims.jti, 'every assertion has a jti of its own');
  t.match(claimsOf((await postureOf(erin, 'home-pc-01'))[POSTURE_HEADER]!), { sub: 'home-pc-01', managed: false, compliant: false }, 'the home PC is vouched for as unmanaged');
  t.equal((await erin.request(url('mdm', '/devices/nothing/posture'))).status, 404, 'a device the MDM does not know gets no assertion');
});

t.test('(a) dr.alice, with her security key on the managed laptop, reaches the Epic portal but not PACS', async (t) => {
  const alice = await signedIn('dr.alice', 'hwk');
  const laptop = await postureOf(alice, 'ward-laptop-07');
  const res = await alice.navigate(url('epic'), { headers: laptop });
  t.equal(res.status, 200, 'epic.localhost / answers 200');
  t.match(res.headers['content-type'], /^text\/html/, 'it is an HTML page');
  t.ok(res.headers['x-request-id'], 'wardgate added a request id to the response');
  t.notOk(res.hops.some((hop) => hop.startsWith(`http://localhost:${idpPort}/`)), 'her sign-in at the MDM served Epic too: no second visit to the IdP');
  const echo = await alice.request(url('epic', '/api/echo'), { accept: 'application/json', headers: laptop });
  t.equal(echo.status, 200, 'epic.localhost /api/echo answers 200');
  const seen = JSON.parse(echo.body) as { app: string; headers: Record<string, string> };
  t.equal(seen.app, 'epic', 'the request reached the epic stand-in, not another app');
  t.equal(seen.headers.host, `127.0.0.1:${appPorts.EPIC}`, 'upstream saw its own host: the request went to the epic upstream port');
  t.ok(seen.headers['x-wardgate-assertion'], 'the portal received wardgate\'s signed identity assertion');
  t.equal(seen.headers['x-epic-user'], 'alice@hospital.example', 'and the claim header the route asks for');
  t.equal(seen.headers[POSTURE_HEADER], undefined, 'the posture assertion itself is not passed upstream');

  const pacs = await alice.navigate(url('pacs'), { headers: laptop });
  t.equal(pacs.status, 403, 'PACS refuses her: radiology only');
  t.match(pacs.body, 'groups-unauthorized', 'the page names the reason');
  t.match(pacs.body, 'Images are open to radiology. Other clinicians find the report in Epic.', 'and shows the route\'s remediation');
});

t.test('(b) rad.carol, radiology, reaches the PACS viewer and its study WebSocket', async (t) => {
  const carol = await signedIn('rad.carol', 'hwk');
  const laptop = await postureOf(carol, 'ward-laptop-07');
  const res = await carol.navigate(url('pacs'), { headers: laptop });
  t.equal(res.status, 200, 'pacs.localhost / answers 200');
  t.match(res.body, '/ws', 'the viewer page opens its WebSocket at /ws');

  const session = carol.cookies('pacs.localhost').find((c) => c.name === '__Host-wardgate');
  t.ok(session, 'the browser holds its pacs session cookie');
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, {
    headers: { host: `pacs.localhost:${port}`, cookie: `__Host-wardgate=${session!.value}`, ...laptop },
  });
  t.teardown(() => ws.terminate());
  ws.on('error', () => {});
  const messages: Array<{ study?: string; progress?: number; echo?: string }> = [];
  ws.on('message', (data) => messages.push(JSON.parse(data.toString()) as { progress?: number }));
  await within(new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
    ws.once('close', (code) => reject(new Error(`closed with ${code} before opening`)));
  }), 5000, 'the WebSocket to open through wardgate');
  await until(() => messages.some((m) => typeof m.progress === 'number'), 5000, 'a progress message');
  const progress = messages.find((m) => typeof m.progress === 'number')!;
  t.equal(progress.study, '1.2.840.113619.2.55.3', 'a study-progress message arrived over the tunnel');
  // The viewer reports progress 0 the moment the socket opens; it must not be lost in transit.
  t.equal(messages[0]?.progress, 0, 'the first message the client received is the first one sent (progress 0)');
  ws.send('hello from the test');
  await until(() => messages.some((m) => m.echo !== undefined), 5000, 'the echo');
  t.ok(messages.some((m) => m.echo === 'hello from the test'), 'messages flow client -> upstream too (echoed back)');

  const bare = await new Promise<number>((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { host: `pacs.localhost:${port}`, cookie: `__Host-wardgate=${session!.value}` } });
    socket.on('error', () => {});
    socket.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      socket.terminate();
    });
    socket.once('open', () => {
      socket.terminate();
      reject(new Error('a WebSocket without a device opened'));
    });
  });
  t.equal(bare, 403, 'the same session without the device\'s posture cannot open the WebSocket');
});

t.test('(c) a password session is stepped up at the IdP before the Epic portal', async (t) => {
  // Signed in at the MDM with a password: a session, but a weak one.
  const alice = await signedIn('dr.alice', 'pwd');
  const laptop = await postureOf(alice, 'ward-laptop-07');
  const login = await alice.navigate(url('epic'), { headers: laptop });
  const authorize = login.hops.find((hop) => hop.startsWith(`http://localhost:${idpPort}/auth?`));
  t.ok(authorize, 'Epic sends her password session back to the IdP');
  const asked = new URL(authorize!).searchParams;
  t.equal(asked.get('acr_values'), 'phr', 'asking for a phishing-resistant sign-in');
  t.equal(asked.get('prompt'), 'login', 'afresh, not on the strength of her IdP session (a step-up)');
  t.ok(isIdpLoginPage(login), 'the IdP shows its sign-in page');
  t.match(login.body, 'This application asks for a security key.', 'which asks for a security key');
  const done = await pickUser(alice, login, 'dr.alice', 'hwk', laptop);
  t.equal(done.status, 200, 'with her security key, she is in');
  t.equal(done.url, url('epic'), 'back at the Epic portal');

  const bob = await signedIn('nurse.bob', 'pwd');
  const bobsLaptop = await postureOf(bob, 'ward-laptop-07');
  const again = await bob.navigate(url('epic'), { headers: bobsLaptop });
  t.ok(isIdpLoginPage(again), 'nurse.bob\'s password session is stepped up at the IdP too');
  const refused = await pickUser(bob, again, 'nurse.bob', 'pwd', bobsLaptop);
  t.equal(refused.status, 403, 'he has no security key: a password again is refused, not stepped up in a loop');
  t.match(refused.body, 'auth-strength-insufficient', 'the page names the reason');
});

t.test('(d) an unmanaged or unknown device, and a client outside the UK and Ireland, are refused', async (t) => {
  const alice = await signedIn('dr.alice', 'hwk');
  const laptop = await postureOf(alice, 'ward-laptop-07');
  const homePc = await postureOf(alice, 'home-pc-01');
  const remedy = `http://mdm.localhost:${port}/`;

  const home = await alice.navigate(url('epic'), { headers: laptop });
  t.equal(home.status, 200, 'with the ward laptop she reaches Epic, from loopback: the hospital LAN (GB)');
  const bare = await alice.navigate(url('epic'));
  t.equal(bare.status, 403, 'no posture: refused, though she is signed in with her security key');
  t.match(bare.body, '<code>device-untrusted</code> <code>device-unknown</code>', 'the page names the reasons');
  t.match(bare.body, `the demo MDM at ${remedy}`, 'and points to the demo MDM (the route\'s remediation)');

  const unmanaged = await alice.navigate(url('epic'), { headers: homePc });
  t.equal(unmanaged.status, 403, 'the unmanaged home PC: refused');
  t.match(unmanaged.body, '<code>device-untrusted</code> <code>device-unmanaged</code>', 'because it is unmanaged');
  t.match(unmanaged.body, remedy, 'with the same remediation');
  const unmanagedApi = refusalOf(await alice.request(url('epic'), { accept: 'application/json', headers: homePc }));
  t.match(unmanagedApi, { reasons: ['device-untrusted', 'device-unmanaged'], rule: 'devices: trusted' }, 'decided by the route\'s device gate');

  const abroad = await alice.request(url('epic'), { accept: 'application/json', headers: { ...laptop, 'x-forwarded-for': '203.0.113.9' } });
  t.equal(abroad.status, 403, 'from 203.0.113.9 (US in the demo), with the trusted laptop: refused');
  t.match(refusalOf(abroad), { reason: 'country-unauthorized', rule: 'deny[0] outside-uk-and-ireland' }, 'by the outside-uk-and-ireland rule');
  const anonymousAbroad = await get(port, 'epic.localhost', '/', 'text/html', { 'x-forwarded-for': '203.0.113.9' });
  t.equal(anonymousAbroad.status, 403, 'refused before any sign-in, too');
  t.match(anonymousAbroad.body, 'country-unauthorized', 'for the same reason');
  const unknown = await alice.request(url('epic'), { accept: 'application/json', headers: { ...laptop, 'x-forwarded-for': '100.64.0.1' } });
  t.equal(refusalOf(unknown).reason, 'country-unauthorized', 'an address of no known country is refused as well');

  for (const [address, country] of [['192.0.2.10', 'IE'], ['198.51.100.7', 'GB']] as const) {
    const ok = await alice.request(url('epic'), { accept: 'text/html', headers: { ...laptop, 'x-forwarded-for': address } });
    t.equal(ok.status, 200, `from ${address} (${country} in the demo) with the laptop: allowed`);
  }
});

t.test('(e) the cardiology app cannot read psychiatric records, whatever its scopes', async (t) => {
  const token = await apiToken(DEMO_CARDIOLOGY_CLIENT, 'patient/*.read');
  t.match(claimsOf(token), { client_id: 'cardiology-app', scope: 'patient/*.read' }, 'its token carries client_id, which the deny rule reads');
  const bearer = { authorization: `Bearer ${token}` };
  const observations = await get(port, 'fhir.localhost', '/fhir/Observation?patient=demo-1001', 'application/fhir+json', bearer);
  t.equal(observations.status, 200, 'it reads Observations');
  for (const path of ['/fhir/DocumentReference?patient=demo-1001', '/fhir/DocumentReference/doc-4001', '/fhir/QuestionnaireResponse?patient=demo-1001', '/fhir/Questionnaire']) {
    const refused = await get(port, 'fhir.localhost', path, 'application/fhir+json', bearer);
    t.equal(refused.status, 403, `${path} is refused`);
    t.equal(refusalOf(refused).rule, 'deny[1] cardiology-app-no-psychiatric-records', 'by the FHIR resource rule');
  }

  const other = { authorization: `Bearer ${await apiToken(DEMO_API_CLIENT, 'patient/*.read')}` };
  const note = await get(port, 'fhir.localhost', '/fhir/DocumentReference?patient=demo-1001', 'application/fhir+json', other);
  t.equal(note.status, 200, 'the same scope in another app\'s token reads the psychiatric note: the rule is about the app');
  t.match(JSON.parse(note.body), { resourceType: 'Bundle', total: 1, entry: [{ resource: { resourceType: 'DocumentReference', id: 'doc-4001' } }] }, 'the note is there to be refused');
});

t.test('(f) a token with patient/Observation.read reads Observations but not MedicationRequests', async (t) => {
  const token = await apiToken(DEMO_API_CLIENT, 'patient/Observation.read');
  t.equal(claimsOf(token).scope, 'patient/Observation.read', 'the demo IdP granted exactly that scope');
  const bearer = { authorization: `Bearer ${token}` };
  const observations = await get(port, 'fhir.localhost', '/fhir/Observation?patient=demo-1001', 'application/fhir+json', bearer);
  t.equal(observations.status, 200, 'Observations: 200');
  t.match(JSON.parse(observations.body), { resourceType: 'Bundle', total: 2, entry: [{ resource: { resourceType: 'Observation' } }] }, 'a searchset of the patient\'s Observations');
  const meds = await get(port, 'fhir.localhost', '/fhir/MedicationRequest?patient=demo-1001', 'application/fhir+json', bearer);
  t.equal(meds.status, 403, 'MedicationRequests: 403');
  t.match(refusalOf(meds), { reason: 'scope-insufficient' }, 'the scope does not cover them');
});

/** The page's only POST form to `path` (the access and approvals pages). */
function formTo(page: BrowserResponse, path: string, field?: [string, string]) {
  const form = parseForms(page.body, page.url).find((f) => f.method === 'POST' && new URL(f.action).pathname === path
    && (!field || f.fields.some(([name, value]) => name === field[0] && value === field[1])));
  if (!form) throw new Error(`no POST form to ${path}${field ? ` with ${field.join('=')}` : ''} on ${page.url}`);
  return form;
}

t.test('(g) the vendor console opens to vendor.dave for the grant admin.erin approves, and closes when she revokes it', async (t) => {
  const dave = new Browser();
  const before = await signIn(dave, url('vendor'), 'vendor.dave', 'pwd');
  t.equal(before.status, 403, 'without a grant: refused');
  t.match(before.body, '<code>grant-missing</code>', 'the page names the reason');
  t.match(before.body, '/.wardgate/access?route=vendor', 'and links to the request page');

  const access = await signIn(dave, url('auth', '/.wardgate/access?route=vendor'), 'vendor.dave', 'pwd');
  t.equal(access.status, 200, 'the request page, on the auth host');
  const asked = await dave.submit(access, formTo(access, '/.wardgate/access'), { route: 'vendor', duration: '60', justification: 'Demo: update the infusion pump firmware', ticket: 'CHG-DEMO' });
  const id = new URL(asked.url).searchParams.get('requested');
  t.match(id, /^g_[a-z2-9]{20}$/, `the request is made (${asked.url})`);

  const erin = new Browser();
  const weak = await signIn(erin, url('auth', '/.wardgate/approvals'), 'admin.erin', 'pwd');
  t.equal(weak.status, 403, 'with a password alone, admin.erin is sent to step up, and refused when she answers with a password again');
  t.match(weak.body, 'auth-strength-insufficient');
  const approvals = await signIn(erin, url('auth', '/.wardgate/approvals'), 'admin.erin', 'hwk');
  t.equal(approvals.status, 200, 'with her security key she opens the approver page');
  t.match(approvals.body, 'Demo: update the infusion pump firmware', 'and sees the request, with its justification');
  const approved = await erin.submit(approvals, formTo(approvals, '/.wardgate/approvals', ['action', 'approve']));
  t.equal(approved.status, 200, 'she approves it');

  const inside = await dave.navigate(url('vendor'));
  t.equal(inside.status, 200, 'vendor.dave reaches the console');
  t.match(inside.body, 'DEMO-IP-0001', 'it is the vendor console page (fleet table)');

  const revoked = await erin.submit(approved, formTo(approved, '/.wardgate/approvals', ['action', 'revoke']), { reason: 'demo over' });
  t.equal(revoked.status, 200, 'she revokes it');
  const after = await dave.navigate(url('vendor'));
  t.equal(after.status, 403, 'his next request is refused');
  t.match(after.body, '<code>grant-missing</code>');

  const alice = await signedIn('dr.alice', 'hwk');
  const clinician = await alice.navigate(url('vendor'));
  t.equal(clinician.status, 403, 'a clinician is never let in');
  t.match(clinician.body, '<code>groups-unauthorized</code>', 'the console is for vendor support only');
});

t.test('break-glass: dr.alice on a device Epic does not trust breaks the glass from the refusal page, and Epic opens, marked', async (t) => {
  const alice = new Browser();
  const refused = await alice.navigate(url('epic', '/'));
  t.equal(refused.status, 403, 'no posture: refused at the device gate, before any sign-in');
  const href = /<a href="([^"]*\/\.wardgate\/break-glass[^"]*)"/.exec(refused.body)?.[1];
  t.ok(href, 'the refusal offers emergency access');
  const page = await signIn(alice, decodeEntities(href!), 'dr.alice', 'hwk');
  t.equal(page.status, 200, 'which signs her in on the auth host and asks why');
  const inside = await alice.submit(page, formTo(page, '/.wardgate/break-glass'), { reason: 'Demo: patient in cardiac arrest, chart needed' });
  t.equal(inside.status, 200, 'with a reason, Epic opens');
  t.equal(new URL(inside.url).host, `epic.localhost:${port}`, 'back on Epic');
  t.match(inside.headers['x-wardgate-break-glass'], /^bg_[a-z2-9]{20}; until=/, 'every response marked as emergency access');
  const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  t.equal(sample(metrics, 'wardgate_break_glass_total', { route: 'epic' }), 1, 'counted');
});

t.test('the admin API answers admin-cli\'s token, and the IdP gives no other app one', async (t) => {
  const ADMIN_AUDIENCE = 'http://wardgate-admin.localhost';
  const token = await apiToken(DEMO_ADMIN_CLIENT, 'wardgate:admin', ADMIN_AUDIENCE);
  const api = (path: string, headers: Record<string, string> = {}) => fetch(`http://127.0.0.1:${adminPort}/api/v1${path}`, { headers });
  const list = await api('/grants?state=revoked', { authorization: `Bearer ${token}` });
  t.equal(list.status, 200, 'admin-cli lists grants');
  t.match(await list.json(), { grants: [{ state: 'revoked', subject: { user: 'vendor.dave' } }] }, 'including the one (g) revoked');
  t.equal((await api('/grants')).status, 401, 'without a token: 401');
  const smart = await tokenResponse(DEMO_API_CLIENT, 'wardgate:admin', ADMIN_AUDIENCE);
  t.equal(smart.status, 400, 'the SMART app cannot get a token for the admin API');
  const fhirToken = await apiToken(DEMO_API_CLIENT, 'patient/*.read');
  t.equal((await api('/grants', { authorization: `Bearer ${fhirToken}` })).status, 401, 'and its FHIR token is refused there (wrong audience)');
});

t.test('fhir.localhost serves the FHIR API under /fhir only, to SMART apps with a token', async (t) => {
  const token = await apiToken(DEMO_API_CLIENT, 'patient/*.read');
  t.ok(token, 'the demo IdP issues a token to the demo SMART client');
  const bearer = { authorization: `Bearer ${token}` };
  const metadata = await get(port, 'fhir.localhost', '/fhir/metadata', 'application/json', bearer);
  t.equal(metadata.status, 200, '/fhir/metadata answers 200');
  t.equal((JSON.parse(metadata.body) as { resourceType: string }).resourceType, 'CapabilityStatement', '/fhir/metadata is a CapabilityStatement');
  const patients = await get(port, 'fhir.localhost', '/fhir/Patient', 'application/json', bearer);
  t.equal(patients.status, 200, '/fhir/Patient answers 200');
  const bundle = JSON.parse(patients.body) as { resourceType: string; type: string; total: number };
  t.same({ resourceType: bundle.resourceType, type: bundle.type }, { resourceType: 'Bundle', type: 'searchset' }, '/fhir/Patient is a searchset Bundle');
  t.ok(bundle.total > 0, 'with some (fictional) patients in it');
  const outside = await get(port, 'fhir.localhost', '/admin');
  t.equal(outside.status, 404, 'a path outside /fhir on fhir.localhost is 404');
  t.equal((JSON.parse(outside.body) as { reason: string }).reason, 'no-route', 'refused by wardgate itself (no-route), never forwarded');
});

t.test('an unknown host gets 404 no-route', async (t) => {
  const res = await get(port, 'unknown.localhost', '/');
  t.equal(res.status, 404, 'a host no route names is 404: no default route');
  const body = JSON.parse(res.body) as { status: number; reason: string; requestId: string };
  t.equal(body.reason, 'no-route', 'the refusal names the reason no-route');
  t.equal(body.requestId, res.headers['x-request-id'], 'and carries the request id the help desk can look up');
});

t.test('SIGTERM stops the demo with exit code 0', async (t) => {
  demo.child.kill('SIGTERM');
  const code = await within(demo.exited, 15_000, 'the demo to exit');
  t.equal(code, 0, 'the demo exits 0 on SIGTERM');
  const probe = await get(port, 'epic.localhost', '/').then(() => 'answered', (err: NodeJS.ErrnoException) => err.code);
  t.equal(probe, 'ECONNREFUSED', 'nothing listens on the demo port any more');
  for (const app of ['EPIC', 'MDM']) {
    const upstreamProbe = await get(appPorts[app]!, '127.0.0.1', '/').then(() => 'answered', (err: NodeJS.ErrnoException) => err.code);
    t.equal(upstreamProbe, 'ECONNREFUSED', `the ${app.toLowerCase()} sample upstream was stopped too`);
  }
});

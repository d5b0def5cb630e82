import { request } from 'node:http';
import t from 'tap';
import { WebSocket } from 'ws';
import { DEMO_API_CLIENT } from '../../proxy/demo/identity.js';
import { Browser } from '../helpers/browser.js';
import { signIn } from '../helpers/idp.js';
import { freePort, spawnWardgate, waitFor200, type WardgateProcess } from '../helpers/process.js';
import { until, within } from '../helpers/wait.js';

/*
 * The README's demo works as documented: `wardgate demo` starts the demo IdP, the four
 * sample apps and wardgate in front of them (config/demo.yaml, moved to free ports by its
 * environment variables); every app asks for sign-in at the demo IdP, serves its pages to
 * a signed-in user, refuses unknown hosts, carries the PACS viewer's WebSocket, and the
 * whole demo stops cleanly on SIGTERM.
 */

t.setTimeout(60_000);

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

let demo: WardgateProcess;
let port = 0;
let adminPort = 0;
let idpPort = 0;
const appPorts: Record<string, number> = {};
// One browser for the whole file: signed in once, as a person trying the demo would be.
const alice = new Browser();
const url = (host: string, path = '/'): string => `http://${host}.localhost:${port}${path}`;

t.before(async () => {
  port = await freePort();
  adminPort = await freePort();
  idpPort = await freePort();
  for (const app of ['EPIC', 'PACS', 'FHIR', 'VENDOR']) appPorts[app] = await freePort();
  demo = spawnWardgate(['demo'], {
    WARDGATE_DEMO_PORT: String(port),
    WARDGATE_DEMO_IDP_PORT: String(idpPort),
    WARDGATE_DEMO_ADMIN: `127.0.0.1:${adminPort}`,
    WARDGATE_DEMO_EPIC_PORT: String(appPorts.EPIC),
    WARDGATE_DEMO_PACS_PORT: String(appPorts.PACS),
    WARDGATE_DEMO_FHIR_PORT: String(appPorts.FHIR),
    WARDGATE_DEMO_VENDOR_PORT: String(appPorts.VENDOR),
  });
  t.teardown(() => {
    if (demo.child.exitCode === null && demo.child.signalCode === null) demo.child.kill('SIGKILL');
  });
  await waitFor200(`http://127.0.0.1:${adminPort}/readyz`, 20_000);
});

t.test('the demo tells the user where to go, on the ports it was given', async (t) => {
  const banner = demo.stderr();
  for (const url of [
    `http://epic.localhost:${port}/`,
    `http://pacs.localhost:${port}/`,
    `http://fhir.localhost:${port}/fhir`,
    `http://vendor.localhost:${port}/`,
    `http://127.0.0.1:${adminPort}/metrics`,
    `http://localhost:${idpPort}`,
  ]) t.match(banner, url, `the start-up banner lists ${url}`);
});

t.test('every app asks for sign-in first; nothing reaches it unauthenticated', async (t) => {
  const page = await get(port, 'epic.localhost', '/', 'text/html');
  t.equal(page.status, 302, 'a browser is redirected');
  t.match(page.headers.location, `http://auth.localhost:${port}/.wardgate/sign-in?rd=`, 'to the sign-in on the auth host');
  const api = await get(port, 'fhir.localhost', '/fhir/Patient');
  t.equal(api.status, 401, 'an API call without credentials gets 401');
});

t.test('dr.alice signs in at the demo IdP with her security key and gets the Epic portal', async (t) => {
  const res = await signIn(alice, url('epic'), 'dr.alice', 'hwk');
  t.equal(res.status, 200, 'epic.localhost / answers 200 after sign-in');
  t.ok(res.hops.some((hop) => hop.startsWith(`http://localhost:${idpPort}/`)), 'the sign-in went through the demo IdP');
  t.match(res.headers['content-type'], /^text\/html/, 'it is an HTML page');
  t.ok(res.headers['x-request-id'], 'wardgate added a request id to the response');
  const echo = await alice.request(url('epic', '/api/echo'), { accept: 'application/json' });
  t.equal(echo.status, 200, 'epic.localhost /api/echo answers 200');
  const seen = JSON.parse(echo.body) as { app: string; headers: Record<string, string> };
  t.equal(seen.app, 'epic', 'the request reached the epic stand-in, not another app');
  t.equal(seen.headers.host, `127.0.0.1:${appPorts.EPIC}`, 'upstream saw its own host: the request went to the epic upstream port');
  t.ok(seen.headers['x-wardgate-assertion'], 'the portal received wardgate\'s signed identity assertion');
  t.equal(seen.headers['x-epic-user'], 'alice@hospital.example', 'and the claim header the route asks for');
});

t.test('nurse.bob, with a password only, is refused by the Epic portal with a clear page', async (t) => {
  const res = await signIn(new Browser(), url('epic'), 'nurse.bob', 'pwd');
  t.equal(res.status, 403, 'refused');
  t.match(res.body, 'auth-strength-insufficient', 'the page names the reason');
});

t.test('pacs.localhost serves the viewer page through wardgate', async (t) => {
  const res = await alice.navigate(url('pacs'));
  t.equal(res.status, 200, 'pacs.localhost / answers 200, signed in through the auth host without another login');
  t.match(res.body, '/ws', 'the viewer page opens its WebSocket at /ws');
});

t.test('fhir.localhost serves the FHIR API under /fhir only, to SMART apps with a token', async (t) => {
  const tokenResponse = await fetch(`http://localhost:${idpPort}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${DEMO_API_CLIENT.id}:${DEMO_API_CLIENT.secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: `http://fhir.localhost:${port}/fhir`, scope: 'patient/*.read' }),
  });
  const { access_token: token } = await tokenResponse.json() as { access_token: string };
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

t.test('vendor.localhost serves the vendor console through wardgate', async (t) => {
  const res = await alice.navigate(url('vendor'));
  t.equal(res.status, 200, 'vendor.localhost / answers 200');
  t.match(res.body, 'DEMO-IP-0001', 'it is the vendor console page (fleet table)');
});

t.test('an unknown host gets 404 no-route', async (t) => {
  const res = await get(port, 'unknown.localhost', '/');
  t.equal(res.status, 404, 'a host no route names is 404: no default route');
  const body = JSON.parse(res.body) as { status: number; reason: string; requestId: string };
  t.equal(body.reason, 'no-route', 'the refusal names the reason no-route');
  t.equal(body.requestId, res.headers['x-request-id'], 'and carries the request id the help desk can look up');
});

t.test('a WebSocket to pacs.localhost /ws through wardgate receives study progress', async (t) => {
  const session = alice.cookies('pacs.localhost').find((c) => c.name === '__Host-wardgate');
  t.ok(session, 'the browser holds its pacs session cookie');
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { host: `pacs.localhost:${port}`, cookie: `__Host-wardgate=${session!.value}` } });
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
});

t.test('SIGTERM stops the demo with exit code 0', async (t) => {
  demo.child.kill('SIGTERM');
  const code = await within(demo.exited, 15_000, 'the demo to exit');
  t.equal(code, 0, 'the demo exits 0 on SIGTERM');
  const probe = await get(port, 'epic.localhost', '/').then(() => 'answered', (err: NodeJS.ErrnoException) => err.code);
  t.equal(probe, 'ECONNREFUSED', 'nothing listens on the demo port any more');
  const upstreamProbe = await get(appPorts.EPIC!, '127.0.0.1', '/').then(() => 'answered', (err: NodeJS.ErrnoException) => err.code);
  t.equal(upstreamProbe, 'ECONNREFUSED', 'the sample upstreams were stopped too');
});

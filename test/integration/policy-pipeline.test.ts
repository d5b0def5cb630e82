import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import t from 'tap';
import { WebSocket, WebSocketServer } from 'ws';
import { rawRequest } from '../helpers/raw.js';
import { startTestGateway, total } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';

/*
 * The context and decide stages inside the real pipeline: every request (WebSocket
 * upgrades included) is decided by its route's policy, and only an allow reaches the
 * upstream. Refusals explain themselves (HTML for browsers, JSON for APIs) unless the
 * route hides details; deny rules that need no identity refuse before any sign-in; a
 * bearer token too weak for a rule gets an RFC 9470 challenge; ;params cannot walk round
 * a path rule; and the device posture header, a credential for wardgate, never reaches
 * an upstream. Requests come with the shared IdP's client_credentials token (sub and
 * client_id api-client, no acr).
 */

const upstream = await startUpstream();
const wsBackend = createServer();
const wss = new WebSocketServer({ server: wsBackend });
wss.on('connection', (ws) => ws.on('message', (data) => ws.send(data)));
await new Promise<void>((resolve) => wsBackend.listen(0, '127.0.0.1', resolve));
const wsPort = (wsBackend.address() as AddressInfo).port;

// An MDM key: the posture header exists in config; most routes below take any device, and
// one wants a trusted device, proven with an assertion signed by this key.
const dir = mkdtempSync(join(tmpdir(), 'wardgate-policy-'));
const postureKey = join(dir, 'mdm.pub');
const mdm = generateKeyPairSync('ec', { namedCurve: 'P-256' });
writeFileSync(postureKey, mdm.publicKey.export({ type: 'spki', format: 'pem' }));

/** A posture assertion for a managed, compliant laptop, as the MDM signs one. */
function posture(): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ managed: true, compliant: true, observed_at: now })
    .setProtectedHeader({ alg: 'ES256', typ: 'device-posture+jwt' })
    .setIssuer('https://mdm.test').setAudience('wardgate').setSubject('laptop-7')
    .setIssuedAt(now).setExpirationTime(now + 600).setJti(randomUUID())
    .sign(mdm.privateKey);
}

const wg = await startTestGateway(`
  - id: app
    host: app.test
    upstream: { url: "${upstream.url}" }
    policy:
      devices: any
      deny:
        - name: admin-area
          path: [/admin]
        - name: blocked-network
          cidr: [192.0.2.0/24]
      allow:
        - name: the-api-client
          claim: { name: client_id, values: [api-client] }
      remediation: Call the service desk on 4357 & quote the request id.
  - id: hidden
    host: hidden.test
    upstream: { url: "${upstream.url}" }
    policy:
      devices: any
      allow:
        - groups: [nobody]
      hideDetails: true
      remediation: Ask your manager for access.
  - id: strong
    host: strong.test
    upstream: { url: "${upstream.url}" }
    policy:
      devices: any
      allow:
        - acr: [phr]
  - id: ws-device
    host: ws-device.test
    websockets: true
    upstream: { url: "http://127.0.0.1:${wsPort}" }
    policy:
      devices: trusted
      allow:
        - authenticated: true
  - id: ws
    host: ws.test
    websockets: true
    upstream: { url: "http://127.0.0.1:${wsPort}" }
    policy:
      devices: any
      allow:
        - all:
          - authenticated: true
          - path: [/open]
`, `trustedProxies: [127.0.0.1/32]
devices:
  posture:
    issuer: https://mdm.test
    keys: ["${postureKey}"]
`);
t.teardown(async () => {
  await wg.close();
  await upstream.close();
  wss.close();
  wsBackend.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A WebSocket through wardgate, once its upgrade has been answered 101. */
async function openWebSocket(port: number, path: string, headers: Record<string, string>): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return ws;
}

/** Sends `text` and waits for the upstream's echo. */
async function echo(ws: WebSocket, text: string): Promise<string> {
  ws.send(text);
  const [data] = await new Promise<[Buffer]>((resolve) => ws.once('message', (message: Buffer) => resolve([message])));
  return data.toString();
}

/** A raw WebSocket handshake with the shared token and no other credential, answered on the socket. */
function upgradeWithToken(host: string, path: string): ReturnType<typeof rawRequest> {
  return rawRequest(wg.port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
    + `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: ${wg.auth.authorization}\r\n\r\n`);
}

interface Answer {
  status: number;
  headers: { get(name: string): string };
  body: string;
}

/** GET with a Host header of our choosing (fetch may not set one). */
function get(host: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: wg.port, path, agent: false, headers: { host, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({
        status: res.statusCode ?? 0,
        headers: { get: (name) => String(res.headers[name.toLowerCase()] ?? '') },
        body: Buffer.concat(chunks).toString('utf8'),
      }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('an allowed request reaches the upstream; the posture header is not passed on', async (t) => {
  const before = upstream.seen.length;
  const res = await get('app.test', '/records', { ...wg.auth, 'x-device-posture': 'eyJhbGciOi.not-a-real.assertion' });
  t.equal(res.status, 200, `the API client is allowed by its claim (${res.body})`);
  t.equal(upstream.seen.length, before + 1, 'one request reached the upstream');
  t.equal(upstream.seen.at(-1)!.headers['x-device-posture'], undefined, 'the device credential stays with wardgate');
  t.ok(upstream.seen.at(-1)!.headers['x-wardgate-assertion'], 'the identity assertion was added');
});

t.test('a deny rule wins, and the JSON says which rule and why', async (t) => {
  const before = upstream.seen.length;
  const res = await get('app.test', '/admin/users', wg.auth);
  t.equal(res.status, 403, 'the admin area is refused to an otherwise allowed client');
  const body = JSON.parse(res.body) as Record<string, unknown>;
  t.equal(body.reason, 'path-unauthorized', 'the main reason is the path criterion');
  t.same(body.reasons, ['path-unauthorized'], 'with every reason');
  t.equal(body.rule, 'deny[0] admin-area', 'and the deciding rule');
  t.same(body.missing, ['request'], 'what was missing, by category');
  t.equal(body.remediation, 'Call the service desk on 4357 & quote the request id.', 'the route\'s remediation text');
  t.equal(body.requestId, res.headers.get('x-request-id'), 'and the request id, also in a header');
  t.equal(upstream.seen.length, before, 'nothing reached the upstream');
  const line = wg.access().find((entry) => entry.reqId === body.requestId);
  t.match(line, { status: 403, user: 'api-client', outcome: 'deny', rule: 'deny[0] admin-area', reason: 'path-unauthorized' }, 'the access log has who was refused, the outcome, the rule and the reason');
  const allowed = wg.access().find((entry) => entry.route === 'app' && entry.status === 200);
  t.match(allowed, { outcome: 'allow', rule: 'allow[0] the-api-client', user: 'api-client' }, 'and for an allowed request, the rule that let it in');
});

t.test(';params cannot walk round a path rule', async (t) => {
  const before = upstream.seen.length;
  const res = await get('app.test', '/admin;jsessionid=x/users', wg.auth);
  t.equal(res.status, 403, '/admin;x/users is /admin/users to the rules, as to a servlet upstream');
  t.equal(upstream.seen.length, before, 'nothing reached the upstream');
});

t.test('the browser page says in plain words what was missing, escaped', async (t) => {
  const res = await get('app.test', '/admin', { ...wg.auth, accept: 'text/html' });
  t.equal(res.status, 403, 'refused');
  t.match(res.headers.get('content-type'), /^text\/html/, 'as an HTML page');
  t.match(res.body, 'This part of the application is not open to you.', 'the reason in plain words');
  t.match(res.body, 'a kind of request or record this application allows you', 'what was missing, in plain words');
  t.match(res.body, 'Call the service desk on 4357 &amp; quote the request id.', 'the remediation text, escaped');
  t.match(res.body, '<code>deny[0] admin-area</code>', 'the deciding rule');
  t.match(res.body, res.headers.get('x-request-id')!, 'the request id for the help desk');
});

t.test('a deny rule that needs no identity refuses before any sign-in', async (t) => {
  const anonymous = await get('app.test', '/records', { 'x-forwarded-for': '192.0.2.44', accept: 'text/html', 'sec-fetch-mode': 'navigate' });
  t.equal(anonymous.status, 403, 'a browser on the blocked network is refused, not sent to the IdP');
  const logged = wg.access().find((entry) => entry.reqId === anonymous.headers.get('x-request-id'));
  t.equal(logged?.client, '192.0.2.44', 'the access log names the client the policy judged, not the trusted proxy in front');
  t.match(anonymous.body, 'This application cannot be reached from your network.', 'and told why');
  const elsewhere = await get('app.test', '/records', { 'x-forwarded-for': '198.51.100.7', accept: 'text/html', 'sec-fetch-mode': 'navigate' });
  t.equal(elsewhere.status, 302, 'from another network the same browser is sent to sign in');
  const api = await get('app.test', '/records', { 'x-forwarded-for': '198.51.100.7' });
  t.equal(api.status, 401, 'an API call without credentials gets 401');
  t.equal(JSON.parse(api.body).reason, 'login-required', 'login-required');
});

t.test('a route that hides details says only that access was refused', async (t) => {
  const res = await get('hidden.test', '/', wg.auth);
  t.equal(res.status, 403, 'refused');
  const body = JSON.parse(res.body) as Record<string, unknown>;
  t.equal(body.reason, 'access-denied', 'a generic reason');
  t.same(body.reasons, ['access-denied'], 'no criteria named');
  t.equal(body.rule, undefined, 'no rule named');
  t.same(body.missing, [], 'nothing said about what was missing');
  t.equal(body.remediation, 'Ask your manager for access.', 'the remediation text is still shown');
  const log = wg.access().find((line) => line.route === 'hidden');
  t.equal(log?.reason, 'groups-unauthorized', 'the access log keeps the real reason');
});

t.test('a bearer token too weak for the rule gets an RFC 9470 challenge, not a redirect', async (t) => {
  const res = await get('strong.test', '/', { ...wg.auth, accept: 'text/html', 'sec-fetch-mode': 'navigate' });
  t.equal(res.status, 401, 'a step-up for an API client is a 401');
  t.match(res.headers.get('www-authenticate'), 'error="insufficient_user_authentication"', 'saying the authentication is insufficient');
  t.match(res.headers.get('www-authenticate'), 'acr_values="phr"', 'and what would do');
});

t.test('WebSocket upgrades are decided like any request', async (t) => {
  const open = await openWebSocket(wg.port, '/open', { host: 'ws.test', ...wg.auth });
  t.equal(await echo(open, 'ping'), 'ping', 'an allowed upgrade is tunnelled');
  open.close();
  const refused = await upgradeWithToken('ws.test', '/closed');
  t.equal(refused.status, 403, 'an upgrade the policy does not allow is refused');
  t.match(refused.body, '"reason":"path-unauthorized"', 'with the reason');
});

t.test('a WebSocket opened from a trusted device stays open: rechecks see the device as the upgrade did', async (t) => {
  const assertion = await posture();
  const ws = await openWebSocket(wg.port, '/live', { host: 'ws-device.test', ...wg.auth, 'x-device-posture': assertion });
  let closed = false;
  ws.once('close', () => {
    closed = true;
  });
  // Three rechecks (one a second) come and go.
  await new Promise((resolve) => setTimeout(resolve, 3_200));
  t.notOk(closed, 'still open after three rechecks');
  if (!closed) {
    t.equal(await echo(ws, 'still here'), 'still here', 'and it still carries frames');
    ws.close();
  }
  const refused = await upgradeWithToken('ws-device.test', '/live');
  t.equal(refused.status, 403, 'without the assertion the same upgrade is refused');
  t.match(refused.body, '"reason":"device-untrusted"', 'for the device');
});

t.test('decisions are counted by route, outcome and reason', async (t) => {
  const text = await wg.metrics();
  t.ok(total(text, 'wardgate_decisions_total', { route: 'app', outcome: 'allow', reason: 'claim-ok' }) >= 1, 'allows, by their rule\'s reason');
  t.ok(total(text, 'wardgate_decisions_total', { route: 'app', outcome: 'deny', reason: 'path-unauthorized' }) >= 2, 'deny-rule refusals');
  t.ok(total(text, 'wardgate_decisions_total', { route: 'app', outcome: 'deny', reason: 'network-unauthorized' }) >= 1, 'refusals before sign-in');
  t.ok(total(text, 'wardgate_decisions_total', { route: 'app', outcome: 'login', reason: 'login-required' }) >= 2, 'logins');
  t.ok(total(text, 'wardgate_decisions_total', { route: 'strong', outcome: 'step-up', reason: 'acr-insufficient' }) >= 1, 'step-ups');
  t.match(text, /# TYPE wardgate_policy_evaluation_seconds histogram/, 'the sampled evaluation time is exported');
});

t.test('an open WebSocket is closed (1008) within a second or two of its window ending', async (t) => {
  // The route is open for the two hours around now (UTC); then the clock moves past them.
  let offset = 0;
  const hhmm = (ms: number): string => new Date(ms).toISOString().slice(11, 16);
  const from = hhmm(Date.now() - 3_600_000);
  const until = hhmm(Date.now() + 3_600_000);
  const timed = await startTestGateway(`
  - id: ws-hours
    host: hours.test
    websockets: true
    upstream: { url: "http://127.0.0.1:${wsPort}" }
    policy:
      allow:
        - all:
          - authenticated: true
          - timeWindow: { hours: "${from}-${until}", timeZone: UTC }
`, '', { now: () => Date.now() + offset });
  t.teardown(() => timed.close());
  const ws = await openWebSocket(timed.port, '/live', { host: 'hours.test', ...timed.auth });
  t.pass('inside the window the upgrade is allowed');
  const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
  const movedAt = performance.now();
  offset = 3 * 3_600_000;
  const code = await closed;
  t.equal(code, 1008, 'the tunnel is closed with 1008 (policy violation) once the window has ended');
  t.ok(performance.now() - movedAt < 5_000, 'by the next recheck, not when the client next speaks');
  const log = timed.logs.find((line) => line.msg === 'WebSocket closed: the policy no longer allows it');
  t.same(log?.reasons, ['outside-hours'], 'the log says why');
});

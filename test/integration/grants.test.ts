import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { WebSocket, WebSocketServer } from 'ws';
import type { Actor } from '../../proxy/grants/service.js';
import { sample } from '../helpers/gateway.js';
import { signIn } from '../helpers/idp.js';
import { startSignInRig } from '../helpers/sign-in-rig.js';
import { startUpstream } from '../helpers/upstream.js';
import { until, within } from '../helpers/wait.js';

/*
 * Grants and break-glass in a running wardgate, with the real demo IdP and people who sign
 * in through it, on a clock the test moves: the vendor is refused without a grant, reaches
 * the route while an approved one is in force, and is cut off the moment its window closes
 * or it is revoked, with the grant's open WebSockets closed too; a request nobody decides
 * lapses; a clinician breaks the glass, is let in with every response marked, and the alert,
 * the high-severity event, the metric and the review entry all appear. The pages and the
 * admin API that drive these services have tests of their own.
 */

const HOUR = 3_600_000;

// A webhook receiver (Slack-style): records what it is sent, and fails the first call.
const received: Array<{ text: string; event: string; severity: string }> = [];
let failFirst = true;
const hooks = createServer((req: IncomingMessage, res) => {
  let body = '';
  req.on('data', (chunk: Buffer) => { body += chunk.toString(); });
  req.on('end', () => {
    if (failFirst) {
      failFirst = false;
      res.writeHead(503).end();
      return;
    }
    received.push(JSON.parse(body) as { text: string; event: string; severity: string });
    res.writeHead(200).end('ok');
  });
});
await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
t.teardown(() => new Promise<void>((resolve) => hooks.close(() => resolve())));
const hookUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hooks/secret-path`;

const up = await startUpstream((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`upstream ${req.url} break-glass=${req.headers['x-wardgate-break-glass'] ?? '-'}`);
});
t.teardown(() => up.close());
const wss = new WebSocketServer({ server: up.server });
wss.on('connection', (ws) => ws.on('message', (data: Buffer) => ws.send(data.toString())));
t.teardown(() => wss.close());

const rig = await startSignInRig({
  routes: `
  - id: vendor
    host: vendor.localhost
    websockets: true
    policy:
      allow:
        - name: vendor-with-grant
          all: [{ groups: [vendor-support] }, { grant: true }]
    upstream:
      url: ${up.url}
  - id: epic
    host: epic.localhost
    policy:
      allow:
        - name: radiology-only
          groups: [radiology]
      breakGlass:
        groups: [clinicians]
        duration: 1h
    upstream:
      url: ${up.url}
`,
  extraYaml: `
grants:
  approvers: { groups: [security-admins] }
  requesters: { groups: [vendor-support] }
notifications:
  webhooks:
    - url: "${hookUrl}"
`,
});
const { wg } = rig;
const { grants, breakGlass } = wg.gateway.access;
const { authority } = wg.gateway;
const now = (): number => Date.now() + offset;
let offset = 0;
const advance = (ms: number): void => {
  offset += ms;
  rig.advance(ms);
};

const DAVE: Actor = { principal: { kind: 'user', id: 'vendor.dave', email: 'dave@devicevendor.example' }, groups: ['vendor-support'] };
const ERIN: Actor = { principal: { kind: 'user', id: 'admin.erin', email: 'erin@hospital.example' }, groups: ['security-admins'] };
const ALICE: Actor = { principal: { kind: 'user', id: 'dr.alice', email: 'alice@hospital.example' }, groups: ['clinicians'] };

const dave = rig.browser();
const vendorUrl = (path = '/'): string => rig.url('vendor.localhost', path);
const signedIn = await signIn(dave, vendorUrl('/console'), 'vendor.dave', 'pwd');

/** Opens a WebSocket to the vendor route with Dave's session cookie. */
async function vendorSocket(): Promise<{ ws: WebSocket; closed: Promise<number> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${rig.port}/ws`, { headers: { host: `vendor.localhost:${rig.port}`, cookie: dave.cookieHeader(vendorUrl('/ws')) } });
  const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send('ping');
  const [echoed] = await new Promise<[Buffer]>((resolve) => ws.once('message', (m: Buffer) => resolve([m])));
  if (echoed.toString() !== 'ping') throw new Error('no echo');
  return { ws, closed };
}

const askFor = (hours: number, from = now()) => ({ routes: [{ id: 'vendor' }], notBefore: from, notAfter: from + hours * HOUR, justification: 'Infusion pump firmware update, CHG-42' });

t.test('without a grant the vendor is refused, and told why', async (t) => {
  t.equal(signedIn.status, 403, 'signed in, but no grant');
  t.match(signedIn.body, 'grant-missing');
  t.equal(up.seen.length, 0, 'nothing reached the vendor console');
});

t.test('an approved grant opens the route for its window; at its end the next request is refused and the WebSocket closes', async (t) => {
  const grant = await grants!.request(askFor(2), DAVE);
  t.equal((await dave.navigate(vendorUrl('/console'))).status, 403, 'a request is not a grant');
  await grants!.approve(grant.id, ERIN);
  const page = await dave.navigate(vendorUrl('/console'));
  t.equal(page.status, 200, 'approved: the vendor reaches the console');
  t.match(page.body, 'upstream /console');
  const { closed } = await vendorSocket();
  advance(2 * HOUR - 1_000);
  t.equal((await dave.navigate(vendorUrl('/console'))).status, 200, 'a second before the end: still in');
  advance(1_000);
  const after = await dave.navigate(vendorUrl('/console'));
  t.equal(after.status, 403, 'the very next request after the window is refused');
  t.match(after.body, 'grant-missing');
  // Rechecks run every second: the tunnel closes within one, whatever the request did.
  t.equal(await within(closed, 2_000, 'the WebSocket to close at the window\'s end'), 1008, 'the open WebSocket was closed (policy violation) by the next recheck');
  await authority!.sweep();
  t.equal((await grants!.get(grant.id)).timestamps.expired !== undefined, true, 'the sweep recorded the expiry');
});

t.test('revoking closes the route and the grant\'s WebSockets at once', async (t) => {
  const grant = await grants!.request(askFor(4), DAVE);
  await grants!.approve(grant.id, ERIN);
  t.equal((await dave.navigate(vendorUrl('/console'))).status, 200);
  const { closed } = await vendorSocket();
  await grants!.revoke(grant.id, ERIN, 'work finished');
  t.equal(await within(closed, 1_000, 'the WebSocket to close after the revocation'), 1008, 'closed with 1008 within a second: the revocation itself rechecks, it does not wait for the tick');
  const after = await dave.navigate(vendorUrl('/console'));
  t.equal(after.status, 403, 'the next request is refused');
});

t.test('a grant narrowed to a path and GET opens only that', async (t) => {
  const grant = await grants!.request({ ...askFor(1), routes: [{ id: 'vendor', paths: ['/logs'], methods: ['GET'] }] }, DAVE);
  await grants!.approve(grant.id, ERIN);
  t.equal((await dave.navigate(vendorUrl('/logs/today'))).status, 200, 'GET under /logs');
  t.equal((await dave.navigate(vendorUrl('/console'))).status, 403, 'another path');
  t.equal((await dave.navigate(vendorUrl('/logs/today'), { method: 'POST', body: 'x' })).status, 403, 'another method');
  const ws = new WebSocket(`ws://127.0.0.1:${rig.port}/logs/tail`, { headers: { host: `vendor.localhost:${rig.port}`, cookie: dave.cookieHeader(vendorUrl('/logs/tail')) } });
  const status = await new Promise<number>((resolve) => {
    ws.once('unexpected-response', (_req, res: IncomingMessage) => resolve(res.statusCode ?? 0));
    ws.once('open', () => resolve(101));
    ws.once('error', () => resolve(0));
  });
  t.equal(status, 403, 'and no WebSocket under /logs: its handshake is a GET, but a read-only grant opens no channel both ways');
  await grants!.revoke(grant.id, ERIN, 'done');
});

t.test('a request nobody decides lapses after 24 hours', async (t) => {
  const grant = await grants!.request(askFor(8, now() + 20 * HOUR), DAVE);
  advance(24 * HOUR);
  await authority!.sweep();
  const err = await grants!.approve(grant.id, ERIN).then(() => undefined, (e: { code?: string }) => e);
  t.equal(err?.code, 'grant-already-over', 'too late to approve');
  t.equal((await dave.navigate(vendorUrl('/console'))).status, 403);
});

t.test('break-glass: a clinician the rules refuse gets in for an hour, loudly, and the use is on the review list', async (t) => {
  const alice = rig.browser();
  const refusedPage = await signIn(alice, rig.url('epic.localhost', '/chart'), 'dr.alice', 'hwk');
  t.equal(refusedPage.status, 403, 'not in radiology: refused by the rules');
  const before = up.seen.length;
  const record = await breakGlass.start('epic', ALICE, 'Patient in cardiac arrest, chart needed now');
  const page = await alice.navigate(rig.url('epic.localhost', '/chart'));
  t.equal(page.status, 200, 'in, despite the rules');
  t.match(page.headers['x-wardgate-break-glass'], new RegExp(`^${record.id}; until=`), 'the response says so');
  t.match(page.body, `break-glass=${record.id}`, 'and so does the request the application received');
  t.equal(up.seen.length, before + 1);
  const log = wg.logs.find((line) => line.event === 'break-glass-started');
  t.match(log, { severity: 'high', route: 'epic', user: 'dr.alice', reason: 'Patient in cardiac arrest, chart needed now' }, 'a high-severity event, at once');
  t.match(wg.access().at(-1), { rule: 'break-glass', reason: undefined, user: 'dr.alice' }, 'the access log names break-glass as the rule');
  await until(() => received.some((hook) => hook.event === 'break-glass-started'), 10_000, 'the break-glass webhook');
  t.match(received.find((hook) => hook.event === 'break-glass-started'), { severity: 'high', text: /BREAK-GLASS .*dr\.alice.*epic/ }, 'the webhook alert went out');
  t.match(await breakGlass.list(), [{ id: record.id, reviewed: undefined }], 'on the review list, unreviewed');
  t.equal(sample(await wg.metrics(), 'wardgate_break_glass_total', { route: 'epic' }), 1);
  advance(HOUR);
  t.equal((await alice.navigate(rig.url('epic.localhost', '/chart'))).status, 403, 'an hour later the rules apply again');
  await breakGlass.review(record.id, ERIN.principal, 'Confirmed with the ward: arrest call 03:12');
});

t.test('metrics and webhooks saw every change', async (t) => {
  await authority!.sweep();
  const text = await wg.metrics();
  t.equal(sample(text, 'wardgate_grant_events_total', { event: 'grant-requested' }), 4);
  t.equal(sample(text, 'wardgate_grant_events_total', { event: 'grant-revoked' }), 2);
  t.equal(sample(text, 'wardgate_grant_events_total', { event: 'grant-request-expired' }), 1);
  t.equal(sample(text, 'wardgate_grant_events_total', { event: 'break-glass-reviewed' }), 1);
  t.equal(sample(text, 'wardgate_grants', { state: 'revoked' }), 2);
  t.equal(sample(text, 'wardgate_grants', { state: 'expired' }), 2);
  await until(() => received.some((hook) => hook.event === 'break-glass-reviewed'), 10_000, 'the review webhook');
  t.ok(received.some((hook) => hook.event === 'grant-requested'), 'the first call failed (503) and was retried');
  t.ok(sample(text, 'wardgate_webhook_deliveries_total', { outcome: 'retried' })! >= 1);
  t.notOk(wg.logs.some((line) => JSON.stringify(line).includes('secret-path')), 'the webhook URL never reaches the log');
});

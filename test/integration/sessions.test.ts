import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, decodeJwt, generateKeyPair } from 'jose';
import t, { type Test } from 'tap';
import { WebSocket, WebSocketServer } from 'ws';
import type { DemoIdp } from '../../proxy/demo/idp.js';
import { Browser, NAVIGATION_ACCEPT, parseForms, type BrowserResponse } from '../helpers/browser.js';
import { TEST_CLIENT, sample } from '../helpers/gateway.js';
import { isIdpLoginPage, logoutAtIdp, signIn } from '../helpers/idp.js';
import { freePort } from '../helpers/process.js';
import { startSignInRig, type SignInRig } from '../helpers/sign-in-rig.js';
import { echo, startUpstream } from '../helpers/upstream.js';
import { until, within } from '../helpers/wait.js';

/*
 * Sessions end to end, against the real demo IdP over real HTTP with cookie-jar browsers:
 * sign-out (CSRF-checked, RP-initiated at the IdP), back-channel logout (and forged or
 * replayed logout tokens), idle timeout, absolute lifetime, token refresh (single-flight,
 * and a refusal from the IdP ending the session), an IdP that goes down, and the
 * sessions_active gauge. Every revocation must hold on the very next request, on every host
 * the browser signed in to, and close the session's open WebSockets.
 *
 * Clock: `advance` moves wardgate's clock only. The IdP keeps real time, so tests that
 * advance use a rig of their own, and back-channel logout (whose tokens wardgate checks
 * against its own clock) is tested on a rig whose clock never moves.
 */

const MIN = 60_000;
const SESSION_COOKIE = '__Host-wardgate';
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

const up = await startUpstream(echo);
t.teardown(() => up.close());

/** An upstream that answers HTTP and echoes WebSocket messages. */
async function startWsUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"live":true}');
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(data as Buffer, { binary: isBinary });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      for (const client of wss.clients) client.terminate();
      wss.close();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

const wsUp = await startWsUpstream();
t.teardown(() => wsUp.close());

const routes = (...hosts: string[]): string => hosts.map((host) => `
  - id: ${host.split('.')[0]}
    host: ${host}
    upstream:
      url: ${up.url}`).join('');

// ---------------------------------------------------------------------------------------
// The back-channel rig: like startSignInRig, but the IdP's back-channel logout URI is a tiny
// relay in front of wardgate's, which passes each logout token on unchanged (and wardgate's
// answer back) and keeps a copy, so a genuine token can be replayed.

interface Delivery {
  token: string;
  status: number;
  body: string;
}

interface RelayRig extends SignInRig {
  /** Every back-channel logout the IdP sent, with wardgate's answer. */
  readonly deliveries: Delivery[];
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** A POST to wardgate's port with the given Host, as any HTTP client on the network would send it. */
function post(port: number, host: string, path: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path,
      headers: { host, 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), ...headers },
    }, (res) => {
      readBody(res).then((text) => resolve({ status: res.statusCode ?? 0, body: text }), reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function startRelayRig(routesYaml: string): Promise<RelayRig> {
  const port = await freePort();
  const deliveries: Delivery[] = [];
  const relay: Server = createServer((req, res) => {
    readBody(req).then(async (body) => {
      const answer = await post(port, `auth.localhost:${port}`, '/.wardgate/backchannel-logout', body);
      deliveries.push({ token: new URLSearchParams(body).get('logout_token') ?? '', status: answer.status, body: answer.body });
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
    }).catch(() => res.writeHead(502).end());
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    relay.closeAllConnections();
    relay.close(() => resolve());
  }));
  const relayPort = (relay.address() as AddressInfo).port;
  const rig = await startSignInRig({ routes: routesYaml, port, backchannelUri: `http://127.0.0.1:${relayPort}/backchannel-logout` });
  return { ...rig, deliveries };
}

// ---------------------------------------------------------------------------------------
// Small helpers

type AnyRig = Pick<SignInRig, 'wg' | 'url' | 'port' | 'idp'>;

const reasonOf = (body: string): string => (/<code>([a-z-]+)<\/code>/.exec(body) ?? [])[1] ?? (JSON.parse(body) as { reason: string }).reason;

/** A fetch from a page's script: never redirected to sign in. */
const api = (browser: Browser, url: string): Promise<BrowserResponse> => browser.request(url, { accept: 'application/json' });

async function metric(rig: AnyRig, name: string, labels: Record<string, string> = {}): Promise<number> {
  return sample(await rig.wg.metrics(), name, labels) ?? 0;
}

const revocations = (rig: AnyRig, cause: string): Promise<number> => metric(rig, 'wardgate_revocations_total', { cause });
const refreshes = (rig: AnyRig, result: string): Promise<number> => metric(rig, 'wardgate_token_refresh_total', { result });

function sessionCookieOf(browser: Browser, host: string): string | undefined {
  return browser.cookies(host).find((c) => c.name === SESSION_COOKIE)?.value;
}

/**
 * Asserts that `browser` is not authenticated on `host`: 401 for API calls, a sign-in
 * redirect for navigations. Both carry the cookies the browser holds now (the first answer
 * clears a dead session cookie, which must not make the second check pass on its own).
 */
async function assertSignedOut(t: Test, rig: AnyRig, browser: Browser, host: string, what: string, holdsCookie = true): Promise<void> {
  const cookie = browser.cookieHeader(rig.url(host, '/'));
  t.equal(sessionCookieOf(browser, host) !== undefined, holdsCookie, `${what}: the browser ${holdsCookie ? 'still holds' : 'holds no'} a session cookie for ${host}`);
  const headers: Record<string, string> = cookie ? { cookie } : {};
  const fetched = await browser.request(rig.url(host, '/after'), { accept: 'application/json', headers });
  t.equal(fetched.status, 401, `${what}: an API-style request on ${host} gets 401`);
  const nav = await browser.request(rig.url(host, '/after'), {
    accept: NAVIGATION_ACCEPT,
    headers: { ...headers, 'sec-fetch-mode': 'navigate', 'sec-fetch-site': 'none', 'sec-fetch-dest': 'document' },
  });
  t.equal(nav.status, 302, `${what}: a navigation on ${host} is redirected`);
  t.match(String(nav.headers.location), new RegExp(`^http://auth\\.localhost:${rig.port}/\\.wardgate/sign-in\\?`), `${what}: to sign in at the auth host`);
}

interface OpenSocket {
  ws: WebSocket;
  closed: Promise<{ code: number; reason: string }>;
}

/** A WebSocket through wardgate to `host`, its handshake carrying `cookie`. */
async function openSocket(port: number, host: string, cookie: string | undefined): Promise<OpenSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/live`, {
    headers: { host: `${host}:${port}`, ...(cookie === undefined ? {} : { cookie: `${SESSION_COOKIE}=${cookie}` }) },
    perMessageDeflate: false,
  });
  ws.on('error', () => {});
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') }));
  });
  await within(new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res: IncomingMessage) => reject(new Error(`handshake answered ${res.statusCode}`)));
  }), 5000, `a WebSocket to ${host} to open`);
  return { ws, closed };
}

/** The status wardgate answers a WebSocket handshake with when it does not upgrade. */
function refusedHandshake(port: number, host: string, cookie: string | undefined): Promise<number> {
  return openSocket(port, host, cookie).then(({ ws }) => {
    ws.terminate();
    return 101;
  }, (err: Error) => Number(/answered (\d+)/.exec(err.message)?.[1] ?? 0));
}

function echoOnce(ws: WebSocket, text: string): Promise<string> {
  return within(new Promise<string>((resolve) => {
    ws.once('message', (data: Buffer) => resolve(data.toString('utf8')));
    ws.send(text);
  }), 3000, 'an echo through the tunnel');
}

// ---------------------------------------------------------------------------------------
// Logout, back-channel logout and the sessions gauge: a rig whose clock never moves.

const main = await startRelayRig(`${routes('epic.localhost', 'pacs.localhost')}
  - id: live
    host: live.localhost
    websockets: true
    upstream:
      url: ${wsUp.url}`);

const idpOrigin = (idp: DemoIdp): string => new URL(idp.issuer).origin;

t.test('logout: a CSRF-checked form ends the session on every host, then at the IdP', async (t) => {
  const browser = main.browser();
  const signedIn = await signIn(browser, main.url('epic.localhost', '/chart'), 'rad.carol', 'pwd');
  t.equal(signedIn.status, 200, 'rad.carol signed in to epic');
  t.equal((await browser.navigate(main.url('pacs.localhost', '/studies'))).status, 200, 'and to pacs through the same browser');
  const epicCookie = sessionCookieOf(browser, 'epic.localhost');
  t.ok(epicCookie, 'epic holds a session cookie');

  const page = await browser.navigate(main.url('epic.localhost', '/.wardgate/logout'));
  t.equal(page.status, 200, 'GET /.wardgate/logout shows a page');
  const form = parseForms(page.body, page.url).find((f) => f.action === main.url('epic.localhost', '/.wardgate/logout'));
  t.ok(form, 'with a form posting back to /.wardgate/logout');
  t.equal(form!.method, 'POST', 'by POST: a link or an image cannot sign anyone out');
  const csrf = form!.fields.find(([name]) => name === 'csrf')?.[1];
  t.match(csrf, /^[A-Za-z0-9_-]{20,}$/, 'carrying a hidden csrf token');
  t.equal((await api(browser, main.url('epic.localhost', '/'))).status, 200, 'showing the page ended nothing');

  const pacsPage = await browser.navigate(main.url('pacs.localhost', '/.wardgate/logout'));
  const pacsCsrf = parseForms(pacsPage.body, pacsPage.url)[0]?.fields.find(([name]) => name === 'csrf')?.[1];
  t.ok(pacsCsrf, 'pacs\'s logout page has a csrf token too');
  const logoutUrl = main.url('epic.localhost', '/.wardgate/logout');
  // Same length and alphabet as the real one, one character changed.
  const wrong = `${csrf!.slice(0, -1)}${csrf!.endsWith('A') ? 'B' : 'A'}`;
  const forged: Array<[string, Record<string, string>, Record<string, string>]> = [
    ['without a csrf field', {}, { 'sec-fetch-site': 'same-origin' }],
    ['with a wrong csrf token', { csrf: wrong }, { 'sec-fetch-site': 'same-origin' }],
    ['with the csrf token of another host (pacs)', { csrf: pacsCsrf! }, { 'sec-fetch-site': 'same-origin' }],
    ['with the right token but Sec-Fetch-Site: cross-site', { csrf: csrf! }, { 'sec-fetch-site': 'cross-site' }],
    ['with the right token but Sec-Fetch-Site: same-site (a sibling host)', { csrf: csrf! }, { 'sec-fetch-site': 'same-site' }],
  ];
  t.not(pacsCsrf, csrf, 'each host has its own csrf token');
  for (const [what, body, headers] of forged) {
    const res = await browser.request(logoutUrl, { method: 'POST', body, headers, accept: 'application/json' });
    t.equal(res.status, 403, `a POST ${what} is refused with 403`);
    t.equal(reasonOf(res.body), 'csrf-failed', '  as csrf-failed');
    t.notMatch(String(res.headers['set-cookie'] ?? ''), /__Host-wardgate=;/, '  and does not clear the session cookie');
    t.equal((await api(browser, main.url('epic.localhost', '/'))).status, 200, '  the session still works afterwards');
  }
  const fresh = await main.browser().request(logoutUrl, { method: 'POST', body: { csrf: csrf! }, headers: { 'sec-fetch-site': 'same-origin' }, accept: 'application/json' });
  t.equal(fresh.status, 403, 'the right token posted by another browser (without this browser\'s cookie) is refused');

  const logoutsBefore = await revocations(main, 'logout');
  const activeBefore = await metric(main, 'wardgate_sessions_active');
  const submitted = await browser.submit(page, form!, {}, undefined, { stopBefore: (url) => url.origin === idpOrigin(main.idp) });
  t.equal(submitted.status, 302, 'submitting the form is answered with a redirect');
  t.match(String(submitted.headers['set-cookie']), /__Host-wardgate=; Max-Age=0/, 'that clears the session cookie');
  t.notOk(sessionCookieOf(browser, 'epic.localhost'), 'the browser no longer holds a session cookie for epic');
  t.ok(submitted.stoppedAt, 'and sends the browser to the IdP');

  const discovery = await (await fetch(`${main.idp.issuer}/.well-known/openid-configuration`)).json() as { end_session_endpoint: string };
  const endSession = new URL(submitted.stoppedAt!);
  t.equal(`${endSession.origin}${endSession.pathname}`, discovery.end_session_endpoint, 'to its end_session_endpoint (RP-initiated logout)');
  t.equal(endSession.searchParams.get('post_logout_redirect_uri'), `http://auth.localhost:${main.port}/.wardgate/signed-out`, 'post_logout_redirect_uri is wardgate\'s signed-out page on the auth host');
  const hint = endSession.searchParams.get('id_token_hint');
  t.ok(hint, 'with an id_token_hint');
  const hinted = decodeJwt(hint!);
  t.equal(hinted.sub, 'rad.carol', 'the hint is rad.carol\'s ID token');
  t.equal(hinted.aud, TEST_CLIENT.id, 'issued to wardgate');

  t.equal(await revocations(main, 'logout'), logoutsBefore + 1, 'revocations_total{cause="logout"} +1: one session, counted once');
  t.equal(await metric(main, 'wardgate_sessions_active'), activeBefore - 1, 'sessions_active dropped by one');

  // The very next request, before the IdP is even visited.
  await assertSignedOut(t, main, browser, 'epic.localhost', 'right after logout', false);
  await assertSignedOut(t, main, browser, 'pacs.localhost', 'on the second host, whose cookie the browser still holds');
  const replayed = await main.browser().request(main.url('epic.localhost', '/'), { headers: { cookie: `${SESSION_COOKIE}=${epicCookie!}` }, accept: 'application/json' });
  t.equal(replayed.status, 401, 'a copy of the old epic cookie opens nothing: the session ended server-side');

  const finished = await logoutAtIdp(browser, submitted.stoppedAt!);
  t.equal(finished.status, 200, 'the IdP completes the logout');
  t.equal(new URL(finished.url).origin + new URL(finished.url).pathname, `http://auth.localhost:${main.port}/.wardgate/signed-out`, 'and lands on wardgate\'s signed-out page');
  t.match(finished.body, /signed out/i, 'which says so');
  const again = await browser.navigate(main.url('epic.localhost', '/'));
  t.ok(isIdpLoginPage(again), 'the IdP session is over too: opening epic again asks for a sign-in at the IdP');
  t.equal(await revocations(main, 'logout'), logoutsBefore + 1, 'the signed-out page and the IdP\'s follow-up count no second revocation');
});

t.test('back-channel logout ends the session everywhere at once, WebSockets included; forged and replayed tokens end nothing', async (t) => {
  const alice = main.browser();
  t.equal((await signIn(alice, main.url('epic.localhost', '/'), 'dr.alice', 'hwk')).status, 200, 'dr.alice signed in to epic');
  t.equal((await alice.navigate(main.url('pacs.localhost', '/'))).status, 200, 'and to pacs');
  t.equal((await alice.navigate(main.url('live.localhost', '/'))).status, 200, 'and to live (a WebSocket app)');
  const bob = main.browser();
  t.equal((await signIn(bob, main.url('epic.localhost', '/'), 'nurse.bob', 'pwd')).status, 200, 'nurse.bob signed in to epic in another browser');

  const before = await revocations(main, 'backchannel');
  const bcPost = (body: string): Promise<{ status: number; body: string }> => post(main.port, `auth.localhost:${main.port}`, '/.wardgate/backchannel-logout', body);

  const missing = await bcPost('');
  t.equal(missing.status, 400, 'a back-channel POST without logout_token gets 400');
  t.equal((JSON.parse(missing.body) as { error: string }).error, 'invalid_request', 'as invalid_request');

  // Forgeries: each would end every session of dr.alice (sub, no sid) if it were accepted.
  const claims = { iss: main.idp.issuer, aud: TEST_CLIENT.id, sub: 'dr.alice', events: { [BACKCHANNEL_EVENT]: {} } };
  const discovery = await (await fetch(`${main.idp.issuer}/.well-known/openid-configuration`)).json() as { jwks_uri: string };
  const idpKeys = ((await (await fetch(discovery.jwks_uri)).json()) as { keys: Array<{ kid?: string; alg?: string }> }).keys;
  const realKid = idpKeys.find((k) => k.alg === 'ES256')?.kid;
  t.ok(realKid, 'the IdP publishes an ES256 key (its kid is borrowed by a forgery)');
  const { privateKey: attackerKey } = await generateKeyPair('ES256');
  const now = Math.floor(Date.now() / 1000);
  const b64 = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  const forgeries: Array<[string, string]> = [
    ['signed with an attacker\'s key under the IdP\'s kid', await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'logout+jwt', kid: realKid! }).setIssuedAt().setJti(randomUUID()).sign(attackerKey)],
    ['with alg none', `${b64({ alg: 'none', typ: 'logout+jwt' })}.${b64({ ...claims, iat: now, jti: randomUUID() })}.`],
    ['HMAC-signed with wardgate\'s client secret', await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'logout+jwt' }).setIssuedAt().setJti(randomUUID()).sign(new TextEncoder().encode(TEST_CLIENT.secret))],
  ];
  for (const [what, token] of forgeries) {
    const res = await bcPost(new URLSearchParams({ logout_token: token }).toString());
    const answer = JSON.parse(res.body) as { error?: string; error_description?: string };
    t.equal(res.status, 400, `a logout token ${what} gets 400 (${answer.error_description})`);
    t.match(answer.error_description, /^logout-token-/, '  refused as a bad logout token');
  }
  t.equal(await revocations(main, 'backchannel'), before, 'the forgeries ended nothing (revocations unchanged)');
  t.equal((await api(alice, main.url('epic.localhost', '/'))).status, 200, 'dr.alice\'s session still works after the forgeries');

  t.equal(await refusedHandshake(main.port, 'live.localhost', undefined), 401, 'control: a WebSocket handshake without a session cookie is refused (401)');
  const cookie = sessionCookieOf(alice, 'live.localhost');
  t.ok(cookie, 'dr.alice holds a session cookie for live (from her browser\'s jar)');
  const socket = await openSocket(main.port, 'live.localhost', cookie);
  t.equal(await echoOnce(socket.ws, 'vitals?'), 'vitals?', 'her WebSocket, authenticated by that cookie, is open and carries messages');

  const delivered = main.deliveries.length;
  const started = Date.now();
  await main.idp.backchannelLogout('dr.alice');
  const closed = await within(socket.closed, 1000, 'wardgate to close dr.alice\'s WebSocket');
  t.equal(closed.code, 1008, `her open WebSocket was closed by wardgate with 1008 (policy violation), ${Date.now() - started} ms after the IdP began the logout`);
  const mine = main.deliveries.slice(delivered);
  t.equal(mine.length, 1, 'the IdP POSTed one logout token to wardgate');
  const delivery = mine[0]!;
  t.equal(delivery.status, 200, 'wardgate accepted it');
  t.same(JSON.parse(delivery.body), { ended: 1 }, 'and ended her one session (shared by epic, pacs and live)');
  const logoutClaims = decodeJwt(delivery.token);
  t.equal(logoutClaims.sub, 'dr.alice', 'the token names dr.alice');
  t.ok(logoutClaims.sid, 'and her IdP session (sid)');

  await assertSignedOut(t, main, alice, 'epic.localhost', 'after back-channel logout');
  await assertSignedOut(t, main, alice, 'pacs.localhost', 'after back-channel logout');
  t.equal(await refusedHandshake(main.port, 'live.localhost', cookie), 401, 'a new WebSocket with her old cookie is refused (401)');
  t.equal(await revocations(main, 'backchannel'), before + 1, 'revocations_total{cause="backchannel"} +1');
  t.ok(isIdpLoginPage(await alice.navigate(main.url('epic.localhost', '/'))), 'her auth host cookie does not bring the session back: signing in again means the IdP login page');
  t.equal((await api(bob, main.url('epic.localhost', '/'))).status, 200, 'nurse.bob, signed in elsewhere, is untouched');

  // The genuine token again, as an attacker who saw it pass (or a retrying IdP) would send it.
  const alice2 = main.browser();
  t.equal((await signIn(alice2, main.url('epic.localhost', '/'), 'dr.alice', 'hwk')).status, 200, 'dr.alice signs in again');
  const replay = await bcPost(new URLSearchParams({ logout_token: delivery.token }).toString());
  t.equal(replay.status, 400, 'a replay of the genuine logout token gets 400');
  t.equal((JSON.parse(replay.body) as { error_description: string }).error_description, 'logout-token-replayed', 'as logout-token-replayed');
  t.equal(await revocations(main, 'backchannel'), before + 1, 'the replay ended nothing');
  t.equal((await api(alice2, main.url('epic.localhost', '/'))).status, 200, 'her new session still works');
});

t.test('all of one user\'s sessions end at once (the subject index), and no one else\'s', async (t) => {
  const laptop = main.browser();
  const workstation = main.browser();
  const other = main.browser();
  t.equal((await signIn(laptop, main.url('epic.localhost', '/'), 'vendor.dave', 'pwd')).status, 200, 'vendor.dave signed in on one browser');
  t.equal((await signIn(workstation, main.url('pacs.localhost', '/'), 'vendor.dave', 'pwd')).status, 200, 'and on another');
  t.equal((await signIn(other, main.url('epic.localhost', '/'), 'admin.erin', 'hwk')).status, 200, 'admin.erin signed in too');
  const ended = await main.wg.gateway.identity.sessions.endBySubject('vendor.dave', 'admin');
  t.equal(ended, 2, 'both of his sessions were ended');
  await assertSignedOut(t, main, laptop, 'epic.localhost', 'his first browser');
  await assertSignedOut(t, main, workstation, 'pacs.localhost', 'his second browser');
  t.equal((await api(other, main.url('epic.localhost', '/'))).status, 200, 'admin.erin\'s session is untouched');
  t.equal(await revocations(main, 'admin'), 2, 'revocations_total{cause="admin"} counted both');
});

t.test('sessions_active follows sign-ins and logouts', async (t) => {
  const start = await metric(main, 'wardgate_sessions_active');
  const erin = main.browser();
  await signIn(erin, main.url('epic.localhost', '/'), 'admin.erin', 'pwd');
  t.equal(await metric(main, 'wardgate_sessions_active'), start + 1, 'a sign-in adds one session');
  await erin.navigate(main.url('pacs.localhost', '/'));
  t.equal(await metric(main, 'wardgate_sessions_active'), start + 1, 'signing in to a second host reuses it: still one');
  const dave = main.browser();
  await signIn(dave, main.url('pacs.localhost', '/'), 'vendor.dave', 'pwd');
  t.equal(await metric(main, 'wardgate_sessions_active'), start + 2, 'another browser\'s sign-in adds another');
  const page = await erin.navigate(main.url('pacs.localhost', '/.wardgate/logout'));
  const form = parseForms(page.body, page.url)[0]!;
  await erin.submit(page, form, {}, undefined, { stopBefore: (url) => url.origin === idpOrigin(main.idp) });
  t.equal(await metric(main, 'wardgate_sessions_active'), start + 1, 'logout drops it by one');
  t.equal((await api(dave, main.url('pacs.localhost', '/'))).status, 200, 'the other browser\'s session is unaffected');
});

// ---------------------------------------------------------------------------------------
// Idle timeout

t.test('idle timeout: activity keeps a session alive; ten idle minutes end it', async (t) => {
  const rig = await startSignInRig({ routes: routes('epic.localhost', 'pacs.localhost'), identityExtra: '  session:\n    idleTimeout: 10m' });
  const browser = rig.browser();
  t.equal((await signIn(browser, rig.url('epic.localhost', '/'), 'nurse.bob', 'pwd')).status, 200, 'nurse.bob signed in');
  await browser.navigate(rig.url('pacs.localhost', '/'));
  rig.advance(6 * MIN);
  t.equal((await api(browser, rig.url('epic.localhost', '/'))).status, 200, 'after 6 quiet minutes the session works');
  rig.advance(6 * MIN);
  t.equal((await api(browser, rig.url('epic.localhost', '/'))).status, 200, 'and 6 more (12 since sign-in, 6 since the last request): still 200');
  const idleBefore = await revocations(rig, 'idle');
  rig.advance(11 * MIN);
  await assertSignedOut(t, rig, browser, 'epic.localhost', 'after 11 idle minutes');
  await assertSignedOut(t, rig, browser, 'pacs.localhost', 'after 11 idle minutes');
  t.equal(await revocations(rig, 'idle'), idleBefore + 1, 'revocations_total{cause="idle"} +1');
  t.ok(await metric(rig, 'wardgate_credentials_rejected_total', { kind: 'cookie', reason: 'session-idle' }) >= 1, 'credentials_rejected_total{reason="session-idle"} counted the refused cookie');
});

t.test('the sweep ends sessions that ran out with no request to notice: their WebSockets close and the gauge drops', async (t) => {
  const rig = await startSignInRig({
    routes: `${routes('epic.localhost')}
  - id: live
    host: live.localhost
    websockets: true
    upstream:
      url: ${wsUp.url}`,
    identityExtra: '  session:\n    idleTimeout: 10m\n    absoluteLifetime: 1h',
  });
  const idle = rig.browser();
  t.equal((await signIn(idle, rig.url('live.localhost', '/'), 'nurse.bob', 'pwd')).status, 200, 'nurse.bob signed in');
  const socket = await openSocket(rig.port, 'live.localhost', sessionCookieOf(idle, 'live.localhost'));
  t.equal(await echoOnce(socket.ws, 'ping'), 'ping', 'his WebSocket is open and carries traffic');
  const active = await metric(rig, 'wardgate_sessions_active');
  const idleBefore = await revocations(rig, 'idle');
  rig.advance(11 * MIN);
  await rig.wg.gateway.identity.sessions.sweep();
  const closed = await within(socket.closed, 2000, 'the idle session\'s WebSocket to close');
  t.equal(closed.code, 1008, 'the sweep ended the idle session and its WebSocket closed with 1008, with no HTTP request involved');
  t.equal(await revocations(rig, 'idle'), idleBefore + 1, 'revocations_total{cause="idle"} +1');
  t.equal(await metric(rig, 'wardgate_sessions_active'), active - 1, 'sessions_active dropped');

  const long = rig.browser();
  t.equal((await signIn(long, rig.url('epic.localhost', '/'), 'rad.carol', 'pwd')).status, 200, 'rad.carol signed in');
  const expiredBefore = await revocations(rig, 'expired');
  for (let minutes = 9; minutes <= 54; minutes += 9) {
    rig.advance(9 * MIN);
    t.equal((await api(long, rig.url('epic.localhost', '/'))).status, 200, `in use at minute ${minutes}`);
  }
  rig.advance(7 * MIN);
  await rig.wg.gateway.identity.sessions.sweep();
  t.equal(await revocations(rig, 'expired'), expiredBefore + 1, 'a session past its absolute lifetime is ended by the sweep as expired');
});

// ---------------------------------------------------------------------------------------
// Absolute lifetime

t.test('absolute lifetime: a session in constant use still ends after an hour', async (t) => {
  const rig = await startSignInRig({ routes: routes('epic.localhost'), identityExtra: '  session:\n    absoluteLifetime: 1h\n    idleTimeout: 30m' });
  const browser = rig.browser();
  t.equal((await signIn(browser, rig.url('epic.localhost', '/'), 'dr.alice', 'pwd')).status, 200, 'dr.alice signed in');
  for (const [step, at] of [[20, 20], [20, 40], [19, 59]] as const) {
    rig.advance(step * MIN);
    t.equal((await api(browser, rig.url('epic.localhost', '/'))).status, 200, `in use at minute ${at}: 200`);
  }
  const expiredBefore = await revocations(rig, 'expired');
  rig.advance(2 * MIN);
  await assertSignedOut(t, rig, browser, 'epic.localhost', 'at minute 61, though active every 20 minutes');
  t.equal(await revocations(rig, 'expired'), expiredBefore + 1, 'revocations_total{cause="expired"} +1');
});

// ---------------------------------------------------------------------------------------
// Token refresh

t.test('token refresh: expired tokens are refreshed once, however many requests wait; a refusal ends the session', async (t) => {
  const rig = await startSignInRig({ routes: routes('epic.localhost', 'pacs.localhost') });
  const browser = rig.browser();
  t.equal((await signIn(browser, rig.url('epic.localhost', '/'), 'rad.carol', 'pwd')).status, 200, 'rad.carol signed in (the IdP\'s access tokens last 600 s)');
  await browser.navigate(rig.url('pacs.localhost', '/'));

  const success0 = await refreshes(rig, 'success');
  rig.advance(11 * MIN);
  t.equal((await api(browser, rig.url('epic.localhost', '/'))).status, 200, 'after 11 minutes the token has expired: the request is held for a refresh and succeeds');
  t.equal(await refreshes(rig, 'success'), success0 + 1, 'token_refresh_total{result="success"} +1');
  t.equal((await api(browser, rig.url('pacs.localhost', '/'))).status, 200, 'the refreshed session serves the next request');
  t.equal(await refreshes(rig, 'success'), success0 + 1, 'without refreshing again: the new token is good for another 10 minutes');

  rig.advance(11 * MIN);
  const beforeBurst = await refreshes(rig, 'success');
  const statuses = await Promise.all(Array.from({ length: 10 }, (_, i) => api(browser, rig.url(i % 2 ? 'epic.localhost' : 'pacs.localhost', `/burst-${i}`)).then((r) => r.status)));
  t.same(statuses, Array(10).fill(200), 'ten concurrent requests on an expired token all succeed');
  t.equal(await refreshes(rig, 'success'), beforeBurst + 1, 'with exactly one refresh between them (the rotating refresh token was used once)');
  t.equal(await refreshes(rig, 'failed'), 0, 'and no failed refresh (a second use of a rotated token would have failed)');
  t.equal((await api(browser, rig.url('epic.localhost', '/'))).status, 200, 'the session carries on after the burst');

  rig.idp.disableUser('rad.carol');
  const failedBefore = await refreshes(rig, 'failed');
  const revokedBefore = await revocations(rig, 'refresh-failed');
  rig.advance(11 * MIN);
  await assertSignedOut(t, rig, browser, 'epic.localhost', 'after the account was disabled at the IdP');
  await assertSignedOut(t, rig, browser, 'pacs.localhost', 'after the account was disabled at the IdP');
  t.equal(await refreshes(rig, 'failed'), failedBefore + 1, 'token_refresh_total{result="failed"} +1');
  t.equal(await revocations(rig, 'refresh-failed'), revokedBefore + 1, 'revocations_total{cause="refresh-failed"} +1');
});

// ---------------------------------------------------------------------------------------
// The IdP goes down

t.test('IdP down: existing sessions keep working, new sign-ins get a clear 503, refreshes wait', async (t) => {
  const rig = await startSignInRig({ routes: routes('epic.localhost') });
  const browser = rig.browser();
  t.equal((await signIn(browser, rig.url('epic.localhost', '/'), 'dr.alice', 'pwd')).status, 200, 'dr.alice signed in');
  await rig.idp.close();
  await until(async () => (await fetch(`${rig.idp.issuer}/.well-known/openid-configuration`).then(() => false, () => true)), 2000, 'the IdP to stop answering');

  t.equal((await api(browser, rig.url('epic.localhost', '/'))).status, 200, 'with the IdP down, her existing session keeps working');

  const idp = idpOrigin(rig.idp);
  const newcomer = rig.browser();
  const page = await newcomer.navigate(rig.url('epic.localhost', '/'), { stopBefore: (url) => url.origin === idp });
  t.notOk(page.stoppedAt, `a new browser is not sent to the dead IdP${page.stoppedAt ? ` (it was: ${page.stoppedAt})` : ''}`);
  t.equal(page.status, 503, 'it ends on wardgate\'s own page with 503');
  t.equal(page.stoppedAt ? undefined : reasonOf(page.body), 'idp-unavailable', 'reason idp-unavailable');

  const unavailableBefore = await refreshes(rig, 'unavailable');
  const failedBefore = await revocations(rig, 'refresh-failed');
  rig.advance(11 * MIN);
  t.equal((await api(browser, rig.url('epic.localhost', '/'))).status, 200, 'a refresh due while the IdP is down keeps the session: 200');
  t.equal(await refreshes(rig, 'unavailable'), unavailableBefore + 1, 'token_refresh_total{result="unavailable"} +1');
  t.equal(await revocations(rig, 'refresh-failed'), failedBefore, 'and no session was ended for it');
  t.equal((await api(browser, rig.url('epic.localhost', '/'))).status, 200, 'the next request works too (the retry is backed off, not per request)');
  t.equal(await refreshes(rig, 'unavailable'), unavailableBefore + 1, 'without another attempt at the IdP');
});

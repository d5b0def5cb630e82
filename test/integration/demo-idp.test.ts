import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import t from 'tap';
import { Browser, parseForms } from '../helpers/browser.js';
import { startDemoIdp } from '../../proxy/demo/idp.js';
import { clientCredentialsToken, isIdpLoginPage, logoutAtIdp, signIn, startTestIdp } from '../helpers/idp.js';
import { until } from '../helpers/wait.js';

/*
 * The demo IdP against real HTTP, driven as wardgate will drive it: openid-client for the
 * relying party's side, the test Browser for the person's side.
 */

t.setTimeout(30_000);

const SECRET = 'wardgate-demo-secret-0123456789abcdef';
const API_SECRET = 'pharmacy-bot-secret-0123456789abcdef';
const FHIR = 'https://fhir.hospital.example/';
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/** The relying party's side: a receiver for back-channel logout POSTs at rp.localhost. */
const received: Array<{ path: string; contentType: string | undefined; body: URLSearchParams }> = [];
const rp: Server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    received.push({ path: req.url ?? '', contentType: req.headers['content-type'], body: new URLSearchParams(Buffer.concat(chunks).toString('utf8')) });
    res.writeHead(req.url === '/fail' ? 500 : 200, { 'cache-control': 'no-store' }).end();
  });
});
await new Promise<void>((resolve) => rp.listen(0, '127.0.0.1', resolve));
const rpPort = (rp.address() as AddressInfo).port;
const RP_HOST = `rp.localhost:${rpPort}`;
const REDIRECT_URI = `http://${RP_HOST}/oidc/callback`;
t.teardown(() => new Promise<void>((resolve) => rp.close(() => resolve())));

const idp = await startTestIdp({
  clients: [
    {
      client_id: 'wardgate',
      client_secret: SECRET,
      redirect_uris: [REDIRECT_URI],
      post_logout_redirect_uris: [`http://${RP_HOST}/signed-out`],
      backchannel_logout_uri: `http://${RP_HOST}/oidc/backchannel-logout`,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      scope: 'openid email profile groups offline_access',
    },
    { client_id: 'pharmacy-bot', client_secret: API_SECRET, grant_types: ['client_credentials'] },
    {
      client_id: 'flaky-rp',
      client_secret: SECRET,
      redirect_uris: [REDIRECT_URI],
      backchannel_logout_uri: `http://${RP_HOST}/fail`,
      grant_types: ['authorization_code'],
    },
  ],
  resources: { [FHIR]: { scope: 'fhir.read fhir.write' } },
});
t.teardown(() => idp.close());

const config = await oidc.discovery(new URL(idp.issuer), 'wardgate', undefined, oidc.ClientSecretBasic(SECRET), { execute: [oidc.allowInsecureRequests] });
const jwks = createRemoteJWKSet(new URL(`${idp.issuer}/jwks`));

/** Stops a navigation at the relying party's callback; its URL is what openid-client consumes. */
const atCallback = (url: URL): boolean => url.href.startsWith(REDIRECT_URI);

interface Flow {
  url: string;
  verifier: string;
  state: string;
  nonce: string;
}

async function authorization(extra: Record<string, string> = {}): Promise<Flow> {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid email profile groups offline_access',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  return { url: url.href, verifier, state, nonce };
}

async function redeem(flow: Flow, callback: string | undefined, maxAge?: number) {
  if (!callback) throw new Error('the sign-in did not reach the callback');
  return oidc.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: flow.verifier,
    expectedState: flow.state,
    expectedNonce: flow.nonce,
    idTokenExpected: true,
    ...(maxAge === undefined ? {} : { maxAge }),
  });
}

async function signedIn(browser: Browser, user: string, method: 'hwk' | 'pwd', extra: Record<string, string> = {}) {
  const flow = await authorization(extra);
  const landed = await signIn(browser, flow.url, user, method, { stopBefore: atCallback });
  const tokens = await redeem(flow, landed.stoppedAt, extra['max_age'] === undefined ? undefined : Number(extra['max_age']));
  return { landed, tokens, claims: tokens.claims()! };
}

/** The OAuth `error` a token request was refused with ('resolved' if it was not refused). */
async function oauthError(request: Promise<unknown>): Promise<string> {
  try {
    await request;
    return 'resolved';
  } catch (err) {
    return err instanceof oidc.ResponseBodyError ? err.error : String(err);
  }
}

t.test('discovery: issuer is http://localhost:<port>, PKCE S256 only, back-channel and RP-initiated logout on', async (t) => {
  const response = await fetch(`${idp.issuer}/.well-known/openid-configuration`);
  t.equal(response.status, 200);
  const doc = (await response.json()) as Record<string, unknown>;
  t.equal(doc['issuer'], `http://localhost:${idp.port}`);
  t.equal(idp.issuer, `http://localhost:${idp.port}`);
  t.same(doc['code_challenge_methods_supported'], ['S256']);
  t.same(doc['response_types_supported'], ['code']);
  t.equal(doc['backchannel_logout_supported'], true);
  t.equal(doc['backchannel_logout_session_supported'], true);
  t.equal(doc['end_session_endpoint'], `${idp.issuer}/session/end`);
  t.same(doc['acr_values_supported'], ['phr', 'pwd']);
  const claims = new Set(doc['claims_supported'] as string[]);
  for (const claim of ['amr', 'acr', 'auth_time', 'sid', 'groups', 'email', 'name']) t.ok(claims.has(claim), `claims_supported has ${claim}`);
  const grants = new Set(doc['grant_types_supported'] as string[]);
  for (const grant of ['authorization_code', 'refresh_token', 'client_credentials']) t.ok(grants.has(grant), `grant_types_supported has ${grant}`);
});

t.test('the sign-in page lists every user and method, escapes text, and shows a security-key request', async (t) => {
  const flow = await authorization({ acr_values: 'phr' });
  const page = await new Browser().navigate(flow.url);
  t.ok(isIdpLoginPage(page), 'the authorization request lands on the login page');
  t.match(page.body, 'This application asks for a security key');
  t.match(page.body, 'Dr Alice Hart');
  t.match(page.body, /name="user" value="vendor\.dave"/);
  // nurse.bob has no security key, so his form offers only a password.
  const bob = /<form[^>]*>\s*<input type="hidden" name="user" value="nurse\.bob">[\s\S]*?<\/form>/.exec(page.body)?.[0] ?? '';
  t.match(bob, 'value="pwd"');
  t.notMatch(bob, 'value="hwk"');
  t.match(page.headers['content-security-policy'], "default-src 'none'");

  const plain = await new Browser().navigate((await authorization()).url);
  t.notMatch(plain.body, 'asks for a security key', 'no note when the application did not ask');
});

t.test('dr.alice with a security key: PKCE code flow gives amr [hwk,pin], acr phr, auth_time, sid, email, groups; refresh rotates; a disabled account cannot refresh', async (t) => {
  const before = Math.floor(Date.now() / 1000);
  const browser = new Browser();
  const { landed, tokens, claims } = await signedIn(browser, 'dr.alice', 'hwk', { acr_values: 'phr' });
  t.ok(
    landed.hops.some((h) => h.startsWith(`${idp.issuer}/interaction/`)),
    'went through the login page',
  );
  t.equal(claims.sub, 'dr.alice');
  t.same(claims.amr, ['hwk', 'pin']);
  t.equal(claims.acr, 'phr');
  t.type(claims.auth_time, 'number');
  t.ok(claims.auth_time! >= before - 1 && claims.auth_time! <= Math.floor(Date.now() / 1000) + 1, 'auth_time is the sign-in time');
  t.type(claims['sid'], 'string');
  t.equal(claims['email'], 'alice@hospital.example');
  t.equal(claims['email_verified'], true);
  t.equal(claims['name'], 'Dr Alice Hart');
  t.same(claims['groups'], ['clinicians']);
  t.equal(decodeProtectedHeader(tokens.id_token!).alg, 'RS256');

  const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, 'dr.alice');
  t.equal(userinfo['email'], 'alice@hospital.example', 'the sign-in access token works at userinfo');

  const first = tokens.refresh_token;
  t.type(first, 'string', 'a refresh token is issued');
  const refreshed = await oidc.refreshTokenGrant(config, first!);
  const second = refreshed.refresh_token;
  t.type(second, 'string');
  t.not(second, first, 'the refresh token rotates');
  t.same(refreshed.claims()?.amr, ['hwk', 'pin'], 'a refreshed ID token keeps how the user signed in');
  t.equal(refreshed.claims()?.auth_time, claims.auth_time, 'and when');

  idp.disableUser('dr.alice');
  t.equal(await oauthError(oidc.refreshTokenGrant(config, second!)), 'invalid_grant', 'a disabled account cannot refresh');
  const again = await browser.navigate((await authorization()).url, { stopBefore: atCallback });
  t.ok(isIdpLoginPage(again), "a disabled account's IdP session does not sign in silently");
  t.match(again.body, /Dr Alice Hart[\s\S]*?Account disabled/);
  idp.enableUser('dr.alice');
  const third = await oidc.refreshTokenGrant(config, second!);
  t.type(third.refresh_token, 'string', 're-enabled: the same refresh token works again, so the refusal was the account');

  t.equal(await oauthError(oidc.refreshTokenGrant(config, first!)), 'invalid_grant', 'a rotated-out refresh token is refused');
});

t.test('nurse.bob with a password gets amr [pwd], acr pwd even when the application asked for phr', async (t) => {
  const { claims, tokens } = await signedIn(new Browser(), 'nurse.bob', 'pwd', { acr_values: 'phr' });
  t.equal(claims.sub, 'nurse.bob');
  t.same(claims.amr, ['pwd']);
  t.equal(claims.acr, 'pwd', 'the weaker result is asserted as is; the relying party must notice');
  t.same(claims['groups'], ['clinicians']);
  t.type(tokens.refresh_token, 'string');
});

t.test('an IdP session signs in silently; prompt=login and max_age=0 force a new login interaction', async (t) => {
  const browser = new Browser();
  const first = await signedIn(browser, 'rad.carol', 'hwk');
  t.same(first.claims['groups'], ['radiology', 'clinicians']);

  const silent = await browser.navigate((await authorization()).url, { stopBefore: atCallback });
  t.ok(silent.stoppedAt?.startsWith(REDIRECT_URI), 'with a session the IdP answers without a login page');
  t.notOk(silent.hops.some((h) => h.includes('/interaction/')));

  const forced = await browser.navigate((await authorization({ prompt: 'login' })).url, { stopBefore: atCallback });
  t.ok(isIdpLoginPage(forced), 'prompt=login shows the login page despite the session');
  t.match(forced.body, 'asks you to sign in again');

  // max_age counts whole seconds: let the first sign-in become at least a second old.
  const loginSecond = first.claims.auth_time!;
  await until(() => Math.floor(Date.now() / 1000) > loginSecond, 2000, 'the next second');
  const flow = await authorization({ max_age: '0' });
  const page = await browser.navigate(flow.url, { stopBefore: atCallback });
  t.ok(isIdpLoginPage(page), 'max_age=0 shows the login page despite the session');
  const again = await signIn(browser, flow.url, 'rad.carol', 'pwd', { stopBefore: atCallback });
  const tokens = await redeem(flow, again.stoppedAt, 0);
  const claims = tokens.claims()!;
  t.ok(claims.auth_time! > loginSecond, 'auth_time is the new sign-in');
  t.same(claims.amr, ['pwd'], 'and amr says how the new sign-in was made');
});

t.test('client_credentials with an allowed resource gives an ES256 JWT for that audience and scope', async (t) => {
  const token = await clientCredentialsToken(idp, 'pharmacy-bot', API_SECRET, FHIR, 'fhir.read patients.delete');
  const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: idp.issuer, audience: FHIR, algorithms: ['ES256'] });
  t.equal(protectedHeader.alg, 'ES256');
  t.equal(protectedHeader.typ, 'at+jwt');
  t.equal(payload['client_id'], 'pharmacy-bot');
  t.equal(payload['scope'], 'fhir.read', 'only scopes the resource accepts');
  t.type(payload.exp, 'number');
  t.ok(payload.exp! - payload.iat! <= 3600, 'client-credentials lifetime');

  await t.rejects(clientCredentialsToken(idp, 'pharmacy-bot', API_SECRET, 'https://unknown.example/', 'fhir.read'), /invalid_target/, 'a resource outside the allow-list is refused');
  await t.rejects(clientCredentialsToken(idp, 'pharmacy-bot', 'wrong-secret', FHIR, 'fhir.read'), /invalid_client/, 'a wrong secret is refused');
});

t.test('backchannelLogout(user) POSTs a verifiable logout token to rp.localhost and ends the IdP session', async (t) => {
  const browser = new Browser();
  const { claims, tokens } = await signedIn(browser, 'vendor.dave', 'pwd');
  t.equal(claims['email'], 'dave@devicevendor.example');
  received.length = 0;

  await idp.backchannelLogout('vendor.dave');
  t.equal(received.length, 1, 'one POST reached the receiver by its *.localhost name');
  const post = received[0]!;
  t.equal(post.path, '/oidc/backchannel-logout');
  t.equal(post.contentType, 'application/x-www-form-urlencoded');
  const logoutToken = post.body.get('logout_token') ?? '';
  const { payload, protectedHeader } = await jwtVerify(logoutToken, jwks, { issuer: idp.issuer, audience: 'wardgate', typ: 'logout+jwt' });
  t.equal(protectedHeader.typ, 'logout+jwt');
  t.equal(payload.sub, 'vendor.dave');
  t.equal(payload['sid'], claims['sid'], 'the sid of the signed-in session');
  t.same(payload['events'], { [BACKCHANNEL_EVENT]: {} });
  t.type(payload.jti, 'string');
  t.notOk('nonce' in payload, 'a logout token never has a nonce');

  const next = await browser.navigate((await authorization()).url, { stopBefore: atCallback });
  t.ok(isIdpLoginPage(next), 'the IdP session is gone: the next authorization asks for a login');
  t.equal(await oauthError(oidc.refreshTokenGrant(config, tokens.refresh_token!)), 'invalid_grant', "the session's refresh token is revoked");

  received.length = 0;
  await idp.backchannelLogout('vendor.dave');
  t.equal(received.length, 0, 'no session left, nothing sent');
});

t.test('backchannelLogout(user, sid) ends only the session with that sid', async (t) => {
  const one = await signedIn(new Browser(), 'admin.erin', 'hwk');
  const other = new Browser();
  await signedIn(other, 'admin.erin', 'pwd');
  received.length = 0;
  await idp.backchannelLogout('admin.erin', String(one.claims['sid']));
  t.equal(received.length, 1);
  const { payload } = await jwtVerify(received[0]!.body.get('logout_token') ?? '', jwks, { issuer: idp.issuer, audience: 'wardgate' });
  t.equal(payload['sid'], one.claims['sid']);
  const silent = await other.navigate((await authorization()).url, { stopBefore: atCallback });
  t.ok(silent.stoppedAt?.startsWith(REDIRECT_URI), 'the other session of the same user carries on');
  await idp.backchannelLogout('admin.erin');
});

t.test('RP-initiated logout: the confirmation form signs out and back-channel logout reaches the relying party', async (t) => {
  const browser = new Browser();
  const { tokens, claims } = await signedIn(browser, 'nurse.bob', 'pwd');
  received.length = 0;
  const endSession = oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: `http://${RP_HOST}/signed-out`, state: 'bye' });
  const out = await logoutAtIdp(browser, endSession.href, { stopBefore: (u) => u.host === RP_HOST });
  t.equal(out.stoppedAt, `http://${RP_HOST}/signed-out?state=bye`);
  await until(() => received.length === 1, 5000, 'the back-channel logout POST');
  const { payload } = await jwtVerify(received[0]!.body.get('logout_token') ?? '', jwks, { issuer: idp.issuer, audience: 'wardgate' });
  t.equal(payload['sid'], claims['sid']);
});

t.test('a different user signing in over an existing session replaces it', async (t) => {
  const browser = new Browser();
  await signedIn(browser, 'dr.alice', 'pwd');
  const { claims } = await signedIn(browser, 'nurse.bob', 'pwd', { prompt: 'login' });
  t.equal(claims.sub, 'nurse.bob');
  await idp.backchannelLogout('nurse.bob');
});

t.test('bad login posts get a 400 page and the IdP keeps working', async (t) => {
  const browser = new Browser();
  const flow = await authorization();
  const page = await browser.navigate(flow.url);
  t.ok(isIdpLoginPage(page));
  const action = `${page.url}/login`;
  const post = (body: Record<string, string> | string, headers: Record<string, string> = {}) =>
    browser.request(action, { method: 'POST', body, headers, initiator: page.url });

  const unknownUser = await post({ user: 'mallory', method: 'pwd' });
  t.equal(unknownUser.status, 400);
  t.match(unknownUser.body, 'There is no demo user');
  const xss = await post({ user: '<script>alert(1)</script>', method: 'pwd' });
  t.equal(xss.status, 400);
  t.notMatch(xss.body, '<script>alert(1)</script>', 'posted text is escaped');
  t.match(xss.body, '&lt;script&gt;');
  t.equal((await post({ user: 'dr.alice', method: 'sms' })).status, 400, 'unknown method');
  t.equal((await post({ user: 'nurse.bob', method: 'hwk' })).status, 400, 'a method the user does not have');
  t.equal((await post({ user: 'dr.alice' })).status, 400, 'no method');
  t.equal((await post('user=dr.alice&user=nurse.bob&method=pwd', { 'content-type': 'application/x-www-form-urlencoded' })).status, 400, 'two users');
  t.equal((await post('{"user":"dr.alice","method":"pwd"}', { 'content-type': 'application/json' })).status, 400, 'not a form');
  t.equal((await post('user=dr.alice&method=pwd')).status, 400, 'no content type');
  t.equal((await post({ user: 'dr.alice', method: 'pwd', pad: 'x'.repeat(9000) })).status, 413, 'too large');
  t.equal((await browser.request(`${idp.issuer}/interaction/not-a-real-uid`)).status, 400, 'an unknown interaction');
  const other = await new Browser().navigate((await authorization()).url);
  const replayed = await browser.request(other.url, { headers: { cookie: browser.cookieHeader(page.url) } });
  t.equal(replayed.status, 400, "one sign-in's interaction cookie does not open another sign-in's page");
  t.match(replayed.body, 'another sign-in request');
  t.equal((await new Browser().request(page.url)).status, 400, 'without the interaction cookie');

  idp.disableUser('vendor.dave');
  t.equal((await post({ user: 'vendor.dave', method: 'pwd' })).status, 403, 'a disabled account cannot sign in');
  idp.enableUser('vendor.dave');

  const done = await signIn(browser, page.url, 'dr.alice', 'pwd', { stopBefore: atCallback });
  t.ok(done.stoppedAt?.startsWith(REDIRECT_URI), 'the same sign-in still completes');
  await redeem(flow, done.stoppedAt);
});

t.test('a sign-in that names a resource gets an ES256 JWT access token for it', async (t) => {
  const flow = await authorization({ resource: FHIR, scope: 'openid fhir.read' });
  const landed = await signIn(new Browser(), flow.url, 'rad.carol', 'pwd', { stopBefore: atCallback });
  const tokens = await oidc.authorizationCodeGrant(
    config,
    new URL(landed.stoppedAt ?? 'http://invalid/'),
    { pkceCodeVerifier: flow.verifier, expectedState: flow.state, expectedNonce: flow.nonce },
    { resource: FHIR },
  );
  const { payload } = await jwtVerify(tokens.access_token, jwks, { issuer: idp.issuer, audience: FHIR, algorithms: ['ES256'] });
  t.equal(payload.sub, 'rad.carol');
  t.equal(payload['scope'], 'fhir.read');
  t.ok(payload.exp! - payload.iat! <= 600, 'the access-token lifetime, not the client-credentials one');
  await idp.backchannelLogout('rad.carol');
});

t.test('prompt=consent is granted without a consent screen, and keeps offline_access', async (t) => {
  const browser = new Browser();
  await signedIn(browser, 'rad.carol', 'pwd');
  const { landed, tokens } = await signedIn(browser, 'rad.carol', 'pwd', { prompt: 'consent' });
  t.ok(landed.hops.some((h) => h.includes('/interaction/')), 'a consent interaction happened');
  t.notOk(landed.hops.some((h) => h.endsWith('/login')), 'without a login: the session was reused');
  t.match(tokens.scope ?? '', /\boffline_access\b/);
  t.type(tokens.refresh_token, 'string');
  await idp.backchannelLogout('rad.carol');
});

t.test('cancel on the sign-in page returns access_denied to the relying party', async (t) => {
  const browser = new Browser();
  const flow = await authorization();
  const page = await browser.navigate(flow.url);
  const out = await browser.navigate(`${page.url}/abort`, { method: 'POST', body: {}, initiator: page.url, stopBefore: atCallback });
  const callback = new URL(out.stoppedAt ?? 'http://invalid/');
  t.equal(callback.searchParams.get('error'), 'access_denied');
  t.equal(callback.searchParams.get('state'), flow.state);
});

t.test('interaction routes answer 404 and 405 for anything else', async (t) => {
  const browser = new Browser();
  const page = await browser.navigate((await authorization()).url);
  t.equal((await browser.request(`${page.url}/nothing`)).status, 404);
  const getLogin = await browser.request(`${page.url}/login`);
  t.equal(getLogin.status, 405);
  t.equal(getLogin.headers['allow'], 'POST');
  t.equal((await browser.request(page.url, { method: 'POST', body: { user: 'dr.alice' } })).status, 405);
});

t.test('signing out at the IdP without a relying party ends on its own signed-out page', async (t) => {
  const browser = new Browser();
  await signedIn(browser, 'nurse.bob', 'pwd');
  const out = await logoutAtIdp(browser, `${idp.issuer}/session/end`);
  t.equal(out.status, 200);
  t.match(out.body, 'You are signed out');
  const next = await browser.navigate((await authorization()).url, { stopBefore: atCallback });
  t.ok(isIdpLoginPage(next), 'the IdP session is gone');
});

t.test('protocol errors get an escaped error page', async (t) => {
  const url = new URL(`${idp.issuer}/auth`);
  url.search = new URLSearchParams({ client_id: '<b>nobody</b>', response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI }).toString();
  const page = await new Browser().navigate(url.href);
  t.equal(page.status, 400);
  t.match(page.body, 'invalid_client');
  t.notMatch(page.body, '<b>nobody</b>');

  const noPkce = new URL((await authorization()).url);
  noPkce.searchParams.delete('code_challenge');
  noPkce.searchParams.delete('code_challenge_method');
  const refused = await new Browser().navigate(noPkce.href, { stopBefore: atCallback });
  t.match(refused.stoppedAt ?? '', /error=invalid_request/, 'an authorization request without PKCE is refused');
});

t.test('a failed back-channel delivery rejects, and the session still ends', async (t) => {
  const flaky = await oidc.discovery(new URL(idp.issuer), 'flaky-rp', undefined, oidc.ClientSecretBasic(SECRET), { execute: [oidc.allowInsecureRequests] });
  const browser = new Browser();
  const verifier = oidc.randomPKCECodeVerifier();
  const url = oidc.buildAuthorizationUrl(flaky, { redirect_uri: REDIRECT_URI, scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
  const landed = await signIn(browser, url.href, 'admin.erin', 'hwk', { stopBefore: atCallback });
  t.ok(landed.stoppedAt);
  await t.rejects(idp.backchannelLogout('admin.erin'), /back-channel logout failed for flaky-rp/);
  const next = await browser.navigate(url.href, { stopBefore: atCallback });
  t.ok(isIdpLoginPage(next), 'the session ended anyway');
});

t.test('start-up failures reject and leave nothing listening', async (t) => {
  await t.rejects(startDemoIdp({ port: idp.port, clients: [] }), { code: 'EADDRINUSE' }, 'a port in use');
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  await t.rejects(startDemoIdp({ port, clients: [{ client_id: 'bad', redirect_uris: ['not a url'] }] }), /invalid_redirect_uri/, 'invalid client metadata');
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(port, '127.0.0.1', resolve));
  t.pass('the port was released');
  await new Promise<void>((resolve) => probe.close(() => resolve()));
});

t.test('an expired sign-in request gets the expired page; a public client is registered with PKCE only', async (t) => {
  const short = await startTestIdp({ clients: [{ client_id: 'spa', redirect_uris: [REDIRECT_URI] }], ttl: { Interaction: 1, AccessToken: 1 } });
  t.teardown(() => short.close());
  const discovered = await oidc.discovery(new URL(short.issuer), 'spa', undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
  const verifier = oidc.randomPKCECodeVerifier();
  const url = oidc.buildAuthorizationUrl(discovered, { redirect_uri: REDIRECT_URI, scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
  const browser = new Browser();
  const page = await browser.navigate(url.href);
  t.ok(isIdpLoginPage(page));

  // The sign-in itself runs on an IdP whose interactions last as usual: under load it can
  // take longer than the one second the expiry half of this test needs.
  const pkce = await startTestIdp({ clients: [{ client_id: 'spa', redirect_uris: [REDIRECT_URI] }], ttl: { AccessToken: 1 } });
  t.teardown(() => pkce.close());
  const atPkce = await oidc.discovery(new URL(pkce.issuer), 'spa', undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
  const verifier2 = oidc.randomPKCECodeVerifier();
  const url2 = oidc.buildAuthorizationUrl(atPkce, { redirect_uri: REDIRECT_URI, scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(verifier2), code_challenge_method: 'S256' });
  const landed = await signIn(new Browser(), url2.href, 'nurse.bob', 'pwd', { stopBefore: atCallback });
  const tokens = await oidc.authorizationCodeGrant(atPkce, new URL(landed.stoppedAt ?? 'http://invalid/'), { pkceCodeVerifier: verifier2 });
  t.equal((await oidc.fetchUserInfo(atPkce, tokens.access_token, 'nurse.bob')).sub, 'nurse.bob', 'a public client signs in with PKCE alone');

  const expiresAt = Date.now() + 1100;
  await until(() => Date.now() > expiresAt, 2000, 'the interaction to expire');
  const late = await browser.navigate(`${page.url}/login`, { method: 'POST', body: { user: 'dr.alice', method: 'pwd' }, initiator: page.url });
  t.equal(late.status, 400);
  t.match(late.body, 'expired');
  // The browser dropped the expired cookie; sent anyway, the IdP's own record has expired too.
  const forced = await browser.request(page.url, { headers: { cookie: cookieOf(page) } });
  t.equal(forced.status, 400, 'an expired interaction is gone from the store as well');
  const userinfo = await fetch(atPkce.serverMetadata().userinfo_endpoint!, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  t.equal(userinfo.status, 401, 'and so is an expired access token');
});

/** The Cookie header built from a response's Set-Cookie lines, bypassing the jar's expiry. */
function cookieOf(page: { headers: { 'set-cookie'?: string[] } }): string {
  return (page.headers['set-cookie'] ?? []).map((line) => line.split(';')[0]).join('; ');
}

// ---------------------------------------------------------------------------------------------
// The test Browser itself: security tests elsewhere rely on it behaving like Chromium.

t.test('Browser', async (t) => {
  const site = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (url.pathname.endsWith('/set')) {
        res.writeHead(200, { 'set-cookie': url.searchParams.getAll('c') }).end('ok');
        return;
      }
      if (url.pathname === '/redirect') {
        res.writeHead(Number(url.searchParams.get('status')), { location: url.searchParams.get('to') ?? '/' }).end();
        return;
      }
      if (url.pathname === '/loop') {
        res.writeHead(302, { location: '/loop' }).end();
        return;
      }
      const body = JSON.stringify({ method: req.method, host: req.headers.host, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    });
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => site.close(() => resolve())));
  const port = (site.address() as AddressInfo).port;
  const at = (host: string, path: string): string => `http://${host}:${port}${path}`;
  const set = (browser: Browser, host: string, ...cookies: string[]) =>
    browser.navigate(at(host, `/set?${cookies.map((c) => `c=${encodeURIComponent(c)}`).join('&')}`));
  const echo = async (page: { body: string }) => JSON.parse(page.body) as { method: string; host: string; headers: Record<string, string | undefined>; body: string };

  t.test('connects to loopback with the Host of the URL, and nowhere else', async (t) => {
    const b = new Browser();
    const seen = await echo(await b.request(at('epic.localhost', '/echo')));
    t.equal(seen.host, `epic.localhost:${port}`);
    t.equal(seen.headers['accept'], '*/*');
    await t.rejects(b.request('http://example.com/'), /only connects to loopback/);
  });

  t.test('host-only and Domain cookies', async (t) => {
    const b = new Browser();
    await set(b, 'a.app.localhost', 'hostonly=1', 'shared=2; Domain=app.localhost', 'dotted=3; Domain=.APP.localhost');
    t.same(b.cookies('a.app.localhost').map((c) => c.name).sort(), ['dotted', 'hostonly', 'shared']);
    t.same(b.cookies('b.app.localhost').map((c) => c.name).sort(), ['dotted', 'shared'], 'a sibling gets only Domain cookies');
    t.same(b.cookies('app.localhost').map((c) => c.name).sort(), ['dotted', 'shared']);
    t.equal(b.cookies('b.app.localhost').find((c) => c.name === 'shared')?.hostOnly, false);
    t.notOk(b.setCookie('a.app.localhost', 'tld=1; Domain=localhost'), 'Domain=localhost is a public suffix');
    t.notOk(b.setCookie('a.app.localhost', 'other=1; Domain=other.localhost'), 'a Domain that does not match');
    t.ok(b.setCookie('localhost', 'self=1; Domain=localhost'), 'a public-suffix Domain equal to the host is host-only');
    t.equal(b.cookies('localhost').find((c) => c.name === 'self')?.hostOnly, true);
    t.notOk(b.cookies('x.localhost').some((c) => c.name === 'self'));
    const sent = await echo(await b.navigate(at('b.app.localhost', '/echo')));
    t.equal(sent.headers['cookie'], 'shared=2; dotted=3');
  });

  t.test('Path, default path and expiry', async (t) => {
    const b = new Browser();
    await b.navigate(at('p.localhost', '/dir/sub/set?c=deflt%3D1&c=admin%3D2%3B%20Path%3D%2Fadmin'));
    t.equal(b.cookies('p.localhost').find((c) => c.name === 'deflt')?.path, '/dir/sub', 'default path is the directory of the request');
    t.equal(b.cookieHeader(at('p.localhost', '/admin/x')), 'admin=2');
    t.equal(b.cookieHeader(at('p.localhost', '/admin')), 'admin=2');
    t.equal(b.cookieHeader(at('p.localhost', '/administrator')), '', 'a path prefix must end at a slash');
    t.equal(b.cookieHeader(at('p.localhost', '/dir/sub/page')), 'deflt=1');
    b.setCookie('p.localhost', 'long=1; Path=/admin/deeper');
    t.equal(b.cookieHeader(at('p.localhost', '/admin/deeper/x')), 'long=1; admin=2', 'longer paths first');

    t.ok(b.setCookie('p.localhost', 'temp=1; Max-Age=60'));
    const temp = b.cookies('p.localhost').find((c) => c.name === 'temp');
    t.ok(temp?.expiresAt && temp.expiresAt > Date.now() + 50_000);
    b.setCookie('p.localhost', 'temp=gone; Max-Age=0');
    t.notOk(b.cookies('p.localhost').some((c) => c.name === 'temp'), 'Max-Age=0 deletes');
    b.setCookie('p.localhost', 'old=1');
    b.setCookie('p.localhost', 'old=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT');
    t.notOk(b.cookies('p.localhost').some((c) => c.name === 'old'), 'a past Expires deletes');
    b.setCookie('p.localhost', 'both=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60');
    t.ok(b.cookies('p.localhost').some((c) => c.name === 'both'), 'Max-Age wins over Expires');
    b.clearCookies();
    t.same(b.cookies('p.localhost'), []);
  });

  t.test('Secure, prefixes, HttpOnly and SameSite as Chromium handles them', async (t) => {
    const b = new Browser();
    t.ok(b.setCookie('s.localhost', 'sec=1; Secure'), 'Secure over http is accepted on *.localhost');
    t.ok(b.setCookie('127.0.0.1', 'sec=1; Secure'), 'and on loopback addresses');
    t.notOk(b.setCookie('example.com', 'sec=1; Secure'), 'but not from other http origins');
    t.ok(b.setCookie('https://example.com/', 'sec=1; Secure'));
    t.notOk(b.setCookie('example.com', 'sec=2'), 'an insecure origin cannot overwrite a Secure cookie');
    t.ok(b.setCookie('s.localhost', '__Host-ok=1; Secure; Path=/'));
    t.notOk(b.setCookie('s.localhost', '__Host-a=1; Path=/'), '__Host- needs Secure');
    t.notOk(b.setCookie('s.localhost', '__Host-b=1; Secure; Path=/; Domain=s.localhost'), '__Host- refuses any Domain');
    t.notOk(b.setCookie('s.localhost', '__Host-c=1; Secure'), '__Host- needs Path=/ said explicitly');
    t.notOk(b.setCookie('s.localhost', '__host-d=1; Path=/'), 'prefixes match case-insensitively');
    t.notOk(b.setCookie('s.localhost', '__Secure-e=1'), '__Secure- needs Secure');
    t.notOk(b.setCookie('s.localhost', '=__Host-f'), 'a nameless cookie cannot pose as prefixed');
    t.notOk(b.setCookie('s.localhost', 'n=1; SameSite=None'), 'SameSite=None needs Secure');
    t.ok(b.setCookie('s.localhost', 'h=1; HttpOnly; SameSite=Strict'));
    const h = b.cookies('s.localhost').find((c) => c.name === 'h');
    t.equal(h?.httpOnly, true);
    t.equal(h?.sameSite, 'strict');
    t.equal(b.cookies('s.localhost').find((c) => c.name === 'sec')?.sameSite, 'unset');
    t.ok(b.rejectedCookies.some((r) => r.reason.includes('__Host-')), 'refusals are recorded with a reason');
  });

  t.test('SameSite decides what a navigation carries', async (t) => {
    const b = new Browser();
    await set(b, 'app.localhost', 'strict=1; SameSite=Strict', 'lax=1; SameSite=Lax', 'none=1; SameSite=None; Secure', 'unset=1');
    const names = async (page: Promise<{ body: string }>) => ((await echo(await page)).headers['cookie'] ?? '').split('; ').filter(Boolean).map((c) => c.split('=')[0]).sort();
    const other = at('evil.localhost', '/page');
    t.same(await names(b.navigate(at('app.localhost', '/echo'))), ['lax', 'none', 'strict', 'unset'], 'typed in the address bar: all');
    t.same(await names(b.navigate(at('app.localhost', '/echo'), { initiator: at('app.localhost', '/') })), ['lax', 'none', 'strict', 'unset'], 'same-site link: all');
    t.same(await names(b.navigate(at('app.localhost', '/echo'), { initiator: other })), ['lax', 'none', 'unset'], 'cross-site link: not Strict');
    t.same(await names(b.navigate(at('app.localhost', '/echo'), { method: 'POST', body: { a: '1' }, initiator: other })), ['none', 'unset'], 'cross-site form POST: None, and fresh unset cookies (Lax-allowing-unsafe)');
    t.same(await names(b.request(at('app.localhost', '/echo'), { initiator: other })), ['none'], 'cross-site fetch: None only');
    const seen = await echo(await b.navigate(at('app.localhost', '/redirect?status=302&to=/echo'), { initiator: other }));
    t.equal(seen.headers['sec-fetch-site'], 'cross-site');
    t.notMatch(seen.headers['cookie'] ?? '', 'strict', 'a redirect does not launder a cross-site navigation');
  });

  t.test('navigate follows redirects like a browser', async (t) => {
    const b = new Browser();
    const first = await b.navigate(at('n.localhost', '/redirect?status=303&to=/echo'), { method: 'POST', body: { x: '1' }, initiator: at('n.localhost', '/form') });
    const after303 = await echo(first);
    t.equal(after303.method, 'GET', '303 turns a POST into GET');
    t.equal(after303.body, '');
    t.same(first.hops, [at('n.localhost', '/redirect?status=303&to=/echo'), at('n.localhost', '/echo')]);
    t.equal(after303.headers['accept']?.startsWith('text/html'), true);
    t.equal(after303.headers['sec-fetch-mode'], 'navigate');
    t.equal(after303.headers['sec-fetch-site'], 'same-origin');

    const after307 = await echo(await b.navigate(at('n.localhost', '/redirect?status=307&to=/echo'), { method: 'POST', body: { x: '1' }, initiator: at('n.localhost', '/form') }));
    t.equal(after307.method, 'POST', '307 keeps the method');
    t.equal(after307.body, 'x=1', 'and the body');
    t.equal(after307.headers['origin'], `http://n.localhost:${port}`);
    t.equal(after307.headers['content-type'], 'application/x-www-form-urlencoded');

    t.equal((await echo(await b.navigate(at('n.localhost', '/redirect?status=302&to=/echo'), { method: 'POST', body: 'raw' }))).method, 'GET', '302 after POST: GET');
    const typed = await echo(await b.navigate(at('n.localhost', `/redirect?status=301&to=${encodeURIComponent(at('m.localhost', '/echo'))}`)));
    t.equal(typed.host, `m.localhost:${port}`, 'an absolute Location to another host');
    t.equal(typed.headers['sec-fetch-site'], 'none', 'typed navigations stay "none"');

    const stopped = await b.navigate(at('n.localhost', '/redirect?status=302&to=/echo?code=1'), { stopBefore: (u) => u.pathname === '/echo' });
    t.equal(stopped.status, 302);
    t.equal(stopped.stoppedAt, at('n.localhost', '/echo?code=1'));
    await t.rejects(b.navigate(at('n.localhost', '/loop')), /exceeded 20 hops/);
  });

  t.test('parseForms finds forms, fields and buttons, including form= buttons', async (t) => {
    const page = `<form id="f" method="post" action="/go?a=1&amp;b=2"><input type="hidden" name="xsrf" value="t&quot;k"><input type="text" name="q"><input type="checkbox" name="c" value="v" checked><input type="checkbox" name="d"><button name="m" value="one">One &amp; only</button></form>
<button type="submit" form="f" name="logout" value="yes">Yes</button><form action="search"><input name="s" value="x"></form>`;
    const [f, g] = parseForms(page, 'http://h.localhost/base/page');
    t.equal(f?.action, 'http://h.localhost/go?a=1&b=2');
    t.equal(f?.method, 'POST');
    t.same(f?.fields, [['xsrf', 't"k'], ['q', ''], ['c', 'v']]);
    t.same(f?.buttons, [{ name: 'm', value: 'one', label: 'One & only' }, { name: 'logout', value: 'yes', label: 'Yes' }]);
    t.equal(g?.method, 'GET');
    t.equal(g?.action, 'http://h.localhost/base/search');
  });
});

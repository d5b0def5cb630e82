import { decodeJwt } from 'jose';
import t from 'tap';
import { API_AUDIENCE, API_CLIENT, sample } from '../helpers/gateway.js';
import { clientCredentialsToken, signIn } from '../helpers/idp.js';
import { startSignInRig } from '../helpers/sign-in-rig.js';
import { echo, startUpstream } from '../helpers/upstream.js';

/*
 * Sign-in end to end, against the real demo IdP over real HTTP with cookie-jar browsers:
 * the code flow through the auth host, the handoff to each application host, parallel
 * tabs, step-up, and every way a sign-in can be tampered with.
 */

const up = await startUpstream(echo);
t.teardown(() => up.close());

const rig = await startSignInRig({
  routes: `
  - id: epic
    host: epic.localhost
    policy:
      allow: [{ acr: [phr] }]
    upstream:
      url: ${up.url}
  - id: pacs
    host: pacs.localhost
    upstream:
      url: ${up.url}
  - id: labs
    host: labs.localhost
    policy:
      allow: [{ authAge: 3s }]
    upstream:
      url: ${up.url}
  - id: api
    host: api.localhost
    auth:
      methods: [bearer]
    upstream:
      url: ${up.url}`,
});

interface Echoed {
  url: string;
  headers: Record<string, string>;
}

const echoed = (body: string): Echoed => JSON.parse(body) as Echoed;
const reasonOf = (body: string): string => (/<code>([a-z-]+)<\/code>/.exec(body) ?? [])[1] ?? (JSON.parse(body) as { reason: string }).reason;

t.test('a clinician with a security key signs in once and lands on the URL she asked for', async (t) => {
  const browser = rig.browser();
  const page = await signIn(browser, rig.url('epic.localhost', '/chart?patient=demo-1001'), 'dr.alice', 'hwk');
  t.equal(page.status, 200, 'the final page is the application');
  t.equal(page.url, rig.url('epic.localhost', '/chart?patient=demo-1001'), 'the original URL, query included, was restored');
  const hosts = page.hops.map((hop) => new URL(hop).host);
  t.ok(hosts.includes(`auth.localhost:${rig.port}`), 'the sign-in went through the auth host');
  t.ok(page.hops.some((hop) => hop.startsWith(rig.idp.issuer)), 'and through the IdP');
  t.ok(page.hops.some((hop) => hop.includes('/.wardgate/handoff?code=')), 'and came back with a handoff code');

  const seen = echoed(page.body);
  t.equal(seen.url, '/chart?patient=demo-1001', 'upstream got the original path and query');
  const assertion = decodeJwt(seen.headers['x-wardgate-assertion']!);
  t.equal(assertion.sub, 'dr.alice', 'the identity assertion names dr.alice');
  t.equal(assertion.acr, 'phr', 'with her phishing-resistant acr');
  t.ok((assertion.amr as string[]).includes('hwk'), 'and hwk in amr');
  t.equal(assertion.aud, 'epic', 'for the epic route');
  t.notOk((seen.headers.cookie ?? '').includes('__Host-wardgate'), 'wardgate cookies never reached the upstream');

  const cookie = browser.cookies('epic.localhost').find((c) => c.name === '__Host-wardgate');
  t.ok(cookie, 'epic.localhost holds its own session cookie');
  t.ok(cookie!.value.length < 200, `the cookie is a small sealed reference (${cookie!.value.length} chars), far under 4 KB`);
  t.ok(cookie!.httpOnly && cookie!.secure, 'HttpOnly and Secure');
});

t.test('a second application signs in without another trip to the IdP login page', async (t) => {
  const browser = rig.browser();
  await signIn(browser, rig.url('epic.localhost', '/'), 'dr.alice', 'hwk');
  const page = await browser.navigate(rig.url('pacs.localhost', '/studies'));
  t.equal(page.status, 200, 'pacs answers');
  t.notOk(page.hops.some((hop) => hop.startsWith(rig.idp.issuer)), 'the auth host session was reused: the IdP was not visited');
  t.equal(decodeJwt(echoed(page.body).headers['x-wardgate-assertion']!).sub, 'dr.alice', 'the same user reaches pacs');
});

t.test('several tabs signing in at once all succeed, each back on its own URL', async (t) => {
  const browser = rig.browser();
  const paths = ['/tab-1', '/tab-2', '/tab-3', '/tab-4'];
  const pages = await Promise.all(paths.map((path) => signIn(browser, rig.url('pacs.localhost', path), 'rad.carol', 'pwd')));
  for (const [i, page] of pages.entries()) {
    t.equal(page.status, 200, `tab ${i + 1} signed in`);
    t.equal(echoed(page.body).url, paths[i], `tab ${i + 1} is back on ${paths[i]}`);
  }
});

t.test('step-up: a password session is sent back to the IdP and returns to the same URL with a security key', async (t) => {
  const browser = rig.browser();
  const first = await signIn(browser, rig.url('pacs.localhost', '/'), 'dr.alice', 'pwd');
  t.equal(first.status, 200, 'pacs takes a password sign-in');
  const before = sample(await rig.wg.metrics(), 'wardgate_step_up_total', { result: 'success' }) ?? 0;
  const page = await signIn(browser, rig.url('epic.localhost', '/orders?id=7'), 'dr.alice', 'hwk');
  t.equal(page.status, 200, 'epic answers after the step-up');
  t.equal(echoed(page.body).url, '/orders?id=7', 'the same URL, after the step-up');
  const authorize = page.hops.find((hop) => hop.startsWith(rig.idp.issuer) && hop.includes('acr_values'));
  t.match(authorize, /acr_values=phr/, 'the IdP was asked for acr phr');
  t.match(authorize, /prompt=login/, 'and to authenticate the user afresh, whatever session it had');
  t.ok(page.hops.some((hop) => hop.includes('/interaction/')), 'the user saw the IdP login page again');
  t.equal(decodeJwt(echoed(page.body).headers['x-wardgate-assertion']!).acr, 'phr', 'the new session is phishing-resistant');
  t.equal(sample(await rig.wg.metrics(), 'wardgate_step_up_total', { result: 'success' }), before + 1, 'step_up_total{result="success"} counted it');
});

t.test('step-up answered with the same weak result gets a clear deny page, never a loop', async (t) => {
  const browser = rig.browser();
  await signIn(browser, rig.url('pacs.localhost', '/'), 'nurse.bob', 'pwd');
  const page = await signIn(browser, rig.url('epic.localhost', '/'), 'nurse.bob', 'pwd');
  t.equal(page.status, 403, 'refused');
  t.equal(reasonOf(page.body), 'auth-strength-insufficient', 'with reason auth-strength-insufficient');
  t.match(page.body, /security key/, 'the page says in plain words what is missing');
  t.ok(page.hops.length < 12, `a bounded number of hops (${page.hops.length}), no loop`);
  const again = await browser.navigate(rig.url('epic.localhost', '/'));
  t.match(new URL(again.url).pathname, /^\/interaction\//, 'coming back on purpose is a new attempt: the IdP asks again (with a security key plugged in, it would pass)');
});

t.test('a first sign-in that asked for more and got less is refused at once', async (t) => {
  const page = await signIn(rig.browser(), rig.url('epic.localhost', '/'), 'nurse.bob', 'pwd');
  t.equal(page.status, 403, 'nurse.bob with a password cannot reach epic');
  t.equal(reasonOf(page.body), 'auth-strength-insufficient', 'reason auth-strength-insufficient');
  t.equal(page.hops.filter((hop) => hop.includes('/.wardgate/sign-in')).length, 1, 'one sign-in attempt, not a step-up after it');
});

t.test('a route requiring a recent authentication re-authenticates an older one', async (t) => {
  const browser = rig.browser();
  const first = await signIn(browser, rig.url('labs.localhost', '/'), 'rad.carol', 'pwd');
  t.equal(first.status, 200, 'a fresh sign-in passes maxAge 3s');
  // Real time: the IdP's own clock decides whether max_age forces a new login.
  await new Promise((resolve) => setTimeout(resolve, 3_200));
  const page = await signIn(browser, rig.url('labs.localhost', '/results'), 'rad.carol', 'pwd');
  t.equal(page.status, 200, 'labs answers again');
  t.ok(page.hops.some((hop) => hop.startsWith(rig.idp.issuer) && hop.includes('max_age=3')), 'the IdP was asked for max_age=3');
  t.ok(page.hops.some((hop) => hop.includes('/interaction/')), 'and the user authenticated again');
});

t.test('the return URL is only ever a routed origin', async (t) => {
  const browser = rig.browser();
  const b = `AAAAAAAA.${'A'.repeat(43)}`;
  const good = await browser.request(rig.url('auth.localhost', `/.wardgate/sign-in?rd=${encodeURIComponent(rig.url('epic.localhost', '/x'))}&b=${b}`));
  t.equal(good.status, 302, 'control: a routed origin on wardgate\'s scheme and port is accepted');
  for (const rd of [
    'http://evil.example/',
    `http://epic.localhost:${rig.port + 1}/`,
    `https://epic.localhost:${rig.port}/`,
    'javascript:alert(1)',
    `http://user@epic.localhost:${rig.port}/`,
    `http://unknown.localhost:${rig.port}/`,
    `//epic.localhost:${rig.port}/`,
    `http://epic.localhost:${rig.port}/%2e%2e%2f`,
  ]) {
    const res = await browser.request(rig.url('auth.localhost', `/.wardgate/sign-in?rd=${encodeURIComponent(rd)}&b=${b}`));
    t.equal(res.status, 400, `rd=${rd} is refused`);
    t.equal(reasonOf(res.body), 'return-url-invalid', 'as return-url-invalid');
  }
  const missingBinding = await browser.request(rig.url('auth.localhost', `/.wardgate/sign-in?rd=${encodeURIComponent(rig.url('epic.localhost'))}`));
  t.equal(missingBinding.status, 400, 'a sign-in without the app host browser binding is refused');
});

t.test('bad, replayed or foreign state and handoff codes get a clear 400', async (t) => {
  const browser = rig.browser();
  const stop = (url: URL): boolean => url.pathname === '/.wardgate/callback';
  const stopped = await signIn(browser, rig.url('pacs.localhost', '/x'), 'rad.carol', 'pwd', { stopBefore: stop });
  const callback = stopped.stoppedAt!;
  t.ok(callback, 'the IdP redirected to the callback');

  const thief = rig.browser();
  const stolen = await thief.navigate(callback);
  t.equal(stolen.status, 400, 'the callback in another browser is refused');
  t.equal(reasonOf(stolen.body), 'signin-browser-mismatch', 'as signin-browser-mismatch');

  const replay = await browser.navigate(callback);
  t.equal(replay.status, 400, 'the state was spent by the first attempt: a second use is refused');
  t.equal(reasonOf(replay.body), 'signin-state-invalid', 'as signin-state-invalid');

  const unknown = await browser.navigate(rig.url('auth.localhost', '/.wardgate/callback?state=nope&code=nope'));
  t.equal(reasonOf(unknown.body), 'signin-state-invalid', 'an unknown state is refused');

  // PKCE: a code redeemed under another transaction's state (and so its verifier) fails.
  const a = await signIn(browser, rig.url('pacs.localhost', '/a'), 'rad.carol', 'pwd', { stopBefore: stop });
  const b = await signIn(browser, rig.url('pacs.localhost', '/b'), 'rad.carol', 'pwd', { stopBefore: stop });
  const swapped = new URL(a.stoppedAt!);
  swapped.searchParams.set('state', new URL(b.stoppedAt!).searchParams.get('state')!);
  const mixed = await browser.navigate(swapped.href);
  t.equal(mixed.status, 400, 'a code presented with another transaction\'s state is refused');
  t.equal(reasonOf(mixed.body), 'signin-failed', 'the IdP rejected the PKCE verifier: signin-failed');

  const stopHandoff = (url: URL): boolean => url.pathname === '/.wardgate/handoff';
  const atHandoff = await signIn(rig.browser(), rig.url('pacs.localhost', '/y'), 'rad.carol', 'pwd', { stopBefore: stopHandoff });
  const foreign = await rig.browser().navigate(atHandoff.stoppedAt!);
  t.equal(foreign.status, 400, 'a handoff link opened in another browser is refused');
  t.equal(reasonOf(foreign.body), 'handoff-browser-mismatch', 'as handoff-browser-mismatch');

  const owner = rig.browser();
  const own = await signIn(owner, rig.url('pacs.localhost', '/z'), 'rad.carol', 'pwd', { stopBefore: stopHandoff });
  const used = await owner.navigate(own.stoppedAt!);
  t.equal(used.status, 200, 'the handoff works once in the browser that began it');
  const reused = await owner.navigate(own.stoppedAt!);
  t.equal(reused.status, 400, 'a handoff code is single-use');
  t.equal(reasonOf(reused.body), 'handoff-invalid', 'as handoff-invalid');
  t.ok((sample(await rig.wg.metrics(), 'wardgate_logins_total', { result: 'state_invalid' }) ?? 0) >= 2, 'logins_total counts the bad states');
});

t.test('tampered and foreign cookies count as no session', async (t) => {
  const browser = rig.browser();
  await signIn(browser, rig.url('pacs.localhost', '/'), 'rad.carol', 'pwd');
  const cookie = browser.cookies('pacs.localhost').find((c) => c.name === '__Host-wardgate')!;
  const flipped = cookie.value.slice(0, 20) + (cookie.value[20] === 'A' ? 'B' : 'A') + cookie.value.slice(21);
  const before = sample(await rig.wg.metrics(), 'wardgate_credentials_rejected_total', { kind: 'cookie', reason: 'cookie-invalid' }) ?? 0;
  for (const value of [flipped, cookie.value.slice(0, -4), 'garbage', '']) {
    const res = await rig.browser().request(rig.url('pacs.localhost', '/'), { headers: { cookie: `__Host-wardgate=${value}` }, accept: 'application/json' });
    t.equal(res.status, 401, `cookie "${value.slice(0, 12)}..." is no session: 401 for an API request`);
  }
  const epicCookie = browser.cookies('epic.localhost').find((c) => c.name === '__Host-wardgate');
  t.notOk(epicCookie, 'no session cookie exists for epic.localhost (not signed in there)');
  const moved = await rig.browser().request(rig.url('pacs.localhost', '/'), { headers: { cookie: `__Host-wardgate-browser=${cookie.value}` }, accept: 'application/json' });
  t.equal(moved.status, 401, 'a session value moved into another cookie name does not open');
  const after = sample(await rig.wg.metrics(), 'wardgate_credentials_rejected_total', { kind: 'cookie', reason: 'cookie-invalid' }) ?? 0;
  t.ok(after - before >= 3, 'credentials_rejected_total counted the tampered cookies');
  const nav = await rig.browser().request(rig.url('pacs.localhost', '/'), { headers: { cookie: `__Host-wardgate=${flipped}` } });
  t.match(String(nav.headers['set-cookie']), /__Host-wardgate=; Max-Age=0/, 'the tampered cookie is cleared');
});

t.test('API clients get 401 with WWW-Authenticate, never a redirect', async (t) => {
  const res = await rig.browser().request(rig.url('api.localhost', '/fhir/Patient'), { accept: 'application/fhir+json' });
  t.equal(res.status, 401, '401');
  t.equal(res.headers['www-authenticate'], 'Bearer realm="wardgate"', 'with a Bearer challenge');
  const nav = await rig.browser().request(rig.url('api.localhost', '/'), { accept: 'text/html', headers: { 'sec-fetch-mode': 'navigate' } });
  t.equal(nav.status, 401, 'a bearer-only route does not redirect even a navigation');
  const foreign = await rig.browser().request(rig.url('api.localhost', '/'), { headers: rig.wg.auth });
  t.equal(foreign.status, 401, 'a token from another IdP (signed with keys this issuer does not publish) is refused');
  const token = await clientCredentialsToken(rig.idp, API_CLIENT.id, API_CLIENT.secret, API_AUDIENCE, 'patient/*.read');
  const ok = await rig.browser().request(rig.url('api.localhost', '/'), { headers: { authorization: `Bearer ${token}` } });
  t.equal(ok.status, 200, 'a bearer token from the configured IdP passes');
  t.equal(echoed(ok.body).headers.authorization, undefined, 'and the Authorization header was not passed upstream');
});

t.test('sign-in metrics', async (t) => {
  const text = await rig.wg.metrics();
  t.ok((sample(text, 'wardgate_logins_total', { result: 'success' }) ?? 0) > 5, 'logins_total{result="success"}');
  t.ok((sample(text, 'wardgate_sessions_active') ?? 0) > 0, 'sessions_active');
  t.ok((sample(text, 'wardgate_idp_request_duration_seconds_count', { operation: 'token' }) ?? 0) > 0, 'idp_request_duration_seconds for token requests');
  t.ok((sample(text, 'wardgate_step_up_total', { result: 'insufficient' }) ?? 0) > 0, 'step_up_total{result="insufficient"}');
});

t.test('/.wardgate/me tells a signed-in user who wardgate thinks they are, and no tokens', async (t) => {
  const browser = rig.browser();
  await signIn(browser, rig.url('pacs.localhost', '/'), 'rad.carol', 'hwk');
  const me = await browser.request(rig.url('pacs.localhost', '/.wardgate/me'), { accept: 'application/json' });
  t.equal(me.status, 200, 'answered on the app host, never forwarded');
  const body = JSON.parse(me.body) as Record<string, unknown>;
  t.match(body, { signedIn: true, sub: 'rad.carol', email: 'carol@hospital.example', groups: ['radiology', 'clinicians'], acr: 'phr' }, 'with her identity and authentication strength');
  t.notMatch(me.body, /eyJ/, 'and no ID, access or refresh token');
  const anonymous = await rig.browser().request(rig.url('pacs.localhost', '/.wardgate/me'), { accept: 'application/json' });
  t.equal(anonymous.status, 401, 'without a session: 401');
  t.same(JSON.parse(anonymous.body), { signedIn: false }, 'saying so');
});

t.test('wardgate\'s own paths: wrong host or method is refused, never forwarded', async (t) => {
  const before = up.seen.length;
  const browser = rig.browser();
  const onApp = await browser.request(rig.url('pacs.localhost', '/.wardgate/callback?state=x&code=y'), { accept: 'application/json' });
  t.equal(onApp.status, 404, 'the callback exists only on the auth host');
  const onAuth = await browser.request(rig.url('auth.localhost', '/.wardgate/handoff?code=x'), { accept: 'application/json' });
  t.equal(onAuth.status, 404, 'the handoff exists only on application hosts');
  const post = await browser.request(rig.url('pacs.localhost', '/.wardgate/me'), { method: 'POST', accept: 'application/json' });
  t.equal(post.status, 405, 'a POST to a GET endpoint is 405');
  t.equal(reasonOf(post.body), 'endpoint-method', 'with reason endpoint-method');
  const jwks = await browser.request(rig.url('auth.localhost', '/.well-known/wardgate/jwks.json'), { accept: 'application/json' });
  t.equal(jwks.status, 200, 'the JWKS is served on the auth host too');
  t.match(JSON.parse(jwks.body), { keys: [{ kty: 'EC', crv: 'P-256', alg: 'ES256' }] }, 'with the public assertion key');
  const authRoot = await browser.request(rig.url('auth.localhost', '/'), { accept: 'application/json' });
  t.equal(authRoot.status, 404, 'the auth host serves nothing but wardgate\'s paths');
  t.equal(up.seen.length, before, 'the upstream saw none of these');
});

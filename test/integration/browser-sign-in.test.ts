import { join } from 'node:path';
import t from 'tap';
import { launchChromium, pickUser, screenshotDir } from '../helpers/chromium.js';
import { startSignInRig } from '../helpers/sign-in-rig.js';
import { startUpstream } from '../helpers/upstream.js';

/*
 * The sign-in a person does, in Debian's Chromium driven by playwright-core: real cookie
 * rules (__Host-, Secure on http://*.localhost, SameSite=Lax across the IdP's redirects),
 * real forms. The cookie-jar tests check each rule; this checks a browser agrees.
 * Screenshots are saved beside the test's output.
 */

const shots = screenshotDir();

const up = await startUpstream((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><title>app ${req.headers['x-forwarded-host']}</title><h1>Hello ${req.headers['x-user'] ?? ''}</h1><p id="path">${req.url}</p>`);
});
t.teardown(() => up.close());
const rig = await startSignInRig({
  routes: `
  - id: epic
    host: epic.localhost
    policy:
      allow: [{ acr: [phr] }]
    auth:
      claimHeaders:
        X-User: email
    upstream:
      url: ${up.url}
  - id: pacs
    host: pacs.localhost
    auth:
      claimHeaders:
        X-User: email
    upstream:
      url: ${up.url}`,
});

const chromium = launchChromium();


t.test('dr.alice signs in with her security key and lands on the page she opened', async (t) => {
  const context = await chromium().newContext();
  const page = await context.newPage();
  await page.goto(rig.url('epic.localhost', '/chart?patient=demo-1001'));
  t.match(new URL(page.url()).pathname, /^\/interaction\//, 'Chromium was sent to the IdP login page');
  await page.screenshot({ path: join(shots, '1-idp-login.png') });
  await pickUser(page, 'dr.alice', 'hwk');
  t.equal(page.url(), rig.url('epic.localhost', '/chart?patient=demo-1001'), 'and came back to the URL she opened');
  t.equal(await page.locator('h1').textContent(), 'Hello alice@hospital.example', 'the app knows her from the claim header wardgate added');
  await page.screenshot({ path: join(shots, '2-epic.png') });
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === '__Host-wardgate' && c.domain === 'epic.localhost');
  t.ok(session?.secure && session.httpOnly && session.sameSite === 'Lax', 'Chromium kept a Secure, HttpOnly, SameSite=Lax __Host- session cookie on http://epic.localhost');

  await page.goto(rig.url('pacs.localhost', '/studies'));
  t.equal(await page.locator('h1').textContent(), 'Hello alice@hospital.example', 'a second app signs her in without the IdP page');

  await page.goto(rig.url('epic.localhost', '/.wardgate/logout'));
  await page.screenshot({ path: join(shots, '3-sign-out.png') });
  await page.locator('button[type=submit]').click();
  await page.waitForLoadState('load');
  t.equal(new URL(page.url()).origin, new URL(rig.idp.issuer).origin, 'sign-out continued at the IdP');
  await page.locator('button[name=logout][value=yes]').click();
  await page.waitForLoadState('load');
  t.equal(page.url(), rig.url('auth.localhost', '/.wardgate/signed-out'), 'the IdP sent her back to wardgate\'s signed-out page');
  t.match(await page.locator('h1').textContent(), 'Signed out', 'which says so');
  await page.screenshot({ path: join(shots, '4-signed-out.png') });
  await page.goto(rig.url('pacs.localhost', '/studies'));
  t.match(new URL(page.url()).pathname, /^\/interaction\//, 'after sign-out, the other app asks for sign-in again');
  await context.close();
});

t.test('nurse.bob with a password gets the deny page for the Epic portal, not a loop', async (t) => {
  const context = await chromium().newContext();
  const page = await context.newPage();
  await page.goto(rig.url('epic.localhost', '/'));
  await pickUser(page, 'nurse.bob', 'pwd');
  t.match(await page.locator('body').textContent(), /stronger sign-in/, 'the page says in plain words that a stronger sign-in is needed');
  t.match(await page.locator('body').textContent(), /auth-strength-insufficient/, 'and gives the reason code for the help desk');
  await page.screenshot({ path: join(shots, '5-deny.png') });
  await context.close();
});

import t from 'tap';
import { decodeEntities, parseForms, type Browser, type BrowserResponse, type NavigateResult, type ParsedForm } from '../helpers/browser.js';
import { signIn } from '../helpers/idp.js';
import { startSignInRig } from '../helpers/sign-in-rig.js';
import { echo, startUpstream } from '../helpers/upstream.js';

/*
 * The access pages end to end, with cookie-jar browsers over real HTTP against a real
 * wardgate and the real demo IdP: a vendor asks for access on the auth host, an approver
 * decides on the approvals page, the route opens and closes with the grant; a clinician
 * refused on a route breaks the glass from its deny page, and the security team reviews
 * it. Every form is posted as a browser posts it, and forged ones are refused.
 */

const up = await startUpstream(echo);
t.teardown(() => up.close());

const rig = await startSignInRig({
  routes: `
  - id: vendor
    host: vendor.localhost
    policy:
      allow:
        - all:
            - groups: [vendor-support]
            - grant: true
    upstream:
      url: ${up.url}
  - id: epic
    host: epic.localhost
    policy:
      allow:
        - groups: [radiology]
      breakGlass:
        groups: [clinicians]
        duration: 1h
    upstream:
      url: ${up.url}`,
  // admin.erin may ask for access too, so that she can try to approve her own request.
  extraYaml: `
grants:
  approvers:
    groups: [security-admins]
  requesters:
    groups: [vendor-support, security-admins]`,
});

const access = rig.wg.gateway.access;
const AUTH = `auth.localhost:${rig.port}`;
const accessUrl = rig.url('auth.localhost', '/.wardgate/access');
const approvalsUrl = rig.url('auth.localhost', '/.wardgate/approvals');
const idpOrigin = new URL(rig.idp.issuer).origin;
const SCRIPT = '<script>alert("pwned")</script>';

/** The reason code a refusal page gives. */
const refusedWith = (page: BrowserResponse): string | undefined => /Reason: <code>([a-z-]+)<\/code>/.exec(page.body)?.[1];
/** The code of the refusal a page shows in its error box. */
const shownError = (page: BrowserResponse): string | undefined => /<p class="error" role="alert">[^<]*<code>([a-z-]+)<\/code>/.exec(page.body)?.[1];

function formAt(page: BrowserResponse, path: string): ParsedForm {
  const form = parseForms(page.body, page.url).find((f) => f.method === 'POST' && new URL(f.action).pathname === path);
  if (!form) throw new Error(`no POST form to ${path} on ${page.url}`);
  return form;
}

/** The approvals page's small form for `action` on record `id`. */
function actionForm(page: BrowserResponse, action: string, id: string): ParsedForm {
  const has = (form: ParsedForm, name: string, value: string): boolean => form.fields.some(([n, v]) => n === name && v === value);
  const form = parseForms(page.body, page.url).find((f) => has(f, 'action', action) && has(f, 'id', id));
  if (!form) throw new Error(`no ${action} form for ${id} on ${page.url}`);
  return form;
}

function linkNamed(page: BrowserResponse, label: string): string | undefined {
  const escaped = label.replace(/[()]/g, '\\$&');
  const href = new RegExp(`<a href="([^"]+)">${escaped}</a>`).exec(page.body)?.[1];
  return href === undefined ? undefined : new URL(decodeEntities(href), page.url).href;
}

const daveGrants = () => access.grants!.list({ subject: { user: 'vendor.dave' } });

let dave: Browser;
let daveAccess: NavigateResult;
let erin: Browser;
let erinApprovals: BrowserResponse;
let requested: string;

t.test('a signed-out vendor opening the access page is sent through sign-in and back to it', async (t) => {
  dave = rig.browser();
  const first = await dave.navigate(accessUrl, { stopBefore: (url) => url.origin === idpOrigin });
  t.equal(new URL(first.hops[1]!).pathname, '/.wardgate/sign-in', 'the page sent the browser to sign in');
  t.equal(new URL(first.hops[1]!).searchParams.get('rd'), accessUrl, 'asking to come back to the access page itself');
  dave = rig.browser();
  daveAccess = await signIn(dave, accessUrl, 'vendor.dave', 'pwd');
  t.equal(daveAccess.status, 200, 'the access page answers once signed in');
  t.equal(daveAccess.url, accessUrl, 'on the URL he opened');
  t.notOk(daveAccess.hops.some((hop) => hop.includes('/.wardgate/handoff')), 'with no handoff: the auth host set its own session cookie at the callback');
  t.match(daveAccess.body, 'Dave Brenner', 'it says who he is');
  t.match(daveAccess.body, 'You have no grants or requests', 'and that he holds nothing yet');
  t.match(daveAccess.body, /<option value="vendor"/, 'the form offers the route a grant can open');
  t.notMatch(daveAccess.body, /<option value="epic"/, 'and not a route without a grant rule');
  t.match(daveAccess.body, /Start, in UTC/, 'the start time is labelled as UTC');
  t.match(daveAccess.body, /<option value="480">8 h<\/option>/, 'lengths go up to the 8 h cap');
  t.notMatch(daveAccess.body, /<script/i, 'and the page needs no script');
  t.equal(daveAccess.headers['referrer-policy'], 'same-origin', 'it keeps its referrer same-origin, so browsers send a real Origin with its form (not null)');
  t.match(daveAccess.headers['content-security-policy'], "default-src 'none'", 'and its CSP allows no script at all');
});

t.test('a sign-in returns to the auth host only for the access pages: it is no open redirect', async (t) => {
  const browser = rig.browser();
  const targets = [
    [rig.url('auth.localhost', '/.wardgate/me'), 'another path on the auth host'],
    [rig.url('auth.localhost', '/.wardgate/sign-in'), 'the sign-in itself'],
    [rig.url('auth.localhost', '/.wardgate/access/../me'), 'a path that resolves elsewhere'],
    [rig.url('auth.localhost', '/.wardgate/%61ccess'), 'an encoded look-alike'],
    [rig.url('evil.localhost', '/.wardgate/access'), 'the access path on another host'],
    [`http://auth.localhost:${rig.port + 1}/.wardgate/access`, 'the auth host on another port'],
    [`https://${AUTH}/.wardgate/access`, 'another scheme'],
    [`http://someone@${AUTH}/.wardgate/access`, 'credentials in the URL'],
  ] as const;
  for (const [rd, what] of targets) {
    const page = await browser.navigate(`${rig.url('auth.localhost', '/.wardgate/sign-in')}?rd=${encodeURIComponent(rd)}`);
    t.equal(page.status, 400, `refused: ${what}`);
    t.equal(refusedWith(page), 'return-url-invalid', `with return-url-invalid: ${what}`);
  }
});

t.test('the vendor asks for access with a justification, and sees the request', async (t) => {
  const page = await dave.submit(daveAccess, formAt(daveAccess, '/.wardgate/access'), {
    route: 'vendor',
    duration: '120',
    justification: `Replace the infusion pump firmware on ward 5 ${SCRIPT}`,
    ticket: 'CHG-1234',
  });
  t.equal(page.hops.length, 2, 'the POST answered with a redirect');
  t.match(page.url, /\/\.wardgate\/access\?requested=g_[a-z2-9]{20}$/, 'back to the page, naming the new request');
  requested = new URL(page.url).searchParams.get('requested')!;
  t.match(page.body, `Request <code>${requested}</code> sent`, 'which confirms it');
  t.match(page.body, /requested: 0 of 1 approvals; lapses in 1 h 59 min/, 'shows it waiting for one approval, lapsing when its window would end');
  t.match(page.body, /\(2 h\)/, 'for the two hours asked');
  t.match(page.body, '&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;', 'with the justification escaped');
  t.notMatch(page.body, SCRIPT, 'never as markup');
  const [grant] = await daveGrants();
  t.equal(grant?.id, requested, 'the grant service holds the request');
  t.same(grant?.subject, { user: 'vendor.dave' }, 'for vendor.dave himself');
  t.equal(grant?.ticket, 'CHG-1234', 'with its ticket');
  t.ok(Math.abs(grant!.notAfter - grant!.notBefore - 2 * 3_600_000) < 1_000, 'and the window he chose, from now');
  daveAccess = page;
});

t.test('a request the service refuses is shown on the page with its code, the form filled in again', async (t) => {
  const form = formAt(daveAccess, '/.wardgate/access');
  const base = { route: 'vendor', duration: '60', justification: 'Firmware update for the <b>pumps</b>' };
  const cases = [
    [{ duration: '0' }, 400, 'grant-window-invalid', 'a window that ends as it starts'],
    [{ duration: '600' }, 400, 'grant-window-too-long', 'ten hours, over the 8 h cap'],
    [{ route: 'nope' }, 400, 'grant-route-unknown', 'a route that does not exist'],
    [{ route: 'epic' }, 400, 'grant-route-not-grantable', 'a route a grant cannot open'],
    [{ start: '2020-01-01T09:00' }, 400, 'grant-window-past', 'a window in the past'],
    [{ start: 'tomorrow' }, 400, 'grant-invalid', 'a start that is no time'],
    [{ justification: 'pls' }, 400, 'grant-invalid', 'a justification too short to judge'],
  ] as const;
  for (const [override, status, code, what] of cases) {
    const page = await dave.submit(daveAccess, form, { ...base, ...override });
    t.equal(page.status, status, `${what}: ${status}`);
    t.equal(shownError(page), code, `${what}: ${code} on the page`);
  }
  const again = await dave.submit(daveAccess, form, { ...base, duration: '0', path: '/api', readOnly: '1', ticket: 'CHG-"9"' });
  t.match(again.body, 'Firmware update for the &lt;b&gt;pumps&lt;/b&gt;</textarea>', 'the justification is filled in again, escaped');
  t.match(again.body, 'value="/api"', 'and the path');
  t.match(again.body, 'value="CHG-&quot;9&quot;"', 'and the ticket, escaped in its attribute');
  t.match(again.body, /name="readOnly" value="1" checked/, 'and the read-only box');
  t.equal((await daveGrants()).length, 1, 'and none of them made a grant');
});

t.test('someone who may not ask for access gets a plain 403 page', async (t) => {
  const alice = rig.browser();
  const page = await signIn(alice, accessUrl, 'dr.alice', 'hwk');
  t.equal(page.status, 403, 'dr.alice is no requester');
  t.equal(refusedWith(page), 'grant-requester-not-allowed', 'the page names the reason');
  t.match(page.body, 'may not ask for access here', 'in plain words');
});

t.test('forged posts are refused with csrf-invalid and change nothing', async (t) => {
  const form = formAt(daveAccess, '/.wardgate/access');
  const body = { route: 'vendor', duration: '60', justification: 'A request someone else wrote' };
  erin = rig.browser();
  const erinAccess = await signIn(erin, accessUrl, 'admin.erin', 'hwk');
  const erinToken = formAt(erinAccess, '/.wardgate/access').fields.find(([name]) => name === 'csrf')![1];
  const daveToken = form.fields.find(([name]) => name === 'csrf')![1];
  const data = (csrf: string | undefined): URLSearchParams => new URLSearchParams({ ...body, ...(csrf === undefined ? {} : { csrf }) });
  const vendorPage = rig.url('vendor.localhost', '/');
  const cases: Array<[string, Promise<BrowserResponse>]> = [
    ['without a token', dave.submit(daveAccess, form, { ...body, csrf: '' })],
    ['with the token of another person\'s session', dave.submit(daveAccess, form, { ...body, csrf: erinToken })],
    ['from another origin', dave.navigate(accessUrl, { method: 'POST', body: data(daveToken), initiator: daveAccess.url, headers: { origin: 'http://evil.localhost' } })],
    ['from a sibling host of the same site', dave.navigate(accessUrl, { method: 'POST', body: data(daveToken), initiator: vendorPage })],
    ['with Origin: null', dave.navigate(accessUrl, { method: 'POST', body: data(daveToken), initiator: daveAccess.url, headers: { origin: 'null' } })],
    ['with neither Origin nor Sec-Fetch-Site', dave.request(accessUrl, { method: 'POST', body: data(daveToken), accept: 'text/html' })],
  ];
  for (const [what, sent] of cases) {
    const page = await sent;
    t.equal(page.status, 403, `${what}: 403`);
    t.equal(refusedWith(page), 'csrf-invalid', `${what}: csrf-invalid`);
  }
  const ok = await dave.request(accessUrl, { method: 'POST', body: data(daveToken), headers: { 'sec-fetch-site': 'same-origin' } });
  t.equal(ok.status, 303, 'the right token with Sec-Fetch-Site: same-origin but no Origin is accepted (a browser that sends Fetch Metadata)');
  const grants = await daveGrants();
  t.equal(grants.length, 2, 'only that one made a grant');
  await access.grants!.deny(grants[0]!.id, { principal: { kind: 'user', id: 'sec.frank' }, groups: ['security-admins'] }, 'test clean-up');
});

t.test('the vendor route is refused before approval, with a link to ask for access', async (t) => {
  const refused = await signIn(dave, rig.url('vendor.localhost', '/console'), 'vendor.dave', 'pwd');
  t.equal(refused.status, 403, 'no grant in force: refused');
  t.match(refused.body, '<code>grant-missing</code>', 'because the grant is missing');
  t.equal(linkNamed(refused, 'Request access'), `${accessUrl}?route=vendor`, 'the deny page links to the access page for this route');
  t.notOk(linkNamed(refused, 'Emergency access (break the glass)'), 'and offers no break-glass: the route has none');
});

t.test('someone who is not an approver gets 403 on the approvals page', async (t) => {
  const page = await dave.navigate(approvalsUrl);
  t.equal(page.status, 403, 'vendor.dave is no approver');
  t.equal(refusedWith(page), 'grant-approver-not-allowed', 'the page names the reason');
});

t.test('an approver sees the request, escaped, and approves it; the vendor reaches the route', async (t) => {
  erinApprovals = await erin.navigate(approvalsUrl);
  t.equal(erinApprovals.status, 200, 'admin.erin opens the approvals page');
  const row = new RegExp(`<tr id="${requested}">(.*?)</tr>`).exec(erinApprovals.body)?.[1] ?? '';
  t.match(row, 'vendor.dave', 'the pending request shows who asks');
  t.match(row, '<code>vendor</code>', 'for which route');
  t.match(row, 'CHG-1234', 'with the ticket');
  t.match(row, /0 of 1 approvals/, 'and approvals so far');
  t.match(row, '&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;', 'the justification is escaped');
  t.notMatch(erinApprovals.body, SCRIPT, 'and never markup');
  const approve = actionForm(erinApprovals, 'approve', requested);
  const forged = await erin.submit(erinApprovals, approve, { csrf: '' });
  t.equal(refusedWith(forged), 'csrf-invalid', 'an approval without its token is refused');
  t.equal((await access.grants!.get(requested)).approvals.length, 0, 'and counts for nothing');
  const page = await erin.submit(erinApprovals, approve);
  t.equal(page.status, 200, 'approved, and back on the page');
  t.match(page.url, /\/\.wardgate\/approvals\?done=approve&id=g_/, 'by a 303 to the page');
  t.match(page.body, `Approved <code>${requested}</code>`, 'which confirms it');
  t.match(new RegExp(`<tr id="${requested}">(.*?)</tr>`).exec(page.body)?.[1] ?? '', /active<\/strong>: 1 h 59 min left/, 'the grant is in force, with its time left');

  const twice = await erin.submit(erinApprovals, approve);
  t.equal(twice.status, 409, 'approving again from the stale page is refused');
  t.equal(shownError(twice), 'grant-not-pending', 'and the page says why');

  const vendor = await dave.navigate(rig.url('vendor.localhost', '/console'));
  t.equal(vendor.status, 200, 'vendor.dave reaches the vendor route now');
  t.equal((JSON.parse(vendor.body) as { url: string }).url, '/console', 'and the upstream answered');
  const mine = await dave.navigate(accessUrl);
  t.match(mine.body, /<strong>active<\/strong>: 1 h 59 min left/, 'his access page shows the grant in force');
  erinApprovals = page;
});

t.test('nobody approves their own request', async (t) => {
  const erinAccess = await erin.navigate(accessUrl);
  const asked = await erin.submit(erinAccess, formAt(erinAccess, '/.wardgate/access'), { route: 'vendor', duration: '30', justification: 'Checking the vendor console myself' });
  const own = new URL(asked.url).searchParams.get('requested')!;
  const approvals = await erin.navigate(approvalsUrl);
  const page = await erin.submit(approvals, actionForm(approvals, 'approve', own));
  t.equal(page.status, 403, 'admin.erin approving her own request is refused');
  t.equal(shownError(page), 'grant-self-approval', 'the page shows why, with the code');
  t.equal((await access.grants!.get(own)).status, 'requested', 'and the request is still waiting');
  const denied = await erin.submit(page, actionForm(page, 'deny', own), { reason: 'withdrawn' });
  t.match(denied.body, `Denied <code>${own}</code>`, 'denying it, with a reason, works');
  t.match(denied.body, /denied by Erin Walsh \(admin\.erin\): <span class="text">withdrawn<\/span>/, 'and it is listed as ended, with the reason');
  erinApprovals = denied;
});

t.test('an approver revokes the grant; the vendor\'s next request is refused', async (t) => {
  const page = await erin.submit(erinApprovals, actionForm(erinApprovals, 'revoke', requested), { reason: 'work finished' });
  t.match(page.body, `Revoked <code>${requested}</code>`, 'the page confirms the revocation');
  t.match(page.body, /revoked by Erin Walsh \(admin\.erin\): <span class="text">work finished<\/span>/, 'and lists it as ended');
  const vendor = await dave.navigate(rig.url('vendor.localhost', '/console/next'));
  t.equal(vendor.status, 403, 'the very next request of the vendor is refused');
  t.match(vendor.body, '<code>grant-missing</code>', 'with grant-missing');
  const stale = await erin.submit(erinApprovals, actionForm(erinApprovals, 'revoke', requested), { reason: 'again' });
  t.equal(shownError(stale), 'grant-already-over', 'revoking again says it is already over');
});

t.test('a clinician refused on a route breaks the glass from the deny page; the team reviews it', async (t) => {
  const alice = rig.browser();
  const refused = await signIn(alice, rig.url('epic.localhost', '/chart?patient=1001'), 'dr.alice', 'hwk');
  t.equal(refused.status, 403, 'dr.alice is refused on epic (radiology only)');
  const link = linkNamed(refused, 'Emergency access (break the glass)');
  const back = rig.url('epic.localhost', '/chart?patient=1001');
  t.equal(link, `${rig.url('auth.localhost', '/.wardgate/break-glass')}?return=${encodeURIComponent(back)}`,
    'the deny page links to break-glass on the auth host (out of the application\'s reach), to come back here');
  t.notOk(linkNamed(refused, 'Request access'), 'and not to grants: no grant opens epic');

  const davePage = await signIn(dave, rig.url('epic.localhost', '/'), 'vendor.dave', 'pwd');
  t.equal(davePage.status, 403, 'vendor.dave is refused on epic too');
  t.notOk(linkNamed(davePage, 'Emergency access (break the glass)'), 'but is offered no break-glass: he is not a clinician');
  const daveGlass = await dave.navigate(link!);
  t.equal(daveGlass.status, 403, 'and cannot open the break-glass page');
  t.equal(refusedWith(daveGlass), 'break-glass-not-allowed', 'break-glass-not-allowed');
  const glassFor = (target: string): string => `${rig.url('auth.localhost', '/.wardgate/break-glass')}?return=${encodeURIComponent(target)}`;
  const noGlass = await dave.navigate(glassFor(rig.url('vendor.localhost', '/')));
  t.equal(refusedWith(noGlass), 'break-glass-not-configured', 'a route without break-glass has no such page');

  const elsewhere = [
    '/chart', '//evil.example/', 'http://evil.example/', 'javascript:alert(1)', rig.url('unknown.localhost', '/'),
    rig.url('auth.localhost', '/.wardgate/me'), `https://epic.localhost:${rig.port}/chart`, `http://epic.localhost:1/chart`,
    `http://user@epic.localhost:${rig.port}/chart`, rig.url('epic.localhost', '/chart#x'), rig.url('epic.localhost', '/a/%2e%2e%2f/b'),
  ];
  for (const bad of elsewhere) {
    const page = await alice.navigate(glassFor(bad));
    t.equal(refusedWith(page), 'return-url-invalid', `return=${bad} is refused: only a routed application's URL on wardgate's scheme and port`);
  }
  const onApp = await alice.navigate(rig.url('epic.localhost', `/.wardgate/break-glass?return=${encodeURIComponent(back)}`));
  t.equal(onApp.status, 404, 'the break-glass page is not served on application hosts, where the application\'s own scripts could read its form');

  // Breaking the glass ends at the application host's /.wardgate/login, which signs the
  // browser in there and goes back: only ever to a path that host routes.
  for (const bad of ['//evil.example/', 'http://evil.example/', 'chart', '/\\evil.example', '/a/%2e%2e%2f/b', '/x#y']) {
    const login = await alice.request(rig.url('epic.localhost', `/.wardgate/login?return=${encodeURIComponent(bad)}`));
    t.equal(login.status, 400, `login return=${bad} is refused`);
  }
  const straight = await alice.request(rig.url('epic.localhost', `/.wardgate/login?return=${encodeURIComponent('/chart?patient=1001')}`));
  t.equal(straight.headers.location, rig.url('epic.localhost', '/chart?patient=1001'), 'a browser signed in on the host goes straight back, to an absolute URL on that host');
  const stranger = rig.browser();
  const signedOut = await stranger.request(link!);
  t.equal(signedOut.status, 302, 'a browser not signed in on the auth host is sent to sign in');
  t.match(signedOut.headers.location, /\/\.wardgate\/sign-in\?rd=/, 'and back to this page afterwards');

  const form = await alice.navigate(link!);
  t.equal(form.status, 200, 'the break-glass page opens');
  t.match(form.body, /logged, the security team is alerted at once/, 'it warns that the use is logged and alerted');
  t.match(form.body, /reviews every use/, 'and reviewed');
  t.match(form.body, /open epic for 1 h/, 'and says for how long');
  const short = await alice.submit(form, formAt(form, '/.wardgate/break-glass'), { reason: 'now' });
  t.equal(short.status, 403, 'a reason of a word is refused');
  t.equal(shownError(short), 'break-glass-not-allowed', 'on the page, with its code');
  const forged = await alice.submit(form, formAt(form, '/.wardgate/break-glass'), { reason: 'Cardiac arrest in bay 4', csrf: 'x' });
  t.equal(refusedWith(forged), 'csrf-invalid', 'a forged post is refused');

  const inside = await alice.submit(form, formAt(form, '/.wardgate/break-glass'), { reason: `Cardiac arrest in bay 4 ${SCRIPT}` });
  t.equal(inside.status, 200, 'with a reason, she is let in');
  t.equal(inside.url, rig.url('epic.localhost', '/chart?patient=1001'), 'back on the page she was refused');
  t.match(inside.headers['x-wardgate-break-glass'], /^bg_[a-z2-9]{20}; until=\d{4}-/, 'every response says it is break-glass access');
  const seen = JSON.parse(inside.body) as { headers: Record<string, string> };
  t.match(seen.headers['x-wardgate-break-glass'], /^bg_/, 'and so does the request the application gets');

  let approvals = await erin.navigate(approvalsUrl);
  const [use] = await access.breakGlass.list();
  const row = new RegExp(`<tr id="${use!.id}">(.*?)</tr>`).exec(approvals.body)?.[1] ?? '';
  t.match(approvals.body, /Break-glass uses to review \(1 of 1 not reviewed\)/, 'the approvals page lists the use for review');
  t.match(row, 'Dr Alice Hart (dr.alice)', 'who');
  t.match(row, '<code>epic</code>', 'where');
  t.match(row, 'Cardiac arrest in bay 4 &lt;script&gt;', 'why, escaped');
  t.match(row, /active<\/strong>: 59 min left/, 'and how long it has left');
  approvals = await erin.submit(approvals, actionForm(approvals, 'review-break-glass', use!.id), { note: 'Confirmed with the ward: a real arrest' });
  t.match(approvals.body, `Marked as reviewed: <code>${use!.id}</code>`, 'the review is confirmed');
  t.match(approvals.body, /reviewed by Erin Walsh \(admin\.erin\), \d{4}-\d\d-\d\d \d\d:\d\d UTC: <span class="text">Confirmed with the ward: a real arrest<\/span>/, 'and shown with the note');
  t.match(approvals.body, /\(0 of 1 not reviewed\)/, 'nothing is left to review');
  approvals = await erin.submit(approvals, actionForm(approvals, 'end-break-glass', use!.id));
  t.match(approvals.body, `Ended emergency access <code>${use!.id}</code>`, 'an approver ends it early');
  const after = await alice.navigate(rig.url('epic.localhost', '/chart?patient=1001'));
  t.equal(after.status, 403, 'and her next request is refused again');
});

t.test('without a grants section there are no access pages', async (t) => {
  const bare = await startSignInRig({ routes: `
  - id: app
    host: app.localhost
    upstream:
      url: ${up.url}` });
  const browser = bare.browser();
  for (const path of ['/.wardgate/access', '/.wardgate/approvals']) {
    const page = await browser.navigate(bare.url('auth.localhost', path));
    t.equal(page.status, 404, `${path} is a 404`);
  }
  const signInTo = await browser.navigate(`${bare.url('auth.localhost', '/.wardgate/sign-in')}?rd=${encodeURIComponent(bare.url('auth.localhost', '/.wardgate/access'))}`);
  t.equal(refusedWith(signInTo), 'return-url-invalid', 'and a sign-in cannot return to them');
});

import { join } from 'node:path';
import type { Page } from 'playwright-core';
import t from 'tap';
import { launchChromium, pickUser, screenshotDir } from '../helpers/chromium.js';
import { startSignInRig } from '../helpers/sign-in-rig.js';
import { startUpstream } from '../helpers/upstream.js';

/*
 * An access grant's whole life as two people live it, in Debian's Chromium driven by
 * playwright-core, each in a browser context of their own: a vendor asks on the access
 * page, a security admin approves on the approvals page, the vendor works in the vendor
 * console, the admin revokes, and the vendor's next click is refused. Real forms (no
 * script on wardgate's pages), real cookie and Origin rules. Screenshots of every step
 * are saved beside the test's output.
 */

const shots = screenshotDir();

const up = await startUpstream((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><title>Vendor console</title><h1>Vendor console</h1><p id="path">${req.url}</p><p><a href="/console/pumps">Infusion pumps</a></p>`);
});
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
      url: ${up.url}`,
  extraYaml: `
grants:
  approvers:
    groups: [security-admins]
  requesters:
    groups: [vendor-support]`,
});

const chromium = launchChromium();


async function click(page: Page, selector: string): Promise<void> {
  await Promise.all([page.waitForNavigation(), page.locator(selector).click()]);
}

t.test('a vendor asks, an approver approves, the vendor works, the approver revokes, the next click is refused', async (t) => {
  const vendorContext = await chromium().newContext();
  const adminContext = await chromium().newContext();
  t.teardown(() => Promise.all([vendorContext.close(), adminContext.close()]));
  const vendor = await vendorContext.newPage();
  const admin = await adminContext.newPage();

  await vendor.goto(rig.url('auth.localhost', '/.wardgate/access'));
  t.match(new URL(vendor.url()).pathname, /^\/interaction\//, 'the signed-out vendor is sent to the IdP');
  await pickUser(vendor, 'vendor.dave', 'pwd');
  t.equal(vendor.url(), rig.url('auth.localhost', '/.wardgate/access'), 'and comes back to the access page');
  await vendor.screenshot({ path: join(shots, '1-vendor-access-page.png'), fullPage: true });

  await vendor.selectOption('#route', 'vendor');
  await vendor.selectOption('#duration', '120');
  await vendor.fill('#justification', 'Firmware 4.2 for the infusion pumps on ward 5 <script>alert(1)</script>');
  await vendor.fill('#ticket', 'CHG-2041');
  await vendor.screenshot({ path: join(shots, '2-vendor-fills-request.png'), fullPage: true });
  await click(vendor, 'button:has-text("Ask for access")');
  const id = new URL(vendor.url()).searchParams.get('requested');
  t.match(id, /^g_[a-z2-9]{20}$/, 'the request was sent');
  t.match(await vendor.locator('.done').textContent(), 'sent', 'and the page confirms it');
  t.match(await vendor.locator(`tr#${id}`).textContent(), 'requested: 0 of 1 approvals', 'listing it as waiting');
  await vendor.screenshot({ path: join(shots, '3-vendor-request-sent.png'), fullPage: true });

  await admin.goto(rig.url('auth.localhost', '/.wardgate/approvals'));
  await pickUser(admin, 'admin.erin', 'hwk');
  t.equal(admin.url(), rig.url('auth.localhost', '/.wardgate/approvals'), 'the approver signs in and lands on the approvals page');
  const row = admin.locator(`tr#${id}`);
  t.match(await row.textContent(), 'vendor.dave', 'the request is listed');
  t.match(await row.textContent(), '<script>alert(1)</script>', 'the justification shows as text');
  t.equal(await admin.locator('script').count(), 0, 'and no script element came with it');
  await admin.screenshot({ path: join(shots, '4-approver-sees-request.png'), fullPage: true });
  await click(admin, `tr#${id} form:has(input[name=action][value=approve]) button`);
  t.match(await admin.locator('.done').textContent(), `Approved ${id}`, 'the approval is confirmed');
  t.match(await admin.locator(`tr#${id}`).textContent(), /active: 1 h 59 min left/, 'the grant is in force, with its time left');
  await admin.screenshot({ path: join(shots, '5-approver-approved.png'), fullPage: true });

  await vendor.goto(rig.url('vendor.localhost', '/console'));
  t.equal(vendor.url(), rig.url('vendor.localhost', '/console'), 'the vendor reaches the vendor console (signed in there through the auth host)');
  t.equal(await vendor.locator('h1').textContent(), 'Vendor console', 'and the upstream page shows');
  await vendor.screenshot({ path: join(shots, '6-vendor-in-console.png'), fullPage: true });

  await admin.reload();
  await admin.fill(`tr#${id} input[name=reason]`, 'Firmware installed; closing access');
  await click(admin, `tr#${id} form:has(input[name=action][value=revoke]) button`);
  t.match(await admin.locator('.done').textContent(), `Revoked ${id}`, 'the approver revokes the grant');
  await admin.screenshot({ path: join(shots, '7-approver-revoked.png'), fullPage: true });

  const response = await Promise.all([vendor.waitForNavigation(), vendor.locator('a:has-text("Infusion pumps")').click()]).then(([r]) => r);
  t.equal(response?.status(), 403, 'the vendor\'s next click is refused');
  t.match(await vendor.locator('body').textContent(), 'grant-missing', 'the deny page says the grant is missing');
  t.equal(await vendor.locator('a:has-text("Request access")').getAttribute('href'), `${rig.url('auth.localhost', '/.wardgate/access')}?route=vendor`, 'and links to the access page to ask again');
  await vendor.screenshot({ path: join(shots, '8-vendor-denied.png'), fullPage: true });
});

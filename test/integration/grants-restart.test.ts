import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Actor } from '../../proxy/grants/service.js';
import { identityYaml, startTestGateway } from '../helpers/gateway.js';
import { signIn } from '../helpers/idp.js';
import { startSignInRig } from '../helpers/sign-in-rig.js';
import { startUpstream } from '../helpers/upstream.js';

/*
 * Grants and break-glass records outlive wardgate: a gateway on the file store is stopped
 * and a new one started on the same file. The approved grant still opens the route (once
 * the vendor signs in again: sessions are not kept), the revoked one stays revoked, and
 * the break-glass use is still on the review list. The store's own tests kill a writer
 * mid-write; this is the whole gateway's view of the same promise.
 */

const HOUR = 3_600_000;
const dir = mkdtempSync(join(tmpdir(), 'wardgate-grants-restart-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const storeFile = join(dir, 'state', 'store.jsonl');

const up = await startUpstream();
t.teardown(() => up.close());
const routes = `
  - id: vendor
    host: vendor.localhost
    policy:
      allow:
        - all: [{ groups: [vendor-support] }, { grant: true }]
    upstream:
      url: ${up.url}
  - id: epic
    host: epic.localhost
    policy:
      allow: [{ groups: [radiology] }]
      breakGlass: { groups: [clinicians] }
    upstream:
      url: ${up.url}
`;
const extraYaml = `
grants:
  approvers: { groups: [security-admins] }
store:
  path: "${storeFile}"
`;

const DAVE: Actor = { principal: { kind: 'user', id: 'vendor.dave' }, groups: ['vendor-support'] };
const ERIN: Actor = { principal: { kind: 'user', id: 'admin.erin' }, groups: ['security-admins'] };
const ALICE: Actor = { principal: { kind: 'user', id: 'dr.alice' }, groups: ['clinicians'] };

const rig = await startSignInRig({ routes, extraYaml });
const first = rig.wg.gateway;
const ask = { routes: [{ id: 'vendor' }], notBefore: Date.now(), notAfter: Date.now() + 4 * HOUR, justification: 'Scheduled maintenance of the console' };
const kept = await first.access.grants!.request(ask, DAVE);
await first.access.grants!.approve(kept.id, ERIN);
const revoked = await first.access.grants!.request(ask, DAVE);
await first.access.grants!.approve(revoked.id, ERIN);
await first.access.grants!.revoke(revoked.id, ERIN, 'not needed after all');
const glass = await first.access.breakGlass.start('epic', ALICE, 'Trauma call, chart needed at once');
await rig.wg.close();

t.test('the file holds the records, and the store is the file type by default once grants are configured', async (t) => {
  const text = readFileSync(storeFile, 'utf8');
  t.match(text, kept.id);
  t.match(text, glass.id);
  t.equal(first.store.constructor.name, 'FileStore');
});

t.test('after a restart on the same file: the approved grant still opens the route, the revoked one stays revoked, break-glass is still on the list', async (t) => {
  const second = await startTestGateway(routes, extraYaml, { port: rig.port, identity: identityYaml(rig.idp.issuer, rig.port) });
  t.teardown(() => second.close());
  const grants = second.gateway.access.grants!;
  t.equal((await grants.get(kept.id)).status, 'approved');
  t.match(await grants.get(revoked.id), { status: 'revoked', revocation: { reason: 'not needed after all' } });
  t.match(await second.gateway.access.breakGlass.list(), [{ id: glass.id, reason: 'Trauma call, chart needed at once' }]);
  const dave = rig.browser();
  const page = await signIn(dave, rig.url('vendor.localhost', '/console'), 'vendor.dave', 'pwd');
  t.equal(page.status, 200, 'the vendor signs in again (sessions end with the process) and the grant lets him in');
  await grants.revoke(kept.id, ERIN, 'done');
  t.equal((await dave.navigate(rig.url('vendor.localhost', '/console'))).status, 403, 'and the restarted gateway enforces a revocation as the first did');
});

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import t from 'tap';
import { Browser } from '../helpers/browser.js';
import { API_AUDIENCE, TEST_CLIENT, sample } from '../helpers/gateway.js';
import { clientCredentialsToken, signIn, startTestIdp } from '../helpers/idp.js';
import { freePort, spawnWardgate, waitFor200, writeTempConfig } from '../helpers/process.js';
import { rigClients } from '../helpers/sign-in-rig.js';
import { startUpstream } from '../helpers/upstream.js';
import { until } from '../helpers/wait.js';

/*
 * The admin API in worker mode, as `wardgate start` runs it (needs `npx tsc -p .` first):
 * the primary, which owns the store and has no pipeline, serves the API, and what it does
 * holds in every worker on the next request: a grant approved there lets its subject in
 * whichever worker serves them, ending a person's sessions there sends them to sign in
 * again. Its scrape is the workers' metrics followed by its own (the grant authority's),
 * and its log names who made each call.
 */

t.setTimeout(120_000);

const ADMIN_AUDIENCE = 'https://wardgate-admin.test';
const [port, adminPort] = [await freePort(), await freePort()];
const authOrigin = `http://auth.localhost:${port}`;
const idp = await startTestIdp({
  clients: [
    ...rigClients(authOrigin),
    ...['itsm', 'board'].map((id) => ({ client_id: id, client_secret: `${id}-secret`, grant_types: ['client_credentials'], redirect_uris: [], response_types: [] })),
  ],
  resources: { [API_AUDIENCE]: { scope: 'patient/*.read' }, [ADMIN_AUDIENCE]: { scope: 'wardgate:admin' } },
});
t.teardown(() => idp.close());
const upstream = await startUpstream();
t.teardown(() => upstream.close());

const placeholder = writeTempConfig('');
const keyFile = join(dirname(placeholder), 'assertion.key');
writeFileSync(keyFile, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
const file = writeTempConfig(`listen:
  http: "127.0.0.1:${port}"
admin:
  listen: "127.0.0.1:${adminPort}"
  api:
    bearer: { audience: "${ADMIN_AUDIENCE}" }
workers: 2
shutdown: { drainTimeout: 2s }
# Grants default to the file store at its production path; this test keeps nothing.
store: { type: memory }
identity:
  issuer: "${idp.issuer}"
  clientId: ${TEST_CLIENT.id}
  clientSecret: ${TEST_CLIENT.secret}
  authUrl: "${authOrigin}"
  cookieKeys: ["${randomBytes(32).toString('base64')}"]
  assertion:
    keys: ["${keyFile}"]
grants:
  approvers: { principals: [client:itsm, client:board] }
  subjectDomains: [hospital.example]
routes:
  - id: vendor
    host: vendor.localhost
    policy: { allow: [{ grant: true }] }
    upstream: { url: "${upstream.url}" }
`);
const proc = spawnWardgate(['start', '--config', file]);
t.teardown(async () => {
  if (proc.child.exitCode === null && proc.child.signalCode === null) {
    proc.child.kill('SIGTERM');
    await proc.exited;
  }
});
await waitFor200(`http://127.0.0.1:${adminPort}/readyz`, 30_000);

const token = async (client: string): Promise<string> => clientCredentialsToken(idp, client, `${client}-secret`, ADMIN_AUDIENCE, 'wardgate:admin');
const itsm = await token('itsm');
const board = await token('board');

async function admin(method: string, path: string, bearer: string, json?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${bearer}`, ...(json !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: await res.json() as Record<string, unknown> };
}

const vendorUrl = `http://vendor.localhost:${port}/`;
const idpOrigin = new URL(idp.issuer).origin;

t.test('what the primary\'s API does holds in the workers on the next request', async (t) => {
  const alice = new Browser();
  t.equal((await signIn(alice, vendorUrl, 'dr.alice', 'pwd')).status, 403, 'dr.alice signs in; without a grant the vendor route refuses her');

  const now = Date.now();
  const created = await admin('POST', '/grants', itsm, {
    subject: { email: 'alice@hospital.example' },
    routes: [{ id: 'vendor' }],
    notBefore: new Date(now).toISOString(),
    notAfter: new Date(now + 3_600_000).toISOString(),
    justification: 'covering the device vendor\'s on-call',
  });
  t.equal(created.status, 201, 'an approver client asks for a grant for her, in the primary');
  const approved = await admin('POST', `/grants/${String(created.body['id'])}/approve`, board);
  t.equal(approved.body['state'], 'active', 'another approves it');
  for (let i = 0; i < 4; i++) t.equal((await alice.navigate(vendorUrl)).status, 200, `request ${i + 1}: let in, whichever worker serves it`);

  const listed = await admin('GET', '/sessions?sub=dr.alice', itsm);
  t.equal((listed.body['sessions'] as unknown[]).length, 1, 'the primary lists the session a worker made');
  const ended = await admin('DELETE', '/sessions?sub=dr.alice', itsm);
  t.same(ended.body, { ended: 1 });
  for (let i = 0; i < 4; i++) {
    const page = await alice.navigate(vendorUrl, { stopBefore: (url) => url.origin === idpOrigin });
    t.ok(page.stoppedAt, `request ${i + 1}: sent to sign in again, whichever worker serves it`);
  }
});

t.test('the primary\'s scrape is the workers\' metrics and then its own, and its log names the callers', async (t) => {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  t.ok((sample(text, 'wardgate_requests_total', { route: 'vendor', method: 'GET', code: '200' }) ?? 0) >= 4, 'the workers\' requests, aggregated');
  t.equal(sample(text, 'wardgate_grant_events_total', { event: 'grant-approved' }), 1, 'the grant authority\'s count, from the primary');
  t.ok(text.split('\n').every((line) => line === '' || line.startsWith('#') || /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$/.test(line)), 'every line is a whole exposition line');
  const lines = (): Array<Record<string, unknown>> => proc.stdout().split('\n').filter((line) => line.includes('"admin-action"')).map((line) => JSON.parse(line) as Record<string, unknown>);
  const logged = (actor: string, action: string): boolean => lines().some((line) => line['actor'] === actor && line['action'] === action && line['outcome'] === 'ok');
  // The log is written in batches (proxy/logger.ts): wait for the batch.
  await until(() => logged('client:itsm', 'session.end-all'), 5_000, 'the admin-action lines in the primary\'s log');
  t.ok(logged('client:board', 'grant.approve'), 'the approval is logged with its approver');
  t.ok(lines().some((line) => line['action'] === 'session.end-all' && line['target'] === 'dr.alice'), 'the ending of sessions with who did it, and whose');
});

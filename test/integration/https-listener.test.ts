import { request as httpsRequest } from 'node:https';
import { Writable } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { parseConfig } from '../../config/loader.js';
import { startGateway } from '../../proxy/gateway.js';
import { identityYaml, sharedIdp } from '../helpers/gateway.js';
import { makePki } from '../helpers/pki.js';
import { startUpstream } from '../helpers/upstream.js';

/*
 * The main listener over HTTPS: wardgate's own certificate, TLS 1.2 at least, and a client
 * CA so that devices may present certificates (requested, not required: policy decides).
 * Requests authenticate with a bearer token from the shared test IdP (the route accepts
 * bearer tokens: routes default to sessions only).
 */

const pki = makePki('wardgate listener CA');
const server = pki.issue('portal.test');
const device = pki.issue('device-0042');
const upstream = await startUpstream();
const { idp, token } = await sharedIdp();
const config = parseConfig(`
listen:
  https:
    address: "127.0.0.1:0"
    cert: "${server.cert}"
    key: "${server.key}"
    clientCa: "${pki.caCert}"
admin:
  listen: "127.0.0.1:0"
workers: 1
${identityYaml(idp.issuer, 1)}
routes:
  - id: portal
    host: portal.test
    upstream: { url: "${upstream.url}" }
    auth: { methods: [session, bearer] }
    policy: { allow: [{ authenticated: true }] }
`, 'https-test.yaml');
const logger = pino({ level: 'silent' }, new Writable({ write: (_c, _e, cb) => cb() }));
const gateway = await startGateway({ config, logger, admin: true });
t.teardown(async () => {
  await gateway.shutdown();
  await upstream.close();
});
const port = gateway.ports.https!;

interface Reply {
  status: number;
  body: string;
  authorized: boolean;
}

function get(options: { cert?: Buffer; key?: Buffer; maxVersion?: 'TLSv1.1' } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port, path: '/', servername: 'portal.test', headers: { host: 'portal.test', authorization: `Bearer ${token}` },
      ca: pki.read(pki.caCert), agent: false, ...options,
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, authorized: (res.socket as import('node:tls').TLSSocket).authorized }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('a client that trusts the hospital CA reaches the route over TLS', async (t) => {
  const reply = await get();
  t.equal(reply.status, 200);
  t.ok(reply.authorized, 'wardgate presented the configured certificate, valid for the host');
  t.equal(JSON.parse(reply.body).headers['x-forwarded-proto'], 'https', 'the upstream learns the client used TLS');
});

t.test('a device certificate is accepted but not required', async (t) => {
  const withCert = await get({ cert: pki.read(device.cert), key: pki.read(device.key) });
  t.equal(withCert.status, 200, 'a device presenting a certificate from the client CA gets through');
  const without = await get();
  t.equal(without.status, 200, 'a client without one is not refused at the TLS layer');
});

t.test('TLS older than 1.2 is refused at the handshake', async (t) => {
  await t.rejects(get({ maxVersion: 'TLSv1.1' }), 'a TLS 1.1 client cannot connect');
  t.equal(upstream.seen.length, 3, 'and nothing from it reached the upstream');
});

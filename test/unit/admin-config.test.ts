import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseConfig } from '../../config/loader.js';
import { actorOfToken } from '../../proxy/admin/authenticate.js';
import { canonicalSubject, certificateSubject } from '../../proxy/admin/subject.js';
import type { Identity } from '../../proxy/identity/identity.js';

/*
 * The admin section's rules (an API needs a way to authenticate callers; certificates need
 * the CA that issues them; bearer tokens never cross a network in plain HTTP), certificate
 * subjects in the one form the config and the TLS stack both compare, and which actor a
 * verified admin token stands for.
 */

const dir = mkdtempSync(join(tmpdir(), 'wardgate-admin-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}
openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
  '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/C=GB/O=Hospital, Inc/OU=SOC+CN=desk/CN=soc-automation']);

function config(admin: string): () => unknown {
  return () => parseConfig(`
listen: { http: 127.0.0.1:8080 }
admin:
${admin.replace(/^/gm, '  ')}
workers: 1
identity:
  issuer: http://localhost:8081
  clientId: wardgate
  clientSecret: test-client-secret
  authUrl: http://auth.localhost:8080
routes:
  - id: app
    host: app.test
    upstream: { url: http://127.0.0.1:9 }
    policy: { allow: [{ authenticated: true }] }
`, join(dir, 'wardgate.yaml'));
}

const TLS = `tls: { cert: ${join(dir, 'cert.pem')}, key: ${join(dir, 'key.pem')}, clientCa: ${join(dir, 'cert.pem')} }`;
const BEARER = 'bearer: { audience: https://wardgate-admin.test }';

t.test('an admin section without api is the listener alone, wherever it listens', async (t) => {
  t.doesNotThrow(config('listen: 0.0.0.0:9090'), 'metrics on a management network need no TLS');
});

t.test('an api must say how callers authenticate', async (t) => {
  t.throws(config('listen: 127.0.0.1:9090\napi: {}'), /admin\.api: expected bearer, certificates or both/);
});

t.test('the admin API\'s token audience is its own, never an app\'s', async (t) => {
  const withAppTokens = (admin: string) => () => parseConfig(`
listen: { http: 127.0.0.1:8080 }
admin:
${admin.replace(/^/gm, '  ')}
workers: 1
identity:
  issuer: http://localhost:8081
  clientId: wardgate
  clientSecret: test-client-secret
  authUrl: http://auth.localhost:8080
  bearer: { audience: [https://fhir.test, https://wardgate-admin.test] }
routes:
  - id: app
    host: app.test
    upstream: { url: http://127.0.0.1:9 }
    policy: { allow: [{ authenticated: true }] }
`, join(dir, 'wardgate.yaml'));
  t.throws(withAppTokens(`listen: 127.0.0.1:9090\napi: { ${BEARER} }`), /admin\.api\.bearer\.audience: https:\/\/wardgate-admin\.test is also identity\.bearer\.audience/,
    'a SMART app\'s token would otherwise open the admin API');
  t.doesNotThrow(withAppTokens('listen: 127.0.0.1:9090\napi: { bearer: { audience: https://admin.test } }'));
});

t.test('client certificates need the CA that issues them', async (t) => {
  t.throws(config('listen: 127.0.0.1:9090\napi: { certificates: { subjects: [CN=soc] } }'), /admin\.api\.certificates: client certificates need tls\.clientCa/);
});

t.test('an api on plain HTTP is refused off loopback: bearer tokens would cross the network in the clear', async (t) => {
  t.throws(config(`listen: 0.0.0.0:9090\napi: { ${BEARER} }`), /admin\.api: an admin API on 0\.0\.0\.0 needs tls/);
  t.throws(config(`listen: 10.1.2.3:9090\napi: { ${BEARER} }`), /needs tls/);
  t.doesNotThrow(config(`listen: 127.0.0.1:9090\napi: { ${BEARER} }`), 'loopback: nothing leaves the machine');
  t.doesNotThrow(config(`listen: "[::1]:9090"\napi: { ${BEARER} }`), 'IPv6 loopback too');
  t.doesNotThrow(config(`listen: 0.0.0.0:9090\n${TLS}\napi: { ${BEARER}, certificates: { subjects: [CN=soc] } }`), 'with TLS, any address');
});

t.test('token algorithms are public-key ones only', async (t) => {
  t.throws(config('listen: 127.0.0.1:9090\napi: { bearer: { audience: x, algorithms: [HS256] } }'), /expected a public-key JWS algorithm/);
  t.throws(config('listen: 127.0.0.1:9090\napi: { bearer: { audience: x, algorithms: [none] } }'), /expected a public-key JWS algorithm/);
});

t.test('the scope defaults to wardgate:admin and the subjects are kept in canonical form', async (t) => {
  const loaded = config(`listen: 127.0.0.1:9090\n${TLS}\napi: { ${BEARER}, certificates: { subjects: ["cn=soc-automation, o=Hospital"] } }`)() as { admin: { api: { bearer: { scope: string }; certificates: { subjects: string[] } } } };
  t.equal(loaded.admin.api.bearer.scope, 'wardgate:admin');
  t.same(loaded.admin.api.certificates.subjects, ['CN=soc-automation,O=Hospital']);
  t.throws(config(`listen: 127.0.0.1:9090\n${TLS}\napi: { certificates: { subjects: ["soc-automation"] } }`), /expected a certificate subject such as CN=soc-automation,O=Hospital/);
});

t.test('certificate subjects: RFC 4514 order and escapes, as openssl -nameopt RFC2253 prints them', async (t) => {
  t.equal(canonicalSubject('CN=soc-automation,O=Hospital'), 'CN=soc-automation,O=Hospital');
  t.equal(canonicalSubject(' cn = soc-automation ,  o=Hospital '), 'CN=soc-automation,O=Hospital', 'type case and spaces around separators do not matter');
  t.equal(canonicalSubject('CN=Smith\\, J,O=Hospital'), 'CN=Smith\\, J,O=Hospital', 'an escaped comma is part of the value');
  t.equal(canonicalSubject('OU=SOC+CN=desk,O=H'), canonicalSubject('CN=desk+OU=SOC,O=H'), 'the parts of a multi-valued name in any order');
  t.equal(canonicalSubject('CN=soc,O=Hospital'), 'CN=soc,O=Hospital');
  t.not(canonicalSubject('CN=soc,O=Hospital'), canonicalSubject('CN=soc,O=Other'), 'the whole subject names a caller, not the CN alone');
  for (const bad of ['', 'soc', '=x', 'CN=', 'CN=a,,O=b', 'CN=a\nO=b']) t.equal(canonicalSubject(bad), undefined, `${JSON.stringify(bad)} is not a DN`);
  const certificate = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
  const printed = execFileSync('openssl', ['x509', '-in', join(dir, 'cert.pem'), '-noout', '-subject', '-nameopt', 'RFC2253']).toString().trim().replace(/^subject=/, '');
  t.equal(certificateSubject(certificate), canonicalSubject(printed), `a certificate's subject reads as openssl prints it (${printed})`);
});

function identity(claims: Record<string, unknown>, groups: string[] = []): Identity {
  return {
    kind: 'bearer',
    sub: String(claims['sub']),
    email: typeof claims['email'] === 'string' ? claims['email'] : undefined,
    name: undefined,
    groups,
    idpSid: undefined,
    sessionId: undefined,
    scopes: ['wardgate:admin'],
    amr: [],
    acr: undefined,
    authTime: undefined,
    expiresAt: Date.now() + 60_000,
    claims,
  };
}

t.test('a token stands for its client when its subject is its client_id, else for the person it names', async (t) => {
  t.same(actorOfToken(identity({ sub: 'itsm', client_id: 'itsm' }, ['ignored'])), { principal: { kind: 'client', id: 'client:itsm' }, groups: [] },
    'a client credentials token: the client, with no groups (a client holds none)');
  t.same(actorOfToken(identity({ sub: 'admin.erin', client_id: 'admin-console', email: 'erin@hospital.example' }, ['security-admins'])),
    { principal: { kind: 'user', id: 'admin.erin', email: 'erin@hospital.example' }, groups: ['security-admins'] },
    'a person\'s token through an app: the person, with the groups the IdP gave them');
});

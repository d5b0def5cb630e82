import t from 'tap';
import { createHmac, createPublicKey } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { BearerConfigError, BearerVerifier, type BearerResult } from '../../proxy/identity/bearer.js';

/*
 * API clients are trusted on their bearer token alone, so: well-formed tokens from the
 * IdP's keys pass and become an Identity with their scopes; every known JWT attack (alg
 * none, HS256 keyed with the public key, foreign or unknown keys, wrong audience or
 * issuer, expired, not yet valid, disallowed alg) fails with its own reason; a verified
 * token is answered from memory without touching the JWKS again, but never past its exp;
 * a flood of one bad token causes no JWKS traffic; and an unreachable JWKS reads as
 * idp-unavailable, never as a bad token.
 */

const ISSUER = 'https://idp.hospital.example';
const AUDIENCE = 'https://fhir.hospital.example';

const rsa = await generateKeyPair('RS256', { extractable: true });
const ec = await generateKeyPair('ES256', { extractable: true });
const rogue = await generateKeyPair('RS256', { extractable: true });
const later = await generateKeyPair('RS256', { extractable: true });
const publicJwk = async (key: CryptoKey, kid: string, alg: string): Promise<JWK> => ({ ...(await exportJWK(key)), kid, alg, use: 'sig' });
const rsaJwk = await publicJwk(rsa.publicKey, 'rsa-1', 'RS256');
const ecJwk = await publicJwk(ec.publicKey, 'ec-1', 'ES256');
const laterJwk = await publicJwk(later.publicKey, 'rsa-2', 'RS256');

/** A JWKS endpoint on loopback that counts its requests and can misbehave on demand. */
interface Idp {
  url: URL;
  requests: number;
  keys: JWK[];
  mode: 'ok' | 'error' | 'garbage' | 'hang';
  server: Server;
}

async function startIdp(): Promise<Idp> {
  const idp: Idp = { url: new URL('http://127.0.0.1/'), requests: 0, keys: [rsaJwk, ecJwk], mode: 'ok', server: createServer() };
  idp.server.on('request', (req, res) => {
    idp.requests++;
    if (idp.mode === 'hang') return; // never answers
    if (idp.mode === 'error') return void res.writeHead(500).end('oops');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(idp.mode === 'garbage' ? '{"keys": [' : JSON.stringify({ keys: idp.keys }));
    void req;
  });
  await new Promise<void>((resolve) => idp.server.listen(0, '127.0.0.1', resolve));
  idp.url = new URL(`http://127.0.0.1:${(idp.server.address() as AddressInfo).port}/jwks`);
  return idp;
}

const idp = await startIdp();
t.teardown(() => {
  idp.server.closeAllConnections();
  return new Promise<void>((resolve) => idp.server.close(() => resolve()));
});

let clock = Date.now();
const now = (): number => clock;
const seconds = (): number => Math.floor(clock / 1000);

interface SignOptions {
  key?: CryptoKey;
  alg?: string;
  kid?: string | undefined;
  typ?: string | undefined;
  claims?: JWTPayload;
}

async function token(options: SignOptions = {}): Promise<string> {
  const alg = options.alg ?? 'RS256';
  const header: Record<string, unknown> = { alg, kid: 'kid' in options ? options.kid : alg === 'ES256' ? 'ec-1' : 'rsa-1' };
  if (options.typ !== undefined || !('typ' in options)) header.typ = options.typ ?? 'at+jwt';
  const claims: JWTPayload = {
    iss: ISSUER, aud: AUDIENCE, sub: 'app-7', iat: seconds(), exp: seconds() + 300, scope: 'patient/*.read launch', ...options.claims,
  };
  for (const [name, value] of Object.entries(claims)) if (value === undefined) delete claims[name];
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(options.key ?? (alg === 'ES256' ? ec.privateKey : rsa.privateKey));
}

/** A getKey that counts how often verification needed a key at all. */
function counting(url: URL): { getKey: JWTVerifyGetKey; calls: () => number } {
  const remote = createRemoteJWKSet(url);
  let calls = 0;
  return { getKey: (header, jws) => (calls++, remote(header, jws)), calls: () => calls };
}

function verifier(extra: Partial<ConstructorParameters<typeof BearerVerifier>[0]> = {}): BearerVerifier {
  return new BearerVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUri: idp.url, now, ...extra });
}

function failed(result: BearerResult): { reason: string; detail: string } {
  if (result.ok) throw new Error('expected a failure');
  return result;
}

t.test('valid RS256 and ES256 tokens pass and become a bearer Identity with scopes', async (t) => {
  const v = verifier();
  const rs = await v.verify(await token({
    claims: { email: 'app@vendor.example', name: 'Vendor App', groups: ['fhir-readers'], sid: 'idp-s', amr: ['pwd'], acr: 'aal1', auth_time: 1_700_000_000 },
  }));
  t.ok(rs.ok);
  if (rs.ok) {
    const { claims, ...identity } = rs.identity;
    t.same(identity, {
      kind: 'bearer', sub: 'app-7', email: 'app@vendor.example', name: 'Vendor App', groups: ['fhir-readers'], idpSid: 'idp-s',
      sessionId: undefined, scopes: ['patient/*.read', 'launch'], amr: ['pwd'], acr: 'aal1', authTime: 1_700_000_000,
      expiresAt: (seconds() + 300) * 1000,
    });
    t.match(claims, { sub: 'app-7', scope: 'patient/*.read launch', groups: ['fhir-readers'], auth_time: 1_700_000_000 }, 'every claim of the token is kept for claim rules');
    t.ok(Object.isFrozen(claims), 'the claims are shared from the cache too, so frozen');
    t.ok(Object.isFrozen(rs.identity), 'shared from the cache, so frozen');
  }
  const es = await v.verify(await token({ alg: 'ES256', claims: { scope: undefined, scp: ['system/*.read'], groups: ['ok', 3] } }));
  t.ok(es.ok);
  if (es.ok) {
    t.same(es.identity.scopes, ['system/*.read'], 'scp as an array');
    t.same(es.identity.groups, [], 'groups only when every member is a string');
  }
  const scpString = await v.verify(await token({ claims: { scope: undefined, scp: 'a  b' } }));
  t.same(scpString.ok && scpString.identity.scopes, ['a', 'b']);
  const noScope = await v.verify(await token({ claims: { scope: undefined } }));
  t.same(noScope.ok && noScope.identity.scopes, []);
});

t.test('typ: at+jwt, JWT, application/at+jwt or none; anything else refused', async (t) => {
  const v = verifier();
  for (const typ of ['at+jwt', 'JWT', 'application/at+jwt', undefined]) {
    t.ok((await v.verify(await token({ typ }))).ok, `typ ${String(typ)}`);
  }
  for (const typ of ['logout+jwt', 'id_token+jwt', 'JOSE']) {
    t.match(failed(await v.verify(await token({ typ }))), { reason: 'token-invalid', detail: /typ/ }, `typ ${typ}`);
  }
});

t.test('attacks and faults fail with their own reason', async (t) => {
  const v = verifier();
  const good = await token();
  const [h, p] = good.split('.');
  const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

  const none = `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`;
  t.match(failed(await v.verify(none)), { reason: 'token-algorithm' }, 'alg none');
  t.match(failed(await v.verify(`${b64({ alg: 'NONE' })}.${p}.sig`)), { reason: 'token-algorithm' }, 'alg NONE');

  // The classic forgery: HMAC keyed with the RSA public key the verifier would look up.
  const hsHeader = b64({ alg: 'HS256', typ: 'JWT', kid: 'rsa-1' });
  const pem = createPublicKey({ key: rsaJwk as JWK & { kty: 'RSA' }, format: 'jwk' }).export({ format: 'pem', type: 'spki' });
  for (const secret of [pem, JSON.stringify(rsaJwk)]) {
    const signature = createHmac('sha256', secret).update(`${hsHeader}.${p}`).digest('base64url');
    t.match(failed(await v.verify(`${hsHeader}.${p}.${signature}`)), { reason: 'token-algorithm' }, 'HS256 keyed with the public key');
  }

  t.match(failed(await v.verify(await token({ key: rogue.privateKey, kid: 'who-knows' }))), { reason: 'token-unknown-key' }, 'unknown kid');
  t.match(failed(await v.verify(await token({ key: rogue.privateKey }))), { reason: 'token-invalid', detail: /signature/ }, 'right kid, wrong key');
  t.match(failed(await v.verify(`${h}.${p}.${Buffer.alloc(256).toString('base64url')}`)), { reason: 'token-invalid' }, 'zeroed signature');
  const tampered = `${h}.${b64({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), sub: 'admin' })}.${good.split('.')[2]}`;
  t.match(failed(await v.verify(tampered)), { reason: 'token-invalid', detail: /signature/ }, 'claims changed after signing');

  t.match(failed(await v.verify(await token({ claims: { exp: seconds() - 60 } }))), { reason: 'token-expired' }, 'expired beyond the tolerance');
  t.ok((await v.verify(await token({ claims: { exp: seconds() - 10 } }))).ok, 'expired within the 30 s tolerance');
  t.match(failed(await v.verify(await token({ claims: { nbf: seconds() + 120 } }))), { reason: 'token-invalid', detail: /not valid yet/ }, 'not yet valid');
  t.match(failed(await v.verify(await token({ claims: { aud: 'https://other.example' } }))), { reason: 'token-audience' }, 'wrong audience');
  t.match(failed(await v.verify(await token({ claims: { aud: undefined } }))), { reason: 'token-audience' }, 'no audience');
  t.match(failed(await v.verify(await token({ claims: { iss: 'https://evil.example' } }))), { reason: 'token-issuer' }, 'wrong issuer');
  t.match(failed(await v.verify(await token({ claims: { exp: undefined } }))), { reason: 'token-invalid', detail: /exp/ }, 'no exp');
  t.match(failed(await v.verify(await token({ claims: { sub: undefined } }))), { reason: 'token-invalid', detail: /sub/ }, 'no sub');
  t.match(failed(await v.verify(await token({ claims: { sub: '' } }))), { reason: 'token-invalid', detail: /sub/ }, 'empty sub');
  t.match(failed(await v.verify(await token({ claims: { exp: 'tomorrow' as unknown as number } }))), { reason: 'token-invalid' }, 'exp not a number');

  const rsOnly = verifier({ algorithms: ['RS256'] });
  t.match(failed(await rsOnly.verify(await token({ alg: 'ES256' }))), { reason: 'token-algorithm' }, 'ES256 when only RS256 is pinned');
  t.match(failed(await v.verify(await token({ alg: 'ES256', kid: 'rsa-1' }))), { reason: 'token-unknown-key' }, 'ES256 naming an RSA key');

  t.match(failed(await v.verify('e'.repeat(9000))), { reason: 'token-invalid', detail: /longer than 8192/ }, 'oversize');
  t.match(failed(await v.verify(`${h}.${'A'.repeat(9000)}.x`)), { reason: 'token-invalid', detail: /longer/ }, 'oversize but well-formed');
  const garbage: unknown[] = ['', 'garbage', 'a.b', 'a.b.c.d', '...', `${h}.${p}`, `${h}..sig`, `!!.${p}.sig`, `${b64('str')}.${p}.s`,
    `${b64(null)}.${p}.s`, `${b64([1])}.${p}.s`, `${Buffer.from('{nope').toString('base64url')}.${p}.s`, `${b64({ typ: 'JWT' })}.${p}.s`,
    `${b64({ alg: 'RS256', kid: 7 })}.${p}.s`, `${b64({ alg: 'RS256', typ: 7 })}.${p}.s`, `${h}.${p}.s+g`, `${h}.not*b64.sig`,
    `${h}.${b64([1])}.sig`, undefined, null, 12, {}];
  for (const input of garbage) {
    t.match(failed(await v.verify(input as string)), { reason: 'token-invalid' }, `garbage ${JSON.stringify(input)?.slice(0, 40)}`);
  }
});

t.test('maxTokenAgeSeconds refuses old tokens and limits how long one is cached', async (t) => {
  const v = verifier({ maxTokenAgeSeconds: 60 });
  t.match(failed(await v.verify(await token({ claims: { iat: seconds() - 600 } }))), { reason: 'token-expired', detail: /older/ });
  t.match(failed(await v.verify(await token({ claims: { iat: undefined } }))), { reason: 'token-invalid', detail: /iat/ });
  t.match(failed(await v.verify(await token({ claims: { iat: seconds() + 600 } }))), { reason: 'token-invalid', detail: /future/ });
  const fresh = await token();
  t.ok((await v.verify(fresh)).ok);
  clock += 100_000;
  t.match(failed(await v.verify(fresh)), { reason: 'token-expired' }, 'the cache does not outlast the age limit');
  clock -= 100_000;
});

t.test('cache: a verified token is answered from memory, never past its exp', async (t) => {
  const requestsBefore = idp.requests;
  const { getKey, calls } = counting(idp.url);
  const v = verifier({ getKey });
  const jwt = await token({ claims: { exp: seconds() + 60 } });
  const first = await v.verify(jwt);
  t.ok(first.ok);
  t.equal(calls(), 1);
  t.equal(idp.requests, requestsBefore + 1, 'one JWKS fetch');
  for (let i = 0; i < 50; i++) {
    const again = await v.verify(jwt);
    t.equal(again.ok && first.ok && again.identity, first.ok && first.identity);
  }
  t.equal(calls(), 1, 'cache hits need no key');
  t.equal(idp.requests, requestsBefore + 1, 'and no JWKS request');

  clock += 61_000; // past exp, within the 30 s tolerance: checked afresh, not cached
  t.ok((await v.verify(jwt)).ok);
  t.ok((await v.verify(jwt)).ok);
  t.equal(calls(), 3, 'no cache hit past exp');
  clock += 30_000;
  t.match(failed(await v.verify(jwt)), { reason: 'token-expired' }, 'a cached token past exp is not accepted');
  clock -= 91_000;

  const tiny = verifier({ getKey, cacheSize: 1 });
  const a = await token({ claims: { sub: 'a' } });
  const b = await token({ claims: { sub: 'b' } });
  await tiny.verify(a);
  await tiny.verify(b);
  const before = calls();
  await tiny.verify(a);
  t.equal(calls(), before + 1, 'bounded: the older token was evicted');
});

t.test('concurrent checks of one token share one verification', async (t) => {
  const { getKey, calls } = counting(idp.url);
  const v = verifier({ getKey });
  const jwt = await token({ claims: { sub: 'burst' } });
  const results = await Promise.all(Array.from({ length: 20 }, () => v.verify(jwt)));
  t.ok(results.every((r) => r.ok));
  t.equal(calls(), 1);
});

t.test('negative cache: a flood of one bad token costs one verification', async (t) => {
  const { getKey, calls } = counting(idp.url);
  const v = verifier({ getKey });
  const forged = await token({ key: rogue.privateKey, claims: { sub: 'flood' } });
  for (let i = 0; i < 100; i++) t.equal(failed(await v.verify(forged)).reason, 'token-invalid');
  t.equal(calls(), 1);
  clock += 30_001;
  await v.verify(forged);
  t.equal(calls(), 2, 'refused tokens are forgotten after 30 s');

  const early = await token({ claims: { nbf: seconds() + 60 } });
  t.equal(failed(await v.verify(early)).reason, 'token-invalid');
  clock += 61_000;
  t.ok((await v.verify(early)).ok, 'a not-yet-valid token is not remembered as bad');
  clock -= 91_001;
});

t.test('unknown kid: refetched after the JWKS cooldown, so a newly published key is picked up', async (t) => {
  clock = Date.now(); // jose times its cooldown with the real clock
  const requestsBefore = idp.requests;
  const v = verifier({ now: Date.now, jwksCooldownMs: 300, negativeCacheMs: 30_000 });
  t.ok((await v.verify(await token())).ok);
  const fresh = await token({ key: later.privateKey, kid: 'rsa-2' });
  t.equal(failed(await v.verify(fresh)).reason, 'token-unknown-key', 'not published yet (within cooldown: no refetch)');
  for (let i = 0; i < 20; i++) await v.verify(fresh);
  t.equal(idp.requests, requestsBefore + 1, 'a burst of an unknown kid fetches nothing more');
  idp.keys = [rsaJwk, ecJwk, laterJwk];
  await new Promise((resolve) => setTimeout(resolve, 350));
  t.ok((await v.verify(fresh)).ok, 'after the cooldown the unknown-kid refusal expired and the new key was fetched');
  t.equal(idp.requests, requestsBefore + 2);
  idp.keys = [rsaJwk, ecJwk];
});

t.test('a token without kid still verifies when two keys of its type are published', async (t) => {
  const idp2 = await startIdp();
  idp2.keys = [{ ...rsaJwk, kid: undefined }, { ...laterJwk, kid: undefined }] as JWK[];
  t.teardown(() => new Promise<void>((resolve) => idp2.server.close(() => resolve())));
  const v = verifier({ jwksUri: idp2.url });
  t.ok((await v.verify(await token({ key: later.privateKey, kid: undefined }))).ok, 'second candidate');
  t.ok((await v.verify(await token({ kid: undefined }))).ok, 'first candidate');
  t.match(failed(await v.verify(await token({ key: rogue.privateKey, kid: undefined }))), { reason: 'token-invalid', detail: /signature/ });
});

t.test('JWKS down, failing, garbage or slow: idp-unavailable', async (t) => {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const deadUrl = new URL(`http://127.0.0.1:${(closed.address() as AddressInfo).port}/jwks`);
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const jwt = await token();
  t.match(failed(await verifier({ jwksUri: deadUrl }).verify(jwt)), { reason: 'idp-unavailable', detail: /key set unavailable/ }, 'connection refused');

  const idp2 = await startIdp();
  t.teardown(() => {
    idp2.server.closeAllConnections();
    return new Promise<void>((resolve) => idp2.server.close(() => resolve()));
  });
  idp2.mode = 'error';
  const v = verifier({ jwksUri: idp2.url });
  t.match(failed(await v.verify(jwt)), { reason: 'idp-unavailable', detail: /200/ }, 'HTTP 500');
  idp2.mode = 'garbage';
  t.equal(failed(await verifier({ jwksUri: idp2.url }).verify(jwt)).reason, 'idp-unavailable', 'not JSON');
  idp2.mode = 'hang';
  const started = Date.now();
  t.equal(failed(await verifier({ jwksUri: idp2.url, fetchTimeoutMs: 200 }).verify(jwt)).reason, 'idp-unavailable', 'timeout');
  t.ok(Date.now() - started < 2_000, 'bounded by fetchTimeoutMs');

  idp2.mode = 'ok';
  t.equal(failed(await v.verify(jwt)).reason, 'idp-unavailable', 'an outage is remembered briefly per token');
  clock += 2_001;
  t.ok((await v.verify(jwt)).ok, 'and retried soon after');
  clock -= 2_001;
});

t.test('configuration mistakes are refused at construction', async (t) => {
  const base = { issuer: ISSUER, audience: AUDIENCE, jwksUri: idp.url };
  t.throws(() => new BearerVerifier({ ...base, algorithms: ['HS256'] }), { code: 'bearer-config-invalid', message: /HS256/ });
  t.throws(() => new BearerVerifier({ ...base, algorithms: ['none'] }), BearerConfigError);
  t.throws(() => new BearerVerifier({ ...base, algorithms: [] }), BearerConfigError);
  t.throws(() => new BearerVerifier({ ...base, issuer: '' }), BearerConfigError);
  t.throws(() => new BearerVerifier({ ...base, audience: [] }), BearerConfigError);
  t.throws(() => new BearerVerifier({ ...base, jwksUri: 'http://x' as unknown as URL }), BearerConfigError);
  t.throws(() => new BearerVerifier({ ...base, clockToleranceSeconds: -1 }), BearerConfigError);
  t.throws(() => new BearerVerifier({ ...base, maxTokenAgeSeconds: 0 }), BearerConfigError);
  t.throws(() => new BearerVerifier({ ...base, fetchTimeoutMs: 0 }), BearerConfigError);
  t.ok(new BearerVerifier({ ...base, audience: ['a', 'b'] }));
});

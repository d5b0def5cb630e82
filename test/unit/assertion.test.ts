import t from 'tap';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { AssertionKeyError, AssertionSigner, loadAssertionKeys } from '../../proxy/identity/assertion.js';
import type { Identity } from '../../proxy/identity/identity.js';

/*
 * Upstreams trust X-Wardgate-Assertion instead of doing their own sign-in, so: it verifies
 * with standard JOSE tooling against the published JWKS, carries exactly the identity
 * claims (never tokens), is re-signed once half its lifetime has passed or the identity
 * changes, is dropped on logout, and keeps verifying across a key rotation.
 */

const p256 = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const ISSUER = 'https://wardgate.hospital.example';
let clock = 1_800_000_000_000;
const now = (): number => clock;

function session(overrides: Partial<Identity> = {}): Identity {
  return {
    kind: 'session',
    sub: 'u-123',
    email: 'dr.jones@hospital.example',
    name: 'Dr Jones',
    groups: ['clinicians', 'radiology'],
    idpSid: 'idp-sid-1',
    sessionId: 'wg-session-1',
    scopes: [],
    amr: ['hwk', 'pin'],
    acr: 'phr',
    authTime: 1_799_999_000,
    expiresAt: clock + 8 * 3_600_000,
    claims: {},
    ...overrides,
  };
}

async function verify(signer: AssertionSigner, token: string, audience: string) {
  return jwtVerify(token, createLocalJWKSet(signer.jwks()), {
    issuer: ISSUER, audience, algorithms: ['ES256'], currentDate: new Date(clock),
  });
}

t.test('an assertion verifies against jwks() and carries the identity claims, nothing more', async (t) => {
  const signer = new AssertionSigner([p256()], { issuer: ISSUER, now });
  const token = signer.assertionFor(session(), 'epic');
  const { payload, protectedHeader } = await verify(signer, token, 'epic');
  t.same(protectedHeader, { alg: 'ES256', typ: 'JWT', kid: signer.kid });
  const iat = Math.floor(clock / 1000);
  t.same(Object.keys(payload).sort(), ['acr', 'amr', 'aud', 'auth_time', 'email', 'exp', 'groups', 'iat', 'iss', 'jti', 'nbf', 'sid', 'sub', 'wardgate_sid'].sort(),
    'exactly the listed claims: no name, scopes, tokens or refresh tokens');
  t.match(payload, {
    iss: ISSUER, aud: 'epic', sub: 'u-123', email: 'dr.jones@hospital.example', groups: ['clinicians', 'radiology'],
    sid: 'idp-sid-1', wardgate_sid: 'wg-session-1', amr: ['hwk', 'pin'], acr: 'phr', auth_time: 1_799_999_000,
    iat, nbf: iat, exp: iat + 60,
  });
  t.match(payload.jti, /^[0-9a-f-]{36}$/);
  await t.rejects(verify(signer, token, 'pacs'), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'aud' }, 'bound to its route');
});

t.test('optional claims: sid falls back to wardgate\'s; bearer identities have no wardgate_sid; absent ones are omitted', async (t) => {
  const signer = new AssertionSigner([p256()], { issuer: ISSUER, now, ttlSeconds: 30 });
  const noIdpSid = (await verify(signer, signer.assertionFor(session({ idpSid: undefined }), 'epic'), 'epic')).payload;
  t.equal(noIdpSid.sid, 'wg-session-1');
  t.equal(noIdpSid.exp, noIdpSid.iat! + 30);
  const bearer: Identity = {
    ...session(), kind: 'bearer', sessionId: undefined, idpSid: undefined, email: undefined, acr: undefined,
    authTime: undefined, amr: [], groups: [], scopes: ['patient/*.read'], expiresAt: clock + 20_000,
  };
  const payload = (await verify(signer, signer.assertionFor(bearer, 'fhir'), 'fhir')).payload;
  t.same(Object.keys(payload).sort(), ['amr', 'aud', 'exp', 'groups', 'iat', 'iss', 'jti', 'nbf', 'sub'].sort());
  t.equal(payload.exp, Math.floor((clock + 20_000) / 1000), 'never outlives the bearer token it stands for');
});

t.test('kid is the RFC 7638 thumbprint; jwks() has public members only', async (t) => {
  const key = p256();
  const signer = new AssertionSigner([key], { issuer: ISSUER, now });
  const [jwk] = signer.jwks().keys;
  t.same(Object.keys(jwk!).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
  t.match(jwk, { kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
  t.equal(jwk!.kid, await calculateJwkThumbprint({ kty: 'EC', crv: 'P-256', x: jwk!.x, y: jwk!.y }));
  t.notOk('d' in jwk!, 'no private part');
});

t.test('cache: the same assertion within half its lifetime, a new one after; per route; per identity', async (t) => {
  const signer = new AssertionSigner([p256()], { issuer: ISSUER, now });
  clock = Math.floor(clock / 1000) * 1000; // start on a second boundary so half-life is exactly 30 s
  const first = signer.assertionFor(session(), 'epic');
  t.equal(signer.assertionFor(session(), 'epic'), first, 'a fresh Identity object with equal claims reuses it');
  clock += 29_999;
  t.equal(signer.assertionFor(session(), 'epic'), first, 'still reused just before half-life');
  clock += 1;
  const second = signer.assertionFor(session(), 'epic');
  t.not(second, first, 're-signed at half-life');
  t.equal(signer.assertionFor(session(), 'epic'), second);
  t.not(signer.assertionFor(session(), 'pacs'), second, 'each route its own audience');

  t.not(signer.assertionFor(session({ groups: ['clinicians'] }), 'epic'), second, 'changed groups re-sign at once');
  const changed = signer.assertionFor(session({ groups: ['clinicians'] }), 'epic');
  const { payload } = await verify(signer, changed, 'epic');
  t.same(payload.groups, ['clinicians']);

  const identity = session({ sessionId: 'wg-session-2' });
  const mine = signer.assertionFor(identity, 'epic');
  identity.groups.push('admins'); // the caller changing its object must not keep the old assertion
  t.not(signer.assertionFor(identity, 'epic'), mine);

  const shrinking = session({ sessionId: 'wg-session-3' });
  const long = signer.assertionFor(shrinking, 'epic');
  t.not(signer.assertionFor({ ...shrinking, expiresAt: clock + 5_000 }, 'epic'), long, 'an identity ending sooner re-signs with a shorter exp');

  const bearerA: Identity = { ...session(), kind: 'bearer', sessionId: undefined, groups: ['a'] };
  const bearerB: Identity = { ...bearerA, groups: ['b'] };
  const tokenA = signer.assertionFor(bearerA, 'fhir');
  const tokenB = signer.assertionFor(bearerB, 'fhir');
  t.not(tokenA, tokenB, 'two bearer tokens sharing sub and exp never share an assertion');
  t.same((await verify(signer, tokenB, 'fhir')).payload.groups, ['b']);
});

t.test('forget(sessionId) drops that session\'s assertions and only those', async (t) => {
  const signer = new AssertionSigner([p256()], { issuer: ISSUER, now });
  const mine = signer.assertionFor(session(), 'epic');
  const minePacs = signer.assertionFor(session(), 'pacs');
  const other = signer.assertionFor(session({ sessionId: 'other' }), 'epic');
  signer.forget('wg-session-1');
  t.not(signer.assertionFor(session(), 'epic'), mine);
  t.not(signer.assertionFor(session(), 'pacs'), minePacs);
  t.equal(signer.assertionFor(session({ sessionId: 'other' }), 'epic'), other);
  signer.forget('never-seen');
});

t.test('the cache is bounded', async (t) => {
  const signer = new AssertionSigner([p256()], { issuer: ISSUER, now, cacheSize: 2 });
  const one = signer.assertionFor(session({ sessionId: '1' }), 'epic');
  signer.assertionFor(session({ sessionId: '2' }), 'epic');
  signer.assertionFor(session({ sessionId: '3' }), 'epic');
  t.not(signer.assertionFor(session({ sessionId: '1' }), 'epic'), one, 'the least recently used identity was evicted');
});

t.test('rotation: the previous key stays in the JWKS, so assertions it signed still verify', async (t) => {
  const oldKey = p256();
  const newKey = p256();
  const before = new AssertionSigner([oldKey], { issuer: ISSUER, now });
  const oldToken = before.assertionFor(session(), 'epic');
  const after = new AssertionSigner([newKey, oldKey], { issuer: ISSUER, now });
  t.equal(after.jwks().keys.length, 2);
  t.equal(after.jwks().keys[0]!.kid, after.kid, 'the signing key first');
  t.equal(after.jwks().keys[1]!.kid, before.kid);
  await verify(after, oldToken, 'epic');
  const newToken = after.assertionFor(session(), 'epic');
  t.equal(decodeProtectedHeader(newToken).kid, after.kid);
  await verify(after, newToken, 'epic');
  t.pass('both verify against the rotated JWKS');
  t.equal(new AssertionSigner([newKey, newKey], { issuer: ISSUER }).jwks().keys.length, 1, 'duplicates published once');
});

t.test('keys: PEM and KeyObject accepted; anything but a P-256 private key refused at config time', async (t) => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = Buffer.from(ec.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const sec1 = Buffer.from(ec.privateKey.export({ format: 'pem', type: 'sec1' }));
  const [loaded] = loadAssertionKeys([pem, sec1]);
  t.equal(loaded!.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  t.equal(new AssertionSigner([pem], { issuer: ISSUER }).kid, new AssertionSigner([ec.privateKey], { issuer: ISSUER }).kid);
  t.equal(new AssertionSigner([pem.toString()], { issuer: ISSUER }).kid, new AssertionSigner([pem], { issuer: ISSUER }).kid);

  const p384 = Buffer.from(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const rsa = Buffer.from(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const ed = Buffer.from(generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const pub = Buffer.from(ec.publicKey.export({ format: 'pem', type: 'spki' }));
  t.throws(() => loadAssertionKeys([pem, p384]), { code: 'assertion-key-invalid', message: /assertion key 2 must be an EC P-256 key for ES256 \(got ec secp384r1\)/ });
  t.throws(() => loadAssertionKeys([rsa]), { message: /got rsa/ });
  t.throws(() => loadAssertionKeys([ed]), AssertionKeyError);
  t.throws(() => loadAssertionKeys([pub]), { code: 'assertion-key-invalid' }, 'a public key cannot sign');
  t.throws(() => loadAssertionKeys([Buffer.from('not a key')]), { message: /not a readable unencrypted PEM private key/ });
  t.throws(() => loadAssertionKeys([]), AssertionKeyError);
  t.throws(() => new AssertionSigner([ec.publicKey], { issuer: ISSUER }), { message: /must be a private key/ });
  t.throws(() => new AssertionSigner([], { issuer: ISSUER }), AssertionKeyError);
  t.throws(() => new AssertionSigner([ec.privateKey], { issuer: '' }), AssertionKeyError);
  t.throws(() => new AssertionSigner([ec.privateKey], { issuer: ISSUER, ttlSeconds: 0.5 }), AssertionKeyError);
});

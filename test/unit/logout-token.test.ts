import t from 'tap';
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { BACKCHANNEL_LOGOUT_EVENT, verifyLogoutToken, type LogoutTokenOptions, type LogoutTokenResult } from '../../proxy/identity/logout-token.js';
import type { Json, Store } from '../../proxy/store/store.js';

/*
 * A logout token ends sessions, so a forged, misdirected, stale or replayed one must never
 * be acted on: every OIDC Back-Channel Logout §2.6 check is shown to refuse its fault
 * with a stable code, a valid token is accepted exactly once, and nothing throws.
 */

const ISSUER = 'https://idp.hospital.example';
const CLIENT = 'wardgate';
const signing = await generateKeyPair('RS256');
const rogue = await generateKeyPair('RS256');
const jwks = createLocalJWKSet({ keys: [{ ...(await exportJWK(signing.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] });

/** Only `add` is used by logout validation; the rest of the Store contract is not reached. */
function addOnlyStore(): Store & { keys: Map<string, number> } {
  const keys = new Map<string, number>();
  const unused = (): never => {
    throw new Error('not used by verifyLogoutToken');
  };
  return {
    keys,
    async add(key: string, _value: Json, ttlMs: number) {
      if (keys.has(key)) return false;
      keys.set(key, ttlMs);
      return true;
    },
    get: unused, set: unused, take: unused, delete: unused, addMember: unused, removeMember: unused, members: unused,
    publish: unused, subscribe: unused, close: unused,
  };
}

let clock = 1_800_000_000_000;
const seconds = (): number => Math.floor(clock / 1000);
let serial = 0;

async function logoutToken(options: { claims?: JWTPayload; header?: Record<string, unknown>; key?: CryptoKey } = {}): Promise<string> {
  const claims: JWTPayload = {
    iss: ISSUER, aud: CLIENT, iat: seconds(), jti: `jti-${++serial}`, sub: 'u-123', sid: 'idp-sid-9',
    events: { [BACKCHANNEL_LOGOUT_EVENT]: {} }, ...options.claims,
  };
  for (const [name, value] of Object.entries(claims)) if (value === undefined) delete claims[name];
  const header = { alg: 'RS256', kid: 'k1', typ: 'logout+jwt', ...options.header };
  for (const [name, value] of Object.entries(header)) if (value === undefined) delete (header as Record<string, unknown>)[name];
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(options.key ?? signing.privateKey);
}

function options(store: Store, extra: Partial<LogoutTokenOptions> = {}): LogoutTokenOptions {
  return { issuer: ISSUER, audience: CLIENT, jwks, algorithms: ['RS256'], store, now: () => clock, ...extra };
}

function refused(result: LogoutTokenResult): { reason: string; detail: string } {
  if (result.ok) throw new Error('expected a refusal');
  return result;
}

t.test('a valid logout token is accepted once, then refused as a replay', async (t) => {
  const store = addOnlyStore();
  const jwt = await logoutToken({ claims: { jti: 'once' } });
  t.same(await verifyLogoutToken(jwt, options(store)), { ok: true, sub: 'u-123', sid: 'idp-sid-9', jti: 'once' });
  t.same([...store.keys], [[`logout-jti:${ISSUER}:once`, 360_000]], 'jti remembered for the accepted age plus tolerance');
  t.match(refused(await verifyLogoutToken(jwt, options(store))), { reason: 'logout-token-replayed' });
  const otherStoreView = addOnlyStore();
  t.ok((await verifyLogoutToken(jwt, options(otherStoreView))).ok, 'the replay guard is the shared store, not process memory');
});

t.test('sub alone, sid alone, and an absent typ (older IdPs) are accepted', async (t) => {
  const store = addOnlyStore();
  t.same(await verifyLogoutToken(await logoutToken({ claims: { sid: undefined, jti: 'a' } }), options(store)), { ok: true, sub: 'u-123', jti: 'a' });
  t.same(await verifyLogoutToken(await logoutToken({ claims: { sub: undefined, jti: 'b' } }), options(store)), { ok: true, sid: 'idp-sid-9', jti: 'b' });
  t.ok((await verifyLogoutToken(await logoutToken({ header: { typ: undefined } }), options(store))).ok);
  t.ok((await verifyLogoutToken(await logoutToken({ header: { typ: 'application/logout+jwt' } }), options(store))).ok);
  t.ok((await verifyLogoutToken(await logoutToken({ claims: { exp: seconds() + 120 } }), options(store))).ok, 'exp allowed when in the future');
  t.ok((await verifyLogoutToken(await logoutToken({ claims: { events: { [BACKCHANNEL_LOGOUT_EVENT]: {}, other: 1 } } }), options(store))).ok, 'other events alongside');
});

t.test('each §2.6 fault is refused with its code', async (t) => {
  const store = addOnlyStore();
  const cases: Array<[string, Promise<string> | string, string, RegExp?]> = [
    ['nonce present', logoutToken({ claims: { nonce: 'n' } }), 'logout-token-invalid', /nonce/],
    ['events missing', logoutToken({ claims: { events: undefined } }), 'logout-token-invalid', /events/],
    ['events not an object', logoutToken({ claims: { events: [BACKCHANNEL_LOGOUT_EVENT] } }), 'logout-token-invalid', /back-channel logout event/],
    ['wrong event type', logoutToken({ claims: { events: { 'http://schemas.openid.net/event/something-else': {} } } }), 'logout-token-invalid', /back-channel logout event/],
    ['event value not an object', logoutToken({ claims: { events: { [BACKCHANNEL_LOGOUT_EVENT]: true } } }), 'logout-token-invalid', /not a JSON object/],
    ['event value an array', logoutToken({ claims: { events: { [BACKCHANNEL_LOGOUT_EVENT]: [] } } }), 'logout-token-invalid', /not a JSON object/],
    ['neither sub nor sid', logoutToken({ claims: { sub: undefined, sid: undefined } }), 'logout-token-invalid', /neither sub nor sid/],
    ['sub not a string', logoutToken({ claims: { sub: 5 as unknown as string } }), 'logout-token-invalid', /sub/],
    ['empty sid', logoutToken({ claims: { sid: '' } }), 'logout-token-invalid', /sid/],
    ['jti missing', logoutToken({ claims: { jti: undefined } }), 'logout-token-invalid', /jti/],
    ['jti not a string', logoutToken({ claims: { jti: 7 as unknown as string } }), 'logout-token-invalid', /jti/],
    ['iat missing', logoutToken({ claims: { iat: undefined } }), 'logout-token-invalid', /iat/],
    ['typ JWT (an ID token)', logoutToken({ header: { typ: 'JWT' } }), 'logout-token-invalid', /typ/],
    ['typ at+jwt', logoutToken({ header: { typ: 'at+jwt' } }), 'logout-token-invalid', /typ/],
    ['wrong audience', logoutToken({ claims: { aud: 'another-client' } }), 'logout-token-audience'],
    ['wrong issuer', logoutToken({ claims: { iss: 'https://evil.example' } }), 'logout-token-issuer'],
    ['too old', logoutToken({ claims: { iat: seconds() - 400 } }), 'logout-token-expired', /older/],
    ['iat in the future', logoutToken({ claims: { iat: seconds() + 300 } }), 'logout-token-invalid', /future/],
    ['expired', logoutToken({ claims: { exp: seconds() - 60 } }), 'logout-token-expired'],
    ['foreign key', logoutToken({ key: rogue.privateKey }), 'logout-token-invalid', /signature/],
    ['unknown kid', logoutToken({ key: rogue.privateKey, header: { kid: 'k2' } }), 'logout-token-unknown-key'],
    ['alg none', `${Buffer.from('{"alg":"none","typ":"logout+jwt"}').toString('base64url')}.e30.`, 'logout-token-algorithm'],
    ['HS256', `${Buffer.from('{"alg":"HS256"}').toString('base64url')}.e30.c2ln`, 'logout-token-algorithm'],
    ['garbage', 'not-a-token', 'logout-token-invalid'],
    ['empty', '', 'logout-token-invalid'],
    ['huge', 'a'.repeat(10_000), 'logout-token-invalid'],
  ];
  for (const [name, jwt, reason, detail] of cases) {
    const result = refused(await verifyLogoutToken(await jwt, options(store)));
    t.equal(result.reason, reason, name);
    if (detail) t.match(result.detail, detail, `${name}: detail`);
  }
  t.equal(store.keys.size, 0, 'no refused token used up a jti');
});

t.test('the age limit follows maxAgeSeconds and the injected clock', async (t) => {
  const store = addOnlyStore();
  const jwt = await logoutToken();
  clock += 200_000;
  t.ok((await verifyLogoutToken(jwt, options(store, { maxAgeSeconds: 600 }))).ok);
  t.equal(refused(await verifyLogoutToken(await logoutToken({ claims: { iat: seconds() - 100 } }), options(store, { maxAgeSeconds: 60 }))).reason, 'logout-token-expired');
  clock -= 200_000;
});

t.test('HS* and none never count as allowed, whatever the caller lists', async (t) => {
  const store = addOnlyStore();
  const hs = `${Buffer.from('{"alg":"HS256","typ":"logout+jwt"}').toString('base64url')}.e30.c2ln`;
  t.equal(refused(await verifyLogoutToken(hs, options(store, { algorithms: ['HS256', 'none'] }))).reason, 'logout-token-algorithm');
  t.equal(refused(await verifyLogoutToken(await logoutToken(), options(store, { algorithms: ['ES256'] }))).reason, 'logout-token-algorithm', 'RS256 not pinned');
});

t.test('an unreachable JWKS or store reads as such, not as a bad token; nothing throws', async (t) => {
  const down: JWTVerifyGetKey = async () => {
    throw new TypeError('fetch failed');
  };
  t.match(refused(await verifyLogoutToken(await logoutToken(), options(addOnlyStore(), { jwks: down }))), { reason: 'idp-unavailable', detail: /fetch failed/ });
  const broken = { ...addOnlyStore(), add: async () => Promise.reject(new Error('redis gone')) };
  t.match(refused(await verifyLogoutToken(await logoutToken(), options(broken))), { reason: 'store-unavailable', detail: /redis gone/ });
  t.equal(refused(await verifyLogoutToken(await logoutToken(), { ...options(addOnlyStore()), algorithms: undefined as unknown as string[] })).reason, 'logout-token-invalid');
  t.equal(refused(await verifyLogoutToken(undefined as unknown as string, options(addOnlyStore()))).reason, 'logout-token-invalid');
});

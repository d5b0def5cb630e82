import { createHash, createPrivateKey, createPublicKey, randomUUID, sign, type KeyObject } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { WardgateError } from '../errors.js';
import type { Identity } from './identity.js';

/*
 * The identity assertion wardgate sends upstream as `X-Wardgate-Assertion`: a short-lived
 * ES256 JWT saying who the user is, for one route. An ES256 signature costs tens of
 * microseconds, so an assertion is reused for a (user, route) pair while more than half of
 * its lifetime remains; re-signing at half-life means an upstream never receives one
 * that is about to expire.
 */

/** Assertion keys that cannot be used (config time). */
export class AssertionKeyError extends WardgateError {
  constructor(message: string, options?: ErrorOptions) {
    super('assertion-key-invalid', message, options);
  }
}

/** A public signing key as published in the JWKS. */
export interface AssertionJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
  kid: string;
  alg: 'ES256';
  use: 'sig';
}

/** The claims an assertion carries: who, for which route, how they signed in, and nothing more. */
export interface AssertionClaims {
  iss: string;
  aud: string;
  sub: string;
  email?: string;
  groups: string[];
  /** The IdP's session id when it sent one, otherwise wardgate's. */
  sid?: string;
  wardgate_sid?: string;
  amr: string[];
  acr?: string;
  auth_time?: number;
  iat: number;
  nbf: number;
  exp: number;
  jti: string;
}

export interface AssertionSignerOptions {
  issuer: string;
  /** Assertion lifetime; default 60. */
  ttlSeconds?: number;
  /** Epoch milliseconds; default Date.now. */
  now?: () => number;
  /** Identities whose assertions are kept; default 50,000. */
  cacheSize?: number;
}

interface SigningKey {
  key: KeyObject;
  kid: string;
  /** base64url of the protected header, fixed per key. */
  header: string;
  jwk: AssertionJwk;
}

/** The identity fields an assertion depends on, copied so later changes to the caller's object cannot alias. */
interface Snapshot {
  sub: string;
  email: string | undefined;
  groups: string[];
  idpSid: string | undefined;
  sessionId: string | undefined;
  amr: string[];
  acr: string | undefined;
  authTime: number | undefined;
}

interface Cached {
  token: string;
  /** Epoch ms until which the token is handed out again. */
  reuseUntil: number;
  /** Epoch ms of the token's `exp`. */
  expMs: number;
  who: Snapshot;
}

function describe(index: number): string {
  return `assertion key ${index + 1}`;
}

function checkKey(key: KeyObject, index: number): KeyObject {
  if (key.type !== 'private') throw new AssertionKeyError(`${describe(index)} must be a private key (got a ${key.type} key)`);
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType !== 'ec' || curve !== 'prime256v1') {
    throw new AssertionKeyError(`${describe(index)} must be an EC P-256 key for ES256 (got ${key.asymmetricKeyType ?? 'unknown'}${curve ? ` ${curve}` : ''})`);
  }
  return key;
}

function importKey(pem: Buffer | string, index: number): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (cause) {
    throw new AssertionKeyError(`${describe(index)} is not a readable unencrypted PEM private key`, { cause });
  }
  return checkKey(key, index);
}

/** Reads PEM private keys for assertion signing; rejects anything but EC P-256 with a clear error. */
export function loadAssertionKeys(pemBuffers: readonly Buffer[]): KeyObject[] {
  if (!Array.isArray(pemBuffers) || pemBuffers.length === 0) throw new AssertionKeyError('at least one assertion key is required');
  return pemBuffers.map((pem, index) => importKey(pem, index));
}

function b64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

function signingKey(key: KeyObject): SigningKey {
  const pub = createPublicKey(key).export({ format: 'jwk' });
  if (typeof pub.x !== 'string' || typeof pub.y !== 'string') throw new AssertionKeyError('could not export an assertion public key');
  // RFC 7638: the required members, in lexicographic order, no whitespace.
  const kid = createHash('sha256').update(`{"crv":"P-256","kty":"EC","x":"${pub.x}","y":"${pub.y}"}`).digest('base64url');
  const jwk: AssertionJwk = Object.freeze({ kty: 'EC', crv: 'P-256', x: pub.x, y: pub.y, kid, alg: 'ES256', use: 'sig' });
  return { key, kid, header: b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid })), jwk };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function matches(who: Snapshot, identity: Identity): boolean {
  return who.sub === identity.sub
    && who.email === identity.email
    && who.idpSid === identity.idpSid
    && who.sessionId === identity.sessionId
    && who.acr === identity.acr
    && who.authTime === identity.authTime
    && sameList(who.groups, identity.groups)
    && sameList(who.amr, identity.amr);
}

export class AssertionSigner {
  private readonly keys: SigningKey[];
  private readonly issuer: string;
  private readonly ttlSeconds: number;
  private readonly now: () => number;
  /** identity key -> audience -> assertion; one LRU entry per identity so `forget` is one delete. */
  private readonly cache: LRUCache<string, Map<string, Cached>>;
  private readonly published: { keys: AssertionJwk[] };

  /** `keys[0]` signs; the others are only published, for upstreams still holding an older kid. */
  constructor(keys: ReadonlyArray<KeyObject | Buffer | string>, options: AssertionSignerOptions) {
    if (!Array.isArray(keys) || keys.length === 0) throw new AssertionKeyError('at least one assertion key is required');
    if (typeof options?.issuer !== 'string' || options.issuer === '') throw new AssertionKeyError('assertion issuer must be a non-empty string');
    const ttl = options.ttlSeconds ?? 60;
    if (!Number.isInteger(ttl) || ttl < 2) throw new AssertionKeyError(`assertion ttlSeconds must be a whole number of at least 2, got ${String(ttl)}`);
    const byKid = new Map<string, SigningKey>();
    keys.forEach((input, index) => {
      const key = typeof input === 'string' || Buffer.isBuffer(input) ? importKey(input, index) : checkKey(input, index);
      const entry = signingKey(key);
      if (!byKid.has(entry.kid)) byKid.set(entry.kid, entry);
    });
    this.keys = [...byKid.values()];
    this.issuer = options.issuer;
    this.ttlSeconds = ttl;
    this.now = options.now ?? Date.now;
    this.cache = new LRUCache({ max: options.cacheSize ?? 50_000 });
    this.published = Object.freeze({ keys: Object.freeze(this.keys.map((k) => k.jwk)) as AssertionJwk[] });
  }

  /** The kid of the key that signs new assertions. */
  get kid(): string {
    return this.keys[0]!.kid;
  }

  /** The signed assertion of `identity` for the route `audience`, reused from cache while fresh. */
  assertionFor(identity: Identity, audience: string): string {
    const now = this.now();
    const identityKey = identity.sessionId !== undefined ? `s:${identity.sessionId}` : `b:${identity.sub}\n${identity.expiresAt}`;
    let perAudience = this.cache.get(identityKey);
    const hit = perAudience?.get(audience);
    // Claims are compared too: two bearer tokens may share sub and expiry yet differ in groups.
    if (hit && now < hit.reuseUntil && hit.expMs <= identity.expiresAt && matches(hit.who, identity)) return hit.token;

    const iat = Math.floor(now / 1000);
    let exp = iat + this.ttlSeconds;
    // Never outlive the identity it vouches for (a bearer token's own exp, a session's end).
    if (Number.isFinite(identity.expiresAt)) exp = Math.max(iat + 1, Math.min(exp, Math.floor(identity.expiresAt / 1000)));
    const claims: AssertionClaims = {
      iss: this.issuer,
      aud: audience,
      sub: identity.sub,
      email: identity.email,
      groups: identity.groups,
      sid: identity.idpSid ?? identity.sessionId,
      wardgate_sid: identity.sessionId,
      amr: identity.amr,
      acr: identity.acr,
      auth_time: identity.authTime,
      iat,
      nbf: iat,
      exp,
      jti: randomUUID(),
    };
    const key = this.keys[0]!;
    const input = `${key.header}.${b64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(input, 'latin1'), { key: key.key, dsaEncoding: 'ieee-p1363' });
    const token = `${input}.${signature.toString('base64url')}`;

    const lifetimeMs = (exp - iat) * 1000;
    const entry: Cached = {
      token,
      reuseUntil: iat * 1000 + lifetimeMs / 2,
      expMs: exp * 1000,
      who: {
        sub: identity.sub,
        email: identity.email,
        groups: [...identity.groups],
        idpSid: identity.idpSid,
        sessionId: identity.sessionId,
        amr: [...identity.amr],
        acr: identity.acr,
        authTime: identity.authTime,
      },
    };
    if (!perAudience) {
      perAudience = new Map();
      this.cache.set(identityKey, perAudience);
    }
    perAudience.set(audience, entry);
    return token;
  }

  /** Drops every cached assertion of a wardgate session (logout). */
  forget(sessionId: string): void {
    this.cache.delete(`s:${sessionId}`);
  }

  /** Public keys for upstreams: the signing key first, then previous ones still trusted. */
  jwks(): { keys: AssertionJwk[] } {
    return this.published;
  }
}

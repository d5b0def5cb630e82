import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import { LRUCache } from 'lru-cache';
import { WardgateError } from '../errors.js';
import type { Identity } from './identity.js';

/*
 * Bearer tokens of API clients (SMART on FHIR apps and the like), verified against the
 * IdP's published keys. Every API request carries one, so a verified token is cached
 * until its exp, and cheap shape checks run before any crypto or key fetch. Also home of the JWS pre-checks and jose error mapping that logout-token.ts
 * shares.
 */

export type BearerFailureReason =
  | 'token-invalid'
  | 'token-expired'
  | 'token-audience'
  | 'token-issuer'
  | 'token-algorithm'
  | 'token-unknown-key'
  | 'idp-unavailable';

export type BearerResult =
  | { ok: true; identity: Identity }
  | { ok: false; reason: BearerFailureReason; detail: string };

/** A bearer verifier that cannot be built (config time). */
export class BearerConfigError extends WardgateError {
  constructor(message: string) {
    super('bearer-config-invalid', message);
  }
}

/**
 * Public-key JWS algorithms a token may be verified with. HS* is absent on purpose: with a
 * JWKS, an HMAC "key" would be public material (the classic HS256-signed-with-the-RSA-
 * public-key forgery), and `none` is no signature at all.
 */
export const ASYMMETRIC_ALGORITHMS: ReadonlySet<string> = new Set([
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519',
]);

/** What went wrong, before each caller turns it into its own reason code. */
export type JwtFailureKind = 'invalid' | 'expired' | 'audience' | 'issuer' | 'algorithm' | 'unknown-key' | 'unavailable';

export interface JwtFailure {
  kind: JwtFailureKind;
  detail: string;
  /** Set for time-dependent failures that may pass later (nbf, iat in the future); these are not cached. */
  notYet?: boolean;
}

export type JwsPrecheck = { ok: true; header: Record<string, unknown>; alg: string; typ: string | undefined } | { ok: false; failure: JwtFailure };

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * Shape checks that cost microseconds and need no key: size, three base64url segments, a
 * JSON object header, an `alg` from `algorithms`. `typ` comes back lower-cased without an
 * `application/` prefix. Never throws.
 */
export function precheckJws(token: unknown, algorithms: ReadonlySet<string>, maxChars: number): JwsPrecheck {
  if (typeof token !== 'string' || token.length === 0) return fail('invalid', 'no token');
  if (token.length > maxChars) return fail('invalid', `token longer than ${maxChars} characters`);
  const firstDot = token.indexOf('.');
  const secondDot = token.indexOf('.', firstDot + 1);
  if (firstDot < 0 || secondDot < 0 || token.indexOf('.', secondDot + 1) >= 0) return fail('invalid', 'not a compact JWS (three segments)');
  const encodedHeader = token.slice(0, firstDot);
  if (!BASE64URL.test(encodedHeader)) return fail('invalid', 'header is not base64url');
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(encodedHeader, 'base64url').toString('utf8'));
  } catch {
    return fail('invalid', 'header is not JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return fail('invalid', 'header is not a JSON object');
  const fields = header as Record<string, unknown>;
  const alg = fields.alg;
  if (typeof alg !== 'string' || alg === '') return fail('invalid', 'header has no alg');
  // Before the other segments are looked at, so "none" (empty signature) reads as what it is.
  if (!ASYMMETRIC_ALGORITHMS.has(alg) || !algorithms.has(alg)) return fail('algorithm', `alg ${JSON.stringify(alg.slice(0, 20))} is not accepted`);
  if (!BASE64URL.test(token.slice(firstDot + 1, secondDot)) || !BASE64URL.test(token.slice(secondDot + 1))) {
    return fail('invalid', 'payload or signature is not base64url');
  }
  if (fields.kid !== undefined && typeof fields.kid !== 'string') return fail('invalid', 'header kid is not a string');
  let typ: string | undefined;
  if (fields.typ !== undefined) {
    if (typeof fields.typ !== 'string') return fail('invalid', 'header typ is not a string');
    typ = fields.typ.toLowerCase();
    if (typ.startsWith('application/')) typ = typ.slice('application/'.length);
  }
  return { ok: true, header: fields, alg, typ };
}

function fail(kind: JwtFailureKind, detail: string): { ok: false; failure: JwtFailure } {
  return { ok: false, failure: { kind, detail } };
}

/** Marks errors from fetching or reading the key set, as opposed to errors about the token. */
class KeySourceError extends WardgateError {
  constructor(message: string, options?: ErrorOptions) {
    super('idp-unavailable', message, options);
  }
}

/**
 * Wraps a key resolver so that a failure to obtain keys (network, timeout, non-200, a
 * malformed set) is told apart from a token whose key is simply not in the set.
 */
export function guardKeySource(getKey: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await getKey(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys
        || err instanceof errors.JOSENotSupported || err instanceof errors.JWKInvalid) throw err;
      throw new KeySourceError(err instanceof Error ? err.message : 'key set unavailable', { cause: err });
    }
  };
}

/**
 * jwtVerify that also copes with a token without `kid` when several keys of its type are
 * published (mid-rotation): each candidate is tried in turn.
 */
export async function verifyJwt(token: string, getKey: JWTVerifyGetKey, options: JWTVerifyOptions): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, getKey, options)).payload;
  } catch (err) {
    if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
    let last: unknown = err;
    for await (const key of err) {
      try {
        return (await jwtVerify(token, key, options)).payload;
      } catch (inner) {
        last = inner;
        if (!(inner instanceof errors.JWSSignatureVerificationFailed)) break;
      }
    }
    throw last;
  }
}

/** The failure kind of an error thrown by `verifyJwt` (with a `guardKeySource` resolver). */
export function classifyJwtError(err: unknown): JwtFailure {
  if (err instanceof KeySourceError) return { kind: 'unavailable', detail: `key set unavailable: ${err.message}` };
  if (err instanceof errors.JWTExpired) return { kind: 'expired', detail: err.claim === 'iat' ? 'token is older than allowed' : 'token has expired' };
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return { kind: 'audience', detail: err.reason === 'missing' ? 'token has no aud' : 'token is for another audience' };
    if (err.claim === 'iss') return { kind: 'issuer', detail: err.reason === 'missing' ? 'token has no iss' : 'token is from another issuer' };
    if (err.claim === 'nbf') return { kind: 'invalid', detail: 'token is not valid yet (nbf)', notYet: true };
    if (err.claim === 'iat' && err.reason === 'check_failed') return { kind: 'invalid', detail: 'token is issued in the future (iat)', notYet: true };
    return { kind: 'invalid', detail: err.message };
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return { kind: 'algorithm', detail: 'alg is not accepted' };
  if (err instanceof errors.JWKSNoMatchingKey) return { kind: 'unknown-key', detail: 'no published key matches the token kid and alg' };
  if (err instanceof errors.JWKSMultipleMatchingKeys) return { kind: 'unknown-key', detail: 'several published keys match and none verifies' };
  if (err instanceof errors.JWSSignatureVerificationFailed) return { kind: 'invalid', detail: 'signature does not verify' };
  if (err instanceof errors.JOSEError) return { kind: 'invalid', detail: err.message };
  return { kind: 'invalid', detail: err instanceof Error ? `verification failed: ${err.message}` : 'verification failed' };
}

function stringList(value: unknown): string[] | undefined {
  if (!Array.isArray(value)) return undefined;
  for (const item of value) if (typeof item !== 'string') return undefined;
  return value as string[];
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function scopesOf(claims: JWTPayload): string[] {
  if (typeof claims.scope === 'string') return claims.scope.split(' ').filter((s) => s !== '');
  if (typeof claims.scp === 'string') return claims.scp.split(' ').filter((s) => s !== '');
  return stringList(claims.scp)?.slice() ?? [];
}

export interface BearerVerifierOptions {
  issuer: string;
  audience: string | string[];
  jwksUri: URL;
  /** Default ['RS256', 'ES256', 'PS256']; HS* and none are refused. */
  algorithms?: string[];
  /** Default 30. */
  clockToleranceSeconds?: number;
  /** Refuse tokens issued longer ago than this (needs `iat`). */
  maxTokenAgeSeconds?: number;
  /** Verified tokens kept; default 10,000. */
  cacheSize?: number;
  /** Epoch milliseconds; default Date.now. */
  now?: () => number;
  /** JWKS fetch timeout; default 3000. */
  fetchTimeoutMs?: number;
  /** Minimum time between JWKS refetches for unknown kids; default 30,000 (jose's default). */
  jwksCooldownMs?: number;
  /** How long a token that failed verification is answered from memory; default 30,000. */
  negativeCacheMs?: number;
  /** Default 8192. */
  maxTokenChars?: number;
  /** A key resolver to use instead of fetching `jwksUri` (tests, or a shared remote set). */
  getKey?: JWTVerifyGetKey;
}

type Failure = { ok: false; reason: BearerFailureReason; detail: string };

interface Verified {
  result: { ok: true; identity: Identity };
  /** Epoch ms after which the cached answer no longer stands. */
  until: number;
}

interface Refused {
  result: Failure;
  until: number;
}

/** A JWKS outage is retried soon: callers are waiting on it. */
const UNAVAILABLE_NEGATIVE_MS = 2_000;

function reasonFor(kind: JwtFailureKind): BearerFailureReason {
  return kind === 'unavailable' ? 'idp-unavailable' : `token-${kind}`;
}

export class BearerVerifier {
  private readonly getKey: JWTVerifyGetKey;
  private readonly algorithms: ReadonlySet<string>;
  private readonly verifyOptions: Omit<JWTVerifyOptions, 'currentDate'>;
  private readonly now: () => number;
  private readonly maxTokenChars: number;
  private readonly maxTokenAgeSeconds: number | undefined;
  private readonly negativeMs: number;
  private readonly unknownKeyNegativeMs: number;
  private readonly verified: LRUCache<string, Verified>;
  private readonly refused: LRUCache<string, Refused>;
  /** Concurrent verifications of one token share one promise (one JWKS fetch, one signature check). */
  private readonly inflight = new Map<string, Promise<BearerResult>>();

  constructor(options: BearerVerifierOptions) {
    if (typeof options.issuer !== 'string' || options.issuer === '') throw new BearerConfigError('bearer issuer must be a non-empty string');
    const audiences = typeof options.audience === 'string' ? [options.audience] : options.audience;
    if (!Array.isArray(audiences) || audiences.length === 0 || audiences.some((a) => typeof a !== 'string' || a === '')) {
      throw new BearerConfigError('bearer audience must be a non-empty string or list of them');
    }
    if (!(options.jwksUri instanceof URL)) throw new BearerConfigError('bearer jwksUri must be a URL');
    const algorithms = options.algorithms ?? ['RS256', 'ES256', 'PS256'];
    if (algorithms.length === 0) throw new BearerConfigError('bearer algorithms must not be empty');
    for (const alg of algorithms) {
      if (!ASYMMETRIC_ALGORITHMS.has(alg)) throw new BearerConfigError(`bearer algorithm ${JSON.stringify(alg)} is not allowed (public-key algorithms only: ${[...ASYMMETRIC_ALGORITHMS].join(', ')})`);
    }
    const tolerance = options.clockToleranceSeconds ?? 30;
    if (!Number.isFinite(tolerance) || tolerance < 0) throw new BearerConfigError('bearer clockToleranceSeconds must be a non-negative number');
    const maxAge = options.maxTokenAgeSeconds;
    if (maxAge !== undefined && (!Number.isFinite(maxAge) || maxAge <= 0)) throw new BearerConfigError('bearer maxTokenAgeSeconds must be a positive number');
    const cooldown = options.jwksCooldownMs ?? 30_000;
    const timeout = options.fetchTimeoutMs ?? 3_000;
    if (!Number.isInteger(timeout) || timeout <= 0) throw new BearerConfigError('bearer fetchTimeoutMs must be a positive whole number');

    this.getKey = guardKeySource(options.getKey ?? createRemoteJWKSet(options.jwksUri, { timeoutDuration: timeout, cooldownDuration: cooldown }));
    this.algorithms = new Set(algorithms);
    this.verifyOptions = {
      issuer: options.issuer,
      audience: audiences,
      algorithms: [...algorithms],
      clockTolerance: tolerance,
      requiredClaims: ['exp', 'sub'],
      ...(maxAge !== undefined ? { maxTokenAge: maxAge } : {}),
    };
    this.maxTokenAgeSeconds = maxAge;
    this.now = options.now ?? Date.now;
    this.maxTokenChars = options.maxTokenChars ?? 8192;
    this.negativeMs = options.negativeCacheMs ?? 30_000;
    // Within jose's cooldown an unknown kid would not be refetched anyway; past it, a new key may have appeared.
    this.unknownKeyNegativeMs = Math.min(this.negativeMs, cooldown);
    const size = options.cacheSize ?? 10_000;
    this.verified = new LRUCache({ max: size });
    this.refused = new LRUCache({ max: Math.max(100, Math.ceil(size / 10)) });
  }

  /** Verifies `token`; never throws. */
  verify(token: string): Promise<BearerResult> {
    if (typeof token !== 'string' || token.length === 0 || token.length > this.maxTokenChars) {
      return Promise.resolve(this.precheckFailure(token));
    }
    const now = this.now();
    // Keyed by the token itself: hashing it would cost more than the rest of a cache hit,
    // and at most 8 KiB per entry keeps the bounded caches small.
    const hit = this.verified.get(token);
    if (hit) {
      if (now < hit.until) return Promise.resolve(hit.result);
      this.verified.delete(token);
    }
    const no = this.refused.get(token);
    if (no) {
      if (now < no.until) return Promise.resolve(no.result);
      this.refused.delete(token);
    }
    const pending = this.inflight.get(token);
    if (pending) return pending;
    const run = this.verifyUncached(token).finally(() => this.inflight.delete(token));
    this.inflight.set(token, run);
    return run;
  }

  private precheckFailure(token: unknown): Failure {
    const checked = precheckJws(token, this.algorithms, this.maxTokenChars);
    return checked.ok ? { ok: false, reason: 'token-invalid', detail: 'malformed token' } : { ok: false, reason: reasonFor(checked.failure.kind), detail: checked.failure.detail };
  }

  private async verifyUncached(token: string): Promise<BearerResult> {
    try {
      const checked = precheckJws(token, this.algorithms, this.maxTokenChars);
      if (!checked.ok) return { ok: false, reason: reasonFor(checked.failure.kind), detail: checked.failure.detail };
      // RFC 9068 access tokens say at+jwt; many IdPs still send JWT or nothing.
      if (checked.typ !== undefined && checked.typ !== 'at+jwt' && checked.typ !== 'jwt') {
        return { ok: false, reason: 'token-invalid', detail: `header typ ${JSON.stringify(checked.typ.slice(0, 40))} is not an access token type` };
      }
      const started = this.now();
      let claims: JWTPayload;
      try {
        claims = await verifyJwt(token, this.getKey, { ...this.verifyOptions, currentDate: new Date(started) });
      } catch (err) {
        const failure = classifyJwtError(err);
        const result: Failure = { ok: false, reason: reasonFor(failure.kind), detail: failure.detail };
        if (!failure.notYet) {
          const ttl = failure.kind === 'unknown-key' ? this.unknownKeyNegativeMs
            : failure.kind === 'unavailable' ? Math.min(this.negativeMs, UNAVAILABLE_NEGATIVE_MS)
              : this.negativeMs;
          if (ttl > 0) this.refused.set(token, { result, until: this.now() + ttl });
        }
        return result;
      }
      const identity = identityOf(claims);
      if (!identity) return { ok: false, reason: 'token-invalid', detail: 'sub is not a non-empty string' };
      const result = { ok: true as const, identity };
      // Cached only until exp itself: the clock tolerance stretches a fresh check, never the cache.
      let until = identity.expiresAt;
      if (this.maxTokenAgeSeconds !== undefined && typeof claims.iat === 'number') until = Math.min(until, (claims.iat + this.maxTokenAgeSeconds) * 1000);
      if (this.now() < until) this.verified.set(token, { result, until });
      return result;
    } catch (err) {
      return { ok: false, reason: 'token-invalid', detail: err instanceof Error ? `verification failed: ${err.message}` : 'verification failed' };
    }
  }
}

/** The Identity a verified access token stands for; frozen, because cached results are shared. */
function identityOf(claims: JWTPayload): Identity | undefined {
  if (typeof claims.sub !== 'string' || claims.sub === '' || typeof claims.exp !== 'number') return undefined;
  const identity: Identity = {
    kind: 'bearer',
    sub: claims.sub,
    email: optionalString(claims.email),
    name: optionalString(claims.name),
    groups: Object.freeze(stringList(claims.groups)?.slice() ?? []) as string[],
    idpSid: optionalString(claims.sid),
    sessionId: undefined,
    scopes: Object.freeze(scopesOf(claims)) as string[],
    amr: Object.freeze(stringList(claims.amr)?.slice() ?? []) as string[],
    acr: optionalString(claims.acr),
    authTime: typeof claims.auth_time === 'number' && Number.isFinite(claims.auth_time) ? claims.auth_time : undefined,
    expiresAt: claims.exp * 1000,
    claims: Object.freeze({ ...claims }),
  };
  return Object.freeze(identity);
}

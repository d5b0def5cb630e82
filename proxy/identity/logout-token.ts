import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import type { Store } from '../store/store.js';
import { ASYMMETRIC_ALGORITHMS, classifyJwtError, guardKeySource, precheckJws, verifyJwt, type JwtFailureKind } from './bearer.js';

/*
 * OpenID Connect Back-Channel Logout 1.0, §2.6: the checks on a Logout Token the IdP
 * POSTs to end sessions. A valid token ends every session of a user (`sub`) or of one IdP
 * session (`sid`), so it is checked as strictly as an ID token, and each `jti` is
 * accepted once across all wardgate processes (via the shared Store).
 */

export const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

export type LogoutTokenReason =
  | 'logout-token-invalid'
  | 'logout-token-expired'
  | 'logout-token-audience'
  | 'logout-token-issuer'
  | 'logout-token-algorithm'
  | 'logout-token-unknown-key'
  | 'logout-token-replayed'
  | 'idp-unavailable'
  | 'store-unavailable';

export type LogoutTokenResult =
  | { ok: true; sub?: string; sid?: string; jti: string }
  | { ok: false; reason: LogoutTokenReason; detail: string };

export interface LogoutTokenOptions {
  issuer: string;
  /** wardgate's client id at the IdP. */
  audience: string;
  /** The same key resolver used for ID tokens (usually jose's remote JWKS). */
  jwks: JWTVerifyGetKey;
  /** Accepted algorithms; HS* and none are never accepted, whatever is listed. */
  algorithms: string[];
  store: Store;
  /** Epoch milliseconds; default Date.now. */
  now?: () => number;
  /** Refuse tokens issued longer ago than this; default 300. */
  maxAgeSeconds?: number;
  /** Default 30. */
  clockToleranceSeconds?: number;
}

const MAX_TOKEN_CHARS = 8192;

type Failure = { ok: false; reason: LogoutTokenReason; detail: string };

function refuse(reason: LogoutTokenReason, detail: string): Failure {
  return { ok: false, reason, detail };
}

function reasonFor(kind: JwtFailureKind): LogoutTokenReason {
  return kind === 'unavailable' ? 'idp-unavailable' : `logout-token-${kind}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates a Back-Channel Logout token and records its jti; never throws. */
export async function verifyLogoutToken(token: string, opts: LogoutTokenOptions): Promise<LogoutTokenResult> {
  try {
    const algorithms = new Set(opts.algorithms.filter((alg) => ASYMMETRIC_ALGORITHMS.has(alg)));
    const checked = precheckJws(token, algorithms, MAX_TOKEN_CHARS);
    if (!checked.ok) return refuse(reasonFor(checked.failure.kind), checked.failure.detail);
    // Explicit typing (§2.4) keeps an ID token or access token from passing as a logout token.
    if (checked.typ !== undefined && checked.typ !== 'logout+jwt') {
      return refuse('logout-token-invalid', `header typ ${JSON.stringify(checked.typ.slice(0, 40))} is not logout+jwt`);
    }

    const now = opts.now ?? Date.now;
    const maxAge = opts.maxAgeSeconds ?? 300;
    const tolerance = opts.clockToleranceSeconds ?? 30;
    let claims: JWTPayload;
    try {
      claims = await verifyJwt(token, guardKeySource(opts.jwks), {
        issuer: opts.issuer,
        audience: opts.audience,
        algorithms: [...algorithms],
        requiredClaims: ['iat', 'jti', 'events'],
        maxTokenAge: maxAge,
        clockTolerance: tolerance,
        currentDate: new Date(now()),
      });
    } catch (err) {
      const failure = classifyJwtError(err);
      return refuse(reasonFor(failure.kind), failure.detail);
    }

    if (typeof claims.jti !== 'string' || claims.jti === '') return refuse('logout-token-invalid', 'jti is not a non-empty string');
    const events = claims.events;
    if (!isObject(events) || !Object.hasOwn(events, BACKCHANNEL_LOGOUT_EVENT)) return refuse('logout-token-invalid', 'events has no back-channel logout event');
    if (!isObject(events[BACKCHANNEL_LOGOUT_EVENT])) return refuse('logout-token-invalid', 'the back-channel logout event is not a JSON object');
    // A nonce marks an ID token; the spec forbids it so one can never be replayed as a logout.
    if (Object.hasOwn(claims, 'nonce')) return refuse('logout-token-invalid', 'logout tokens must not carry a nonce');
    const sub = claims.sub;
    const sid = claims.sid;
    if (sub !== undefined && (typeof sub !== 'string' || sub === '')) return refuse('logout-token-invalid', 'sub is not a non-empty string');
    if (sid !== undefined && (typeof sid !== 'string' || sid === '')) return refuse('logout-token-invalid', 'sid is not a non-empty string');
    if (sub === undefined && sid === undefined) return refuse('logout-token-invalid', 'neither sub nor sid is present');

    // Remembered for as long as the token could still pass the age check anywhere.
    const ttlMs = (maxAge + 2 * tolerance) * 1000;
    let first: boolean;
    try {
      first = await opts.store.add(`logout-jti:${opts.issuer}:${claims.jti}`, 1, ttlMs);
    } catch (err) {
      return refuse('store-unavailable', `could not record the logout token: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!first) return refuse('logout-token-replayed', 'this logout token was already used');

    const result: { ok: true; sub?: string; sid?: string; jti: string } = { ok: true, jti: claims.jti };
    if (typeof sub === 'string') result.sub = sub;
    if (typeof sid === 'string') result.sid = sid;
    return result;
  } catch (err) {
    return refuse('logout-token-invalid', err instanceof Error ? `verification failed: ${err.message}` : 'verification failed');
  }
}

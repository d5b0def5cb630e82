import { createLocalJWKSet, errors, type JWK, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import { LRUCache } from 'lru-cache';
import { classifyJwtError, precheckJws, verifyJwt } from '../../proxy/identity/bearer.js';
import type { Logger } from '../../proxy/logger.js';
import type { DeviceProblem } from '../../proxy/policy/context.js';
import type { Store } from '../../proxy/store/store.js';
import { DEFAULT_POSTURE_TYP, POSTURE_ALGORITHMS } from './config.js';

/*
 * Device posture assertions: short-lived JWTs in which the MDM/EDR vouches for a device
 * (`sub`, its device id) and says whether it is managed and compliant and when it was
 * observed. The format:
 *
 *   header   { alg: ES256 (pinned list), typ: "device-posture+jwt", kid? }
 *   claims   iss, aud, sub, jti, iat, exp, nbf?, observed_at (epoch s), managed, compliant,
 *            os?, disk_encryption?
 *
 * `typ` is required and checked (RFC 8725 3.11 explicit typing): a posture connector is
 * written for wardgate, so it can say what it issues, and no other JWT from the same issuer
 * and audience (an ID or access token) can pass for an assertion.
 *
 * An assertion is a bearer credential: whoever holds the header value can present it. So its
 * jti is bound to the first signed-in user who presents it (store.add, across processes and
 * replicas) and the same assertion under another user is refused as replayed. A request
 * without a signed-in identity has nothing to bind to and is not checked; such requests are
 * refused or sent to sign in before their device matters.
 *
 * Failures map to DeviceProblem codes: bad signature, unknown key, refused alg (none, HS*,
 * anything unpinned) -> posture-signature-invalid; exp passed or observed_at older than maxAge
 * -> posture-expired; anything else (malformed, oversize, wrong typ, issuer or audience,
 * missing or mistyped claims) -> posture-invalid.
 */

export type PostureProblem = Extract<DeviceProblem, 'posture-invalid' | 'posture-signature-invalid' | 'posture-expired' | 'posture-replayed'>;

/** What a verified assertion says, with times in epoch ms. Shared from the cache, so frozen. */
export interface PostureClaims {
  readonly deviceId: string;
  readonly managed: boolean;
  readonly compliant: boolean;
  readonly observedAt: number;
  readonly os: string | undefined;
  readonly diskEncrypted: boolean | undefined;
  readonly jti: string;
  /** The last moment the assertion is accepted (exp, observed_at + maxAge; with tolerance). */
  readonly acceptUntil: number;
}

export type PostureOutcome =
  | { ok: true; posture: PostureClaims }
  | { ok: false; problem: PostureProblem; detail: string };

export interface PostureVerifierOptions {
  issuer: string;
  audience: string;
  /** Public keys (PEM ones have no kid); see `keyResolver`. */
  keys: readonly JWK[];
  /** Pinned algorithms; default [ES256]. Public-key algorithms only. */
  algorithms?: readonly string[];
  /** The `typ` header required; default device-posture+jwt. */
  typ?: string;
  /** observed_at no older than this; default 15 minutes. */
  maxAgeMs?: number;
  /** Default 30 s. */
  clockToleranceMs?: number;
  /** Holds the jti bindings (replay guard) that every process shares. */
  store: Store;
  logger?: Logger;
  /** Epoch ms; default Date.now. */
  now?: () => number;
  /** Verified assertions and bindings kept; default 10,000. */
  cacheSize?: number;
  /** How long a refused assertion is answered from memory; default 10 s. */
  negativeCacheMs?: number;
  /** Default 8192. */
  maxTokenChars?: number;
}

interface Cached {
  outcome: PostureOutcome;
  until: number;
}

interface Binding {
  ok: boolean;
  until: number;
}

/** The store key of an assertion's binding to its first user. */
export const bindingKey = (jti: string): string => `posture-jti:${jti}`;

const MAX_TEXT = 256;
const CONTROL = /[\u0000-\u001f\u007f]/;

function fail(problem: PostureProblem, detail: string): { ok: false; problem: PostureProblem; detail: string } {
  return { ok: false, problem, detail };
}

/**
 * Keys with a kid serve tokens naming that kid; keys without one (every PEM key) serve any
 * token of a fitting alg, whatever kid it names (the MDM's kids are not known for PEM keys).
 * When several fit, verifyJwt tries each.
 */
export function keyResolver(keys: readonly JWK[]): JWTVerifyGetKey {
  const all = createLocalJWKSet({ keys: [...keys] });
  const unnamed = keys.filter((key) => key.kid === undefined);
  const anyKid = unnamed.length > 0 ? createLocalJWKSet({ keys: unnamed }) : undefined;
  return async (header, token) => {
    try {
      return await all(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey) || header.kid === undefined || !anyKid) throw err;
      const { kid: _named, ...rest } = header;
      return anyKid(rest, { ...token, header: rest });
    }
  };
}

function problemOf(err: unknown): { problem: PostureProblem; detail: string; notYet: boolean } {
  if (err instanceof errors.JWSSignatureVerificationFailed) return { problem: 'posture-signature-invalid', detail: 'signature does not verify', notYet: false };
  const failure = classifyJwtError(err);
  const notYet = failure.notYet === true;
  switch (failure.kind) {
    case 'expired': return { problem: 'posture-expired', detail: failure.detail, notYet };
    case 'algorithm':
    case 'unknown-key': return { problem: 'posture-signature-invalid', detail: failure.detail, notYet };
    default: return { problem: 'posture-invalid', detail: failure.detail, notYet };
  }
}

function text(value: unknown): value is string {
  return typeof value === 'string' && value !== '' && value.length <= MAX_TEXT && !CONTROL.test(value);
}

export class PostureVerifier {
  readonly #getKey: JWTVerifyGetKey;
  readonly #algorithms: ReadonlySet<string>;
  readonly #typ: string;
  readonly #verifyOptions: Omit<JWTVerifyOptions, 'currentDate'>;
  readonly #maxAgeMs: number;
  readonly #toleranceMs: number;
  readonly #store: Store;
  readonly #logger: Logger | undefined;
  readonly #now: () => number;
  readonly #negativeMs: number;
  readonly #maxTokenChars: number;
  readonly #verified: LRUCache<string, Cached>;
  readonly #refused: LRUCache<string, Cached>;
  readonly #bindings: LRUCache<string, Binding>;
  readonly #inflight = new Map<string, Promise<PostureOutcome>>();
  readonly #binding = new Map<string, Promise<boolean>>();

  constructor(options: PostureVerifierOptions) {
    const algorithms = options.algorithms ?? ['ES256'];
    if (algorithms.length === 0) throw new TypeError('posture algorithms must not be empty');
    for (const alg of algorithms) {
      if (!(POSTURE_ALGORITHMS as readonly string[]).includes(alg)) throw new TypeError(`posture algorithm ${JSON.stringify(alg)} is not a public-key algorithm`);
    }
    if (options.keys.length === 0) throw new TypeError('posture keys must not be empty');
    this.#getKey = keyResolver(options.keys);
    this.#algorithms = new Set(algorithms);
    this.#typ = (options.typ ?? DEFAULT_POSTURE_TYP).toLowerCase().replace(/^application\//, '');
    this.#maxAgeMs = options.maxAgeMs ?? 15 * 60_000;
    this.#toleranceMs = options.clockToleranceMs ?? 30_000;
    this.#verifyOptions = {
      issuer: options.issuer,
      audience: options.audience,
      algorithms: [...algorithms],
      clockTolerance: this.#toleranceMs / 1000,
      requiredClaims: ['exp', 'iat', 'sub', 'jti'],
    };
    this.#store = options.store;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    this.#negativeMs = options.negativeCacheMs ?? 10_000;
    this.#maxTokenChars = options.maxTokenChars ?? 8192;
    const size = options.cacheSize ?? 10_000;
    this.#verified = new LRUCache({ max: size });
    this.#refused = new LRUCache({ max: Math.max(100, Math.ceil(size / 10)) });
    this.#bindings = new LRUCache({ max: size });
  }

  /**
   * Verifies `token` and, for a signed-in `sub`, its binding to that user. Answers
   * synchronously when everything needed is in memory (a cached verification and binding,
   * or a token refused by the shape checks); a promise only when a signature must be checked
   * or the store asked. Rejects only when the store fails (StoreUnavailableError).
   */
  check(token: string, sub: string | undefined): PostureOutcome | Promise<PostureOutcome> {
    const verified = this.verify(token);
    if (verified instanceof Promise) return verified.then((outcome) => this.#bound(outcome, sub));
    return this.#bound(verified, sub);
  }

  /** Signature, header and claims, without the replay binding. Never rejects. */
  verify(token: string): PostureOutcome | Promise<PostureOutcome> {
    if (typeof token !== 'string' || token.length === 0) return fail('posture-invalid', 'no assertion');
    if (token.length > this.#maxTokenChars) return fail('posture-invalid', `assertion longer than ${this.#maxTokenChars} characters`);
    const now = this.#now();
    // Keyed by the token itself: at most 8 KiB each, and hashing would cost more than the hit.
    const hit = this.#verified.get(token) ?? this.#refused.get(token);
    if (hit) {
      if (now < hit.until) return hit.outcome;
      this.#verified.delete(token);
      this.#refused.delete(token);
    }
    const checked = precheckJws(token, this.#algorithms, this.#maxTokenChars);
    if (!checked.ok) return fail(checked.failure.kind === 'algorithm' ? 'posture-signature-invalid' : 'posture-invalid', checked.failure.detail);
    if (checked.typ !== this.#typ) {
      return fail('posture-invalid', checked.typ === undefined ? `header has no typ (expected ${this.#typ})` : `header typ ${JSON.stringify(checked.typ.slice(0, 40))} is not ${this.#typ}`);
    }
    const pending = this.#inflight.get(token);
    if (pending) return pending;
    const run = this.#verifyUncached(token).finally(() => this.#inflight.delete(token));
    this.#inflight.set(token, run);
    return run;
  }

  async #verifyUncached(token: string): Promise<PostureOutcome> {
    const started = this.#now();
    let claims: JWTPayload;
    try {
      claims = await verifyJwt(token, this.#getKey, { ...this.#verifyOptions, currentDate: new Date(started) });
    } catch (err) {
      const { problem, detail, notYet } = problemOf(err);
      const outcome = fail(problem, detail);
      if (!notYet) this.#refuse(token, outcome);
      return outcome;
    }
    // Not cached: an assertion from a skewed clock may pass a moment later.
    const early = this.#early(claims, started);
    if (early) return early;
    const outcome = this.#claims(claims, started);
    if (!outcome.ok) {
      this.#refuse(token, outcome);
      return outcome;
    }
    // Cached until exp or until the observation is too old, whichever is first; the
    // tolerance stretches a fresh check, never the cache.
    const until = outcome.posture.acceptUntil - this.#toleranceMs;
    if (this.#now() < until) this.#verified.set(token, { outcome, until });
    return outcome;
  }

  #refuse(token: string, outcome: PostureOutcome): void {
    if (this.#negativeMs > 0) this.#refused.set(token, { outcome, until: this.#now() + this.#negativeMs });
  }

  /**
   * iat or observed_at in the future, beyond the tolerance: not believed now (jose checks iat
   * against the clock only with maxTokenAge), though a later check may pass.
   */
  #early(claims: JWTPayload, now: number): PostureOutcome | undefined {
    const limit = now + this.#toleranceMs;
    if (typeof claims.iat === 'number' && claims.iat * 1000 > limit) return fail('posture-invalid', 'iat is in the future');
    const observed = claims.observed_at;
    if (typeof observed === 'number' && observed * 1000 > limit) return fail('posture-invalid', 'observed_at is in the future');
    return undefined;
  }

  /** The claims wardgate needs, checked for type and time after the signature passed. */
  #claims(claims: JWTPayload, now: number): PostureOutcome {
    const { sub, jti, managed, compliant, observed_at: observed, os, disk_encryption: disk, iat, exp } = claims;
    // (iat and observed_at in the future were refused by #early.)
    if (!text(sub)) return fail('posture-invalid', 'sub (the device id) is not a non-empty string');
    if (!text(jti)) return fail('posture-invalid', 'jti is not a non-empty string');
    if (typeof managed !== 'boolean') return fail('posture-invalid', 'managed is not true or false');
    if (typeof compliant !== 'boolean') return fail('posture-invalid', 'compliant is not true or false');
    if (typeof observed !== 'number' || !Number.isFinite(observed)) return fail('posture-invalid', 'observed_at is not a number (epoch seconds)');
    if (os !== undefined && !text(os)) return fail('posture-invalid', 'os is not a string');
    if (disk !== undefined && typeof disk !== 'boolean') return fail('posture-invalid', 'disk_encryption is not true or false');
    if (typeof exp !== 'number' || typeof iat !== 'number') return fail('posture-invalid', 'exp or iat is not a number');
    const tolerance = this.#toleranceMs;
    const observedAt = observed * 1000;
    if (now - observedAt > this.#maxAgeMs + tolerance) {
      return fail('posture-expired', `the device was observed ${Math.round((now - observedAt) / 1000)} s ago, longer than maxAge ${this.#maxAgeMs / 1000} s`);
    }
    const posture: PostureClaims = Object.freeze({
      deviceId: sub,
      managed,
      compliant,
      observedAt,
      os: os as string | undefined,
      diskEncrypted: disk as boolean | undefined,
      jti,
      acceptUntil: Math.min(exp * 1000, observedAt + this.#maxAgeMs) + tolerance,
    });
    return Object.freeze({ ok: true as const, posture });
  }

  #bound(outcome: PostureOutcome, sub: string | undefined): PostureOutcome | Promise<PostureOutcome> {
    if (!outcome.ok || sub === undefined) return outcome;
    const { jti, acceptUntil } = outcome.posture;
    const key = `${jti}\n${sub}`;
    const now = this.#now();
    const hit = this.#bindings.get(key);
    if (hit) {
      if (now < hit.until) return hit.ok ? outcome : replayed();
      this.#bindings.delete(key);
    }
    let pending = this.#binding.get(key);
    if (!pending) {
      pending = this.#bind(jti, sub, acceptUntil).finally(() => this.#binding.delete(key));
      this.#binding.set(key, pending);
    }
    return pending.then((ok) => (ok ? outcome : replayed()));
  }

  /** True when `jti` is (now) bound to `sub`. The store is asked once per (jti, sub). */
  async #bind(jti: string, sub: string, acceptUntil: number): Promise<boolean> {
    const key = bindingKey(jti);
    // The binding lasts as long as the assertion can be accepted anywhere.
    const ttl = Math.max(1_000, acceptUntil - this.#now());
    let holder: string | undefined;
    let ok = false;
    // Twice: a binding may expire between a refused add and the read that follows it.
    for (let attempt = 0; attempt < 2; attempt++) {
      if (await this.#store.add(key, sub, ttl)) {
        ok = true;
        break;
      }
      holder = await this.#store.get<string>(key);
      if (holder !== undefined) {
        ok = holder === sub;
        break;
      }
    }
    this.#bindings.set(`${jti}\n${sub}`, { ok, until: acceptUntil });
    if (!ok) this.#logger?.warn({ jti, sub, boundTo: holder }, 'device posture assertion replayed by another user');
    return ok;
  }
}

function replayed(): PostureOutcome {
  return fail('posture-replayed', 'the assertion was first presented by another user');
}

import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { JWK } from 'jose';
import { z } from 'zod';
import { durationSchema } from '../../config/duration.js';
import { HTTP_TOKEN } from '../../config/http-token.js';
import { readInventorySync, type InventoryData } from './inventory.js';

/*
 * The `devices:` section of the config: where devices are recognised from (a device
 * inventory matched against mTLS client certificates, signed posture assertions from the
 * MDM/EDR, or both) and how fresh their posture must be. Files named here (the inventory,
 * the posture keys) are read and checked at load, so a bad one refuses the config with the
 * place of the fault, never a running wardgate.
 *
 *   devices:
 *     inventory: devices.yaml          # YAML or JSON; see inventory.ts
 *     certificates: { match: spki }    # or san
 *     maxObservedAge: 24h              # inventory entries observed longer ago are stale
 *     posture:
 *       header: x-device-posture
 *       issuer: https://mdm.hospital.example
 *       audience: wardgate
 *       keys: [mdm-posture.pub.pem]    # PEM public keys (SPKI) or JWKS JSON files
 *       algorithms: [ES256]
 *       maxAge: 15m                    # observed_at no older than this
 *       clockTolerance: 30s
 *
 * Inventory entries without observedAt: not stale while maxObservedAge is left at its
 * default (a hand-kept list of kiosks has no observation times), stale once maxObservedAge
 * is set explicitly (an operator who asks for freshness gets it: age unknown is not young).
 */

const DAY_MS = 24 * 3_600_000;

/** Public-key JWS algorithms only: HS* would make a published key a signing secret, and none is no signature. */
export const POSTURE_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
export type PostureAlgorithm = (typeof POSTURE_ALGORITHMS)[number];

/** The `typ` header a posture assertion must carry unless the config names another. */
export const DEFAULT_POSTURE_TYP = 'device-posture+jwt';

const EC_CURVES: Readonly<Record<string, string>> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };

/** Whether `jwk` can verify a signature made with `alg` (jose's own selection rules). */
export function keyFitsAlgorithm(jwk: JWK, alg: string): boolean {
  if (jwk.alg !== undefined && jwk.alg !== alg) return false;
  if (jwk.use !== undefined && jwk.use !== 'sig') return false;
  if (jwk.key_ops !== undefined && !jwk.key_ops.includes('verify')) return false;
  if (alg.startsWith('RS') || alg.startsWith('PS')) return jwk.kty === 'RSA';
  if (alg.startsWith('ES')) return jwk.kty === 'EC' && jwk.crv === EC_CURVES[alg];
  return jwk.kty === 'OKP' && jwk.crv === 'Ed25519';
}

/** A verification key and where it came from, for messages. */
export interface PostureKey {
  readonly jwk: JWK;
  readonly file: string;
  /** The key's place in a JWKS file (whose keys for other algorithms are passed over); undefined for PEM. */
  readonly index: number | undefined;
}

function describe(jwk: JWK): string {
  return jwk.kty === 'RSA' ? 'an RSA key' : jwk.crv ? `an ${jwk.kty} ${jwk.crv} key` : `a ${String(jwk.kty)} key`;
}

/** The public members of a JWK; anything else (x5c, private members, extensions) is left behind. */
const PUBLIC_MEMBERS = ['kty', 'kid', 'alg', 'use', 'key_ops', 'crv', 'x', 'y', 'n', 'e'] as const;
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

function checkRsaSize(key: KeyObject): string | undefined {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  return key.asymmetricKeyType === 'rsa' && bits !== undefined && bits < 2048 ? `an RSA key of ${bits} bits (at least 2048 expected)` : undefined;
}

type KeyRead = { ok: true; keys: PostureKey[] } | { ok: false; message: string };

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

function readPemKeys(file: string, content: string): KeyRead {
  const keys: PostureKey[] = [];
  for (const match of content.matchAll(PEM_BLOCK)) {
    const label = match[1]!;
    if (label.includes('PRIVATE KEY')) return { ok: false, message: `${file} holds a private key; give wardgate only the public key (openssl pkey -in key.pem -pubout)` };
    if (label === 'CERTIFICATE') return { ok: false, message: `${file} holds a certificate; give wardgate its public key (openssl x509 -in cert.pem -pubkey -noout)` };
    if (!label.endsWith('PUBLIC KEY')) continue;
    let key: KeyObject;
    try {
      key = createPublicKey(match[0]);
    } catch (err) {
      return { ok: false, message: `${file} holds a PEM public key that cannot be read: ${err instanceof Error ? err.message : String(err)}` };
    }
    const small = checkRsaSize(key);
    if (small) return { ok: false, message: `${file} holds ${small}` };
    keys.push({ jwk: key.export({ format: 'jwk' }) as JWK, file, index: undefined });
  }
  if (keys.length === 0) return { ok: false, message: `${file} holds no PEM public key (-----BEGIN PUBLIC KEY-----)` };
  return { ok: true, keys };
}

function readJwks(file: string, content: string): KeyRead {
  let set: unknown;
  try {
    set = JSON.parse(content);
  } catch (err) {
    return { ok: false, message: `${file} is neither a PEM public key nor JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  const list = typeof set === 'object' && set !== null ? (set as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(list) || list.length === 0) return { ok: false, message: `${file}: expected a JWKS, {"keys": [...]} with at least one key` };
  const keys: PostureKey[] = [];
  for (const [i, item] of list.entries()) {
    const where = `${file}: keys[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return { ok: false, message: `${where}: expected a JSON Web Key object` };
    const fields = item as Record<string, unknown>;
    if (fields.kty === 'oct') return { ok: false, message: `${where}: a symmetric key (kty oct); posture assertions are verified with public keys only` };
    const secret = PRIVATE_MEMBERS.find((name) => fields[name] !== undefined);
    if (secret) return { ok: false, message: `${where}: holds private key material (${secret}); publish only the public key` };
    if (fields.kid !== undefined && (typeof fields.kid !== 'string' || fields.kid === '')) return { ok: false, message: `${where}: kid must be a non-empty string` };
    if (fields.alg !== undefined && typeof fields.alg !== 'string') return { ok: false, message: `${where}: alg must be a string` };
    if (fields.use !== undefined && typeof fields.use !== 'string') return { ok: false, message: `${where}: use must be a string` };
    if (fields.key_ops !== undefined && (!Array.isArray(fields.key_ops) || fields.key_ops.some((op) => typeof op !== 'string'))) {
      return { ok: false, message: `${where}: key_ops must be a list of strings` };
    }
    let key: KeyObject;
    try {
      key = createPublicKey({ key: fields as JsonWebKey, format: 'jwk' });
    } catch (err) {
      return { ok: false, message: `${where}: not a usable public key: ${err instanceof Error ? err.message : String(err)}` };
    }
    const small = checkRsaSize(key);
    if (small) return { ok: false, message: `${where}: ${small}` };
    const jwk: Record<string, unknown> = {};
    for (const name of PUBLIC_MEMBERS) if (fields[name] !== undefined) jwk[name] = fields[name];
    keys.push({ jwk: jwk as JWK, file, index: i });
  }
  return { ok: true, keys };
}

/** A key file: PEM public keys, or a JWKS as JSON. */
function keyFile(baseDir: string) {
  return z.string({ error: 'expected the path of a PEM public key or JWKS file' }).transform((text, ctx): PostureKey[] => {
    const file = resolve(baseDir, text);
    let content: string;
    try {
      content = readFileSync(file, 'utf8');
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `cannot read posture key file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` });
      return z.NEVER;
    }
    const read = content.includes('-----BEGIN ') ? readPemKeys(file, content) : readJwks(file, content);
    if (!read.ok) {
      ctx.addIssue({ code: 'custom', message: read.message });
      return z.NEVER;
    }
    return read.keys;
  });
}

const RESERVED_HEADERS = new Set([
  'host', 'authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'content-length', 'content-type',
  'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'expect', 'forwarded',
]);

export function devicesSchema(baseDir: string) {
  const posture = z.strictObject({
    /** The request header that carries the assertion. */
    header: z.string({ error: 'expected an HTTP header name such as x-device-posture' })
      .regex(HTTP_TOKEN, { error: (issue) => `expected an HTTP header name such as x-device-posture, got "${String(issue.input)}"` })
      .transform((name) => name.toLowerCase())
      .refine((name) => !RESERVED_HEADERS.has(name) && !name.startsWith('x-wardgate-') && !name.startsWith('x-forwarded-'), {
        error: (issue) => `${String(issue.input)} is a header HTTP or wardgate itself uses; choose another, such as x-device-posture`,
      })
      .default('x-device-posture'),
    /** The MDM/EDR that signs assertions: their `iss`. */
    issuer: z.string({ error: 'expected the issuer (iss) of posture assertions, such as https://mdm.hospital.example' }).min(1),
    audience: z.string({ error: 'expected the audience (aud) posture assertions are issued for' }).min(1).default('wardgate'),
    /** The `typ` header assertions must carry (explicit typing, RFC 8725 3.11). */
    typ: z.string({ error: 'expected a JWT typ such as device-posture+jwt' }).min(1)
      .transform((typ) => typ.toLowerCase().replace(/^application\//, ''))
      .default(DEFAULT_POSTURE_TYP),
    keys: z.array(keyFile(baseDir), { error: 'expected a list of PEM public key or JWKS files' })
      .min(1, { error: 'expected at least one key file' })
      .transform((files) => files.flat()),
    algorithms: z.array(z.enum(POSTURE_ALGORITHMS, {
      error: (issue) => `expected a public-key algorithm (${POSTURE_ALGORITHMS.join(', ')}), got ${JSON.stringify(issue.input)}`
        + (typeof issue.input === 'string' && /^hs/i.test(issue.input) ? ': HMAC would make the published key a signing secret' : ''),
    })).min(1, { error: 'expected at least one algorithm' }).default(['ES256']),
    /** How long ago the MDM may have observed the device (observed_at). */
    maxAge: durationSchema().default(15 * 60_000),
    clockTolerance: durationSchema({ allowZero: true }).default(30_000),
  }).superRefine((config, ctx) => {
    const fits = (key: PostureKey): boolean => config.algorithms.some((alg) => keyFitsAlgorithm(key.jwk, alg));
    // A PEM key that no pinned algorithm can use is a mistake; a JWKS may also list keys
    // for other uses, but at least one of its keys must serve.
    const algorithms = config.algorithms.join(', ');
    for (const key of config.keys) {
      if (key.index === undefined && !fits(key)) {
        ctx.addIssue({ code: 'custom', path: ['keys'], message: `${key.file} holds ${describe(key.jwk)}, which none of the algorithms ${algorithms} can use` });
      }
    }
    const sets = new Set(config.keys.filter((key) => key.index !== undefined).map((key) => key.file));
    for (const set of sets) {
      if (!config.keys.some((key) => key.index !== undefined && key.file === set && fits(key))) {
        ctx.addIssue({ code: 'custom', path: ['keys'], message: `${set} holds no signing key that the algorithms ${algorithms} can use` });
      }
    }
  });

  const inventory = z.string({ error: 'expected the path of a device inventory file (YAML or JSON)' }).transform((text, ctx) => {
    const file = resolve(baseDir, text);
    const read = readInventorySync(file);
    if (!read.ok) {
      for (const message of read.errors) ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }
    return { file, initial: read.data };
  });

  return z.strictObject({
    inventory: inventory.optional(),
    certificates: z.strictObject({
      /** Match a certificate to an inventory entry by its key (spki) or by its subjectAltName. */
      match: z.enum(['spki', 'san'], { error: 'expected spki or san' }).default('spki'),
    }).default({ match: 'spki' }),
    posture: posture.optional(),
    maxObservedAge: durationSchema().optional(),
  }, { error: (issue) => (issue.code === 'invalid_type' ? 'expected a mapping with inventory and/or posture' : undefined) }).superRefine((config, ctx) => {
    if (config.inventory === undefined && config.posture === undefined) {
      ctx.addIssue({ code: 'custom', message: 'expected inventory, posture or both: how else would a device be recognised?' });
    }
    if (config.inventory === undefined && config.maxObservedAge !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['maxObservedAge'], message: 'maxObservedAge applies to inventory entries; there is no inventory (posture assertions have posture.maxAge)' });
    }
  }).transform(({ maxObservedAge, ...rest }) => ({
    ...rest,
    /** Inventory entries observed longer ago than this are stale, epoch ms. */
    maxObservedAge: maxObservedAge ?? DAY_MS,
    /** Entries without observedAt count as stale: set when maxObservedAge was given explicitly. */
    undatedStale: maxObservedAge !== undefined,
  }));
}

export type DevicesConfig = z.output<ReturnType<typeof devicesSchema>>;
export type PostureConfig = NonNullable<DevicesConfig['posture']>;
export type { InventoryData };

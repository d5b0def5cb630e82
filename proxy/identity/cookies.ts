import { createCipheriv, createDecipheriv, createHash, createSecretKey, randomFillSync, type KeyObject } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { WardgateError } from '../errors.js';

/*
 * wardgate's browser cookies: sealing (AES-256-GCM with key rotation), parsing the Cookie
 * header, writing Set-Cookie values, and removing wardgate's own cookies before a request
 * goes upstream. Opening runs on every browser request: a browser sends the same value
 * each time, so values that opened are remembered (setting up an AES-GCM decipher costs
 * ~10 µs), and anything malformed is refused before any cipher work.
 */

/** Every wardgate cookie name starts with this; upstreams never see cookies that do. */
export const WARDGATE_COOKIE_PREFIX = '__Host-wardgate';

export function isWardgateCookie(name: string): boolean {
  return name.startsWith(WARDGATE_COOKIE_PREFIX);
}

/** A cookie key list that cannot be used (config time). */
export class CookieKeyError extends WardgateError {
  constructor(message: string) {
    super('cookie-key-invalid', message);
  }
}

/** wardgate itself asked for a cookie it must not write (a bug, not client input). */
export class CookieValueError extends WardgateError {
  constructor(message: string) {
    super('cookie-value-invalid', message);
  }
}

// Sealed layout: version(1) | kid(4) | iv(12) | AES-GCM(expiresAt(6) | payload) | tag(16).
const VERSION = 1;
const KID_BYTES = 4;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const EXPIRY_BYTES = 6; // 48-bit epoch ms reaches the year 10889
const HEADER_BYTES = 1 + KID_BYTES + IV_BYTES;
const MIN_SEALED_BYTES = HEADER_BYTES + EXPIRY_BYTES + TAG_BYTES;
const MAX_EXPIRY = 2 ** 48 - 1;
/** Browsers keep at most ~4096 bytes per cookie, so anything longer is not one of ours. */
const MAX_SEALED_CHARS = 4096;

interface SealKey {
  kid: number;
  key: KeyObject;
}

interface Opened {
  name: string;
  payload: Buffer;
  expiresAt: number;
}

export interface CookieSealerOptions {
  /** Epoch milliseconds; default Date.now. */
  now?: () => number;
  /** Opened values remembered; default 10,000, 0 to turn off. */
  cacheSize?: number;
}

/**
 * Seals and opens cookie values. The first key seals; every key opens, so a new key can be
 * prepended and the old one removed once cookies sealed with it have expired.
 */
export class CookieSealer {
  private readonly sealKey: SealKey;
  private readonly byKid = new Map<number, KeyObject>();
  private readonly now: () => number;
  /** Sealed value -> what it opened to. Only authentic values get in, so junk cannot fill it. */
  private readonly opened: LRUCache<string, Opened> | undefined;
  private ivPool = Buffer.alloc(0);
  private ivAt = 0;

  constructor(keys: readonly Buffer[], options: CookieSealerOptions = {}) {
    if (!Array.isArray(keys) || keys.length === 0) throw new CookieKeyError('at least one cookie key is required');
    const seen = new Map<number, Buffer>();
    const ordered: SealKey[] = [];
    keys.forEach((key, index) => {
      if (!Buffer.isBuffer(key) || key.length !== 32) {
        throw new CookieKeyError(`cookie key ${index + 1} must be exactly 32 bytes (got ${Buffer.isBuffer(key) ? key.length : typeof key})`);
      }
      // A key of one repeated byte is almost surely a zero-filled placeholder, not a secret.
      if (key.every((byte) => byte === key[0])) throw new CookieKeyError(`cookie key ${index + 1} is a single repeated byte; generate a random key`);
      const kid = createHash('sha256').update(key).digest().readUInt32BE(0);
      const earlier = seen.get(kid);
      if (earlier) {
        if (earlier.equals(key)) return; // listed twice: harmless
        throw new CookieKeyError(`cookie keys ${index + 1} and an earlier one share a key id; generate a new key`);
      }
      seen.set(kid, key);
      const entry = { kid, key: createSecretKey(Buffer.from(key)) };
      ordered.push(entry);
      this.byKid.set(kid, entry.key);
    });
    this.sealKey = ordered[0]!;
    this.now = options.now ?? Date.now;
    const cacheSize = options.cacheSize ?? 10_000;
    this.opened = cacheSize > 0 ? new LRUCache({ max: cacheSize }) : undefined;
  }

  /**
   * Seals `payload` for the cookie called `name`, valid until `expiresAtMs` (epoch ms).
   * The name is authenticated, so the value opens under no other cookie name.
   */
  seal(name: string, payload: string | Buffer, expiresAtMs: number): string {
    if (!Number.isSafeInteger(expiresAtMs) || expiresAtMs < 0 || expiresAtMs > MAX_EXPIRY) {
      throw new CookieValueError(`cookie expiry must be a whole epoch-millisecond time, got ${String(expiresAtMs)}`);
    }
    const data = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    const plain = Buffer.allocUnsafe(EXPIRY_BYTES + data.length);
    plain.writeUIntBE(expiresAtMs, 0, EXPIRY_BYTES);
    data.copy(plain, EXPIRY_BYTES);

    const out = Buffer.allocUnsafe(HEADER_BYTES + plain.length + TAG_BYTES);
    out[0] = VERSION;
    out.writeUInt32BE(this.sealKey.kid, 1);
    const iv = this.nextIv(out.subarray(1 + KID_BYTES, HEADER_BYTES));
    const cipher = createCipheriv('aes-256-gcm', this.sealKey.key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(name, 'utf8'));
    let at = HEADER_BYTES;
    at += cipher.update(plain).copy(out, at);
    at += cipher.final().copy(out, at);
    cipher.getAuthTag().copy(out, at);
    return out.toString('base64url');
  }

  /*
   * Random 96-bit IVs (safe for ~2^32 seals per key, far more than a cookie key makes),
   * drawn from a pool: a separate 12-byte draw from OpenSSL per seal costs several µs.
   */
  private nextIv(into: Buffer): Buffer {
    if (this.ivAt + IV_BYTES > this.ivPool.length) {
      this.ivPool = randomFillSync(Buffer.allocUnsafe(IV_BYTES * 256));
      this.ivAt = 0;
    }
    this.ivPool.copy(into, 0, this.ivAt, this.ivAt + IV_BYTES);
    this.ivAt += IV_BYTES;
    return into;
  }

  /** The payload sealed under `name`, or undefined for anything not sealed by us, or expired. Never throws. */
  open(name: string, value: string): Buffer | undefined {
    return this.unseal(name, value)?.payload;
  }

  /** Like `open`, with the sealed expiry (epoch ms), e.g. to decide when to re-issue the cookie. */
  unseal(name: string, value: string): { payload: Buffer; expiresAt: number } | undefined {
    if (typeof name !== 'string' || typeof value !== 'string') return undefined;
    const known = this.opened?.get(value);
    if (known && known.name === name) {
      if (!(this.now() < known.expiresAt)) return undefined;
      // A copy: callers may write into what they get, the cache must not change.
      return { payload: Buffer.from(known.payload), expiresAt: known.expiresAt };
    }
    if (value.length > MAX_SEALED_CHARS || !isCanonicalBase64url(value)) return undefined;
    const raw = Buffer.from(value, 'base64url');
    if (raw.length < MIN_SEALED_BYTES || raw[0] !== VERSION) return undefined;
    const key = this.byKid.get(raw.readUInt32BE(1));
    if (!key) return undefined;
    let plain: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(1 + KID_BYTES, HEADER_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(name, 'utf8'));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      const body = decipher.update(raw.subarray(HEADER_BYTES, raw.length - TAG_BYTES));
      const tail = decipher.final(); // throws when the tag does not match
      plain = tail.length === 0 ? body : Buffer.concat([body, tail]);
    } catch {
      return undefined;
    }
    const expiresAt = plain.readUIntBE(0, EXPIRY_BYTES);
    if (!(this.now() < expiresAt)) return undefined;
    const payload = plain.subarray(EXPIRY_BYTES);
    this.opened?.set(value, { name, payload: Buffer.from(payload), expiresAt });
    return { payload, expiresAt };
  }
}

// Value of each base64url character, -1 for anything else.
const B64URL = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64URL['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.charCodeAt(i)] = i;

/*
 * Buffer.from(..., 'base64url') skips characters it does not know and ignores spare bits
 * in the last character, so several strings decode to the same bytes. Requiring the one
 * canonical spelling makes "any change to the value is refused" hold exactly.
 */
function isCanonicalBase64url(value: string): boolean {
  const length = value.length;
  const rest = length % 4;
  if (length === 0 || rest === 1) return false;
  let last = 0;
  for (let i = 0; i < length; i++) {
    const code = value.charCodeAt(i);
    last = code < 128 ? B64URL[code]! : -1;
    if (last < 0) return false;
  }
  if (rest === 2) return (last & 0x0f) === 0;
  if (rest === 3) return (last & 0x03) === 0;
  return true;
}

// Bounds for parsing: Node's own header limit is 16 KiB, so real headers stay far below.
const MAX_COOKIE_HEADER_CHARS = 64 * 1024;
const MAX_COOKIES = 256;

function isWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

/** `text.slice(start, end)` without surrounding spaces and tabs. */
function trimmed(text: string, start: number, end: number): string {
  while (start < end && isWhitespace(text.charCodeAt(start))) start++;
  while (end > start && isWhitespace(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

/**
 * Cookie header pairs by name (RFC 6265 §5.4 syntax, parsed leniently): the first
 * occurrence of a name wins, pairs without `=` or a name are skipped, one pair of
 * surrounding double quotes is removed from a value, nothing is percent-decoded.
 * Never throws; stops after 64 KiB or 256 cookies.
 */
export function parseCookies(header: string | readonly string[] | undefined): Map<string, string> {
  const out = new Map<string, string>();
  let text: string;
  if (typeof header === 'string') text = header;
  else if (Array.isArray(header)) text = header.filter((part): part is string => typeof part === 'string').join('; ');
  else return out;
  let end = text.length;
  if (end > MAX_COOKIE_HEADER_CHARS) {
    // Only whole pairs: a value cut in half would be a different value.
    end = text.lastIndexOf(';', MAX_COOKIE_HEADER_CHARS);
    if (end < 0) return out;
  }
  let pos = 0;
  let eq = -1;
  while (pos < end && out.size < MAX_COOKIES) {
    let semi = text.indexOf(';', pos);
    if (semi < 0 || semi > end) semi = end;
    // Remember the next '=' across segments so junk without '=' cannot make this quadratic.
    if (eq < pos) {
      eq = text.indexOf('=', pos);
      if (eq < 0) eq = Infinity;
    }
    if (eq < semi) {
      const name = trimmed(text, pos, eq);
      if (name !== '' && !out.has(name)) {
        let value = trimmed(text, eq + 1, semi);
        if (value.length >= 2 && value.charCodeAt(0) === 0x22 && value.charCodeAt(value.length - 1) === 0x22) value = value.slice(1, -1);
        out.set(name, value);
      }
    }
    pos = semi + 1;
  }
  return out;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const COOKIE_OCTETS = /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*$/;

export type SameSite = 'Lax' | 'Strict' | 'None';

export interface CookieOptions {
  /** Lifetime in seconds; without it the cookie ends with the browser session. */
  maxAgeSeconds?: number;
  sameSite?: SameSite;
}

function attributes(sameSite: SameSite | undefined): string {
  const value = sameSite ?? 'Lax';
  if (value !== 'Lax' && value !== 'Strict' && value !== 'None') throw new CookieValueError(`SameSite must be Lax, Strict or None, got ${String(value)}`);
  return `; Path=/; Secure; HttpOnly; SameSite=${value}`;
}

function checkName(name: string): void {
  // __Host- makes the browser refuse the cookie unless Secure, Path=/ and host-only, so
  // no sibling subdomain can plant or overwrite it.
  if (typeof name !== 'string' || !name.startsWith('__Host-') || !TOKEN.test(name)) {
    throw new CookieValueError(`cookie name must be a token starting with __Host-, got ${JSON.stringify(name)}`);
  }
}

/** A Set-Cookie value: `__Host-` name, Secure, HttpOnly, Path=/, no Domain, SameSite=Lax unless asked. */
export function serializeCookie(name: string, value: string, options: CookieOptions = {}): string {
  checkName(name);
  if (typeof value !== 'string' || !COOKIE_OCTETS.test(value)) throw new CookieValueError(`cookie ${name} has characters a cookie value cannot carry`);
  let out = `${name}=${value}`;
  if (options.maxAgeSeconds !== undefined) {
    const seconds = options.maxAgeSeconds;
    if (!Number.isFinite(seconds) || seconds < 0) throw new CookieValueError(`cookie ${name} Max-Age must be a non-negative number, got ${String(seconds)}`);
    out += `; Max-Age=${Math.floor(seconds)}`;
  }
  return out + attributes(options.sameSite);
}

/** A Set-Cookie value that deletes `name` (same attributes, so the browser matches it). */
export function clearCookie(name: string, options: { sameSite?: SameSite } = {}): string {
  checkName(name);
  return `${name}=; Max-Age=0${attributes(options.sameSite)}`;
}

/**
 * The Cookie header without the pairs whose name `isOurs` claims, every other pair kept
 * byte for byte and in order; undefined when nothing else is left. Returns `header`
 * itself when nothing was removed.
 */
export function stripCookies(header: string, isOurs: (name: string) => boolean): string | undefined {
  if (typeof header !== 'string') return undefined;
  const kept: string[] = [];
  let removed = false;
  let pos = 0;
  const length = header.length;
  while (pos <= length) {
    let semi = header.indexOf(';', pos);
    if (semi < 0) semi = length;
    const segment = header.slice(pos, semi);
    const eq = segment.indexOf('=');
    if (eq >= 0 && isOurs(trimmed(segment, 0, eq))) removed = true;
    else kept.push(segment);
    pos = semi + 1;
  }
  if (!removed) return hasContent(header) ? header : undefined;
  const rest = kept.join(';');
  const joined = trimmed(rest, 0, rest.length);
  return hasContent(joined) ? joined : undefined;
}

/** Whether a Cookie header has anything but separators and whitespace. */
function hasContent(header: string): boolean {
  for (let i = 0; i < header.length; i++) {
    const code = header.charCodeAt(i);
    if (code !== 0x3b && !isWhitespace(code)) return true;
  }
  return false;
}

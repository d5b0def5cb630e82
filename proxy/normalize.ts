/*
 * One canonical form of the request before anything looks at it. Routing, policy and the
 * upstream all see the same method, host and path, so an attacker cannot craft a path that
 * one of them reads differently (`/public/..;/admin`, `%2e%2e`, `//admin`, `\admin`).
 * Pure functions: no I/O, no Node request objects.
 */

/** Why a request could not be made canonical; shown to clients, logs and metrics alike. */
export type RefusalReason =
  | 'method-not-allowed'
  | 'target-form'
  | 'foreign-authority'
  | 'host-missing'
  | 'host-invalid'
  | 'host-duplicate'
  | 'credentials-duplicate'
  | 'path-invalid'
  | 'path-encoded-separator'
  | 'path-traversal'
  | 'framing-conflict';

export interface CanonicalRequest {
  method: string;
  /** Lower-cased host without port or trailing dot: the routing key. */
  host: string;
  /** The client's Host header as sent (validated), for upstreams that must see it. */
  authority: string;
  /** Canonical path: dot segments resolved, `//` collapsed, unreserved characters decoded. */
  path: string;
  /**
   * The path with `;params` removed from every segment: what a servlet container resolves.
   * Routing uses it, so `/admin;x/users` is matched as `/admin/users`. Same as `path`
   * when there are no parameters.
   */
  routingPath: string;
  /** Query string including its leading `?`, or empty. Passed through as sent. */
  query: string;
}

export type Normalized = { ok: true; request: CanonicalRequest } | { ok: false; reason: RefusalReason };

class Refusal {
  constructor(readonly reason: RefusalReason) {}
}

const HEX = '0123456789ABCDEF';

// Characters a path may carry literally: RFC 3986 pchar minus '%' plus '/'.
const LITERAL = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/") LITERAL[c.charCodeAt(0)] = 1;
// Unreserved characters are decoded when percent-encoded: `%41` and `A` are the same path.
const UNRESERVED = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~') UNRESERVED[c.charCodeAt(0)] = 1;

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 65 && code <= 70) return code - 55;
  if (code >= 97 && code <= 102) return code - 87;
  return -1;
}

/** True when the path needs no work: the common case, checked in one pass. */
function alreadyCanonical(path: string): boolean {
  if (path.charCodeAt(0) !== 47) return false;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c >= 128 || LITERAL[c] === 0) return false;
    if (c === 47) {
      const next = path.charCodeAt(i + 1);
      // `//`, or a segment starting with '.' or ';': the slow path decides those.
      if (next === 47 || next === 46 || next === 59) return false;
    }
  }
  return true;
}

/** Decodes unreserved escapes, upper-cases the rest, encodes stray characters. */
function canonicalEscapes(path: string): string {
  let out = '';
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 37) {
      const hi = hexValue(path.charCodeAt(i + 1));
      const lo = hexValue(path.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) throw new Refusal('path-invalid');
      const byte = hi * 16 + lo;
      if (byte === 0x2f || byte === 0x5c) throw new Refusal('path-encoded-separator');
      if (byte < 0x20 || byte === 0x7f) throw new Refusal('path-invalid');
      out += byte < 128 && UNRESERVED[byte] === 1 ? String.fromCharCode(byte) : `%${HEX[hi]}${HEX[lo]}`;
      i += 2;
    } else if (c === 92) {
      throw new Refusal('path-encoded-separator');
    } else if (c <= 0x20 || c === 0x7f || c === 35) {
      throw new Refusal('path-invalid');
    } else if (c < 128 && LITERAL[c] === 1) {
      out += path[i];
    } else if (c < 256) {
      // Node hands us raw bytes as latin1; a byte outside pchar is encoded, not refused,
      // because browsers send `|`, `{`, `^` and UTF-8 literally.
      out += `%${HEX[c >> 4]}${HEX[c & 15]}`;
    } else {
      throw new Refusal('path-invalid');
    }
  }
  return out;
}

/** Resolves `.` and `..`, collapses empty segments; refuses escapes above the root. */
function resolveSegments(path: string): string {
  const input = path.split('/');
  const output: string[] = [];
  let trailingSlash = false;
  for (let i = 1; i < input.length; i++) {
    const segment = input[i]!;
    const last = i === input.length - 1;
    // Servlet containers drop `;params` before resolving: `..;x` is `..` and `;x` is an
    // empty segment there, so either would reach another path than the one we routed.
    const bare = segment.includes(';') ? segment.slice(0, segment.indexOf(';')) : segment;
    if (bare !== segment && (bare === '' || bare === '.' || bare === '..')) throw new Refusal('path-traversal');
    if (bare === '.' || bare === '..') {
      if (segment === '..') {
        if (output.length === 0) throw new Refusal('path-traversal');
        output.pop();
      }
      trailingSlash = last;
    } else if (segment === '') {
      trailingSlash = last;
    } else {
      output.push(segment);
      trailingSlash = false;
    }
  }
  if (output.length === 0) return '/';
  return `/${output.join('/')}${trailingSlash ? '/' : ''}`;
}

/** The canonical form of an origin-form path (no query); throws a Refusal when impossible. */
function canonicalPathOrThrow(path: string): string {
  if (alreadyCanonical(path)) return path;
  if (path.charCodeAt(0) !== 47) throw new Refusal('target-form');
  return resolveSegments(canonicalEscapes(path));
}

/** The canonical form of a path, or undefined when it cannot have one. */
export function canonicalPath(path: string): string | undefined {
  try {
    return canonicalPathOrThrow(path);
  } catch (err) {
    if (err instanceof Refusal) return undefined;
    throw err;
  }
}

const HOST = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/;

// Clients send the same few Host values over and over; remember their canonical forms.
// Bounded, and simply emptied when full, so varied Host headers cannot grow it.
const HOST_CACHE_LIMIT = 1024;
const hostCache = new Map<string, string | undefined>();

/** Lower-cased host without port or trailing dot, or undefined when malformed. */
export function canonicalHost(authority: string): string | undefined {
  if (hostCache.has(authority)) return hostCache.get(authority);
  const host = parseHost(authority);
  if (hostCache.size >= HOST_CACHE_LIMIT) hostCache.clear();
  hostCache.set(authority, host);
  return host;
}

function parseHost(authority: string): string | undefined {
  const match = HOST.exec(authority);
  if (!match || (match[3] !== undefined && Number(match[3]) > 65535)) return undefined;
  if (match[1] !== undefined) return `[${match[1].toLowerCase()}]`;
  let host = match[2]!.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host === '' || host.startsWith('.') || host.endsWith('.') || host.includes('..')) return undefined;
  return host;
}

/** What normalize needs of the raw header list, gathered in one pass. */
function inspectHeaders(rawHeaders: readonly string[]): { host?: string } {
  let host: string | undefined;
  let contentLength: string | undefined;
  let chunked = false;
  let authorization = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length !== 4 && name.length !== 13 && name.length !== 14 && name.length !== 17) continue;
    const lower = name.toLowerCase();
    const value = rawHeaders[i + 1]!;
    if (lower === 'host') {
      if (host !== undefined) throw new Refusal('host-duplicate');
      host = value;
    } else if (lower === 'content-length') {
      if (!/^\d{1,15}$/.test(value) || (contentLength !== undefined && contentLength !== value)) {
        throw new Refusal('framing-conflict');
      }
      contentLength = value;
    } else if (lower === 'authorization') {
      // Node keeps the first for wardgate to verify; an upstream might read the other.
      if (authorization) throw new Refusal('credentials-duplicate');
      authorization = true;
    } else if (lower === 'transfer-encoding') {
      // Only a single `chunked` is unambiguous to every upstream parser.
      if (chunked || value.trim().toLowerCase() !== 'chunked') throw new Refusal('framing-conflict');
      chunked = true;
    }
  }
  if (chunked && contentLength !== undefined) throw new Refusal('framing-conflict');
  return { host };
}

/**
 * Makes a request canonical or says why it cannot be. `target` is the request-target as
 * received (`req.url`), `rawHeaders` the header list as received.
 */
/** The path without `;params` in any segment, as routes and policies match it. */
export function withoutParams(path: string): string {
  return path.includes(';') ? path.replace(/;[^/]*/g, '') : path;
}

export function normalizeRequest(method: string, target: string, rawHeaders: readonly string[]): Normalized {
  try {
    if (method === 'CONNECT' || method === 'TRACE') throw new Refusal('method-not-allowed');
    const { host: hostHeader } = inspectHeaders(rawHeaders);
    if (hostHeader === undefined || hostHeader === '') throw new Refusal('host-missing');
    const host = canonicalHost(hostHeader);
    if (host === undefined) throw new Refusal('host-invalid');

    let originForm = target;
    if (target.charCodeAt(0) !== 47) {
      // Absolute-form is legal HTTP, but only for the host the Host header names: a
      // mismatch is someone trying to use wardgate as an open proxy or to confuse routing.
      const absolute = /^https?:\/\/([^/?#]*)(.*)$/i.exec(target);
      if (!absolute) throw new Refusal('target-form');
      const authority = absolute[1]!;
      if (authority.includes('@') || canonicalHost(authority) !== host || authority.toLowerCase() !== hostHeader.toLowerCase()) {
        throw new Refusal('foreign-authority');
      }
      originForm = absolute[2] === '' ? '/' : absolute[2]!;
      if (originForm.charCodeAt(0) !== 47) originForm = `/${originForm}`;
    }

    const q = originForm.indexOf('?');
    const rawPath = q === -1 ? originForm : originForm.slice(0, q);
    const query = q === -1 ? '' : originForm.slice(q);
    if (query.includes('#')) throw new Refusal('path-invalid');
    const path = canonicalPathOrThrow(rawPath);
    const routingPath = withoutParams(path);
    return { ok: true, request: { method, host, authority: hostHeader, path, routingPath, query } };
  } catch (err) {
    if (err instanceof Refusal) return { ok: false, reason: err.reason };
    throw err;
  }
}

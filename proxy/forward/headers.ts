import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { WARDGATE_COOKIE_PREFIX, isWardgateCookie, stripCookies } from '../identity/cookies.js';

/*
 * Header hygiene, both ways. Hop-by-hop headers and those a `Connection` header names
 * belong to one connection and never cross the proxy. Identity and forwarding headers are
 * wardgate's to set: a client that sends its own `X-Forwarded-User` or `X-Wardgate-*`
 * must not reach an upstream that trusts them.
 */

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings',
]);

// Headers a client must never choose: wardgate sets them, or upstream SSO trusts them.
const SET_BY_WARDGATE = new Set([
  'host', 'expect', 'forwarded', 'x-real-ip', 'x-request-id', 'x-client-ip',
  'remote-user', 'x-remote-user', 'x-remote-group', 'x-remote-groups',
]);
const SET_BY_WARDGATE_PREFIXES = ['x-wardgate-', 'x-forwarded-', 'x-auth-request-'];

function connectionTokens(value: string | string[] | undefined): Set<string> | undefined {
  // The common values name no extra header; skip the parsing on the hot path.
  if (value === undefined || value === 'keep-alive' || value === 'close') return undefined;
  const tokens = new Set<string>();
  for (const part of Array.isArray(value) ? value : [value]) {
    for (const token of part.split(',')) {
      const name = token.trim().toLowerCase();
      if (name) tokens.add(name);
    }
  }
  return tokens;
}

function isClientControlled(lower: string): boolean {
  if (SET_BY_WARDGATE.has(lower)) return true;
  for (const prefix of SET_BY_WARDGATE_PREFIXES) if (lower.startsWith(prefix)) return true;
  return false;
}

export interface ForwardingFacts {
  /** The address of the peer that connected to wardgate. */
  peerAddress: string;
  /** Whether that peer is one of the configured trusted proxies. */
  peerTrusted: boolean;
  /** `https` when the client connected to wardgate over TLS. */
  proto: 'http' | 'https';
  requestId: string;
  /** The Host header to send upstream, or undefined to use the upstream's own. */
  upstreamHost: string | undefined;
  /** The authority the client asked for, reported as X-Forwarded-Host. */
  authority: string;
  /** Keep the client's Authorization header (the route's choice; stripped by default). */
  passAuthorization: boolean;
  /** Header names wardgate sets for this route (claim headers): a client's copies are dropped. */
  ownHeaders: ReadonlySet<string> | undefined;
  /** Headers wardgate adds (the identity assertion, claim headers), as name/value pairs. */
  identityHeaders: readonly string[];
}

/** The header list (flat name/value pairs, as undici takes it) to send upstream. */
export function upstreamRequestHeaders(
  rawHeaders: readonly string[],
  headers: IncomingHttpHeaders,
  facts: ForwardingFacts,
): string[] {
  const named = connectionTokens(headers.connection);
  const out: string[] = [];
  let forwardedFor: string | undefined;
  let forwardedProto: string | undefined;
  let forwardedHost: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named?.has(lower)) continue;
    if (lower === 'cookie') {
      // wardgate's own cookies are credentials for wardgate, never for the application.
      const value = rawHeaders[i + 1]!;
      const kept = value.includes(WARDGATE_COOKIE_PREFIX) ? stripCookies(value, isWardgateCookie) : value;
      if (kept !== undefined) out.push(name, kept);
      continue;
    }
    if ((lower === 'authorization' && !facts.passAuthorization) || facts.ownHeaders?.has(lower)) continue;
    if (isClientControlled(lower)) {
      if (facts.peerTrusted) {
        // Only a trusted proxy in front of wardgate may tell us about the original client.
        if (lower === 'x-forwarded-for') forwardedFor = forwardedFor ? `${forwardedFor}, ${rawHeaders[i + 1]}` : rawHeaders[i + 1];
        else if (lower === 'x-forwarded-proto') forwardedProto = rawHeaders[i + 1];
        else if (lower === 'x-forwarded-host') forwardedHost = rawHeaders[i + 1];
      }
      continue;
    }
    out.push(name, rawHeaders[i + 1]!);
  }
  if (facts.upstreamHost !== undefined) out.push('host', facts.upstreamHost);
  out.push(
    'x-forwarded-for', forwardedFor ? `${forwardedFor}, ${facts.peerAddress}` : facts.peerAddress,
    'x-forwarded-proto', forwardedProto === 'http' || forwardedProto === 'https' ? forwardedProto : facts.proto,
    'x-forwarded-host', forwardedHost ?? facts.authority,
    'x-request-id', facts.requestId,
  );
  for (const item of facts.identityHeaders) out.push(item);
  return out;
}

/** The response headers to send the client: hop-by-hop removed, the request id added. */
export function downstreamResponseHeaders(
  headers: Record<string, string | string[] | undefined>,
  requestId: string,
): OutgoingHttpHeaders {
  const named = connectionTokens(headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    // x-wardgate-* are wardgate's to say (break-glass): an upstream cannot forge or hide them.
    if (HOP_BY_HOP.has(name) || named?.has(name) || name === 'x-request-id' || name.startsWith('x-wardgate-')) continue;
    if (name === 'set-cookie') {
      const kept = upstreamCookies(headers[name]);
      if (kept) out[name] = kept;
    } else out[name] = headers[name];
  }
  out['x-request-id'] = requestId;
  return out;
}

/** An upstream must not set (or clear) wardgate's cookies: it could fix or end sessions. */
function upstreamCookies(value: string | string[] | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const list = Array.isArray(value) ? value : [value];
  const kept = list.filter((cookie) => !isWardgateCookie(cookie.slice(0, cookie.indexOf('=')).trim()));
  return kept.length > 0 ? kept : undefined;
}

import { isIPv4, isIPv6, type BlockList } from 'node:net';
import type { Peer } from '../../proxy/exchange.js';

/*
 * Who the client is. The socket peer, unless the peer is one of our own trusted proxies:
 * then X-Forwarded-For says who connected to it. Everything left of the first address we
 * do not trust was written by that untrusted party (the client itself, or whoever it
 * pretends to be), so the walk goes from the right and stops there.
 *
 *   X-Forwarded-For: <spoofed>, <client>, <proxy A>, <proxy B>      peer = proxy C
 *
 * proxy C (the peer) is trusted, so its header is read; proxy B and proxy A are trusted
 * too and skipped; <client> is the first address no trusted proxy vouches for beyond it:
 * that is the client, and <spoofed> is never looked at. An entry that is not an address
 * ends the walk at the last address reached, which a trusted proxy wrote: a value found
 * left of a malformed entry is as good as attacker-chosen.
 */

const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/** The 4 (IPv4) or 16 (IPv6) bytes of an address, or undefined when `text` is not one. */
export function ipBytes(text: string): Uint8Array | undefined {
  if (isIPv4(text)) return Uint8Array.from(text.split('.'), Number);
  // Zone ids (fe80::1%eth0) name an interface of the sender's machine: not a client address.
  if (text.includes('%') || !isIPv6(text)) return undefined;
  const gap = text.indexOf('::');
  const head = gap === -1 ? text : text.slice(0, gap);
  const tail = gap === -1 ? '' : text.slice(gap + 2);
  const headBytes = groupBytes(head);
  const tailBytes = groupBytes(tail);
  const out = new Uint8Array(16);
  out.set(headBytes, 0);
  out.set(tailBytes, 16 - tailBytes.length);
  return out;
}

/** Bytes of colon-separated groups, the last of which may be a dotted IPv4 address. */
function groupBytes(part: string): number[] {
  if (part === '') return [];
  const bytes: number[] = [];
  for (const group of part.split(':')) {
    if (group.includes('.')) bytes.push(...group.split('.').map(Number));
    else {
      const word = parseInt(group, 16);
      bytes.push(word >> 8, word & 0xff);
    }
  }
  return bytes;
}

/** The IPv4 address inside an IPv4-mapped IPv6 one (::ffff:a.b.c.d), or the bytes as they are. */
export function unmapBytes(bytes: Uint8Array): Uint8Array {
  if (bytes.length !== 16) return bytes;
  for (let i = 0; i < 12; i++) if (bytes[i] !== V4_MAPPED_PREFIX[i]) return bytes;
  return bytes.subarray(12);
}

/** The canonical text of an address: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run as ::). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join('.');
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let end = i;
    while (end < 8 && words[end] === 0) end++;
    if (end - i > bestLength) {
      bestStart = i;
      bestLength = end - i;
    }
    i = end;
  }
  const hex = (from: number, to: number): string => words.slice(from, to).map((w) => w.toString(16)).join(':');
  if (bestStart === -1) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** `text` as a canonical address (IPv4-mapped IPv6 as IPv4), or undefined when it is not one. */
export function canonicalIp(text: string): string | undefined {
  const bytes = ipBytes(text);
  return bytes === undefined ? undefined : formatIp(unmapBytes(bytes));
}

const PORT = /^\d{1,5}$/;

/**
 * One X-Forwarded-For entry as a canonical address. Accepts `1.2.3.4`, `1.2.3.4:5678`,
 * `2001:db8::1`, `[2001:db8::1]` and `[2001:db8::1]:443`, with surrounding whitespace.
 * Anything else (`unknown`, obfuscated RFC 7239 names, empty entries, zone ids, host
 * names) is undefined.
 */
export function forwardedAddress(entry: string): string | undefined {
  let text = entry.trim();
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close === -1) return undefined;
    const rest = text.slice(close + 1);
    if (rest !== '' && !(rest.startsWith(':') && validPort(rest.slice(1)))) return undefined;
    text = text.slice(1, close);
    // Brackets hold IPv6 only.
    return text.includes(':') ? canonicalIp(text) : undefined;
  }
  const colon = text.indexOf(':');
  if (colon !== -1 && colon === text.lastIndexOf(':')) {
    // One colon: an IPv4 address with a port (an IPv6 address has at least two).
    if (!validPort(text.slice(colon + 1))) return undefined;
    text = text.slice(0, colon);
    return isIPv4(text) ? text : undefined;
  }
  return canonicalIp(text);
}

function validPort(text: string): boolean {
  return PORT.test(text) && Number(text) <= 65535;
}

function isTrustedProxy(address: string, trustedProxies: BlockList | undefined): boolean {
  return trustedProxies !== undefined && trustedProxies.check(address, address.includes(':') ? 'ipv6' : 'ipv4');
}

/** The peer's address, with an IPv4-mapped IPv6 address as plain IPv4. */
function peerAddress(peer: Peer): string {
  const address = peer.address;
  return address.startsWith('::ffff:') ? (canonicalIp(address) ?? address) : address;
}

/**
 * The client's address for a request that came in from `peer`.
 *
 * `forwardedFor` is the whole X-Forwarded-For value: when a request carries the header
 * more than once, the caller passes the values joined with ', ' in the order received
 * (what Node's `req.headers['x-forwarded-for']` already does), so each proxy's additions
 * stay on the right of what it was given.
 *
 * Only a trusted peer's header is read. From the right, entries that are themselves
 * trusted proxies are skipped; the first untrusted address is the client. When every
 * entry is a trusted proxy, the leftmost one is the client. A malformed entry ends the
 * walk: the last address reached (the peer, or a trusted proxy) is the answer.
 */
export function clientAddress(peer: Peer, forwardedFor: string | undefined, trustedProxies: BlockList | undefined): string {
  const address = peerAddress(peer);
  if (!peer.trusted || forwardedFor === undefined) return address;
  let client = address;
  let end = forwardedFor.length;
  while (end >= 0) {
    const start = forwardedFor.lastIndexOf(',', end - 1);
    const entry = forwardedAddress(forwardedFor.slice(start + 1, end));
    if (entry === undefined) break;
    client = entry;
    if (!isTrustedProxy(entry, trustedProxies)) break;
    if (start === -1) break;
    end = start;
  }
  return client;
}

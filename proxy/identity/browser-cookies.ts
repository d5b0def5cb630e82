import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { clearCookie, parseCookies, serializeCookie, type CookieSealer } from './cookies.js';

/*
 * wardgate's cookies, the same on every host it serves (each host keeps its own, as
 * `__Host-` cookies must):
 *   __Host-wardgate            a sealed reference to the server-side session
 *   __Host-wardgate-browser    a sealed random id of this browser: groups its sessions for
 *                              sign-out, and keys its CSRF tokens
 *   __Host-wardgate-tx-<id>    one per sign-in in progress, binding it to this browser;
 *                              one cookie each, so parallel tabs never overwrite each other
 */

export const SESSION_COOKIE = '__Host-wardgate';
export const BROWSER_COOKIE = '__Host-wardgate-browser';

const BROWSER_LIFETIME_MS = 400 * 24 * 3_600_000;
// The session record decides when a session ends; the sealed expiry is a backstop. It
// outlives the record a little, so a cookie sent at or after the end still reaches the
// session lookup, which ends the session everywhere with its real cause (expired).
const SESSION_SEAL_GRACE_MS = 15 * 60_000;

export type SessionCookie =
  | { state: 'none' }
  | { state: 'invalid' }
  | { state: 'present'; sessionId: string };

export class BrowserCookies {
  constructor(private readonly sealer: CookieSealer) {}

  session(headers: IncomingHttpHeaders): SessionCookie {
    const raw = headers.cookie;
    // Most API requests carry no cookie at all; skip the parse.
    if (raw === undefined || !raw.includes(SESSION_COOKIE)) return { state: 'none' };
    const value = parseCookies(raw).get(SESSION_COOKIE);
    if (value === undefined) return { state: 'none' };
    const sessionId = this.open(SESSION_COOKIE, value);
    return sessionId === undefined ? { state: 'invalid' } : { state: 'present', sessionId };
  }

  sessionCookie(sessionId: string, expiresAt: number, now: number): string {
    return serializeCookie(SESSION_COOKIE, this.sealer.seal(SESSION_COOKIE, sessionId, expiresAt + SESSION_SEAL_GRACE_MS), {
      maxAgeSeconds: Math.max(1, Math.floor((expiresAt - now) / 1000)),
    });
  }

  clearSession(): string {
    return clearCookie(SESSION_COOKIE);
  }

  /** This browser's id on this host, making (and returning the cookie for) one if it has none. */
  browser(headers: IncomingHttpHeaders, now: number): { id: string; setCookie: string | undefined } {
    const existing = this.read(headers, BROWSER_COOKIE);
    if (existing !== undefined) return { id: existing, setCookie: undefined };
    const id = randomBytes(24).toString('base64url');
    return { id, setCookie: this.pending(BROWSER_COOKIE, id, BROWSER_LIFETIME_MS, now) };
  }

  /** A sealed cookie of its own, e.g. for one sign-in in progress. */
  pending(name: string, value: string, lifetimeMs: number, now: number): string {
    return serializeCookie(name, this.sealer.seal(name, value, now + lifetimeMs), { maxAgeSeconds: Math.floor(lifetimeMs / 1000) });
  }

  /** The value of a cookie sealed by `pending`, if this browser holds it. */
  openPending(headers: IncomingHttpHeaders, name: string): string | undefined {
    return this.read(headers, name);
  }

  clear(name: string): string {
    return clearCookie(name);
  }

  /** The browser id if this browser has one; never makes one. */
  existingBrowser(headers: IncomingHttpHeaders): string | undefined {
    return this.read(headers, BROWSER_COOKIE);
  }

  /** The non-empty payload of the sealed cookie `name`, or undefined when absent or not ours. */
  private read(headers: IncomingHttpHeaders, name: string): string | undefined {
    const value = parseCookies(headers.cookie).get(name);
    return value === undefined ? undefined : this.open(name, value);
  }

  private open(name: string, value: string): string | undefined {
    const opened = this.sealer.open(name, value);
    return opened && opened.length > 0 ? opened.toString('utf8') : undefined;
  }
}

import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/*
 * Cross-site request forgery defences for wardgate's own forms, two of them on every POST:
 *
 *  - A token in the form: HMAC-SHA256 over the form's purpose, the host and what it is
 *    bound to (the session id on the access pages, the browser id on the sign-out form),
 *    keyed with a key derived from the cookie keys (identity/service.ts). Another site
 *    cannot read it, another session's token does not fit, and nothing is stored.
 *  - The request's origin: `Origin` must be this very origin. Every browser the pages
 *    support sends it on a form POST; one that sends Fetch Metadata but no Origin is
 *    accepted only when `Sec-Fetch-Site` says same-origin, and a POST carrying neither
 *    header (not a browser at all) is refused. `Origin: null` (a sandboxed frame, a POST
 *    re-sent after a cross-origin redirect) is refused, and so is a Sec-Fetch-Site other
 *    than same-origin: a sibling host under the same site is not this origin.
 *
 * Either alone would do against today's browsers; together, a leaked token or a lax proxy
 * that rewrites Origin is not enough.
 *
 * Browsers send `Origin: null` on a POST from a page served with `Referrer-Policy:
 * no-referrer` (wardgate's default for its own pages), so pages with such forms are
 * served with FORM_PAGE_HEADERS: the referrer stays on the page's own origin, and the
 * origin check has a real origin to check.
 */

export const FORM_PAGE_HEADERS: Readonly<Record<string, string>> = { 'referrer-policy': 'same-origin' };

export class CsrfTokens {
  constructor(private readonly key: Buffer) {}

  /** The token for a form of `purpose` on `host`, bound to `binding`. */
  token(purpose: string, host: string, binding: string): string {
    return createHmac('sha256', this.key).update(`${purpose}\n${host}\n${binding}`).digest('base64url');
  }

  /** True when `offered` is the token for exactly this purpose, host and binding. */
  valid(purpose: string, host: string, binding: string, offered: string | null): boolean {
    if (!offered) return false;
    const expected = Buffer.from(this.token(purpose, host, binding));
    const given = Buffer.from(offered);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

/** True when a POST's headers show it was sent by a page of `origin` itself. */
export function fromOrigin(headers: IncomingHttpHeaders, origin: string): boolean {
  const site = headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') return false;
  const sent = headers.origin;
  if (sent === undefined) return site === 'same-origin';
  try {
    return new URL(sent).origin === origin;
  } catch {
    return false;
  }
}

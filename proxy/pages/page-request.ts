import type { Exchange } from '../exchange.js';
import type { Actor } from '../grants/service.js';
import { BodyTooLargeError, readForm } from '../identity/http.js';
import type { Identity } from '../identity/identity.js';
import type { IdentityContext } from '../identity/service.js';
import type { Refuse } from '../identity/sign-in.js';
import { fromOrigin, type CsrfTokens } from './csrf.js';

/*
 * What the access pages need from a request before they act on it: who is signed in on
 * this host (its own session cookie: the auth host's, or the application host's), and,
 * for a POST, the form once it passed the CSRF checks. A POST that fails them changes
 * nothing and is answered 403 csrf-invalid.
 */

export interface Visitor {
  identity: Identity;
  sessionId: string;
  /** The visitor as the grant and break-glass services know them. */
  actor: Actor;
}

export async function visitorOf(ctx: IdentityContext, ex: Exchange): Promise<Visitor | undefined> {
  const cookie = ctx.cookies.session(ex.req.headers);
  if (cookie.state !== 'present') return undefined;
  const found = await ctx.sessions.lookup(cookie.sessionId);
  if (!found.ok) return undefined;
  const { identity } = found;
  return {
    identity,
    sessionId: found.record.id,
    actor: {
      principal: { kind: 'user', id: identity.sub, ...(identity.email ? { email: identity.email } : {}), ...(identity.name ? { name: identity.name } : {}) },
      groups: identity.groups,
    },
  };
}

/** This host's origin as browsers name it, on wardgate's public scheme. */
export function originOf(ctx: IdentityContext, ex: Exchange): string {
  return new URL(`${ctx.authUrl.protocol}//${ex.canonical!.authority}`).origin;
}

/**
 * The posted form of a page of `purpose`, when the visitor is signed in and the token and
 * origin check out; otherwise the request was refused and this returns undefined.
 */
export async function checkedForm(
  ctx: IdentityContext,
  csrf: CsrfTokens,
  purpose: string,
  ex: Exchange,
  refuse: Refuse,
): Promise<{ form: URLSearchParams; visitor: Visitor } | undefined> {
  let form: URLSearchParams;
  try {
    form = await readForm(ex.req);
  } catch (err) {
    const tooLarge = err instanceof BodyTooLargeError;
    refuse(tooLarge ? 413 : 400, tooLarge ? 'body-too-large' : 'malformed-request');
    return undefined;
  }
  // A session that ended while the form was open fails here too: reloading signs in again.
  const visitor = await visitorOf(ctx, ex);
  if (!visitor || !fromOrigin(ex.req.headers, originOf(ctx, ex)) || !csrf.valid(purpose, ex.canonical!.host, visitor.sessionId, form.get('csrf'))) {
    refuse(403, 'csrf-invalid');
    return undefined;
  }
  return { form, visitor };
}

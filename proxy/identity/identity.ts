/*
 * Who is behind a request, as the later stages (context, decide, forward) see it. Built
 * from a session (browsers) or a verified bearer token (API clients); never from headers
 * the client sent.
 */

/** How strongly, and when, the user authenticated (from the ID token). */
export interface AuthStrength {
  /** Authentication methods references, e.g. ["hwk", "pin"] for a security key. */
  amr: string[];
  /** Authentication context class, e.g. "phr" (phishing-resistant). */
  acr: string | undefined;
  /** When the user last actively authenticated at the IdP, epoch seconds. */
  authTime: number | undefined;
}

export interface Identity extends AuthStrength {
  kind: 'session' | 'bearer';
  sub: string;
  email: string | undefined;
  name: string | undefined;
  groups: string[];
  /** The IdP's session id (`sid`), when it sent one. */
  idpSid: string | undefined;
  /** wardgate's session id; undefined for bearer tokens. */
  sessionId: string | undefined;
  /** Granted scopes (bearer tokens). */
  scopes: string[];
  /** When this identity stops being valid, epoch milliseconds. */
  expiresAt: number;
  /** Every claim of the ID token (sessions) or access token (bearer), for the `claim` criterion. */
  claims: Readonly<Record<string, unknown>>;
}

/**
 * The identity's email when the IdP vouches for it (`email_verified: true`). Only such an
 * email may stand for the person in a grant: an IdP with self-registration or guest
 * accounts would otherwise let anyone claim a vendor's address.
 */
export function verifiedEmail(identity: Pick<Identity, 'email' | 'claims'>): string | undefined {
  return identity.email !== undefined && identity.claims['email_verified'] === true ? identity.email : undefined;
}

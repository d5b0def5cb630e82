import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { WardgateConfig } from '../../config/schema.js';
import type { Actor } from '../grants/service.js';
import { BearerVerifier, type BearerResult } from '../identity/bearer.js';
import { bearerToken, quoted } from '../identity/http.js';
import type { Identity } from '../identity/identity.js';
import { IdpUnavailableError, RelyingParty } from '../identity/relying-party.js';
import { CALLBACK_PATH } from '../identity/sign-in.js';
import type { AdminApiConfig } from './config.js';
import { AdminApiError, type AdminErrorCode } from './errors.js';
import { certificateSubject } from './subject.js';

/*
 * Who calls the admin API: a bearer token from the hospital's IdP (identity.issuer) for
 * the admin API's audience and carrying its scope, or a client certificate from the admin
 * listener's client CA whose subject is listed. One request has one actor: when an
 * Authorization: Bearer header is sent, the token decides, and a bad token is refused even
 * if a good certificate came with it, so nobody acts under a credential other than the one
 * they meant. Without that header the certificate decides.
 *
 * The admin credential lets a caller use the API; it does not make them an approver. The
 * actor this returns is judged again by the grant service (approver groups and principals):
 *   a person's token      -> { kind: user, id: sub, email, name }, groups from the token
 *   a client's token      -> { kind: client, id: client:<client_id> }, no groups
 *   a client certificate  -> { kind: certificate, id: cert:<subject, RFC 4514> }, no groups
 * A token is a client's when its sub is its client_id (RFC 9068 2.2: tokens of the client
 * credentials grant name the client as their subject).
 *
 * Tokens are never logged or echoed; refusals say what was wrong with them, not what they held.
 */

export type AdminAuthentication =
  | { ok: true; actor: Actor }
  /** `principal`: who the refused caller proved to be, when they got that far (for the log). */
  | { ok: false; error: AdminApiError; principal: string | undefined };

export interface AdminAuthenticatorOptions {
  api: AdminApiConfig;
  identity: WardgateConfig['identity'];
  now?: () => number;
}

const REALM = 'wardgate-admin';
// Principal ids the grant service reads as service callers: a person's sub must not pass for one.
const SERVICE_PRINCIPAL = /^(?:client|cert):/;


/** The actor a verified admin token stands for. */
export function actorOfToken(identity: Identity): Actor {
  const clientId = identity.claims['client_id'];
  if (typeof clientId === 'string' && clientId !== '' && clientId === identity.sub) {
    return { principal: { kind: 'client', id: `client:${clientId}` }, groups: [] };
  }
  const principal = { kind: 'user' as const, id: identity.sub, ...(identity.email ? { email: identity.email } : {}), ...(identity.name ? { name: identity.name } : {}) };
  return { principal, groups: identity.groups };
}

export class AdminAuthenticator {
  private readonly idp: RelyingParty | undefined;
  private verifier: Promise<BearerVerifier> | undefined;
  private readonly subjects: ReadonlySet<string>;
  private readonly challenge: Record<string, string>;

  constructor(private readonly options: AdminAuthenticatorOptions) {
    const { api, identity } = options;
    const now = options.now ?? Date.now;
    // Discovery and the IdP's keys, as the data plane has them; the cluster primary, which
    // serves this API, has no identity service of its own.
    this.idp = api.bearer
      ? new RelyingParty({
        issuer: identity.issuer,
        clientId: identity.clientId,
        clientSecret: identity.clientSecret,
        scopes: identity.scopes,
        redirectUri: new URL(CALLBACK_PATH, identity.authUrl).href,
        timeoutMs: identity.idpTimeout,
        now,
        // IdP latency is a data-plane metric; the few admin calls would only blur it.
        observe: () => {},
      })
      : undefined;
    this.subjects = new Set(api.certificates?.subjects ?? []);
    this.challenge = api.bearer ? { 'www-authenticate': `Bearer realm="${REALM}"` } : {};
  }

  async authenticate(req: IncomingMessage): Promise<AdminAuthentication> {
    const token = bearerToken(req.headers.authorization);
    if (token !== undefined) return this.byToken(token);
    const socket = req.socket as Partial<TLSSocket>;
    const certificate = this.subjects.size > 0 && socket.encrypted ? socket.getPeerX509Certificate?.() : undefined;
    if (certificate) {
      if (!socket.authorized) {
        return this.refuse('admin-certificate-untrusted', 'the client certificate is not issued by the admin client CA', this.challenge);
      }
      const subject = certificateSubject(certificate);
      if (subject === undefined || !this.subjects.has(subject)) {
        return this.refuse('admin-certificate-not-allowed', `the client certificate ${subject ?? '(no subject)'} is not one of admin.api.certificates.subjects`, {}, subject && `cert:${subject}`);
      }
      return { ok: true, actor: { principal: { kind: 'certificate', id: `cert:${subject}` }, groups: [] } };
    }
    const how = [this.options.api.bearer ? 'a bearer token' : undefined, this.subjects.size > 0 ? 'a client certificate' : undefined].filter(Boolean).join(' or ');
    return this.refuse('admin-unauthenticated', `the admin API needs ${how}`, this.challenge);
  }

  private async byToken(token: string): Promise<AdminAuthentication> {
    const bearer = this.options.api.bearer;
    if (!bearer || !this.idp) return this.refuse('admin-token-invalid', 'this admin API takes client certificates, not bearer tokens');
    const result = await this.verify(token, this.idp, bearer);
    if (!result.ok) {
      if (result.reason === 'idp-unavailable') return this.refuse('idp-unavailable', `admin tokens cannot be checked now: ${result.detail}`);
      return this.refuse('admin-token-invalid', result.detail, {
        'www-authenticate': `Bearer realm="${REALM}", error="invalid_token", error_description=${quoted(result.detail)}`,
      });
    }
    const actor = actorOfToken(result.identity);
    if (actor.principal.kind === 'user' && SERVICE_PRINCIPAL.test(actor.principal.id)) {
      return this.refuse('admin-token-invalid', 'the token\'s subject reads as a service principal name (client: or cert:)', {
        'www-authenticate': `Bearer realm="${REALM}", error="invalid_token"`,
      });
    }
    if (!result.identity.scopes.includes(bearer.scope)) {
      return this.refuse('admin-token-insufficient-scope', `the token does not carry the ${bearer.scope} scope`, {
        'www-authenticate': `Bearer realm="${REALM}", error="insufficient_scope", scope=${quoted(bearer.scope)}`,
      }, actor.principal.id);
    }
    return { ok: true, actor };
  }

  private async verify(token: string, idp: RelyingParty, bearer: NonNullable<AdminApiConfig['bearer']>): Promise<BearerResult> {
    this.verifier ??= idp.keys().then(({ jwksUri, issuer, getKey }) => new BearerVerifier({
      issuer,
      audience: bearer.audience,
      jwksUri,
      getKey,
      algorithms: bearer.algorithms,
      fetchTimeoutMs: Math.max(1, Math.round(this.options.identity.idpTimeout)),
      ...(this.options.now ? { now: this.options.now } : {}),
    }));
    try {
      return await (await this.verifier).verify(token);
    } catch (err) {
      // Discovery failed: try it again on the next call rather than keep the failure.
      this.verifier = undefined;
      if (err instanceof IdpUnavailableError) return { ok: false, reason: 'idp-unavailable', detail: err.message };
      throw err;
    }
  }

  private refuse(code: AdminErrorCode, message: string, headers: Record<string, string> = {}, principal?: string): AdminAuthentication {
    return { ok: false, error: new AdminApiError(code, message, { headers }), principal };
  }
}

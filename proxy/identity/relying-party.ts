import * as oidc from 'openid-client';
import { createRemoteJWKSet, type JWTVerifyGetKey } from 'jose';
import { isLoopbackHost } from '../../config/schema.js';
import { WardgateError } from '../errors.js';

/*
 * wardgate as an OpenID Connect relying party, on openid-client. Discovery is lazy and
 * retried: an IdP that is down when wardgate starts (or later) makes new sign-ins fail
 * with a 503 page, while sessions that already exist keep working.
 */

/** The IdP could not be reached, or answered with a server error. */
export class IdpUnavailableError extends WardgateError {
  constructor(message: string) {
    super('idp-unavailable', message);
  }
}

/** The IdP answered a sign-in or refresh with an OAuth error, or its answer failed validation. */
export class IdpRejectedError extends WardgateError {
  constructor(message: string, readonly oauthError: string | undefined) {
    super('idp-rejected', message);
  }
}

export interface IdpTokens {
  idToken: string;
  claims: oidc.IDToken;
  refreshToken: string | undefined;
  /** Epoch milliseconds; undefined when the IdP did not say. */
  accessTokenExpiresAt: number | undefined;
}

export interface AuthorizationRequest {
  state: string;
  nonce: string;
  codeChallenge: string;
  acrValues?: string[] | undefined;
  maxAgeSeconds?: number | undefined;
  /** Force a fresh authentication even if the IdP has a session (step-up). */
  forceLogin?: boolean;
}

export interface RelyingPartyOptions {
  issuer: URL;
  clientId: string;
  clientSecret: string;
  scopes: readonly string[];
  redirectUri: string;
  timeoutMs: number;
  /** wardgate's clock (epoch ms), for token expiry times. */
  now: () => number;
  /** Observes each IdP request's duration in seconds, by operation. */
  observe(operation: IdpOperation, seconds: number): void;
}

export type IdpOperation = 'discovery' | 'token' | 'jwks' | 'other';

// After a failed discovery, new sign-ins fail fast for this long instead of each waiting.
const RETRY_AFTER_MS = 2_000;


/** Network failures, timeouts and 5xx: the IdP is unavailable, not saying no. */
function isUnavailable(err: unknown): boolean {
  if (err instanceof oidc.ResponseBodyError) return err.status >= 500;
  if (err instanceof oidc.ClientError) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof TypeError || (cause instanceof Error && (cause.name === 'AbortError' || cause.name === 'TimeoutError'));
  }
  return err instanceof TypeError || (err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError'));
}

function classify(err: unknown, what: string): WardgateError {
  if (err instanceof WardgateError) return err;
  if (isUnavailable(err)) return new IdpUnavailableError(`${what}: the IdP is unavailable (${(err as Error).message})`);
  const oauthError = err instanceof oidc.ResponseBodyError || err instanceof oidc.AuthorizationResponseError ? err.error : undefined;
  return new IdpRejectedError(`${what}: ${(err as Error).message}`, oauthError);
}

export class RelyingParty {
  private config: oidc.Configuration | undefined;
  private pending: Promise<oidc.Configuration> | undefined;
  private failedAt = 0;
  private lastFailure = '';
  private keySet: JWTVerifyGetKey | undefined;
  private readonly fetcher: oidc.CustomFetch;
  private probe: Promise<void> | undefined;

  constructor(private readonly options: RelyingPartyOptions) {
    this.fetcher = (url, init) => {
      const started = performance.now();
      const operation: IdpOperation = url.includes('/.well-known/') ? 'discovery'
        : url === this.config?.serverMetadata().token_endpoint ? 'token'
        : url === this.config?.serverMetadata().jwks_uri ? 'jwks' : 'other';
      return fetch(url, init as RequestInit).finally(() => options.observe(operation, (performance.now() - started) / 1000));
    };
  }

  /** Starts discovery without waiting for it, so the first sign-in does not pay for it. */
  warmUp(): void {
    this.configuration().catch(() => {});
  }

  async configuration(): Promise<oidc.Configuration> {
    if (this.config) return this.config;
    if (this.pending) return this.pending;
    if (Date.now() - this.failedAt < RETRY_AFTER_MS) throw new IdpUnavailableError(this.lastFailure);
    const { issuer, clientId, clientSecret, timeoutMs } = this.options;
    this.pending = oidc.discovery(issuer, clientId, undefined, oidc.ClientSecretBasic(clientSecret), {
      [oidc.customFetch]: this.fetcher,
      timeout: Math.ceil(timeoutMs / 1000),
      // The config allows http only for loopback issuers (the demo, tests).
      execute: isLoopbackHost(issuer.hostname) ? [oidc.allowInsecureRequests] : [],
    }).then((config) => {
      config[oidc.customFetch] = this.fetcher;
      config.timeout = Math.ceil(timeoutMs / 1000);
      this.config = config;
      return config;
    }, (err: unknown) => {
      this.failedAt = Date.now();
      this.lastFailure = `discovery at ${issuer.href} failed: ${(err as Error).message}`;
      throw new IdpUnavailableError(this.lastFailure);
    }).finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /**
   * Throws IdpUnavailableError unless the IdP answers now. Sending a browser to an IdP that
   * is down leaves the user on a browser error page; wardgate's own 503 page says what is
   * wrong and that existing sessions still work. Sign-ins are rare next to requests, and
   * concurrent ones share one probe.
   */
  async ensureReachable(): Promise<void> {
    const config = await this.configuration();
    this.probe ??= (async () => {
      const url = new URL('.well-known/openid-configuration', config.serverMetadata().issuer.replace(/\/?$/, '/'));
      let status: number;
      try {
        const response = await this.fetcher(url.href, { method: 'GET', headers: {}, body: undefined, redirect: 'manual', signal: AbortSignal.timeout(Math.min(2_000, this.options.timeoutMs)) });
        status = response.status;
        await response.body?.cancel();
      } catch (err) {
        throw new IdpUnavailableError(`the IdP at ${url.origin} does not answer: ${(err as Error).message}`);
      }
      if (status >= 500) throw new IdpUnavailableError(`the IdP at ${url.origin} answers with server errors (${status})`);
    })().finally(() => {
      this.probe = undefined;
    });
    return this.probe;
  }

  async authorizationUrl(request: AuthorizationRequest): Promise<URL> {
    const config = await this.configuration();
    await this.ensureReachable();
    const params: Record<string, string> = {
      redirect_uri: this.options.redirectUri,
      scope: this.options.scopes.join(' '),
      state: request.state,
      nonce: request.nonce,
      code_challenge: request.codeChallenge,
      code_challenge_method: 'S256',
    };
    if (request.acrValues) {
      params.acr_values = request.acrValues.join(' ');
      // acr_values alone is a voluntary request an IdP may answer from a weaker session;
      // an essential acr claim makes it authenticate the user again if it must.
      params.claims = JSON.stringify({ id_token: { acr: { essential: true, values: request.acrValues } } });
    }
    if (request.forceLogin) params.prompt = 'login';
    if (request.maxAgeSeconds !== undefined) params.max_age = String(request.maxAgeSeconds);
    return oidc.buildAuthorizationUrl(config, params);
  }

  /** Redeems the code at the token endpoint and validates the ID token (state, nonce, PKCE). */
  async redeem(callbackUrl: URL, checks: { state: string; nonce: string; codeVerifier: string; maxAgeSeconds?: number | undefined }): Promise<IdpTokens> {
    const config = await this.configuration();
    try {
      const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
        expectedState: checks.state,
        expectedNonce: checks.nonce,
        pkceCodeVerifier: checks.codeVerifier,
        idTokenExpected: true,
        ...(checks.maxAgeSeconds !== undefined ? { maxAge: checks.maxAgeSeconds } : {}),
      });
      return this.tokensOf(tokens, undefined);
    } catch (err) {
      throw classify(err, 'sign-in');
    }
  }

  async refresh(refreshToken: string): Promise<IdpTokens | { idToken: undefined; refreshToken: string | undefined; accessTokenExpiresAt: number | undefined }> {
    const config = await this.configuration();
    try {
      const tokens = await oidc.refreshTokenGrant(config, refreshToken);
      if (tokens.id_token) return this.tokensOf(tokens, refreshToken);
      return { idToken: undefined, refreshToken: tokens.refresh_token ?? refreshToken, accessTokenExpiresAt: this.expiresAt(tokens) };
    } catch (err) {
      throw classify(err, 'token refresh');
    }
  }

  /** Where to send the browser for RP-initiated logout; undefined when the IdP has no such endpoint. */
  async endSessionUrl(idTokenHint: string | undefined, postLogoutRedirectUri: string): Promise<URL | undefined> {
    const config = await this.configuration();
    if (!config.serverMetadata().end_session_endpoint) return undefined;
    return oidc.buildEndSessionUrl(config, {
      post_logout_redirect_uri: postLogoutRedirectUri,
      client_id: this.options.clientId,
      ...(idTokenHint ? { id_token_hint: idTokenHint } : {}),
    });
  }

  /** The IdP's signing keys (cached remote set), for logout tokens and bearer tokens. */
  async keys(): Promise<{ getKey: JWTVerifyGetKey; jwksUri: URL; issuer: string }> {
    const config = await this.configuration();
    const metadata = config.serverMetadata();
    if (!metadata.jwks_uri) throw new IdpUnavailableError('the IdP publishes no jwks_uri');
    const jwksUri = new URL(metadata.jwks_uri);
    this.keySet ??= createRemoteJWKSet(jwksUri, { timeoutDuration: this.options.timeoutMs });
    return { getKey: this.keySet, jwksUri, issuer: metadata.issuer };
  }

  private expiresAt(tokens: oidc.TokenEndpointResponseHelpers): number | undefined {
    const seconds = tokens.expiresIn();
    return seconds === undefined ? undefined : this.options.now() + seconds * 1000;
  }

  private tokensOf(tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers, previousRefresh: string | undefined): IdpTokens {
    const claims = tokens.claims();
    if (!claims || !tokens.id_token) throw new IdpRejectedError('the IdP returned no ID token', undefined);
    return {
      idToken: tokens.id_token,
      claims,
      refreshToken: tokens.refresh_token ?? previousRefresh,
      accessTokenExpiresAt: this.expiresAt(tokens),
    };
  }
}

import { generateKeyPairSync, hkdfSync, randomBytes } from 'node:crypto';
import type { WardgateConfig } from '../../config/schema.js';
import type { AccessServices } from '../grants/services.js';
import type { Logger } from '../logger.js';
import { ACCESS_PATH, AccessPage } from '../pages/access.js';
import { APPROVALS_PATH, ApprovalsPage } from '../pages/approvals.js';
import { BREAK_GLASS_PATH, BreakGlassPage } from '../pages/break-glass.js';
import { CsrfTokens } from '../pages/csrf.js';
import type { Metrics } from '../metrics.js';
import type { Router } from '../router.js';
import type { CompiledRoute } from '../routes.js';
import type { Store } from '../store/store.js';
import { AssertionSigner, loadAssertionKeys } from './assertion.js';
import { Authenticator } from './authenticate.js';
import { ASYMMETRIC_ALGORITHMS, BearerVerifier, type BearerResult } from './bearer.js';
import { BrowserCookies } from './browser-cookies.js';
import { CookieSealer } from './cookies.js';
import { ReservedEndpoints } from './endpoints.js';
import { LogoutFlow } from './logout.js';
import { IdpUnavailableError, RelyingParty } from './relying-party.js';
import { SessionManager } from './sessions.js';
import { CALLBACK_PATH, SignInFlow } from './sign-in.js';

/*
 * Everything identity, built once per process from the config: the relying party, the
 * sessions, the cookie and assertion keys, and the stages and endpoints that use them.
 */

export interface IdentityContext {
  readonly authUrl: URL;
  readonly clientId: string;
  readonly idTokenAlgorithms: string[];
  readonly cookies: BrowserCookies;
  readonly sessions: SessionManager;
  readonly idp: RelyingParty;
  readonly store: Store;
  readonly router: Router<CompiledRoute>;
  readonly metrics: Metrics;
  readonly logger: Logger;
  verifyBearer(token: string): Promise<BearerResult>;
  now(): number;
}

export interface IdentityDeps {
  store: Store;
  router: Router<CompiledRoute>;
  metrics: Metrics;
  logger: Logger;
  /** Grants and break-glass, for the access pages. */
  access: AccessServices;
  /** Runs in every process when sessions end anywhere (close their WebSockets). */
  onSessionsEnded(ids: readonly string[]): void;
  now?: () => number;
}

export interface IdentityService {
  readonly authenticator: Authenticator;
  readonly endpoints: ReservedEndpoints;
  readonly signer: AssertionSigner;
  readonly sessions: SessionManager;
  readonly authHost: string;
  readonly authUrl: URL;
  close(): void;
}

export function createIdentity(config: WardgateConfig, deps: IdentityDeps): IdentityService {
  const settings = config.identity;
  const now = deps.now ?? Date.now;
  const cookieKeys = settings.cookieKeys ?? [randomBytes(32)];
  const assertionKeys = settings.assertion.keys
    ? loadAssertionKeys(settings.assertion.keys)
    : [generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey];
  if (!settings.cookieKeys || !settings.assertion.keys) {
    deps.logger.warn('identity.cookieKeys or identity.assertion.keys not set: using keys made up at start; sessions and assertions end with this process');
  }
  const authUrl = settings.authUrl;
  const signer = new AssertionSigner(assertionKeys, { issuer: authUrl.origin, ttlSeconds: Math.max(2, Math.round(settings.assertion.ttl / 1000)), now });
  const idp = new RelyingParty({
    issuer: settings.issuer,
    clientId: settings.clientId,
    clientSecret: settings.clientSecret,
    scopes: settings.scopes,
    redirectUri: new URL(CALLBACK_PATH, authUrl).href,
    timeoutMs: settings.idpTimeout,
    now,
    observe: (operation, seconds) => deps.metrics.idpDuration.observe({ operation }, seconds),
  });
  const sessions = new SessionManager({
    store: deps.store,
    idp,
    absoluteLifetimeMs: settings.session.absoluteLifetime,
    idleTimeoutMs: settings.session.idleTimeout,
    metrics: deps.metrics,
    logger: deps.logger,
    now,
    onEnded: (ids) => {
      for (const id of ids) signer.forget(id);
      deps.onSessionsEnded(ids);
    },
  });

  let bearer: Promise<BearerVerifier> | undefined;
  const bearerSettings = settings.bearer;
  const verifyBearer = async (token: string): Promise<BearerResult> => {
    if (!bearerSettings) return { ok: false, reason: 'token-invalid', detail: 'bearer tokens are not accepted' };
    // One remote key set for ID, logout and bearer tokens: one fetch, one refetch cooldown.
    bearer ??= idp.keys().then(({ jwksUri, issuer, getKey }) => new BearerVerifier({
      issuer,
      audience: bearerSettings.audience,
      jwksUri,
      getKey,
      algorithms: bearerSettings.algorithms,
      fetchTimeoutMs: Math.max(1, Math.round(settings.idpTimeout)),
      now,
    }));
    try {
      return await (await bearer).verify(token);
    } catch (err) {
      bearer = undefined;
      if (err instanceof IdpUnavailableError) return { ok: false, reason: 'idp-unavailable', detail: err.message };
      throw err;
    }
  };

  const ctx: IdentityContext = {
    authUrl,
    clientId: settings.clientId,
    idTokenAlgorithms: [...ASYMMETRIC_ALGORITHMS],
    cookies: new BrowserCookies(new CookieSealer(cookieKeys, { now })),
    sessions,
    idp,
    store: deps.store,
    router: deps.router,
    metrics: deps.metrics,
    logger: deps.logger,
    verifyBearer,
    now,
  };
  const { grants, breakGlass } = deps.access;
  // wardgate's own pages on the auth host that a sign-in may return to: those that exist.
  const breakGlassRoutes = config.routes.some((route) => route.policy.breakGlass !== undefined);
  const signIn = new SignInFlow(ctx, [...(grants ? [ACCESS_PATH, APPROVALS_PATH] : []), ...(breakGlassRoutes ? [BREAK_GLASS_PATH] : [])]);
  // A key of its own for CSRF tokens, derived so that operators manage one secret.
  const csrf = new CsrfTokens(Buffer.from(hkdfSync('sha256', cookieKeys[0]!, Buffer.alloc(0), 'wardgate csrf', 32)));
  const logout = new LogoutFlow(ctx, csrf);
  const toSignIn = signIn.signInToAuthPage.bind(signIn);
  const pages = {
    access: grants && config.grants ? new AccessPage({ ctx, csrf, grants, maxDuration: config.grants.maxDuration, signIn: toSignIn }) : undefined,
    approvals: grants ? new ApprovalsPage({ ctx, csrf, grants, breakGlass, signIn: toSignIn, requirement: config.grants?.approvers.acr ? { acr: config.grants.approvers.acr } : undefined }) : undefined,
    breakGlass: new BreakGlassPage({ ctx, csrf, breakGlass, signIn: toSignIn }),
  };
  idp.warmUp();
  return {
    authenticator: new Authenticator(ctx, signIn),
    endpoints: new ReservedEndpoints(ctx, signIn, logout, signer, pages),
    signer,
    sessions,
    authHost: authUrl.hostname,
    authUrl,
    close: () => sessions.close(),
  };
}

import { randomBytes } from 'node:crypto';
import * as oidc from 'openid-client';
import type { Exchange, Response } from '../exchange.js';
import { normalizeRequest } from '../normalize.js';
import type { CompiledRoute } from '../routes.js';
import type { Json } from '../store/store.js';
import { digest, redirect } from './http.js';
import { IdpUnavailableError } from './relying-party.js';
import type { IdentityContext } from './service.js';
import type { SessionRecord } from './sessions.js';
import { checkStrength, type AuthRequirement } from './strength.js';

/*
 * Sign-in, for every route through one IdP client and one redirect URI:
 *
 *   app host          302 to the auth host's /.wardgate/sign-in?rd=<original URL>
 *   auth host         a transaction per sign-in (so any number of tabs can sign in at
 *                     once), then 302 to the IdP with state, nonce and PKCE (S256)
 *   IdP               the user authenticates
 *   auth host         /.wardgate/callback redeems the code, creates the session, and
 *                     hands it to the app host with a single-use code
 *   app host          /.wardgate/handoff sets the host's own cookie, 302 to the original URL
 *
 * wardgate's own pages on the auth host that need a signed-in user (the access and
 * approvals pages) start a sign-in too, and it returns to them: only to those exact paths
 * on the auth origin, which already holds the new session cookie, so no handoff is needed.
 *
 * Both hops are bound to the browser that began them, by a cookie of their own (one per
 * sign-in, so any number of tabs can sign in at once without overwriting each other): the
 * transaction by one on the auth host, the handoff code by one on the app host. A callback
 * or handoff link lured into another browser signs nobody in.
 */

export const SIGN_IN_PATH = '/.wardgate/sign-in';
export const CALLBACK_PATH = '/.wardgate/callback';
export const HANDOFF_PATH = '/.wardgate/handoff';
export const LOGIN_PATH = '/.wardgate/login';

const TRANSACTION_TTL_MS = 10 * 60_000;
const HANDOFF_TTL_MS = 60_000;
// `<cookie id>.<digest of the cookie's secret>`, as the app host puts it in the sign-in URL.
const APP_BINDING = /^([A-Za-z0-9_-]{8})\.([A-Za-z0-9_-]{43})$/;
const APP_COOKIE = '__Host-wardgate-signin-';
const TRANSACTION_COOKIE = '__Host-wardgate-tx-';

const transactionCookie = (state: string): string => `${TRANSACTION_COOKIE}${digest(state).slice(0, 16)}`;

interface Transaction {
  /** The auth host's browser id: the session's group for sign-out. */
  browser: string;
  /** The app host's binding, checked again at the handoff. */
  appBrowser: string;
  returnTo: string;
  /** The IdP was asked for a stronger authentication: a weak answer is final. */
  strengthAsked: boolean;
  stepUp: boolean;
  /** What the policy asked for, checked again on return. */
  requirement: AuthRequirement;
  nonce: string;
  codeVerifier: string;
  maxAgeSeconds: number | null;
}

interface Handoff {
  sessionId: string;
  hostname: string;
  appBrowser: string;
  returnTo: string;
}

interface ReturnTarget {
  url: URL;
  /** Undefined for one of wardgate's own pages on the auth host. */
  route: CompiledRoute | undefined;
}

// acr and amr values are short tokens (RFC 6749 scope-token syntax); a handful at most.
const STRENGTH_VALUES = /^[\x21\x23-\x5b\x5d-\x7e]{1,64}(?: [\x21\x23-\x5b\x5d-\x7e]{1,64}){0,7}$/;
const MAX_AGE = /^\d{1,8}$/;

/** What the sign-in link asks the IdP for; malformed values are ignored, never passed on. */
/** Puts what a sign-in must bring into the sign-in link (read back by requirementOf). */
function asking(url: URL, ask: { stepUp: boolean; requirement: AuthRequirement | undefined }): void {
  if (ask.stepUp) url.searchParams.set('step-up', '1');
  const { acr, amr, maxAgeMs } = ask.requirement ?? {};
  if (acr) url.searchParams.set('acr', acr.join(' '));
  if (amr) url.searchParams.set('amr', amr.join(' '));
  if (maxAgeMs !== undefined) url.searchParams.set('max_age', String(Math.floor(maxAgeMs / 1000)));
}

function requirementOf(params: URLSearchParams): AuthRequirement {
  const acr = params.get('acr');
  const amr = params.get('amr');
  const maxAge = params.get('max_age');
  return {
    ...(acr !== null && STRENGTH_VALUES.test(acr) ? { acr: acr.split(' ') } : {}),
    ...(amr !== null && STRENGTH_VALUES.test(amr) ? { amr: amr.split(' ') } : {}),
    ...(maxAge !== null && MAX_AGE.test(maxAge) ? { maxAgeMs: Number(maxAge) * 1000 } : {}),
  };
}

export type Refuse = (status: number, reason: string, cookies?: readonly string[]) => void;

export class SignInFlow {
  private readonly authPages: ReadonlySet<string>;

  /** `authPages`: paths of wardgate's own pages on the auth host a sign-in may return to. */
  constructor(private readonly ctx: IdentityContext, authPages: readonly string[] = []) {
    this.authPages = new Set(authPages);
  }

  /**
   * Sends a browser that needs to sign in (or step up) for this request to the auth host,
   * with what the route's policy needs from the IdP. Those parameters can only make the
   * IdP ask for more; whatever comes back is decided by the policy again.
   */
  redirectToSignIn(ex: Exchange, res: Response, ask: { stepUp: boolean; requirement: AuthRequirement | undefined }, cookies: string[], returnTo?: string): void {
    const canonical = ex.canonical!;
    const id = randomBytes(6).toString('base64url');
    const secret = randomBytes(24).toString('base64url');
    cookies.push(this.ctx.cookies.pending(`${APP_COOKIE}${id}`, secret, TRANSACTION_TTL_MS, this.ctx.now()));
    const url = new URL(SIGN_IN_PATH, this.ctx.authUrl);
    url.searchParams.set('rd', `${this.ctx.authUrl.protocol}//${canonical.authority}${returnTo ?? `${canonical.path}${canonical.query}`}`);
    url.searchParams.set('b', `${id}.${digest(secret)}`);
    asking(url, ask);
    redirect(res, url.href, cookies);
  }

  /**
   * Sends a visitor of one of wardgate's own pages on the auth host to sign in, and back:
   * signed out, or (with `requirement`, the approvals page's) not strongly enough.
   */
  signInToAuthPage(ex: Exchange, res: Response, requirement?: AuthRequirement): void {
    const url = new URL(SIGN_IN_PATH, this.ctx.authUrl);
    url.searchParams.set('rd', `${this.ctx.authUrl.origin}${ex.canonical!.path}${ex.canonical!.query}`);
    if (requirement) asking(url, { stepUp: true, requirement });
    redirect(res, url.href);
  }

  /**
   * GET /.wardgate/login?return=<path> on an application host: signs the browser in here
   * and returns to `return` (a path this host routes), whatever the route's rules would say
   * to a request without a sign-in. Breaking the glass ends here: the device or network
   * rules that made it necessary would otherwise refuse the browser before it signs in, and
   * only a signed-in person can be let in by emergency access.
   */
  async loginHere(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const raw = new URLSearchParams(ex.canonical!.query).get('return');
    // A path of printable ASCII without backslashes (URL parsing reads `\` as `/`, which
    // would make `/\evil.example` a protocol-relative `//evil.example`).
    const url = raw && raw.startsWith('/') && !raw.startsWith('//') && /^[\x21-\x5b\x5d-\x7e]+$/.test(raw)
      ? parsedUrl(`${this.ctx.authUrl.protocol}//${ex.canonical!.authority}${raw}`) : undefined;
    const target = url ? routedUrl(this.ctx, url) : undefined;
    if (!target || target.url.host !== ex.canonical!.authority || target.url.pathname.startsWith('//')) return refuse(400, 'return-url-invalid');
    const cookie = this.ctx.cookies.session(ex.req.headers);
    const found = cookie.state === 'present' ? await this.ctx.sessions.lookup(cookie.sessionId) : undefined;
    // Absolute, on this very origin: never a path a browser could read as another host.
    if (found?.ok) return redirect(res, target.url.href);
    this.redirectToSignIn(ex, res, { stepUp: false, requirement: target.route.policy.signInHint }, [], `${target.url.pathname}${target.url.search}`);
  }

  /** GET /.wardgate/sign-in on the auth host. */
  async start(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const { ctx } = this;
    const params = new URLSearchParams(ex.canonical!.query);
    const target = this.returnTarget(params.get('rd'));
    const appBrowser = params.get('b') ?? '';
    // An application host binds the handoff to its browser; the auth host's own pages need no handoff.
    if (!target || (target.route && !APP_BINDING.test(appBrowser))) return refuse(400, 'return-url-invalid');
    let stepUp = params.get('step-up') === '1';
    const now = ctx.now();
    const browser = ctx.cookies.browser(ex.req.headers, now);
    const cookies = browser.setCookie ? [browser.setCookie] : [];
    const requirement = requirementOf(params);

    const existing = browser.setCookie ? undefined : ctx.cookies.session(ex.req.headers);
    if (!stepUp && existing?.state === 'present') {
      const found = await ctx.sessions.lookup(existing.sessionId);
      if (found.ok) {
        // Signed in at the auth host already, strongly enough: no trip to the IdP.
        if (checkStrength(found.identity, requirement, now).ok) return this.handOff(res, found.record, target, appBrowser, cookies);
        // Signed in, but too weakly for this route: the IdP's session is as weak, so this
        // is a step-up, and the IdP must authenticate the user afresh.
        stepUp = true;
      }
    }

    const check = checkStrength({ amr: [], acr: undefined, authTime: undefined }, requirement, now);
    const acrValues = check.ok ? undefined : check.acrValues;
    // A first sign-in needs no forced re-authentication; a step-up for an amr does.
    const maxAgeSeconds = check.ok ? undefined : requirement.maxAgeMs !== undefined ? check.maxAgeSeconds : stepUp ? check.maxAgeSeconds : undefined;
    const state = oidc.randomState();
    const transaction: Transaction = {
      browser: browser.id,
      appBrowser,
      returnTo: target.url.href,
      // What the IdP can be asked for (acr, max_age); an amr it cannot, so a first weak
      // answer there still gets one step-up with a fresh authentication.
      strengthAsked: stepUp || requirement.acr !== undefined || requirement.maxAgeMs !== undefined,
      stepUp,
      requirement,
      nonce: oidc.randomNonce(),
      codeVerifier: oidc.randomPKCECodeVerifier(),
      maxAgeSeconds: maxAgeSeconds ?? null,
    };
    let location: URL;
    try {
      location = await ctx.idp.authorizationUrl({
        state,
        nonce: transaction.nonce,
        codeChallenge: await oidc.calculatePKCECodeChallenge(transaction.codeVerifier),
        acrValues,
        maxAgeSeconds,
        forceLogin: stepUp,
      });
    } catch (err) {
      if (!(err instanceof IdpUnavailableError)) throw err;
      ctx.metrics.logins.inc({ result: 'idp_unavailable' });
      ctx.logger.warn({ reqId: ex.id, err: err.message }, 'sign-in refused: IdP unavailable');
      return refuse(503, 'idp-unavailable', cookies);
    }
    await ctx.store.set(`signin:${state}`, transaction as unknown as Json, TRANSACTION_TTL_MS);
    if (stepUp) ctx.metrics.stepUps.inc({ result: 'requested' });
    cookies.push(ctx.cookies.pending(transactionCookie(state), state, TRANSACTION_TTL_MS, now));
    redirect(res, location.href, cookies);
  }

  /** GET /.wardgate/callback on the auth host: the IdP's answer. */
  async callback(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const { ctx } = this;
    const query = ex.canonical!.query;
    const params = new URLSearchParams(query);
    const state = params.get('state');
    // take: a state (and so a code) is redeemed once, whatever arrives a second time.
    const transaction = state ? await ctx.store.take<Json>(`signin:${state}`) as Transaction | undefined : undefined;
    if (!state || !transaction) {
      ctx.metrics.logins.inc({ result: 'state_invalid' });
      return refuse(400, 'signin-state-invalid');
    }
    if (ctx.cookies.openPending(ex.req.headers, transactionCookie(state)) !== state) {
      ctx.metrics.logins.inc({ result: 'browser_mismatch' });
      return refuse(400, 'signin-browser-mismatch');
    }
    const target = this.returnTarget(transaction.returnTo);
    if (!target) return refuse(400, 'return-url-invalid');
    if (params.has('error')) {
      ctx.metrics.logins.inc({ result: 'idp_error' });
      ctx.logger.info({ reqId: ex.id, error: params.get('error')?.slice(0, 100) }, 'the IdP refused the sign-in');
      return refuse(403, 'signin-idp-error');
    }
    let tokens;
    try {
      tokens = await ctx.idp.redeem(new URL(`${CALLBACK_PATH}${query}`, ctx.authUrl), {
        state,
        nonce: transaction.nonce,
        codeVerifier: transaction.codeVerifier,
        maxAgeSeconds: transaction.maxAgeSeconds ?? undefined,
      });
    } catch (err) {
      const unavailable = err instanceof IdpUnavailableError;
      ctx.metrics.logins.inc({ result: unavailable ? 'idp_unavailable' : 'failed' });
      ctx.logger.warn({ reqId: ex.id, err: (err as Error).message }, 'sign-in failed');
      return refuse(unavailable ? 503 : 400, unavailable ? 'idp-unavailable' : 'signin-failed');
    }
    const now = ctx.now();
    const record = await ctx.sessions.create(tokens, transaction.browser, transaction.strengthAsked);
    ctx.metrics.logins.inc({ result: 'success' });
    ctx.logger.info({ reqId: ex.id, sub: record.sub, acr: record.acr, amr: record.amr, route: target.route?.id }, 'signed in');
    const cookies = [ctx.cookies.sessionCookie(record.id, record.expiresAt, now), ctx.cookies.clear(transactionCookie(state))];
    const strong = checkStrength(record, transaction.requirement, now).ok;
    if (transaction.stepUp) ctx.metrics.stepUps.inc({ result: strong ? 'success' : 'insufficient' });
    // Asked for more and given less: say so now, rather than send the user round again.
    if (!strong && transaction.strengthAsked) return refuse(403, 'auth-strength-insufficient', cookies);
    return this.handOff(res, record, target, transaction.appBrowser, cookies);
  }

  /** GET /.wardgate/handoff on an app host: turns a single-use code into this host's cookie. */
  async handoff(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const { ctx } = this;
    const code = new URLSearchParams(ex.canonical!.query).get('code');
    const handoff = code ? await ctx.store.take<Json>(`handoff:${code}`) as Handoff | undefined : undefined;
    if (!handoff || handoff.hostname !== ex.canonical!.host) return refuse(400, 'handoff-invalid');
    const [, id, expected] = APP_BINDING.exec(handoff.appBrowser) ?? [];
    const secret = id ? ctx.cookies.openPending(ex.req.headers, `${APP_COOKIE}${id}`) : undefined;
    if (secret === undefined || digest(secret) !== expected) return refuse(400, 'handoff-browser-mismatch');
    const found = await ctx.sessions.lookup(handoff.sessionId);
    if (!found.ok) return refuse(400, 'handoff-invalid');
    const returnTo = new URL(handoff.returnTo);
    redirect(res, `${returnTo.pathname}${returnTo.search}`, [
      ctx.cookies.sessionCookie(found.record.id, found.record.expiresAt, ctx.now()),
      ctx.cookies.clear(`${APP_COOKIE}${id}`),
    ]);
  }

  private async handOff(res: Response, record: SessionRecord, { url: target, route }: ReturnTarget, appBrowser: string, cookies: string[]): Promise<void> {
    // The auth host's own page: this host's session cookie is set, so straight back to it.
    if (!route) return redirect(res, target.href, cookies);
    const code = randomBytes(32).toString('base64url');
    const handoff: Handoff = { sessionId: record.id, hostname: target.hostname, appBrowser, returnTo: target.href };
    await this.ctx.store.set(`handoff:${code}`, handoff as unknown as Json, HANDOFF_TTL_MS);
    redirect(res, `${target.origin}${HANDOFF_PATH}?code=${code}`, cookies);
  }

  /**
   * The URL to return to after sign-in: only ever a routed origin, on wardgate's scheme and
   * port, or one of the `authPages` on the auth origin itself (exact paths, any query).
   */
  private returnTarget(rd: string | null): ReturnTarget | undefined {
    const url = parsedUrl(rd);
    if (!url) return undefined;
    const { authUrl } = this.ctx;
    if (url.origin === authUrl.origin && this.authPages.has(url.pathname) && !url.username && !url.password && !url.hash) return { url, route: undefined };
    return routedUrl(this.ctx, url);
  }
}

/**
 * `url` when it is a routed application's URL, on wardgate's scheme and port, with the
 * route that serves it: the only places wardgate sends a browser back to (after sign-in,
 * after breaking the glass). No userinfo, no fragment, a path the router serves.
 */
export function routedUrl(ctx: Pick<IdentityContext, 'authUrl' | 'router'>, url: URL): { url: URL; route: CompiledRoute } | undefined {
  const { authUrl, router } = ctx;
  if (url.protocol !== authUrl.protocol || url.port !== authUrl.port || url.username || url.password || url.hash) return undefined;
  const normalized = normalizeRequest('GET', `${url.pathname}${url.search}`, ['host', url.host]);
  if (!normalized.ok) return undefined;
  const route = router.match(normalized.request.host, normalized.request.routingPath);
  return route ? { url, route } : undefined;
}

/** `text` as an absolute URL, or undefined. */
export function parsedUrl(text: string | null, maxLength = 8192): URL | undefined {
  if (!text || text.length > maxLength) return undefined;
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

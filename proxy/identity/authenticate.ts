import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Exchange, Response } from '../exchange.js';
import { sendRefusal, writeRefusal } from '../pages/refusal.js';
import type { CompiledRoute } from '../routes.js';
import type { Identity } from './identity.js';
import type { IdentityContext } from './service.js';
import type { SignInFlow } from './sign-in.js';
import { checkStrength, type StrengthCheck } from './strength.js';

/*
 * The authenticate stage: who is behind this request, from a session cookie (browsers) or
 * a bearer token (API clients), and whether they authenticated strongly enough for the
 * route. Browsers without a session are sent to sign in; API clients get 401 with
 * WWW-Authenticate, never a redirect.
 */

export type Authentication =
  | { ok: true; identity: Identity }
  | {
    ok: false;
    /** login: no identity; step-up: one too weak; refuse: nothing to retry. */
    action: 'login' | 'step-up' | 'refuse';
    status: number;
    reason: string;
    /** The bearer token's problem, for WWW-Authenticate. */
    bearerError?: 'invalid_token' | 'insufficient_user_authentication';
    check?: StrengthCheck;
    /** The session cookie this browser sent is dead: clear it. */
    clearSession: boolean;
  };

// A session from a sign-in that asked for more and got a weaker acr or amr is refused, not
// stepped up again, for this long: the user just answered the IdP and got no stronger.
const STEP_UP_FINAL_MS = 5 * 60_000;

/** Top-level navigations may be redirected to sign in; fetches, forms and API calls may not. */
function isNavigation(req: IncomingMessage): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  if (req.headers.authorization !== undefined) return false;
  const mode = req.headers['sec-fetch-mode'];
  if (mode !== undefined) return mode === 'navigate';
  return (req.headers.accept ?? '').includes('text/html');
}

function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined || header.length < 8) return undefined;
  // RFC 7235: the scheme is case-insensitive.
  return header.charCodeAt(6) === 0x20 && header.slice(0, 6).toLowerCase() === 'bearer' ? header.slice(7).trim() : undefined;
}

const quoted = (value: string): string => `"${value.replace(/["\\]/g, '')}"`;

export class Authenticator {
  constructor(private readonly ctx: IdentityContext, private readonly signIn: SignInFlow) {}

  async authenticate(ex: Exchange, route: CompiledRoute): Promise<Authentication> {
    const { ctx } = this;
    const headers = ex.req.headers;
    const now = ctx.now();
    const requirement = route.auth.requirement;
    if (route.auth.bearer) {
      const token = bearerToken(headers.authorization);
      if (token !== undefined) {
        const result = await ctx.verifyBearer(token);
        if (!result.ok) {
          ctx.metrics.credentialsRejected.inc({ kind: 'bearer', reason: result.reason });
          const unavailable = result.reason === 'idp-unavailable';
          return { ok: false, action: 'login', status: unavailable ? 503 : 401, reason: result.reason, bearerError: 'invalid_token', clearSession: false };
        }
        const check = checkStrength(result.identity, requirement, now);
        if (check.ok) return { ok: true, identity: result.identity };
        return { ok: false, action: 'step-up', status: 401, reason: 'auth-strength-insufficient', bearerError: 'insufficient_user_authentication', check, clearSession: false };
      }
    }
    let clearSession = false;
    if (route.auth.session) {
      const cookie = ctx.cookies.session(headers);
      if (cookie.state === 'present') {
        const found = await ctx.sessions.lookup(cookie.sessionId);
        if (found.ok) {
          const check = checkStrength(found.identity, requirement, now);
          if (check.ok) return { ok: true, identity: found.identity };
          // An authentication that aged is always renewed; one that was never strong enough
          // and was just stepped up is not sent round again.
          const neverStrong = !check.ok && check.missing.some((missing) => missing !== 'auth-age');
          if (neverStrong && found.record.steppedUp && now - found.record.createdAt < STEP_UP_FINAL_MS) {
            return { ok: false, action: 'refuse', status: 403, reason: 'auth-strength-insufficient', check, clearSession: false };
          }
          return { ok: false, action: 'step-up', status: 401, reason: 'step-up-required', check, clearSession: false };
        }
        ctx.metrics.credentialsRejected.inc({ kind: 'cookie', reason: found.reason });
        clearSession = true;
      } else if (cookie.state === 'invalid') {
        // Tampered, expired, or sealed with a key no longer listed: no session, and counted.
        ctx.metrics.credentialsRejected.inc({ kind: 'cookie', reason: 'cookie-invalid' });
        clearSession = true;
      }
    }
    return { ok: false, action: 'login', status: 401, reason: 'login-required', clearSession };
  }

  /** Answers a request that did not authenticate: a sign-in redirect for browsers, 401/403 otherwise. */
  respond(ex: Exchange, res: Response, route: CompiledRoute, failure: Extract<Authentication, { ok: false }>): void {
    ex.reason = failure.reason;
    const cookies = failure.clearSession ? [this.ctx.cookies.clearSession()] : [];
    if (failure.action !== 'refuse' && failure.status === 401 && route.auth.session && isNavigation(ex.req)) {
      this.signIn.redirectToSignIn(ex, res, failure.action === 'step-up', cookies);
      return;
    }
    const headers: Record<string, string | string[]> = { 'www-authenticate': this.challenge(route, failure) };
    if (cookies.length) headers['set-cookie'] = cookies;
    sendRefusal(res, { status: failure.status, reason: failure.reason, requestId: ex.id, headers }, ex.req.headers.accept);
  }

  /** The same, on a WebSocket handshake: it cannot follow a redirect. */
  refuseUpgrade(ex: Exchange, socket: Socket, route: CompiledRoute, failure: Extract<Authentication, { ok: false }>): number {
    ex.reason = failure.reason;
    const headers = { 'www-authenticate': this.challenge(route, failure) };
    writeRefusal(socket, { status: failure.status, reason: failure.reason, requestId: ex.id, headers }, ex.req.headers.accept);
    return failure.status;
  }

  private challenge(route: CompiledRoute, failure: Extract<Authentication, { ok: false }>): string {
    if (!route.auth.bearer) return 'Session realm="wardgate"';
    let value = 'Bearer realm="wardgate"';
    if (failure.bearerError) value += `, error="${failure.bearerError}"`;
    // RFC 9470: tell the client what authentication would do.
    const check = failure.check;
    if (check && !check.ok) {
      if (check.acrValues) value += `, acr_values=${quoted(check.acrValues.join(' '))}`;
      if (check.maxAgeSeconds !== undefined) value += `, max_age=${check.maxAgeSeconds}`;
    }
    return value;
  }
}

import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Exchange, Response } from '../exchange.js';
import { sendRefusal, writeRefusal } from '../pages/refusal.js';
import type { SessionFacts } from '../policy/context.js';
import type { Decision } from '../policy/decision.js';
import type { CompiledRoute } from '../routes.js';
import { bearerToken, quoted } from './http.js';
import type { Identity } from './identity.js';
import type { IdentityContext } from './service.js';
import type { SignInFlow } from './sign-in.js';
import type { AuthRequirement } from './strength.js';

/*
 * The authenticate stage: who is behind this request, from a session cookie (browsers) or
 * a bearer token (API clients). Whether that is enough is the policy's call; this file
 * also answers the two decisions that send the user back to the IdP: login and step-up.
 * Browsers are redirected to sign in; API clients get 401 with WWW-Authenticate, never a
 * redirect.
 */

export interface SessionState extends SessionFacts {
  /** Made by a sign-in that asked for more strength (see STEP_UP_FINAL_MS). */
  steppedUp: boolean;
}

export type Authentication =
  | { kind: 'identified'; identity: Identity; session: SessionState | undefined }
  /** No credential, or a session that is gone: the policy decides between login and deny. */
  | { kind: 'anonymous'; clearSession: boolean }
  /** A bearer token that does not verify, or cannot be checked now. */
  | { kind: 'refused'; status: number; reason: string };

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


type BearerError = 'invalid_token' | 'insufficient_user_authentication';

export class Authenticator {
  constructor(private readonly ctx: IdentityContext, private readonly signIn: SignInFlow) {}

  async authenticate(ex: Exchange, route: CompiledRoute): Promise<Authentication> {
    const { ctx } = this;
    const headers = ex.req.headers;
    if (route.auth.bearer) {
      const token = bearerToken(headers.authorization);
      if (token !== undefined) {
        const result = await ctx.verifyBearer(token);
        if (result.ok) return { kind: 'identified', identity: result.identity, session: undefined };
        ctx.metrics.credentialsRejected.inc({ kind: 'bearer', reason: result.reason });
        return { kind: 'refused', status: result.reason === 'idp-unavailable' ? 503 : 401, reason: result.reason };
      }
    }
    let clearSession = false;
    if (route.auth.session) {
      const cookie = ctx.cookies.session(headers);
      if (cookie.state === 'present') {
        const found = await ctx.sessions.lookup(cookie.sessionId);
        if (found.ok) {
          const { record } = found;
          return {
            kind: 'identified',
            identity: found.identity,
            session: { createdAt: record.createdAt, lastSeenAt: found.lastSeenAt, steppedUp: record.steppedUp },
          };
        }
        ctx.metrics.credentialsRejected.inc({ kind: 'cookie', reason: found.reason });
        clearSession = true;
      } else if (cookie.state === 'invalid') {
        // Tampered, expired, or sealed with a key no longer listed: no session, and counted.
        ctx.metrics.credentialsRejected.inc({ kind: 'cookie', reason: 'cookie-invalid' });
        clearSession = true;
      }
    }
    return { kind: 'anonymous', clearSession };
  }

  /** Answers a bearer token that was refused: 401 (or 503), never a redirect. */
  refuse(ex: Exchange, res: Response, route: CompiledRoute, auth: Extract<Authentication, { kind: 'refused' }>): void {
    ex.reason = auth.reason;
    const headers = { 'www-authenticate': this.wwwAuthenticate(route, 'invalid_token', undefined) };
    sendRefusal(res, { status: auth.status, reason: auth.reason, requestId: ex.id, headers }, ex.req.headers.accept);
  }

  /**
   * Answers a login or step-up decision: browsers go to sign in (asking the IdP for what the
   * policy lacks), API clients get 401 saying what would do (RFC 9470).
   */
  challenge(ex: Exchange, res: Response, route: CompiledRoute, decision: Decision, auth: Authentication): void {
    const stepUp = decision.outcome === 'step-up';
    const cookies = auth.kind === 'anonymous' && auth.clearSession ? [this.ctx.cookies.clearSession()] : [];
    const requirement = stepUp ? decision.stepUp : route.policy.signInHint;
    if (stepUp && this.stepUpIsFutile(decision, auth)) {
      ex.reason = 'auth-strength-insufficient';
      sendRefusal(res, { status: 403, reason: ex.reason, requestId: ex.id }, ex.req.headers.accept);
      return;
    }
    ex.reason = stepUp ? 'step-up-required' : 'login-required';
    if (route.auth.session && isNavigation(ex.req)) {
      this.signIn.redirectToSignIn(ex, res, { stepUp, requirement }, cookies);
      return;
    }
    const headers: Record<string, string | string[]> = {
      'www-authenticate': this.wwwAuthenticate(route, stepUp ? 'insufficient_user_authentication' : undefined, stepUp ? requirement : undefined),
    };
    if (cookies.length) headers['set-cookie'] = cookies;
    sendRefusal(res, { status: 401, reason: ex.reason, requestId: ex.id, headers }, ex.req.headers.accept);
  }

  /** The same, on a WebSocket handshake: it cannot follow a redirect. */
  challengeUpgrade(ex: Exchange, socket: Socket, route: CompiledRoute, decision: Decision, auth: Authentication): number {
    const stepUp = decision.outcome === 'step-up';
    const futile = stepUp && this.stepUpIsFutile(decision, auth);
    ex.reason = futile ? 'auth-strength-insufficient' : stepUp ? 'step-up-required' : 'login-required';
    const status = futile ? 403 : 401;
    const headers = futile ? undefined : {
      'www-authenticate': this.wwwAuthenticate(route, stepUp ? 'insufficient_user_authentication' : undefined, stepUp ? decision.stepUp : undefined),
    };
    writeRefusal(socket, { status, reason: ex.reason, requestId: ex.id, ...(headers ? { headers } : {}) }, ex.req.headers.accept);
    return status;
  }

  /** Refusals of bearer tokens on a WebSocket handshake. */
  refuseUpgrade(ex: Exchange, socket: Socket, route: CompiledRoute, auth: Extract<Authentication, { kind: 'refused' }>): number {
    ex.reason = auth.reason;
    const headers = { 'www-authenticate': this.wwwAuthenticate(route, 'invalid_token', undefined) };
    writeRefusal(socket, { status: auth.status, reason: auth.reason, requestId: ex.id, headers }, ex.req.headers.accept);
    return auth.status;
  }

  /**
   * A session that a step-up sign-in just made, and that is still too weak for anything
   * but its age: the IdP gave what it could, so sending the user round again would loop.
   */
  private stepUpIsFutile(decision: Decision, auth: Authentication): boolean {
    if (auth.kind !== 'identified' || !auth.session?.steppedUp) return false;
    const onlyAge = decision.reasons.every((reason) => reason === 'auth-age-exceeded' || reason === 'session-age-exceeded' || reason === 'idle-exceeded');
    return !onlyAge && this.ctx.now() - auth.session.createdAt < STEP_UP_FINAL_MS;
  }

  private wwwAuthenticate(route: CompiledRoute, error: BearerError | undefined, requirement: AuthRequirement | undefined): string {
    if (!route.auth.bearer) return 'Session realm="wardgate"';
    let value = 'Bearer realm="wardgate"';
    if (error) value += `, error="${error}"`;
    // RFC 9470: tell the client what authentication would do.
    if (requirement?.acr) value += `, acr_values=${quoted(requirement.acr.join(' '))}`;
    if (requirement?.maxAgeMs !== undefined) value += `, max_age=${Math.floor(requirement.maxAgeMs / 1000)}`;
    return value;
  }
}

import type { Exchange, Response } from '../exchange.js';
import { ACCESS_PATH, type AccessPage } from '../pages/access.js';
import { APPROVALS_PATH, type ApprovalsPage } from '../pages/approvals.js';
import { BREAK_GLASS_PATH, type BreakGlassPage } from '../pages/break-glass.js';
import { sendRefusal } from '../pages/refusal.js';
import { StoreUnavailableError } from '../store/store.js';
import type { AssertionSigner } from './assertion.js';
import { sendJson } from './http.js';
import { BACKCHANNEL_PATH, LOGOUT_PATH, SIGNED_OUT_PATH, type LogoutFlow } from './logout.js';
import type { IdentityContext } from './service.js';
import { CALLBACK_PATH, HANDOFF_PATH, LOGIN_PATH, SIGN_IN_PATH, type Refuse, type SignInFlow } from './sign-in.js';

/*
 * wardgate's reserved paths. They exist on the auth host and on every routed host, ahead
 * of routing, so an application's own paths can never shadow them and none of them is
 * ever forwarded upstream.
 */

export const RESERVED_PREFIX = '/.wardgate/';
export const JWKS_PATH = '/.well-known/wardgate/jwks.json';
const ME_PATH = '/.wardgate/me';

export function isReservedPath(path: string): boolean {
  return path.startsWith(RESERVED_PREFIX) || path === JWKS_PATH;
}

type Handler = (ex: Exchange, res: Response, refuse: Refuse) => void | Promise<void>;

interface Endpoint {
  /** Where it is served: the auth host, application hosts, or both. */
  on: 'auth' | 'app' | 'any';
  GET?: Handler;
  POST?: Handler;
}

/** The access pages: requests and approvals exist only when grants are configured. */
export interface AccessPages {
  access: AccessPage | undefined;
  approvals: ApprovalsPage | undefined;
  breakGlass: BreakGlassPage;
}

export class ReservedEndpoints {
  private readonly table: Map<string, Endpoint>;

  constructor(private readonly ctx: IdentityContext, signIn: SignInFlow, logout: LogoutFlow, signer: AssertionSigner, pages: AccessPages) {
    const { access, approvals, breakGlass } = pages;
    this.table = new Map<string, Endpoint>([
      [JWKS_PATH, {
        on: 'any',
        GET: (_ex, res) => sendJson(res, 200, signer.jwks(), { 'cache-control': 'public, max-age=300' }),
      }],
      [SIGN_IN_PATH, { on: 'auth', GET: (ex, res, refuse) => signIn.start(ex, res, refuse) }],
      [CALLBACK_PATH, { on: 'auth', GET: (ex, res, refuse) => signIn.callback(ex, res, refuse) }],
      [HANDOFF_PATH, { on: 'app', GET: (ex, res, refuse) => signIn.handoff(ex, res, refuse) }],
      [LOGIN_PATH, { on: 'app', GET: (ex, res, refuse) => signIn.loginHere(ex, res, refuse) }],
      [LOGOUT_PATH, { on: 'any', GET: (ex, res) => logout.page(ex, res), POST: (ex, res, refuse) => logout.submit(ex, res, refuse) }],
      [SIGNED_OUT_PATH, { on: 'auth', GET: (ex, res) => logout.signedOut(ex, res) }],
      [BACKCHANNEL_PATH, { on: 'auth', POST: (ex, res) => logout.backchannel(ex, res) }],
      [ME_PATH, { on: 'any', GET: (ex, res) => this.me(ex, res) }],
      [BREAK_GLASS_PATH, { on: 'auth', GET: (ex, res, refuse) => breakGlass.show(ex, res, refuse), POST: (ex, res, refuse) => breakGlass.submit(ex, res, refuse) }],
    ]);
    // Without a grants section nobody asks for or approves access: both pages are 404s.
    if (access) this.table.set(ACCESS_PATH, { on: 'auth', GET: (ex, res, refuse) => access.show(ex, res, refuse), POST: (ex, res, refuse) => access.submit(ex, res, refuse) });
    if (approvals) this.table.set(APPROVALS_PATH, { on: 'auth', GET: (ex, res, refuse) => approvals.show(ex, res, refuse), POST: (ex, res, refuse) => approvals.submit(ex, res, refuse) });
  }

  /** Answers a reserved path on the auth host (`onAuthHost`) or a routed host. */
  async handle(ex: Exchange, res: Response, onAuthHost: boolean): Promise<void> {
    const refuse: Refuse = (status, reason, cookies = []) => {
      ex.reason = reason;
      sendRefusal(res, { status, reason, requestId: ex.id, headers: cookies.length ? { 'set-cookie': [...cookies] } : {} }, ex.req.headers.accept);
    };
    const endpoint = this.table.get(ex.canonical!.path);
    if (!endpoint || (endpoint.on === 'auth' && !onAuthHost) || (endpoint.on === 'app' && onAuthHost)) return refuse(404, 'no-route');
    const method = ex.req.method === 'HEAD' ? 'GET' : ex.req.method;
    const handler = method === 'GET' || method === 'POST' ? endpoint[method] : undefined;
    if (!handler) return refuse(405, 'endpoint-method');
    try {
      await handler(ex, res, refuse);
    } catch (err) {
      const unavailable = err instanceof StoreUnavailableError;
      this.ctx.logger.error({ reqId: ex.id, path: ex.canonical!.path, err: (err as Error).message }, 'identity endpoint failed');
      if (!res.headersSent) refuse(unavailable ? 503 : 500, unavailable ? 'store-unavailable' : 'internal-error');
      else res.destroy();
    }
  }

  /** Who this host's session says you are: for users and the help desk, never tokens. */
  private async me(ex: Exchange, res: Response): Promise<void> {
    const cookie = this.ctx.cookies.session(ex.req.headers);
    const found = cookie.state === 'present' ? await this.ctx.sessions.lookup(cookie.sessionId) : undefined;
    if (!found?.ok) return sendJson(res, 401, { signedIn: false });
    const { identity, record } = found;
    sendJson(res, 200, {
      signedIn: true,
      sub: identity.sub,
      email: identity.email,
      name: identity.name,
      groups: identity.groups,
      amr: identity.amr,
      acr: identity.acr,
      authTime: identity.authTime,
      sessionCreatedAt: new Date(record.createdAt).toISOString(),
      sessionExpiresAt: new Date(record.expiresAt).toISOString(),
    });
  }
}

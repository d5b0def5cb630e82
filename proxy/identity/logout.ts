import type { Exchange, Response } from '../exchange.js';
import type { CsrfTokens } from '../pages/csrf.js';
import { signedOutPage, signOutPage } from '../pages/sign-out.js';
import type { Json } from '../store/store.js';
import { sendJson, readForm, redirect, sendPage, BodyTooLargeError } from './http.js';
import { verifyLogoutToken } from './logout-token.js';
import type { Refuse } from './sign-in.js';
import type { IdentityContext } from './service.js';
import type { SessionRecord } from './sessions.js';

/*
 * Ending sessions from the browser and from the IdP.
 *
 *   /.wardgate/logout              GET: a confirmation form; POST (CSRF-checked): ends every
 *                                  session this browser signed in with, then RP-initiated
 *                                  logout at the IdP
 *   /.wardgate/signed-out          auth host: where the IdP sends the browser back
 *   /.wardgate/backchannel-logout  auth host: the IdP's logout tokens (by sid or sub)
 */

export const LOGOUT_PATH = '/.wardgate/logout';
export const SIGNED_OUT_PATH = '/.wardgate/signed-out';
export const BACKCHANNEL_PATH = '/.wardgate/backchannel-logout';

// Before sign-in there may be no session: the sign-out form's token is bound to the browser.
const PURPOSE = 'logout';

export class LogoutFlow {
  constructor(private readonly ctx: IdentityContext, private readonly csrf: CsrfTokens) {}

  /** GET /.wardgate/logout: a form, because a link or an image tag must not sign anyone out. */
  page(ex: Exchange, res: Response): void {
    const browser = this.ctx.cookies.browser(ex.req.headers, this.ctx.now());
    sendPage(res, 200, signOutPage(this.csrf.token(PURPOSE, ex.canonical!.host, browser.id)), browser.setCookie ? [browser.setCookie] : []);
  }

  /** POST /.wardgate/logout. */
  async submit(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const { ctx } = this;
    let form: URLSearchParams;
    try {
      form = await readForm(ex.req);
    } catch (err) {
      return refuse(err instanceof BodyTooLargeError ? 413 : 400, err instanceof BodyTooLargeError ? 'body-too-large' : 'malformed-request');
    }
    const browser = ctx.cookies.existingBrowser(ex.req.headers);
    const site = ex.req.headers['sec-fetch-site'];
    if (!browser || !this.csrf.valid(PURPOSE, ex.canonical!.host, browser, form.get('csrf')) || (site !== undefined && site !== 'same-origin' && site !== 'none')) {
      return refuse(403, 'csrf-failed');
    }
    const cookie = ctx.cookies.session(ex.req.headers);
    let record: SessionRecord | undefined;
    if (cookie.state === 'present') {
      record = await ctx.store.get<Json>(`session:${cookie.sessionId}`) as SessionRecord | undefined;
      if (record) {
        await ctx.sessions.endByBrowser(record.binding, 'logout');
        await ctx.sessions.end([record.id], 'logout');
        ctx.logger.info({ reqId: ex.id, sub: record.sub }, 'signed out');
      }
    }
    const cookies = [ctx.cookies.clearSession()];
    const signedOut = new URL(SIGNED_OUT_PATH, ctx.authUrl).href;
    let location = signedOut;
    try {
      // No state: the signed-out page only clears cookies, so there is nothing to carry.
      location = (await ctx.idp.endSessionUrl(record?.idToken, signedOut))?.href ?? signedOut;
    } catch (err) {
      // The session is over here either way; the IdP's own session outlives it.
      ctx.logger.warn({ reqId: ex.id, err: (err as Error).message }, 'RP-initiated logout skipped: IdP unavailable');
    }
    redirect(res, location, cookies);
  }

  /** GET /.wardgate/signed-out on the auth host. */
  async signedOut(ex: Exchange, res: Response): Promise<void> {
    const cookie = this.ctx.cookies.session(ex.req.headers);
    if (cookie.state === 'present') await this.ctx.sessions.end([cookie.sessionId], 'logout');
    sendPage(res, 200, signedOutPage(), [this.ctx.cookies.clearSession()]);
  }

  /** POST /.wardgate/backchannel-logout on the auth host. */
  async backchannel(ex: Exchange, res: Response): Promise<void> {
    const { ctx } = this;
    let form: URLSearchParams;
    try {
      form = await readForm(ex.req);
    } catch {
      return sendJson(res, 400, { error: 'invalid_request', error_description: 'unreadable body' });
    }
    const token = form.get('logout_token');
    if (!token) return sendJson(res, 400, { error: 'invalid_request', error_description: 'logout_token is missing' });
    let keys;
    try {
      keys = await ctx.idp.keys();
    } catch {
      return sendJson(res, 503, { error: 'temporarily_unavailable', error_description: 'the IdP keys cannot be fetched' });
    }
    const result = await verifyLogoutToken(token, {
      issuer: keys.issuer,
      audience: ctx.clientId,
      jwks: keys.getKey,
      algorithms: ctx.idTokenAlgorithms,
      store: ctx.store,
      now: ctx.now,
    });
    if (!result.ok) {
      ctx.logger.warn({ reqId: ex.id, reason: result.reason, detail: result.detail }, 'back-channel logout token refused');
      const unavailable = result.reason === 'idp-unavailable' || result.reason === 'store-unavailable';
      return sendJson(res, unavailable ? 503 : 400, { error: unavailable ? 'temporarily_unavailable' : 'invalid_request', error_description: result.reason });
    }
    // Per the spec, sid names one IdP session; sub alone means all of the user's.
    const ended = result.sid !== undefined
      ? await ctx.sessions.endByIdpSid(result.sid, 'backchannel')
      : await ctx.sessions.endBySubject(result.sub!, 'backchannel');
    ctx.logger.info({ reqId: ex.id, sub: result.sub, sid: result.sid, ended }, 'back-channel logout');
    sendJson(res, 200, { ended });
  }
}

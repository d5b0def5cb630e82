import type { Exchange, Response } from '../exchange.js';
import type { BreakGlassService } from '../grants/break-glass.js';
import { GrantError } from '../grants/errors.js';
import { reasonSchema } from '../grants/input.js';
import { redirect, sendPage } from '../identity/http.js';
import type { IdentityContext } from '../identity/service.js';
import { LOGIN_PATH, parsedUrl, routedUrl, type Refuse } from '../identity/sign-in.js';
import type { CompiledRoute } from '../routes.js';
import { FORM_PAGE_HEADERS, type CsrfTokens } from './csrf.js';
import { ACCESS_STYLE, errorBox, length, signedInAs } from './grant-view.js';
import { escapeHtml, pageShell } from './html.js';
import { checkedForm, visitorOf, type Visitor } from './page-request.js';

/*
 * Breaking the glass, on wardgate's auth host: `GET /.wardgate/break-glass?return=<url>`
 * asks for a reason and says plainly what happens next; the POST opens emergency access to
 * the route that serves `return` and sends the browser back there. The route's deny page
 * links here for people in its break-glass groups. It lives on the auth host, not on the
 * application's, so that nothing the application serves on its own origin (an injected
 * script, say) can read this form's token and break the glass for the person. `return` is
 * a routed application's URL on wardgate's scheme and port, as after a sign-in.
 */

export const BREAK_GLASS_PATH = '/.wardgate/break-glass';
const PURPOSE = 'break-glass';

interface Target {
  url: URL;
  route: CompiledRoute;
}

export interface BreakGlassPageOptions {
  ctx: IdentityContext;
  csrf: CsrfTokens;
  breakGlass: BreakGlassService;
  /** Sends a visitor signed out on the auth host to sign in, and back to this page. */
  signIn: (ex: Exchange, res: Response) => void;
}

/** The link a deny page offers: this page on the auth host, to come back to `returnUrl`. */
export function breakGlassLink(authUrl: URL, returnUrl: string): string {
  return `${new URL(BREAK_GLASS_PATH, authUrl).href}?${new URLSearchParams({ return: returnUrl })}`;
}

export class BreakGlassPage {
  constructor(private readonly options: BreakGlassPageOptions) {}

  /** GET /.wardgate/break-glass?return=<url> */
  async show(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const target = this.target(new URLSearchParams(ex.canonical!.query).get('return'));
    if (!target) return refuse(400, 'return-url-invalid');
    const visitor = await visitorOf(this.options.ctx, ex);
    if (!visitor) return this.options.signIn(ex, res);
    if (!this.mayBreak(target, visitor, refuse)) return;
    this.render(ex, res, 200, visitor, target, '', undefined);
  }

  /** POST /.wardgate/break-glass: opens emergency access, then 303 back to `return`. */
  async submit(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const checked = await checkedForm(this.options.ctx, this.options.csrf, PURPOSE, ex, refuse);
    if (!checked) return;
    const { form, visitor } = checked;
    const target = this.target(form.get('return'));
    if (!target) return refuse(400, 'return-url-invalid');
    if (!this.mayBreak(target, visitor, refuse)) return;
    const reason = form.get('reason') ?? '';
    try {
      const parsed = reasonSchema.safeParse(reason);
      if (!parsed.success) throw new GrantError('break-glass-not-allowed', parsed.error.issues[0]?.message ?? 'the reason is malformed');
      await this.options.breakGlass.start(target.route.id, visitor.actor, parsed.data);
      // Through the application host's sign-in: its rules may refuse a browser not signed in there.
      const back = `${target.url.origin}${LOGIN_PATH}?${new URLSearchParams({ return: `${target.url.pathname}${target.url.search}` })}`;
      redirect(res, back, [], 303);
    } catch (err) {
      if (!(err instanceof GrantError)) throw err;
      ex.reason = err.code;
      this.render(ex, res, err.status, visitor, target, reason, err);
    }
  }

  /** The route's terms let this visitor break the glass; refuses (403) when not. */
  private mayBreak(target: Target, visitor: Visitor, refuse: Refuse): boolean {
    if (!target.route.policy.breakGlass) {
      refuse(403, 'break-glass-not-configured');
      return false;
    }
    if (!this.options.breakGlass.termsFor(target.route.id, visitor.identity.groups)) {
      refuse(403, 'break-glass-not-allowed');
      return false;
    }
    return true;
  }

  /** `return` as a routed application URL; its href is ASCII, fit for a Location header. */
  private target(raw: string | null): Target | undefined {
    const url = parsedUrl(raw, 4096);
    return url ? routedUrl(this.options.ctx, url) : undefined;
  }

  private render(ex: Exchange, res: Response, status: number, visitor: Visitor, target: Target, reason: string, error: GrantError | undefined): void {
    const { route } = target;
    const lasts = length(route.policy.breakGlass!.duration);
    const body = `<p class="warning"><strong>Only in an emergency.</strong> Breaking the glass lets you into <code>${escapeHtml(route.id)}</code> `
      + `for ${escapeHtml(lasts)} without its usual conditions. It is logged, the security team is alerted at once, every response is marked `
      + 'as emergency access, and the security team reviews every use afterwards.</p>'
      + `<p>${signedInAs(visitor.identity)}</p>`
      + (error ? errorBox(error) : '')
      + `<form method="post" action="${BREAK_GLASS_PATH}">`
      + `<input type="hidden" name="csrf" value="${escapeHtml(this.options.csrf.token(PURPOSE, ex.canonical!.host, visitor.sessionId))}">`
      + `<input type="hidden" name="return" value="${escapeHtml(target.url.href)}">`
      + '<label for="reason">Why you need access now (the security team reads this)</label>'
      + `<textarea id="reason" name="reason" required minlength="10" maxlength="500">${escapeHtml(reason)}</textarea>`
      + `<p><button type="submit">Break the glass: open ${escapeHtml(route.id)} for ${escapeHtml(lasts)}</button></p></form>`
      + `<p><a href="${escapeHtml(target.url.href)}">Back without emergency access</a></p>`;
    sendPage(res, status, pageShell('Emergency access', body, ACCESS_STYLE), [], FORM_PAGE_HEADERS);
  }
}

import type { Exchange, Response } from '../exchange.js';
import type { BreakGlassService } from '../grants/break-glass.js';
import { GrantError } from '../grants/errors.js';
import { reasonSchema } from '../grants/input.js';
import { redirect, sendPage } from '../identity/http.js';
import type { IdentityContext } from '../identity/service.js';
import type { Refuse } from '../identity/sign-in.js';
import { normalizeRequest } from '../normalize.js';
import type { CompiledRoute } from '../routes.js';
import { FORM_PAGE_HEADERS, type CsrfTokens } from './csrf.js';
import { ACCESS_STYLE, errorBox, length, signedInAs } from './grant-view.js';
import { escapeHtml, pageShell } from './html.js';
import { checkedForm, visitorOf, type Visitor } from './page-request.js';

/*
 * Breaking the glass, on an application's own host (where the user's session cookie for
 * it lives): `GET /.wardgate/break-glass?return=<path>` asks for a reason and says plainly
 * what happens next; the POST opens emergency access to the route that serves `return`
 * and sends the browser back there. The route's deny page links here for people in its
 * break-glass groups. `return` is a path on this same host, never a URL: the page can only
 * send the browser back into the application it is about.
 */

export const BREAK_GLASS_PATH = '/.wardgate/break-glass';
const PURPOSE = 'break-glass';

interface Target {
  /** Canonical path and query on this host. */
  path: string;
  route: CompiledRoute;
}

export interface BreakGlassPageOptions {
  ctx: IdentityContext;
  csrf: CsrfTokens;
  breakGlass: BreakGlassService;
}

/** The link a deny page offers: this page, to come back to `path` (path and query on the same host). */
export function breakGlassLink(path: string): string {
  return `${BREAK_GLASS_PATH}?${new URLSearchParams({ return: path })}`;
}

export class BreakGlassPage {
  constructor(private readonly options: BreakGlassPageOptions) {}

  /** GET /.wardgate/break-glass?return=<path> */
  async show(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const target = this.target(ex, new URLSearchParams(ex.canonical!.query).get('return'));
    if (!target) return refuse(400, 'return-url-invalid');
    const visitor = await visitorOf(this.options.ctx, ex);
    // Signed out on this host: the application sends the browser to sign in, and its
    // deny page links back here if the glass is still needed.
    if (!visitor) return redirect(res, target.path);
    if (!this.mayBreak(target, visitor, refuse)) return;
    this.render(ex, res, 200, visitor, target, '', undefined);
  }

  /** POST /.wardgate/break-glass: opens emergency access, then 303 back to `return`. */
  async submit(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const checked = await checkedForm(this.options.ctx, this.options.csrf, PURPOSE, ex, refuse);
    if (!checked) return;
    const { form, visitor } = checked;
    const target = this.target(ex, form.get('return'));
    if (!target) return refuse(400, 'return-url-invalid');
    if (!this.mayBreak(target, visitor, refuse)) return;
    const reason = form.get('reason') ?? '';
    try {
      const parsed = reasonSchema.safeParse(reason);
      if (!parsed.success) throw new GrantError('break-glass-not-allowed', parsed.error.issues[0]?.message ?? 'the reason is malformed');
      await this.options.breakGlass.start(target.route.id, visitor.actor, parsed.data);
      redirect(res, target.path, [], 303);
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

  /** `return` as a routed path on this host: a single leading slash, no scheme, no host. */
  private target(ex: Exchange, raw: string | null): Target | undefined {
    // Printable ASCII only: it ends up in a Location header, which takes nothing else.
    if (!raw || raw.length > 4096 || !raw.startsWith('/') || raw.startsWith('//') || raw.startsWith('/\\') || /[^\x21-\x7e]/.test(raw)) return undefined;
    const normalized = normalizeRequest('GET', raw, ['host', ex.canonical!.authority]);
    if (!normalized.ok) return undefined;
    const { host, path, routingPath, query } = normalized.request;
    const route = this.options.ctx.router.match(host, routingPath);
    return route ? { path: `${path}${query}`, route } : undefined;
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
      + `<input type="hidden" name="return" value="${escapeHtml(target.path)}">`
      + '<label for="reason">Why you need access now (the security team reads this)</label>'
      + `<textarea id="reason" name="reason" required minlength="10" maxlength="500">${escapeHtml(reason)}</textarea>`
      + `<p><button type="submit">Break the glass: open ${escapeHtml(route.id)} for ${escapeHtml(lasts)}</button></p></form>`
      + `<p><a href="${escapeHtml(target.path)}">Back without emergency access</a></p>`;
    sendPage(res, status, pageShell('Emergency access', body, ACCESS_STYLE), [], FORM_PAGE_HEADERS);
  }
}

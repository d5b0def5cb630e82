import type { Exchange, Response } from '../exchange.js';
import { GrantError } from '../grants/errors.js';
import type { Grant } from '../grants/grant.js';
import { grantRequestSchema, type GrantRequestInput } from '../grants/input.js';
import type { GrantService } from '../grants/service.js';
import { redirect, sendPage } from '../identity/http.js';
import type { IdentityContext } from '../identity/service.js';
import type { Refuse } from '../identity/sign-in.js';
import { FORM_PAGE_HEADERS, type CsrfTokens } from './csrf.js';
import { ACCESS_STYLE, errorBox, grantRoutes, grantStatus, grantWindow, justification, signedInAs, span, table } from './grant-view.js';
import { escapeHtml, pageShell } from './html.js';
import { checkedForm, visitorOf, type Visitor } from './page-request.js';

/*
 * The access page, on the auth host: a signed-in person (a vendor's engineer, typically)
 * sees their grants and requests, and asks for a route for a window with a reason. The
 * grant service judges the request; this page only turns the form into one and shows the
 * answer. Plain HTML forms, no script.
 */

export const ACCESS_PATH = '/.wardgate/access';
const PURPOSE = 'access';

// The lengths offered; the cap (grants.maxDuration) trims the list and is offered itself.
const LENGTHS_MINUTES = [30, 60, 120, 240, 480];
const DEFAULT_MINUTES = 60;
// `datetime-local` as browsers send it: no offset, read as UTC (the label says so).
const LOCAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?$/;

/** The form's fields as sent, kept to fill the form in again after a refusal. */
interface FormValues {
  route: string;
  path: string;
  readOnly: boolean;
  start: string;
  duration: string;
  justification: string;
  ticket: string;
}

export interface AccessPageOptions {
  ctx: IdentityContext;
  csrf: CsrfTokens;
  grants: GrantService;
  /** grants.maxDuration, ms. */
  maxDuration: number;
  /** Sends a signed-out visitor to sign in and back to this page. */
  signIn: (ex: Exchange, res: Response) => void;
}

export class AccessPage {
  private readonly lengths: number[];

  constructor(private readonly options: AccessPageOptions) {
    const capMinutes = Math.floor(options.maxDuration / 60_000);
    this.lengths = LENGTHS_MINUTES.filter((minutes) => minutes < capMinutes);
    this.lengths.push(capMinutes);
  }

  /** GET /.wardgate/access[?route=<id>][&requested=<grant id>] */
  async show(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const visitor = await visitorOf(this.options.ctx, ex);
    if (!visitor) return this.options.signIn(ex, res);
    if (!this.options.grants.mayRequest(visitor.actor)) return refuse(403, 'grant-requester-not-allowed');
    const params = new URLSearchParams(ex.canonical!.query);
    const values: FormValues = {
      route: params.get('route') ?? '',
      path: '',
      readOnly: false,
      start: '',
      duration: String(Math.min(DEFAULT_MINUTES, this.lengths.at(-1)!)),
      justification: '',
      ticket: '',
    };
    await this.render(ex, res, 200, visitor, values, { requested: params.get('requested') ?? undefined });
  }

  /** POST /.wardgate/access: one request; 303 back to the page, or the page with the refusal. */
  async submit(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const checked = await checkedForm(this.options.ctx, this.options.csrf, PURPOSE, ex, refuse);
    if (!checked) return;
    const { form, visitor } = checked;
    if (!this.options.grants.mayRequest(visitor.actor)) return refuse(403, 'grant-requester-not-allowed');
    const values: FormValues = {
      route: form.get('route') ?? '',
      path: (form.get('path') ?? '').trim(),
      readOnly: form.get('readOnly') === '1',
      start: (form.get('start') ?? '').trim(),
      duration: form.get('duration') ?? '',
      justification: form.get('justification') ?? '',
      ticket: form.get('ticket') ?? '',
    };
    try {
      const grant = await this.options.grants.request(requestOf(values, this.options.ctx.now()), visitor.actor);
      redirect(res, `${ACCESS_PATH}?requested=${grant.id}`, [], 303);
    } catch (err) {
      if (!(err instanceof GrantError)) throw err;
      ex.reason = err.code;
      await this.render(ex, res, err.status, visitor, values, { error: err });
    }
  }

  private async render(ex: Exchange, res: Response, status: number, visitor: Visitor, values: FormValues, note: { requested?: string; error?: GrantError }): Promise<void> {
    const { grants, csrf, ctx } = this.options;
    const now = ctx.now();
    const mine = await this.grantsOf(visitor);
    let body = `<p>${signedInAs(visitor.identity)}`;
    if (grants.isApprover(visitor.actor)) body += ' You approve access requests on <a href="/.wardgate/approvals">the approvals page</a>.';
    body += '</p>';
    const requested = note.requested !== undefined ? mine.find((grant) => grant.id === note.requested) : undefined;
    if (requested) {
      body += `<p class="done" role="status">Request <code>${escapeHtml(requested.id)}</code> sent. `
        + `It needs ${requested.approvalsRequired} approval${requested.approvalsRequired === 1 ? '' : 's'}; this page shows when it is in force.</p>`;
    }
    if (note.error) body += errorBox(note.error);

    body += '<h2>Your access</h2>';
    body += mine.length === 0 ? '<p>You have no grants or requests.</p>' : table(['Grant', 'Application', 'Window', 'State', 'Reason given'], mine.map((grant) => ({
      id: grant.id,
      cells: [`<code>${escapeHtml(grant.id)}</code>`, grantRoutes(grant), grantWindow(grant), grantStatus(grant, now), justification(grant)],
    })));

    body += '<h2>Ask for access</h2>';
    const routes = grants.grantableRoutes();
    if (routes.length === 0) {
      body += '<p>No application here is opened by access grants.</p>';
    } else {
      const option = (value: string, label: string, selected: boolean): string => `<option value="${escapeHtml(value)}"${selected ? ' selected' : ''}>${escapeHtml(label)}</option>`;
      body += `<form method="post" action="${ACCESS_PATH}">`
        + `<input type="hidden" name="csrf" value="${escapeHtml(csrf.token(PURPOSE, ex.canonical!.host, visitor.sessionId))}">`
        + `<label for="route">Application</label><select id="route" name="route" required>${routes.map((id) => option(id, id, id === values.route)).join('')}</select>`
        + `<label for="path">Only under this path (optional)</label><input type="text" id="path" name="path" placeholder="/api" value="${escapeHtml(values.path)}">`
        + `<label><input type="checkbox" name="readOnly" value="1"${values.readOnly ? ' checked' : ''}> Read only (GET and HEAD requests only, no WebSockets such as a terminal)</label>`
        + `<label for="start">Start, in UTC (leave empty to start now)</label><input type="datetime-local" id="start" name="start" value="${escapeHtml(values.start)}">`
        + `<label for="duration">For</label><select id="duration" name="duration">${this.lengths.map((minutes) => option(String(minutes), span(minutes * 60_000), String(minutes) === values.duration)).join('')}</select>`
        + `<label for="justification">Why you need it (approvers read this)</label><textarea id="justification" name="justification" required minlength="10" maxlength="2000">${escapeHtml(values.justification)}</textarea>`
        + `<label for="ticket">Change or incident ticket (optional)</label><input type="text" id="ticket" name="ticket" maxlength="100" value="${escapeHtml(values.ticket)}">`
        + '<p><button type="submit">Ask for access</button></p></form>';
    }
    sendPage(res, status, pageShell('Access requests', body, ACCESS_STYLE), [], FORM_PAGE_HEADERS);
  }

  /** The visitor's grants: those naming their account, and those naming their email. */
  private async grantsOf(visitor: Visitor): Promise<Grant[]> {
    const { grants } = this.options;
    const { sub, email } = visitor.identity;
    const found = await grants.list({ subject: { user: sub } });
    if (email) {
      const seen = new Set(found.map((grant) => grant.id));
      for (const grant of await grants.list({ subject: { email } })) if (!seen.has(grant.id)) found.push(grant);
    }
    return found.sort((a, b) => b.createdAt - a.createdAt);
  }
}

/** The form as a grant request for the visitor themselves; throws grant-invalid when malformed. */
function requestOf(values: FormValues, now: number): GrantRequestInput {
  let notBefore = now;
  if (values.start !== '') {
    notBefore = LOCAL_TIME.test(values.start) ? Date.parse(`${values.start}Z`) : Number.NaN;
    if (Number.isNaN(notBefore)) throw new GrantError('grant-invalid', 'expected a start time such as 2026-11-24T09:00 (UTC), or none to start now');
  }
  if (!/^\d{1,6}$/.test(values.duration)) throw new GrantError('grant-invalid', 'choose how long the access should last');
  const parsed = grantRequestSchema.safeParse({
    routes: [{
      id: values.route,
      ...(values.path !== '' ? { paths: [values.path] } : {}),
      ...(values.readOnly ? { methods: ['GET', 'HEAD'] } : {}),
    }],
    notBefore,
    notAfter: notBefore + Number(values.duration) * 60_000,
    justification: values.justification,
    ...(values.ticket.trim() !== '' ? { ticket: values.ticket } : {}),
  });
  if (!parsed.success) throw new GrantError('grant-invalid', parsed.error.issues[0]?.message ?? 'the request is malformed');
  return parsed.data;
}

import type { Exchange, Response } from '../exchange.js';
import { breakGlassState, type BreakGlassService } from '../grants/break-glass.js';
import { GrantError } from '../grants/errors.js';
import { describeSubject, grantState, isOver, type Grant } from '../grants/grant.js';
import { reasonSchema } from '../grants/input.js';
import { ID_PATTERN } from '../grants/records.js';
import type { GrantService } from '../grants/service.js';
import { redirect, sendPage } from '../identity/http.js';
import type { IdentityContext } from '../identity/service.js';
import { checkStrength, type AuthRequirement } from '../identity/strength.js';
import type { Refuse } from '../identity/sign-in.js';
import { ACCESS_PATH } from './access.js';
import { FORM_PAGE_HEADERS, type CsrfTokens } from './csrf.js';
import { ACCESS_STYLE, breakGlassStatus, errorBox, grantRoutes, grantStatus, grantWindow, justification, length, signedInAs, table, utc, who } from './grant-view.js';
import { escapeHtml, pageShell } from './html.js';
import { checkedForm, visitorOf, type Visitor } from './page-request.js';

/*
 * The approvers' page, on the auth host: requests waiting for a decision, grants in force
 * or about to be (with the time they have left, and a way to end them now), grants that
 * ended lately, and the security team's review list of every break-glass use. Each button
 * is a small form of its own, so a click changes one thing; the services judge every
 * action (self-approval, approving twice, acting on what is already over) and a refusal is
 * shown on the page with its code.
 */

export const APPROVALS_PATH = '/.wardgate/approvals';
const PURPOSE = 'approvals';
// Ended grants stay on the page for reference; the admin API and the audit log keep them all.
const RECENTLY_ENDED = 20;

const ACTIONS = ['approve', 'deny', 'revoke', 'review-break-glass', 'end-break-glass'] as const;
type Action = (typeof ACTIONS)[number];
const DONE: Record<Action, string> = {
  approve: 'Approved',
  deny: 'Denied',
  revoke: 'Revoked',
  'review-break-glass': 'Marked as reviewed:',
  'end-break-glass': 'Ended emergency access',
};

const isAction = (value: string | null): value is Action => ACTIONS.includes(value as Action);

export interface ApprovalsPageOptions {
  ctx: IdentityContext;
  csrf: CsrfTokens;
  grants: GrantService;
  breakGlass: BreakGlassService;
  /** Sends a visitor to sign in (strongly enough, with a requirement) and back to this page. */
  signIn: (ex: Exchange, res: Response, requirement?: AuthRequirement) => void;
  /** How strongly approvers must have signed in (grants.approvers.acr); none: any sign-in. */
  requirement: AuthRequirement | undefined;
}

export class ApprovalsPage {
  constructor(private readonly options: ApprovalsPageOptions) {}

  /** GET /.wardgate/approvals[?done=<action>&id=<id>] */
  async show(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const visitor = await visitorOf(this.options.ctx, ex);
    if (!visitor) return this.options.signIn(ex, res);
    if (!this.options.grants.isApprover(visitor.actor)) return refuse(403, 'grant-approver-not-allowed');
    // Approving opens clinical systems to outsiders: a password alone must not do it.
    if (!this.strongEnough(visitor)) return this.options.signIn(ex, res, this.options.requirement);
    const params = new URLSearchParams(ex.canonical!.query);
    const action = params.get('done');
    const id = params.get('id') ?? '';
    const done = isAction(action) && ID_PATTERN.test(id) ? `${DONE[action]} <code>${escapeHtml(id)}</code>.` : undefined;
    await this.render(ex, res, 200, visitor, { done });
  }

  private strongEnough(visitor: Visitor): boolean {
    const { requirement, ctx } = this.options;
    return !requirement || checkStrength(visitor.identity, requirement, ctx.now()).ok;
  }

  /** POST /.wardgate/approvals: one action on one grant or break-glass record; 303 back. */
  async submit(ex: Exchange, res: Response, refuse: Refuse): Promise<void> {
    const checked = await checkedForm(this.options.ctx, this.options.csrf, PURPOSE, ex, refuse);
    if (!checked) return;
    const { form, visitor } = checked;
    const { grants, breakGlass } = this.options;
    if (!grants.isApprover(visitor.actor)) return refuse(403, 'grant-approver-not-allowed');
    if (!this.strongEnough(visitor)) return refuse(403, 'auth-strength-insufficient');
    const action = form.get('action');
    const id = form.get('id') ?? '';
    const { actor } = visitor;
    try {
      switch (action) {
        case 'approve':
          await grants.approve(id, actor);
          break;
        case 'deny':
          await grants.deny(id, actor, textOf(form, 'reason'));
          break;
        case 'revoke':
          await grants.revoke(id, actor, textOf(form, 'reason'));
          break;
        case 'review-break-glass':
          await breakGlass.review(id, actor.principal, textOf(form, 'note'));
          break;
        case 'end-break-glass':
          await breakGlass.end(id, actor.principal);
          break;
        default:
          throw new GrantError('grant-invalid', 'the form asked for an action this page does not know');
      }
      redirect(res, `${APPROVALS_PATH}?${new URLSearchParams({ done: action, id })}`, [], 303);
    } catch (err) {
      if (!(err instanceof GrantError)) throw err;
      ex.reason = err.code;
      await this.render(ex, res, err.status, visitor, { error: err });
    }
  }

  private async render(ex: Exchange, res: Response, status: number, visitor: Visitor, note: { done?: string | undefined; error?: GrantError }): Promise<void> {
    const { grants, breakGlass, csrf, ctx } = this.options;
    const now = ctx.now();
    const token = csrf.token(PURPOSE, ex.canonical!.host, visitor.sessionId);
    const button = (action: Action, id: string, label: string, fields = ''): string => `<form method="post" action="${APPROVALS_PATH}">`
      + `<input type="hidden" name="csrf" value="${escapeHtml(token)}"><input type="hidden" name="action" value="${action}">`
      + `<input type="hidden" name="id" value="${escapeHtml(id)}">${fields}<button type="submit">${escapeHtml(label)}</button></form>`;
    const reasonField = (name: string, label: string): string => `<input type="text" name="${name}" maxlength="500" placeholder="${escapeHtml(label)}" aria-label="${escapeHtml(label)}">`;
    const [all, uses] = await Promise.all([grants.list(), breakGlass.list()]);
    const pending = all.filter((grant) => grantState(grant, now) === 'requested');
    const current = all.filter((grant) => ['active', 'approved'].includes(grantState(grant, now)));
    const ended = all.filter((grant) => isOver(grantState(grant, now)));

    let body = `<p>${signedInAs(visitor.identity)} `
      + 'Nobody approves their own request. Every action here is logged and announced.</p>';
    if (note.done) body += `<p class="done" role="status">${note.done}</p>`;
    if (note.error) body += errorBox(note.error);

    body += `<h2>Waiting for a decision (${pending.length})</h2>`;
    body += pending.length === 0 ? '<p>No requests are waiting.</p>' : table(['Who', 'Application', 'Window', 'Reason given', 'Approvals', 'Decide'], pending.map((grant) => ({ id: grant.id, cells: [
      subjectCell(grant),
      grantRoutes(grant),
      grantWindow(grant),
      justification(grant),
      `${grantStatus(grant, now)}${grant.approvals.length ? `<br>by ${grant.approvals.map((approval) => who(approval.by)).join(', ')}` : ''}`,
      button('approve', grant.id, 'Approve') + button('deny', grant.id, 'Deny', reasonField('reason', 'Reason for denying (optional)')),
    ] })));

    body += `<h2>In force or about to be (${current.length})</h2>`;
    body += current.length === 0 ? '<p>No grants are in force.</p>' : table(['Who', 'Application', 'Window', 'Reason given', 'State', 'End it'], current.map((grant) => ({ id: grant.id, cells: [
      subjectCell(grant),
      grantRoutes(grant),
      grantWindow(grant),
      justification(grant),
      `${grantStatus(grant, now)}<br>approved by ${grant.approvals.map((approval) => who(approval.by)).join(', ')}`,
      button('revoke', grant.id, 'Revoke', reasonField('reason', 'Reason for revoking (optional)')),
    ] })));

    const recent = ended.slice(0, RECENTLY_ENDED);
    body += '<h2>Ended lately</h2>';
    body += recent.length === 0 ? '<p>None.</p>' : table(['Who', 'Application', 'Window', 'Reason given', 'Outcome'], recent.map((grant) => ({ id: grant.id, cells: [
      subjectCell(grant),
      grantRoutes(grant),
      grantWindow(grant),
      justification(grant),
      grantStatus(grant, now),
    ] })));

    const unreviewed = uses.filter((use) => !use.reviewed).length;
    body += `<h2 id="break-glass">Break-glass uses to review (${unreviewed} of ${uses.length} not reviewed)</h2>`;
    body += uses.length === 0 ? '<p>Nobody has broken the glass.</p>' : table(['Who', 'Application', 'Reason given', 'Started', 'State', 'Review'], uses.map((use) => {
      const active = breakGlassState(use, now) === 'active';
      const review = use.reviewed
        ? `reviewed by ${who(use.reviewed.by)}, ${escapeHtml(utc(use.reviewed.at))}${use.reviewed.note ? `: <span class="text">${escapeHtml(use.reviewed.note)}</span>` : ''}`
        : button('review-break-glass', use.id, 'Mark reviewed', reasonField('note', 'What you found'));
      return { id: use.id, cells: [
        `${who(use.user)}<br>groups: ${escapeHtml(use.user.groups.join(', '))}`,
        `<code>${escapeHtml(use.route)}</code>`,
        `<span class="text">${escapeHtml(use.reason)}</span>`,
        `${escapeHtml(utc(use.startedAt))}<br>for ${escapeHtml(length(use.endsAt - use.startedAt))}`,
        breakGlassStatus(use, now) + (active ? button('end-break-glass', use.id, 'End now') : ''),
        review,
      ] };
    }));
    if (grants.mayRequest(visitor.actor)) body += `<p><a href="${ACCESS_PATH}">Your own access requests</a></p>`;
    sendPage(res, status, pageShell('Access approvals', body, ACCESS_STYLE), [], FORM_PAGE_HEADERS);
  }
}

function subjectCell(grant: Grant): string {
  const subject = escapeHtml(describeSubject(grant.subject));
  const asked = describeSubject(grant.subject) === grant.requester.id ? '' : `<br>asked by ${who(grant.requester)}`;
  return `${subject}${asked}`;
}

/** A free-text field of the form (a reason or a note), checked as the admin API checks it. */
function textOf(form: URLSearchParams, name: string): string {
  const parsed = reasonSchema.safeParse(form.get(name) ?? '');
  if (!parsed.success) throw new GrantError('grant-invalid', parsed.error.issues[0]?.message ?? `the ${name} is malformed`);
  return parsed.data;
}

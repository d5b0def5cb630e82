import { breakGlassState, type BreakGlass } from '../grants/break-glass.js';
import { grantState, type Grant, type Principal } from '../grants/grant.js';
import type { Identity } from '../identity/identity.js';
import { escapeHtml } from './html.js';

/*
 * How grants and break-glass records read on the access pages: times in UTC (the request
 * form asks in UTC too, so what a vendor abroad types and what an approver reads agree),
 * lengths in hours and minutes, and each grant's state with the time it has left, derived
 * from the record and the clock as everywhere else. `utc`, `span` and `length` return
 * plain text; the others return HTML with every piece of text in it escaped.
 */

/** Tables and forms a little wider than the sign-out page's single column. */
export const ACCESS_STYLE = 'body{max-width:60rem;margin:2rem auto}table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}'
  + 'th,td{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}'
  + '.text{white-space:pre-wrap;overflow-wrap:anywhere}.error{border-left:4px solid #c00;padding-left:.8rem}'
  + '.done{border-left:4px solid #0a6;padding-left:.8rem}.warning{border-left:4px solid #c60;padding-left:.8rem}'
  + 'label{display:block;margin:.8rem 0 .2rem;font-weight:600}td form{display:inline-block;margin:0 .3rem .3rem 0}'
  + 'input[type=text],textarea,select{font:inherit;width:100%;max-width:36rem}textarea{min-height:5rem}'
  + 'code{background:#f2f2f2;padding:.1rem .3rem}';

/** `2026-11-24 09:00 UTC` */
export function utc(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** `2 h 5 min`, `45 min`, `under a minute`: rounded down, as time left should be. */
export function span(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 1) return 'under a minute';
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return hours === 0 ? `${rest} min` : rest === 0 ? `${hours} h` : `${hours} h ${rest} min`;
}

/** Who the page is for, so a shared screen shows whose access it is. */
export function signedInAs(identity: Identity): string {
  return `Signed in as <strong>${escapeHtml(identity.name ?? identity.sub)}</strong> (${escapeHtml(identity.sub)}${identity.email ? `, ${escapeHtml(identity.email)}` : ''}).`;
}

/** A window's length, to the nearest minute: a window asked to start now opens a moment later. */
export function length(ms: number): string {
  return span(Math.round(ms / 60_000) * 60_000);
}

/** A person or service by name and id. */
export function who(principal: Principal): string {
  const name = principal.name ?? principal.email;
  return escapeHtml(name && name !== principal.id ? `${name} (${principal.id})` : principal.id);
}

/** The routes a grant opens, with their narrowing. */
export function grantRoutes(grant: Grant): string {
  return grant.routes.map((route) => {
    const narrowed = [route.paths?.join(', '), route.methods?.join(', ')].filter((part) => part !== undefined);
    return `<code>${escapeHtml(route.id)}</code>${narrowed.length ? ` (${escapeHtml(narrowed.join('; '))})` : ''}`;
  }).join(', ');
}

export function grantWindow(grant: Grant): string {
  return `${escapeHtml(utc(grant.notBefore))} to ${escapeHtml(utc(grant.notAfter))} (${escapeHtml(length(grant.notAfter - grant.notBefore))})`;
}

/** What the requester said, and their ticket. */
export function justification(grant: Grant): string {
  return `<span class="text">${escapeHtml(grant.justification)}</span>${grant.ticket ? `<br>Ticket: ${escapeHtml(grant.ticket)}` : ''}`;
}

/** The state now, with the time that matters for it. */
export function grantStatus(grant: Grant, now: number): string {
  const state = grantState(grant, now);
  switch (state) {
    case 'requested':
      return `requested: ${grant.approvals.length} of ${grant.approvalsRequired} approvals; lapses in ${escapeHtml(span(grant.requestExpiresAt - now))}`;
    case 'approved':
      return `approved: starts in ${escapeHtml(span(grant.notBefore - now))}`;
    case 'active':
      return `<strong>active</strong>: ${escapeHtml(span(grant.notAfter - now))} left`;
    case 'denied':
      return `denied by ${grant.denial ? who(grant.denial.by) : 'an approver'}${grant.denial?.reason ? `: <span class="text">${escapeHtml(grant.denial.reason)}</span>` : ''}`;
    case 'revoked':
      return `revoked by ${grant.revocation ? who(grant.revocation.by) : 'an approver'}${grant.revocation?.reason ? `: <span class="text">${escapeHtml(grant.revocation.reason)}</span>` : ''}`;
    case 'expired':
      return grant.status === 'requested' ? 'lapsed without a decision' : 'expired';
  }
}

/** A break-glass use's state now: time left, or who ended it and when. */
export function breakGlassStatus(record: BreakGlass, now: number): string {
  if (record.ended) return `ended ${escapeHtml(utc(record.ended.at))} by ${who(record.ended.by)}`;
  if (breakGlassState(record, now) === 'active') return `<strong>active</strong>: ${escapeHtml(span(record.endsAt - now))} left (until ${escapeHtml(utc(record.endsAt))})`;
  return `ended ${escapeHtml(utc(record.endsAt))}`;
}

/** A refused action, with its code for the help desk. */
export function errorBox(error: { code: string; message: string }): string {
  return `<p class="error" role="alert">${escapeHtml(error.message)} <code>${escapeHtml(error.code)}</code></p>`;
}

/** A table of rows of HTML cells; each row carries its record's id, for links and tests. */
export function table(headings: string[], rows: Array<{ id: string; cells: string[] }>): string {
  return `<table><thead><tr>${headings.map((heading) => `<th>${escapeHtml(heading)}</th>`).join('')}</tr></thead><tbody>`
    + rows.map((row) => `<tr id="${escapeHtml(row.id)}">${row.cells.map((cell) => `<td>${cell}</td>`).join('')}</tr>`).join('')
    + '</tbody></table>';
}

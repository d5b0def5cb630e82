import type { Notice, Severity } from '../notify/notice.js';
import type { BreakGlass } from './break-glass.js';
import { describeSubject, type Grant } from './grant.js';
import type { ChangeMessage } from './records.js';

/*
 * A change to a grant or a break-glass record, told to people: one line for a chat
 * channel, and the details for machines. Pure: the authority hands the notice on.
 */

const SEVERITY: Record<ChangeMessage['event'], Severity> = {
  'grant-requested': 'info',
  'grant-approval': 'info',
  'grant-approved': 'info',
  'grant-denied': 'info',
  'grant-activated': 'info',
  'grant-expired': 'info',
  'grant-revoked': 'warning',
  'grant-request-expired': 'info',
  'break-glass-started': 'high',
  'break-glass-ended': 'warning',
  'break-glass-reviewed': 'info',
};

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

function grantLine(message: ChangeMessage, grant: Grant): string {
  const who = describeSubject(grant.subject);
  const where = grant.routes.map((route) => route.id).join(', ');
  const window = `${iso(grant.notBefore)} to ${iso(grant.notAfter)}`;
  const by = message.by ?? 'wardgate';
  switch (message.event) {
    case 'grant-requested':
      return `Access request ${grant.id}: ${who} asks for ${where}, ${window}, because: ${grant.justification}${grant.ticket ? ` (ticket ${grant.ticket})` : ''}. ${grant.approvalsRequired} approval(s) needed.`;
    case 'grant-approval':
      return `Access request ${grant.id} (${who}, ${where}) approved by ${by}: ${grant.approvals.length} of ${grant.approvalsRequired} approvals.`;
    case 'grant-approved':
      return `Access grant ${grant.id} approved by ${by}: ${who} may reach ${where}, ${window}.`;
    case 'grant-denied':
      return `Access request ${grant.id} (${who}, ${where}) denied by ${by}${grant.denial?.reason ? `: ${grant.denial.reason}` : ''}.`;
    case 'grant-activated':
      return `Access grant ${grant.id} is now in force: ${who} may reach ${where} until ${iso(grant.notAfter)}.`;
    case 'grant-expired':
      return `Access grant ${grant.id} has ended: ${who} no longer reaches ${where}.`;
    case 'grant-revoked':
      return `Access grant ${grant.id} revoked by ${by}: ${who} no longer reaches ${where}${grant.revocation?.reason ? ` (${grant.revocation.reason})` : ''}.`;
    case 'grant-request-expired':
      return `Access request ${grant.id} (${who}, ${where}) lapsed without a decision.`;
    default:
      return `Access grant ${grant.id}: ${message.event}.`;
  }
}

function breakGlassLine(message: ChangeMessage, record: BreakGlass): string {
  const who = record.user.email ? `${record.user.id} (${record.user.email})` : record.user.id;
  switch (message.event) {
    case 'break-glass-started':
      return `BREAK-GLASS ${record.id}: ${who} opened emergency access to ${record.route} until ${iso(record.endsAt)}, because: ${record.reason}`;
    case 'break-glass-ended':
      return `Break-glass ${record.id} on ${record.route} by ${who} ended early by ${message.by ?? 'wardgate'}.`;
    case 'break-glass-reviewed':
      return `Break-glass ${record.id} on ${record.route} by ${who} reviewed by ${message.by ?? 'wardgate'}: ${record.reviewed?.note ?? ''}`;
    default:
      return `Break-glass ${record.id}: ${message.event}.`;
  }
}

export function noticeFor(message: ChangeMessage): Notice {
  const base = { event: message.event, severity: SEVERITY[message.event], at: message.at };
  if (message.kind === 'break-glass') {
    const record = message.record as unknown as BreakGlass;
    return {
      ...base,
      summary: breakGlassLine(message, record),
      details: { breakGlass: record.id, route: record.route, user: record.user.id, email: record.user.email, reason: record.reason, endsAt: iso(record.endsAt), by: message.by },
    };
  }
  const grant = message.record as unknown as Grant;
  return {
    ...base,
    summary: grantLine(message, grant),
    details: {
      grant: grant.id,
      subject: describeSubject(grant.subject),
      routes: grant.routes.map((route) => route.id),
      notBefore: iso(grant.notBefore),
      notAfter: iso(grant.notAfter),
      ticket: grant.ticket,
      by: message.by,
    },
  };
}

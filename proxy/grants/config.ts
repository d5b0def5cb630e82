import { z } from 'zod';
import { durationSchema } from '../../config/duration.js';
import { mappingOf, text } from '../policy/criteria/values.js';

/*
 * The `grants:` section: who may ask for time-boxed access, who approves it, and the
 * bounds every grant keeps. Which routes a grant can open is not listed here: it is every
 * route whose policy has a `grant` rule, since on any other route a grant would open nothing.
 */

const duration = durationSchema();
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const groupList = z.array(text('a group name such as security-admins'), { error: 'expected a list of group names such as [security-admins]' });

// Service callers the admin API knows as `client:<client_id>` (bearer) or `cert:<subject>` (mTLS).
const principal = z.string({ error: 'expected a principal such as client:itsm or cert:CN=soc-tool' })
  .regex(/^(?:client|cert):.{1,200}$/, { error: 'expected a principal such as client:itsm (an API client) or cert:CN=soc-tool (an mTLS client certificate subject)' });

export const grantsSchema = z.strictObject({
  /** Longest window one grant may open (the cap: 8 h by default). */
  maxDuration: duration.default(8 * HOUR),
  /** How far ahead a window may start. */
  maxLeadTime: duration.default(30 * DAY),
  /** A request nobody decides on lapses after this long. */
  requestTtl: duration.default(DAY),
  /** How long ended grants are kept for the pages and the admin API (the audit log keeps the history). */
  retention: duration.default(400 * DAY),
  /** How many different approvers must say yes (n of the m in `approvers`). */
  approvals: z.number({ error: 'expected a number of approvals such as 1 or 2' }).int().min(1).max(10).default(1),
  approvers: z.strictObject({
    /** Members of any of these groups approve, deny and revoke on the approver page. */
    groups: groupList.default([]),
    /** Admin API callers that count as approvers (a ticketing system, say). */
    principals: z.array(principal).default([]),
    /**
     * How strongly approvers must have signed in on the approvals page (acr values, such as
     * [phr]): a weaker session is sent back to the IdP to step up before it sees the page.
     */
    acr: z.array(text('an acr value such as phr')).min(1).optional(),
  }, { error: mappingOf('groups, principals or acr', 'approvers such as { groups: [security-admins] }') })
    .refine((approvers) => approvers.groups.length + approvers.principals.length > 0, { error: 'expected at least one approver group or principal' }),
  /**
   * Email domains a grant may name people in before they ever signed in (a vendor's
   * engineers); other subjects must have signed in once, so a typo cannot name a stranger.
   */
  subjectDomains: z.array(z.string().regex(/^[a-z0-9-]+(?:\.[a-z0-9-]+)+$/, { error: 'expected a lower-case email domain such as devicevendor.example' })).default([]),
  /** Who may ask for access on /.wardgate/access; absent: anyone signed in. */
  requesters: z.strictObject({ groups: groupList.refine((list) => list.length > 0, { error: 'expected at least one group' }) }).optional(),
}, { error: mappingOf('maxDuration, maxLeadTime, requestTtl, retention, approvals, approvers, subjectDomains or requesters', 'a grants section') });

export type GrantsConfig = z.output<typeof grantsSchema>;

/** A route's break-glass terms (`policy.breakGlass`). */
export const breakGlassSchema = z.strictObject({
  /** Who may break the glass on this route. */
  groups: groupList.refine((list) => list.length > 0, { error: 'expected at least one group that may break the glass' }),
  /** How long emergency access lasts once started. */
  duration: duration.default(HOUR).refine((ms) => ms <= 12 * HOUR, { error: 'expected break-glass access of at most 12h' }),
}, { error: mappingOf('groups or duration', 'break-glass terms such as { groups: [clinicians], duration: 1h }') });

export type BreakGlassConfig = z.output<typeof breakGlassSchema>;

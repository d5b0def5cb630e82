import type { Decision } from '../policy/decision.js';
import type { RoutePolicy } from '../routes.js';
import type { Refusal, RefusalLink } from './refusal.js';

/*
 * A deny decision as the user sees it: 403 with what was missing in plain words, the
 * reason codes and the deciding rule, and the route's remediation text. A route that
 * hides details says only that access was refused (the audit trail keeps the reasons).
 * Either way the page offers the ways in the user may take (`links`, see access-links.ts).
 */

export function denial(decision: Decision, policy: RoutePolicy, requestId: string, links: readonly RefusalLink[] = []): Refusal {
  if (policy.hideDetails) {
    return {
      status: 403,
      reason: 'access-denied',
      requestId,
      details: { reasons: ['access-denied'], missing: [], rule: undefined, remediation: policy.remediation },
      links,
    };
  }
  return {
    status: 403,
    reason: decision.reasons[0] ?? 'access-denied',
    requestId,
    details: {
      reasons: decision.reasons,
      missing: decision.missing,
      rule: decision.rule ?? (decision.closest ? `none matched (closest: ${decision.closest})` : undefined),
      remediation: policy.remediation,
    },
    links,
  };
}

import { durationSchema } from '../../../config/duration.js';
import { defineCriterion } from '../criterion.js';

/**
 * `sessionAge: 8h`: wardgate's browser session began no longer ago than this.
 *
 * Bearer tokens have no session, so they fail: a route that limits session age is meant
 * for browsers, and a token's own lifetime is the issuer's business (use authAge to bound
 * how long ago its user signed in).
 */
export const sessionAge = defineCriterion({
  name: 'sessionAge',
  schema: durationSchema(),
  category: 'sign-in',
  passReason: 'session-age-ok',
  failReason: 'session-age-exceeded',
  needsIdentity: true,
  compile(maxMs) {
    return (ctx) => ctx.identity !== undefined && ctx.session !== undefined && ctx.time - ctx.session.createdAt <= maxMs;
  },
  // Signing in again starts a new session, which is all this asks for.
  stepUp: () => ({}),
});

import { durationSchema } from '../../../config/duration.js';
import { defineCriterion } from '../criterion.js';

/**
 * `idle: 10m`: the browser session was last active no longer ago than this (shared
 * clinical workstations). Bearer tokens have no session and fail, as for sessionAge.
 */
export const idle = defineCriterion({
  name: 'idle',
  schema: durationSchema(),
  category: 'sign-in',
  passReason: 'idle-ok',
  failReason: 'idle-exceeded',
  needsIdentity: true,
  compile(maxMs) {
    return (ctx) => ctx.identity !== undefined && ctx.session !== undefined && ctx.time - ctx.session.lastSeenAt <= maxMs;
  },
  // Signing in again starts a new, active session.
  stepUp: () => ({}),
});

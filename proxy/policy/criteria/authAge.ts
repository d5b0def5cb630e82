import { durationSchema } from '../../../config/duration.js';
import { defineCriterion } from '../criterion.js';

/**
 * `authAge: 15m`: the user actively authenticated at the IdP (auth_time) no longer ago than
 * this. No auth_time fails: an age we cannot tell is not a young one.
 */
export const authAge = defineCriterion({
  name: 'authAge',
  schema: durationSchema(),
  category: 'authentication',
  passReason: 'auth-age-ok',
  failReason: 'auth-age-exceeded',
  needsIdentity: true,
  compile(maxMs) {
    return (ctx) => {
      const authTime = ctx.identity?.authTime;
      // auth_time is in seconds, the clock in milliseconds. NaN anywhere compares false.
      return authTime !== undefined && ctx.time - authTime * 1000 <= maxMs;
    };
  },
  stepUp: (maxMs) => ({ maxAgeMs: maxMs }),
});

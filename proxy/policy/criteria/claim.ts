import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { listOf, mappingOf, shown, text } from './values.js';

type ClaimValue = string | number | boolean;

const claimValue = z.unknown().refine(
  (input) => typeof input === 'string' || typeof input === 'boolean' || (typeof input === 'number' && Number.isFinite(input)),
  { error: (issue) => `expected a claim value (a string, number or true/false), got ${shown(issue.input)}` },
).transform((input) => input as ClaimValue);

const value = z.strictObject({
  name: text('a claim name such as department'),
  values: listOf(claimValue, 'claim values such as [cardiology]'),
}, { error: mappingOf('name and values', '{ name: <claim>, values: [...] }') });

/**
 * `claim: { name: department, values: [cardiology] }`: the token's claim equals one of the
 * values, or is a list holding one. Types must agree: the string "1" is not the number 1,
 * nor is "true" the boolean true, as a token issuer means them differently.
 */
export const claim = defineCriterion({
  name: 'claim',
  schema: value,
  category: 'identity',
  passReason: 'claim-ok',
  failReason: 'claim-unauthorized',
  needsIdentity: true,
  compile({ name, values }) {
    const wanted = new Set<unknown>(values);
    return (ctx) => {
      if (ctx.identity === undefined) return false;
      const claims = ctx.identity.claims;
      // Own properties only: `constructor` or `__proto__` must not reach Object.prototype.
      if (!Object.hasOwn(claims, name)) return false;
      const held = claims[name];
      if (Array.isArray(held)) {
        for (let i = 0; i < held.length; i++) if (wanted.has(held[i])) return true;
        return false;
      }
      return wanted.has(held);
    };
  },
});

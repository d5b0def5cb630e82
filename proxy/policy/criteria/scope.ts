import { pathPrefixSchema } from '../../../config/path-prefix.js';
import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { fhirRequestOf } from '../fhir-request.js';
import { smartCovers, smartGrants } from '../smart-scopes.js';
import { byShape, expected, isMapping, listOf, mappingOf, shown } from './values.js';

// RFC 6749 scope tokens.
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

const scopeToken = z.string({ error: expected('an OAuth scope such as reports.read') }).refine(
  (input) => SCOPE_TOKEN.test(input),
  { error: (issue) => `expected an OAuth scope such as reports.read (visible ASCII, no spaces, quotes or backslashes), got ${shown(issue.input)}` },
);
const scopeList = listOf(scopeToken, 'OAuth scopes such as [reports.read]');

export interface ScopeValue {
  /** Every one of these. */
  all: string[] | undefined;
  /** At least one of these. */
  any: string[] | undefined;
  /** A SMART on FHIR scope covering the request, read as FHIR REST under this base. */
  smartBase: string | undefined;
}

const KEYS = 'all, any, smart';

const form = z.strictObject({
  all: scopeList.optional(),
  any: scopeList.optional(),
  smart: z.strictObject({ base: pathPrefixSchema }, { error: mappingOf('base', '{ base: /fhir }') }).optional(),
}, { error: mappingOf(`any of ${KEYS}`, `a mapping of any of ${KEYS}`) }).refine((input) => input.all !== undefined || input.any !== undefined || input.smart !== undefined, {
  error: `expected at least one of ${KEYS}, got an empty mapping`,
  // After an unknown key, which says enough, the mapping is not empty: say nothing more.
  when: (payload) => payload.issues.length === 0,
}).transform((input): ScopeValue => ({ all: input.all, any: input.any, smartBase: input.smart?.base }));

const listForm = z.array(z.unknown(), { error: expected('a list of scopes, or { all: [...], any: [...], smart: { base: /fhir } }') })
  .pipe(scopeList)
  .transform((all): ScopeValue => ({ all, any: undefined, smartBase: undefined }));

/**
 * `scope: [reports.read]` or `{ all: [...], any: [...], smart: { base: /fhir } }`: the
 * token's granted scopes hold all of `all`, one of `any`, and (with smart) a SMART on FHIR
 * scope covering the request's resource type and interaction (see smart-scopes.ts). Every
 * given part must hold. A path that is not FHIR REST under the base fails the smart check.
 */
export const scope = defineCriterion({
  name: 'scope',
  schema: byShape(isMapping, form, listForm),
  category: 'scope',
  passReason: 'scope-ok',
  failReason: 'scope-insufficient',
  needsIdentity: true,
  compile({ all, any, smartBase }) {
    const required = all === undefined ? undefined : [...new Set(all)];
    const oneOf = any === undefined ? undefined : new Set(any);
    return (ctx) => {
      if (ctx.identity === undefined) return false;
      const held = ctx.identity.scopes;
      if (required !== undefined) {
        for (let i = 0; i < required.length; i++) if (!held.includes(required[i]!)) return false;
      }
      if (oneOf !== undefined) {
        let found = false;
        for (let i = 0; i < held.length && !found; i++) found = oneOf.has(held[i]!);
        if (!found) return false;
      }
      if (smartBase !== undefined) {
        const request = fhirRequestOf(ctx.request.method, ctx.request.path, smartBase);
        if (request === undefined || !smartCovers(smartGrants(held), request, ctx.request.method)) return false;
      }
      return true;
    };
  },
});

import { pathPrefixSchema } from '../../../config/path-prefix.js';
import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { COMPARTMENT_TYPES, FHIR_INTERACTIONS, RESOURCE_TYPE, fhirRequestOf } from '../fhir-request.js';
import { expected, listOf, mappingOf, shown } from './values.js';

const resourceType = z.string({ error: expected('a FHIR resource type such as Observation, or *') }).refine(
  (input) => input === '*' || RESOURCE_TYPE.test(input),
  { error: (issue) => `expected a FHIR resource type such as Observation (or * for every type), got ${shown(issue.input)}` },
);

const compartment = z.enum(COMPARTMENT_TYPES, {
  error: (issue) => `expected a compartment type: one of ${COMPARTMENT_TYPES.join(', ')}, got ${shown(issue.input)}`,
});

const interaction = z.enum(FHIR_INTERACTIONS, {
  error: (issue) => `expected a FHIR interaction: one of ${FHIR_INTERACTIONS.join(', ')}, got ${shown(issue.input)}`,
});

const KEYS = 'base, types, compartments, interactions';

const value = z.strictObject({
  base: pathPrefixSchema,
  types: listOf(resourceType, 'FHIR resource types such as [Observation]').optional(),
  compartments: listOf(compartment, 'compartment types such as [Patient]').optional(),
  interactions: listOf(interaction, 'FHIR interactions such as [read, search]').optional(),
}, { error: mappingOf(KEYS, '{ base: /fhir, types: [...], compartments: [...], interactions: [...] }') }).refine((input) => input.types !== undefined || input.compartments !== undefined || input.interactions !== undefined, {
  error: 'expected at least one of types, compartments or interactions beside base',
});

/**
 * `fhirResource: { base: /fhir, types: [Observation], compartments: [Patient], interactions: [search] }`:
 * the request is a FHIR REST request under base (see fhir-request.ts) and every given
 * list holds it: its resource type, the compartment it is confined to (a request in no
 * compartment fails a compartments list), its interaction.
 *
 * `*` in types holds every request, including those about no type (capabilities, batch).
 * A request spanning every type (`Patient/1/*`, system-level search, history and
 * operations) is held only by `*`: listing Observation must not let a request for all
 * types through.
 *
 * A path that is not FHIR REST under base fails; a deny rule made of this criterion alone
 * therefore does not refuse such paths (pair it with an allow rule that requires it).
 */
export const fhirResource = defineCriterion({
  name: 'fhirResource',
  schema: value,
  category: 'request',
  passReason: 'fhir-resource-ok',
  failReason: 'fhir-resource-unauthorized',
  needsIdentity: false,
  compile({ base, types, compartments, interactions }) {
    const anyType = types?.includes('*') ?? false;
    const typeSet = types === undefined ? undefined : new Set<string | undefined>(types);
    const compartmentSet = compartments === undefined ? undefined : new Set<string>(compartments);
    const interactionSet = interactions === undefined ? undefined : new Set<string>(interactions);
    return (ctx) => {
      const request = fhirRequestOf(ctx.request.method, ctx.request.path, base);
      if (request === undefined) return false;
      if (typeSet !== undefined && !anyType && !typeSet.has(request.type)) return false;
      if (compartmentSet !== undefined && (request.compartment === undefined || !compartmentSet.has(request.compartment.type))) return false;
      if (interactionSet !== undefined && !interactionSet.has(request.interaction)) return false;
      return true;
    };
  },
});

/*
 * What a FHIR REST request asks for, read from its method and path alone (the query is not
 * seen here): the interaction, the resource type, the id, the compartment. Policies use it
 * to say "read Observations in a Patient compartment" instead of matching path patterns.
 * Only the shapes FHIR R4/R5 define are recognised; anything else is not FHIR REST.
 */

export const FHIR_INTERACTIONS = [
  'read', 'vread', 'update', 'patch', 'delete', 'history', 'create', 'search', 'capabilities', 'batch', 'operation',
] as const;
export type FhirInteraction = typeof FHIR_INTERACTIONS[number];

/** The compartments a FHIR search may be confined to (`Patient/123/Observation`). */
export const COMPARTMENT_TYPES = ['Patient', 'Encounter', 'RelatedPerson', 'Practitioner', 'Device'] as const;
export type CompartmentType = typeof COMPARTMENT_TYPES[number];

export interface FhirRequest {
  readonly interaction: FhirInteraction;
  /**
   * The resource type; `*` when the request spans every type (system-level history, search
   * and operations, `Patient/1/*`); undefined for batch/transaction and capabilities, which
   * are about no type.
   */
  readonly type: string | undefined;
  /** The resource id, for instance-level interactions. */
  readonly id: string | undefined;
  /** The compartment a search is confined to. */
  readonly compartment: { readonly type: string; readonly id: string } | undefined;
  /** The operation's name without its `$` (`everything` for `$everything`). */
  readonly operation: string | undefined;
}

export const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;
const ID = /^[A-Za-z0-9\-.]{1,64}$/;
const OPERATION = /^\$([A-Za-z][A-Za-z0-9_-]{0,63})$/;
const COMPARTMENTS: ReadonlySet<string> = new Set(COMPARTMENT_TYPES);

function request(
  interaction: FhirInteraction,
  type: string | undefined,
  id?: string,
  compartment?: { type: string; id: string },
  operation?: string,
): FhirRequest {
  return { interaction, type, id, compartment, operation };
}

/**
 * A path segment as the FHIR server will read it: a server decodes `%24everything` to
 * `$everything` and `%2A` to `*` (canonical paths keep reserved characters encoded), so
 * the segment is read decoded, or a rule could be walked round by encoding it.
 */
function decoded(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/** Operations may be invoked with GET (when they change nothing) or POST. */
function operation(method: string, type: string, name: string, id?: string): FhirRequest | undefined {
  const match = OPERATION.exec(name);
  if (!match || (method !== 'GET' && method !== 'POST')) return undefined;
  return request('operation', type, id, undefined, match[1]);
}

/**
 * Parses a canonical path (no query) as a FHIR REST request under `base` (a canonical
 * path prefix such as /fhir); undefined when it is not one. HEAD is read as GET, as HTTP
 * defines it: a rule about reads must hold for HEAD too.
 *
 * Beyond the shapes FHIR's REST page lists per interaction, GET [base] and
 * [base]/_search are read as a search of every type (`*`), the system-level search.
 */
export function parseFhirRequest(method: string, path: string, base: string): FhirRequest | undefined {
  // Where the segments after the base begin: at the '/' that follows it.
  let from: number;
  if (base === '/') {
    if (path.charCodeAt(0) !== 47) return undefined;
    from = path.length === 1 ? 1 : 0;
  } else if (path.startsWith(base) && (path.length === base.length || path.charCodeAt(base.length) === 47)) {
    from = base.length;
  } else return undefined;

  const verb = method === 'HEAD' ? 'GET' : method;
  // Split by hand (String.split costs several times as much), stopping past four segments.
  const plain = path.indexOf('%', from) === -1;
  const s: string[] = [];
  for (let at = from; at < path.length;) {
    if (s.length === 4) return undefined;
    const slash = path.indexOf('/', at + 1);
    const end = slash === -1 ? path.length : slash;
    const segment = plain ? path.slice(at + 1, end) : decoded(path.slice(at + 1, end));
    if (segment === undefined || segment === '') return undefined;
    s.push(segment);
    at = end;
  }

  if (s.length === 0) {
    // POST [base]: a batch or transaction Bundle. GET [base]?params: a search of every type.
    if (verb === 'POST') return request('batch', undefined);
    return verb === 'GET' ? request('search', '*') : undefined;
  }
  const first = s[0]!;
  const second = s[1];
  const third = s[2];
  const fourth = s[3];

  if (s.length === 1) {
    if (first === 'metadata') return verb === 'GET' ? request('capabilities', undefined) : undefined;
    if (first === '_history') return verb === 'GET' ? request('history', '*') : undefined;
    if (first === '_search') return verb === 'GET' || verb === 'POST' ? request('search', '*') : undefined;
    if (first.startsWith('$')) return operation(verb, '*', first);
    if (!RESOURCE_TYPE.test(first)) return undefined;
    if (verb === 'GET') return request('search', first);
    return verb === 'POST' ? request('create', first) : undefined;
  }

  if (!RESOURCE_TYPE.test(first)) return undefined;
  const type = first;

  if (s.length === 2) {
    if (second === '_search') return verb === 'GET' || verb === 'POST' ? request('search', type) : undefined;
    if (second === '_history') return verb === 'GET' ? request('history', type) : undefined;
    if (second!.startsWith('$')) return operation(verb, type, second!);
    if (!ID.test(second!)) return undefined;
    switch (verb) {
      case 'GET': return request('read', type, second);
      case 'PUT': return request('update', type, second);
      case 'PATCH': return request('patch', type, second);
      case 'DELETE': return request('delete', type, second);
      default: return undefined;
    }
  }

  const id = second!;
  if (!ID.test(id)) return undefined;
  // Patient/1/Observation and Patient/1/*: a search confined to the compartment.
  const inCompartment = COMPARTMENTS.has(type) && (third === '*' || RESOURCE_TYPE.test(third!));

  if (s.length === 3) {
    if (third === '_history') return verb === 'GET' ? request('history', type, id) : undefined;
    if (third!.startsWith('$')) return operation(verb, type, third!, id);
    if (inCompartment && verb === 'GET') return request('search', third, undefined, { type, id });
    return undefined;
  }

  if (third === '_history') {
    return verb === 'GET' && ID.test(fourth!) ? request('vread', type, id) : undefined;
  }
  if (inCompartment && fourth === '_search' && (verb === 'GET' || verb === 'POST')) {
    return request('search', third, undefined, { type, id });
  }
  return undefined;
}

// Several criteria of one policy read the same request: the last answer is kept, so the
// path is parsed once per request, and a repeated request costs three comparisons.
let lastMethod = '';
let lastPath = '';
let lastBase = '';
let lastResult: FhirRequest | undefined;

/** parseFhirRequest, remembering the last answer; what criteria call on the hot path. */
export function fhirRequestOf(method: string, path: string, base: string): FhirRequest | undefined {
  if (path === lastPath && method === lastMethod && base === lastBase) return lastResult;
  const result = parseFhirRequest(method, path, base);
  lastMethod = method;
  lastPath = path;
  lastBase = base;
  lastResult = result;
  return result;
}

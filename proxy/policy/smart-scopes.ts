import type { FhirRequest } from './fhir-request.js';

/*
 * SMART on FHIR scopes (SMART App Launch v1 and v2), reduced to what a proxy can check:
 * does the token grant the kind of access this request's resource type and interaction
 * need. Which patient a `patient/` scope is limited to is the FHIR server's to enforce,
 * since it needs the resource's contents; so is any narrowing by search parameters.
 *
 *   v1: patient|user|system / Type|* . read|write|*
 *   v2: patient|user|system / Type|* . c?r?u?d?s?   (letters in this order, at least one)
 */

/** Permission bits, in the v2 letter order. */
export const CREATE = 1;
export const READ = 2;
export const UPDATE = 4;
export const DELETE = 8;
export const SEARCH = 16;
const WRITE = CREATE | UPDATE | DELETE;
const ALL = CREATE | READ | UPDATE | DELETE | SEARCH;

const SMART_SCOPE = /^(?:patient|user|system)\/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*|c?r?u?d?s?)$/;

export interface SmartScope {
  /** A resource type, or `*` for every type. */
  type: string;
  permissions: number;
}

/**
 * One scope as a grant, or undefined when it is not a SMART resource scope (openid,
 * launch/patient, fhirUser, ...). A v2 scope with search parameters
 * (`patient/Observation.rs?category=laboratory`) is not read as granting anything: it
 * covers only requests that carry those parameters, and the query is not seen here, so
 * counting it would grant more than the token holds.
 */
export function parseSmartScope(scope: string): SmartScope | undefined {
  const match = SMART_SCOPE.exec(scope);
  if (!match || match[2] === '') return undefined;
  const access = match[2]!;
  let permissions: number;
  if (access === 'read') permissions = READ | SEARCH;
  else if (access === 'write') permissions = WRITE;
  else if (access === '*') permissions = ALL;
  else {
    permissions = 0;
    if (access.includes('c')) permissions |= CREATE;
    if (access.includes('r')) permissions |= READ;
    if (access.includes('u')) permissions |= UPDATE;
    if (access.includes('d')) permissions |= DELETE;
    if (access.includes('s')) permissions |= SEARCH;
  }
  return { type: match[1]!, permissions };
}

/** A token's SMART scopes, merged: permissions per type, and those granted for every type. */
export interface SmartGrants {
  readonly byType: ReadonlyMap<string, number>;
  /** Granted by `*` scopes: for every type. */
  readonly anyType: number;
  /** Every permission granted for some type (or all). */
  readonly someType: number;
}

// A session's identity (and a cached token's) keeps its scope list for its whole life, so
// the grants are worked out once per list. Weak: a list no identity holds any more is
// forgotten with it. Identities' scope lists are never mutated after they are built.
const grantsCache = new WeakMap<readonly string[], SmartGrants>();

export function smartGrants(scopes: readonly string[]): SmartGrants {
  let grants = grantsCache.get(scopes);
  if (grants === undefined) {
    const byType = new Map<string, number>();
    let anyType = 0;
    for (const scope of scopes) {
      const parsed = parseSmartScope(scope);
      if (parsed === undefined) continue;
      if (parsed.type === '*') anyType |= parsed.permissions;
      else byType.set(parsed.type, (byType.get(parsed.type) ?? 0) | parsed.permissions);
    }
    let someType = anyType;
    for (const permissions of byType.values()) someType |= permissions;
    grants = { byType, anyType, someType };
    grantsCache.set(scopes, grants);
  }
  return grants;
}

/**
 * The permissions a request needs, per SMART v2's table: read, vread and instance history
 * need r; search and type- or system-level history need s; create c; update and patch u;
 * delete d. (v1 `read` holds r and s, `write` holds c, u and d.) An operation invoked with
 * GET changes nothing and needs r; with POST it may change anything and needs all of c, u
 * and d (v1 write). 0: no scope can cover it (batch and transaction bundles carry requests
 * of their own, which the proxy cannot see).
 */
export function requiredPermissions(request: FhirRequest, method: string): number {
  switch (request.interaction) {
    case 'read':
    case 'vread':
    case 'capabilities':
      return READ;
    case 'history':
      return request.id !== undefined ? READ : SEARCH;
    case 'search':
      return SEARCH;
    case 'create':
      return CREATE;
    case 'update':
    case 'patch':
      return UPDATE;
    case 'delete':
      return DELETE;
    case 'operation':
      return method === 'GET' || method === 'HEAD' ? READ : WRITE;
    case 'batch':
      return 0;
  }
}

/**
 * Whether the grants cover the request. A request about one type is covered by a scope for
 * that type or for `*`; a request spanning every type (`*`) only by a `*` scope. The
 * capability statement describes the server, not any resource: any read grant covers it.
 */
export function smartCovers(grants: SmartGrants, request: FhirRequest, method: string): boolean {
  const needed = requiredPermissions(request, method);
  if (needed === 0) return false;
  // (Only batch, which nothing covers, and capabilities are about no type.)
  const held = request.interaction === 'capabilities' ? grants.someType
    : request.type === '*' || request.type === undefined ? grants.anyType
      : grants.anyType | (grants.byType.get(request.type) ?? 0);
  return (held & needed) === needed;
}

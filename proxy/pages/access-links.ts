import type { Identity } from '../identity/identity.js';
import type { CompiledRoute } from '../routes.js';
import { ACCESS_PATH } from './access.js';
import { breakGlassLink } from './break-glass.js';
import type { RefusalLink } from './refusal.js';

/*
 * The ways in a deny page offers, beside its explanation: on a route a grant can open,
 * where to ask for one; on a route with break-glass, to a person in its break-glass
 * groups, the emergency-access page. Only for people signed in with a browser session:
 * an API client can follow neither. Worked out on refusals only, from what the route
 * says, so allowed requests pay nothing for it.
 */

export function accessLinks(route: CompiledRoute, identity: Identity | undefined, returnPath: string, authUrl: URL): RefusalLink[] {
  if (identity?.kind !== 'session') return [];
  const links: RefusalLink[] = [];
  const terms = route.policy.breakGlass;
  if (terms && identity.groups.some((group) => terms.groups.includes(group))) {
    links.push({ href: breakGlassLink(returnPath), label: 'Emergency access (break the glass)' });
  }
  if (route.policy.grantable) {
    links.push({ href: `${new URL(ACCESS_PATH, authUrl).href}?${new URLSearchParams({ route: route.id })}`, label: 'Request access' });
  }
  return links;
}

import type { Identity } from '../identity/identity.js';
import type { CompiledRoute } from '../routes.js';
import { ACCESS_PATH } from './access.js';
import { breakGlassLink } from './break-glass.js';
import type { RefusalLink } from './refusal.js';

/*
 * The ways in a deny page offers, beside its explanation: on a route a grant can open,
 * where to ask for one; on a route with break-glass, the emergency-access page, to a
 * person in its break-glass groups, or to anyone not signed in yet (a device or network
 * rule refuses before sign-in, and an emergency is exactly when that happens; the page
 * signs them in and checks the groups). Not for API clients: they can follow neither.
 * Worked out on refusals only, so allowed requests pay nothing for it.
 */

export function accessLinks(route: CompiledRoute, identity: Identity | undefined, returnUrl: string, authUrl: URL): RefusalLink[] {
  if (identity !== undefined && identity.kind !== 'session') return [];
  const links: RefusalLink[] = [];
  const terms = route.policy.breakGlass;
  if (terms && (identity === undefined || identity.groups.some((group) => terms.groups.includes(group)))) {
    links.push({ href: breakGlassLink(authUrl, returnUrl), label: 'Emergency access (break the glass)' });
  }
  if (route.policy.grantable) {
    links.push({ href: `${new URL(ACCESS_PATH, authUrl).href}?${new URLSearchParams({ route: route.id })}`, label: 'Request access' });
  }
  return links;
}

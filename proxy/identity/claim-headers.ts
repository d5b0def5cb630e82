import type { ClaimName } from '../routes.js';
import type { Identity } from './identity.js';

/*
 * Plain claim headers for upstreams that cannot verify the signed assertion. Claims come
 * from the IdP, and a name may hold any Unicode: values outside visible ASCII are
 * percent-encoded so no claim can break or smuggle a header.
 */

const SAFE = /^[\x20-\x7e]*$/;

function claimValue(identity: Identity, claim: ClaimName): string | undefined {
  switch (claim) {
    case 'sub': return identity.sub;
    case 'email': return identity.email;
    case 'name': return identity.name;
    case 'acr': return identity.acr;
    case 'groups': return identity.groups.join(',');
    case 'amr': return identity.amr.join(',');
  }
}

/** Appends `name, value` pairs for the route's claim headers to `out`. */
export function appendClaimHeaders(out: string[], identity: Identity, claimHeaders: ReadonlyArray<readonly [string, ClaimName]>): void {
  for (const [name, claim] of claimHeaders) {
    const value = claimValue(identity, claim);
    if (value === undefined || value === '') continue;
    out.push(name, SAFE.test(value) ? value : encodeURIComponent(value));
  }
}

import type { Criterion } from '../criterion.js';
import { acr } from './acr.js';
import { amr } from './amr.js';
import { authAge } from './authAge.js';
import { authenticated } from './authenticated.js';
import { cidr } from './cidr.js';
import { claim } from './claim.js';
import { country } from './country.js';
import { device } from './device.js';
import { domain } from './domain.js';
import { email } from './email.js';
import { fhirResource } from './fhirResource.js';
import { grant } from './grant.js';
import { groups } from './groups.js';
import { idle } from './idle.js';
import { method } from './method.js';
import { path } from './path.js';
import { risk } from './risk.js';
import { scope } from './scope.js';
import { sessionAge } from './sessionAge.js';
import { timeWindow } from './timeWindow.js';
import { user } from './user.js';

/*
 * Every policy criterion, by the key a rule writes it under. The values are typed
 * Criterion<unknown>: a caller must pass a value through the criterion's own schema before
 * compile (or stepUp) sees it, since each compile trusts its schema's output.
 */
const ALL: readonly Criterion<unknown>[] = [
  authenticated, user, email, domain, groups, claim,
  amr, acr, authAge, sessionAge, idle,
  device, cidr, country, timeWindow,
  method, path, fhirResource, scope, risk, grant,
];

export const CRITERIA: ReadonlyMap<string, Criterion<unknown>> = new Map(ALL.map((criterion) => [criterion.name, criterion]));

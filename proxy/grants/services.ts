import type { WardgateConfig } from '../../config/schema.js';
import { usesCriterion } from '../policy/rules.js';
import type { Store } from '../store/store.js';
import { BreakGlassService } from './break-glass.js';
import type { BreakGlassConfig } from './config.js';
import { GrantService } from './service.js';

/*
 * The grant and break-glass services for a config, as every process builds them: workers
 * for the access and break-glass pages, the store's owner for the admin API and the sweep.
 */

export interface AccessServices {
  /** Absent without a `grants:` section: nobody asks for or approves grants. */
  grants: GrantService | undefined;
  breakGlass: BreakGlassService;
}

// Break-glass records are kept this long without a grants section to say otherwise.
const DEFAULT_RETENTION_MS = 400 * 24 * 3_600_000;

export function createAccessServices(config: WardgateConfig, store: Store, now?: () => number): AccessServices {
  const clock = now ? { now } : {};
  const grants = config.grants
    ? new GrantService({
      store,
      config: config.grants,
      routes: new Map(config.routes.map((route) => [route.id, { grantable: usesCriterion(route.policy, 'grant') }])),
      ...clock,
    })
    : undefined;
  const breakGlassRoutes = new Map<string, BreakGlassConfig>();
  for (const route of config.routes) if (route.policy.breakGlass) breakGlassRoutes.set(route.id, route.policy.breakGlass);
  const breakGlass = new BreakGlassService({
    store,
    routes: breakGlassRoutes,
    retentionMs: config.grants?.retention ?? DEFAULT_RETENTION_MS,
    ...clock,
  });
  return { grants, breakGlass };
}

import type { RouteConfig, RouteTimeouts } from '../config/schema.js';
import type { AuthRequirement } from './identity/strength.js';
import type { Metrics } from './metrics.js';
import type { Upstream, UpstreamSet } from './forward/upstream.js';

/*
 * A route as the hot path uses it: config resolved once into the upstream pool and the
 * metric children for its label, so a request does no lookups beyond the router's.
 */

interface Observer {
  observe(value: number): void;
}

/** How a route authenticates, resolved once. */
export interface RouteAuth {
  readonly session: boolean;
  readonly bearer: boolean;
  readonly requirement: AuthRequirement;
  /** Plain claim headers: [lower-case header name, claim]. */
  readonly claimHeaders: ReadonlyArray<readonly [string, ClaimName]>;
  /** The claim header names, whose client-sent copies are dropped; undefined when none. */
  readonly ownHeaders: ReadonlySet<string> | undefined;
  readonly passAuthorization: boolean;
}

export type ClaimName = RouteConfig['auth']['claimHeaders'][string];

export interface CompiledRoute {
  readonly id: string;
  readonly host: string;
  readonly paths: readonly string[];
  readonly upstream: Upstream;
  readonly preserveHost: boolean;
  readonly websockets: boolean;
  readonly timeouts: RouteTimeouts;
  readonly auth: RouteAuth;
  readonly duration: Observer;
  readonly upstreamDuration: Observer;
}

export function compileRoute(config: RouteConfig, upstreams: UpstreamSet, metrics: Metrics): CompiledRoute {
  const { methods, require, claimHeaders, passAuthorization } = config.auth;
  return {
    id: config.id,
    host: config.host,
    paths: config.paths,
    upstream: upstreams.for(config),
    preserveHost: config.upstream.preserveHost,
    websockets: config.websockets,
    timeouts: config.timeouts,
    auth: {
      session: methods ? methods.includes('session') : true,
      // Bearer tokens carry one audience for all of wardgate: only routes that list
      // bearer accept them, so a FHIR app's token never opens the lab or PACS.
      bearer: methods?.includes('bearer') ?? false,
      requirement: { acr: require.acr, amr: require.amr, maxAgeMs: require.maxAge },
      claimHeaders: Object.entries(claimHeaders),
      ownHeaders: Object.keys(claimHeaders).length > 0 ? new Set(Object.keys(claimHeaders)) : undefined,
      passAuthorization,
    },
    duration: metrics.requestDuration.labels(config.id),
    upstreamDuration: metrics.upstreamDuration.labels(config.id),
  };
}

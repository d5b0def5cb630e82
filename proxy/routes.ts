import type { RouteConfig, RouteTimeouts } from '../config/schema.js';
import type { Metrics } from './metrics.js';
import type { Upstream, UpstreamSet } from './forward/upstream.js';
import type { BreakGlassConfig } from './grants/config.js';
import { compilePolicy, type CompiledPolicy } from './policy/compile.js';
import { usesCriterion } from './policy/rules.js';

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
  /** Plain claim headers: [lower-case header name, claim]. */
  readonly claimHeaders: ReadonlyArray<readonly [string, ClaimName]>;
  /** Claim headers and credential headers: client-sent copies never go upstream; undefined when none. */
  readonly ownHeaders: ReadonlySet<string> | undefined;
  readonly passAuthorization: boolean;
}

/** The route's policy, compiled, with what its refusals tell the user. */
export interface RoutePolicy extends CompiledPolicy {
  /** trusted, any or quarantine, with the default resolved. */
  readonly devices: 'trusted' | 'any' | 'quarantine';
  readonly remediation: string | undefined;
  readonly hideDetails: boolean;
  /** Who may break the glass here, and for how long; undefined when nobody may. */
  readonly breakGlass: BreakGlassConfig | undefined;
  /** A rule tests `grant`: an access grant can open this route (its deny page says where to ask). */
  readonly grantable: boolean;
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
  readonly policy: RoutePolicy;
  readonly duration: Observer;
  readonly upstreamDuration: Observer;
}

export interface RouteCompileOptions {
  /** A `devices:` section is configured: routes then demand trusted devices unless they say otherwise. */
  devicesConfigured: boolean;
  /** Lower-case names of headers that carry credentials for wardgate alone (the device posture header). */
  credentialHeaders: readonly string[];
}

function ownHeaders(names: string[]): ReadonlySet<string> | undefined {
  return names.length > 0 ? new Set(names) : undefined;
}

/**
 * A route's device mode with the default resolved: `trusted` once a `devices:` section is
 * configured (devices can then be told apart, so routes demand trusted ones unless they say
 * otherwise), else `any`. Shared with `policy explain`, which must decide as the gateway does.
 */
export function devicesMode(policy: RouteConfig['policy'], devicesConfigured: boolean): RoutePolicy['devices'] {
  return policy.devices ?? (devicesConfigured ? 'trusted' : 'any');
}

export function compileRoute(config: RouteConfig, upstreams: UpstreamSet, metrics: Metrics, options: RouteCompileOptions): CompiledRoute {
  const { methods, claimHeaders, passAuthorization } = config.auth;
  const devices = devicesMode(config.policy, options.devicesConfigured);
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
      claimHeaders: Object.entries(claimHeaders),
      ownHeaders: ownHeaders([...Object.keys(claimHeaders), ...options.credentialHeaders]),
      passAuthorization,
    },
    policy: {
      ...compilePolicy(config.policy, { requireTrustedDevice: devices === 'trusted' }),
      devices,
      remediation: config.policy.remediation,
      hideDetails: config.policy.hideDetails,
      breakGlass: config.policy.breakGlass,
      grantable: usesCriterion(config.policy, 'grant'),
    },
    duration: metrics.requestDuration.labels(config.id),
    upstreamDuration: metrics.upstreamDuration.labels(config.id),
  };
}

import type { RouteConfig, RouteTimeouts } from '../config/schema.js';
import type { Metrics } from './metrics.js';
import type { Upstream, UpstreamSet } from './forward/upstream.js';

/*
 * A route as the hot path uses it: config resolved once into the upstream pool and the
 * metric children for its label, so a request does no lookups beyond the router's.
 */

interface Observer {
  observe(value: number): void;
}

export interface CompiledRoute {
  readonly id: string;
  readonly host: string;
  readonly paths: readonly string[];
  readonly upstream: Upstream;
  readonly preserveHost: boolean;
  readonly websockets: boolean;
  readonly timeouts: RouteTimeouts;
  readonly duration: Observer;
  readonly upstreamDuration: Observer;
}

export function compileRoute(config: RouteConfig, upstreams: UpstreamSet, metrics: Metrics): CompiledRoute {
  return {
    id: config.id,
    host: config.host,
    paths: config.paths,
    upstream: upstreams.for(config),
    preserveHost: config.upstream.preserveHost,
    websockets: config.websockets,
    timeouts: config.timeouts,
    duration: metrics.requestDuration.labels(config.id),
    upstreamDuration: metrics.upstreamDuration.labels(config.id),
  };
}

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { VERSION } from './version.js';

/*
 * Every metric wardgate exports, in one registry per process. Labels stay bounded: route
 * ids come from config, methods from Node's parser, codes from HTTP; raw paths never.
 * In worker mode the primary aggregates the workers' registries (see cluster.ts).
 */

/** The route label of requests that matched no route. */
export const UNROUTED = 'unrouted';

/** Why forwarding failed, as a bounded label value. */
export type UpstreamErrorKind =
  | 'connect_refused' | 'connect_timeout' | 'dns' | 'tls' | 'reset'
  | 'headers_timeout' | 'body_timeout' | 'other';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Live state that gauges read when scraped, so the hot path never touches them. */
export interface MetricSources {
  inFlight(): number;
  websocketsByRoute(): Map<string, number>;
  /** Sessions not yet ended, across every process sharing the store. */
  sessionsActive(): Promise<number>;
}

export function createMetrics(sources: MetricSources) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = {
    registry,
    requests: new Counter({
      name: 'wardgate_requests_total',
      help: 'Requests answered, by route, method and status code (499: client went away first).',
      labelNames: ['route', 'method', 'code'] as const,
      registers: [registry],
    }),
    requestDuration: new Histogram({
      name: 'wardgate_request_duration_seconds',
      help: 'Time from request start until the response was finished, by route.',
      labelNames: ['route'] as const,
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    upstreamDuration: new Histogram({
      name: 'wardgate_upstream_duration_seconds',
      help: 'Time from dispatching upstream until the upstream response headers arrived, by route.',
      labelNames: ['route'] as const,
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    upstreamErrors: new Counter({
      name: 'wardgate_upstream_errors_total',
      help: 'Failed upstream exchanges, by route and kind.',
      labelNames: ['route', 'kind'] as const,
      registers: [registry],
    }),
    logins: new Counter({
      name: 'wardgate_logins_total',
      help: 'Sign-ins at the callback, by result.',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    stepUps: new Counter({
      name: 'wardgate_step_up_total',
      help: 'Step-up authentications: requested, then success or insufficient.',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    tokenRefreshes: new Counter({
      name: 'wardgate_token_refresh_total',
      help: 'Session token refreshes at the IdP, by result (failed ends the session; unavailable keeps it).',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    idpDuration: new Histogram({
      name: 'wardgate_idp_request_duration_seconds',
      help: 'Requests from wardgate to the IdP, by operation.',
      labelNames: ['operation'] as const,
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    revocations: new Counter({
      name: 'wardgate_revocations_total',
      help: 'Sessions ended, by cause.',
      labelNames: ['cause'] as const,
      registers: [registry],
    }),
    decisions: new Counter({
      name: 'wardgate_decisions_total',
      help: 'Policy decisions by route, outcome (allow, deny, login, step-up) and main reason code.',
      labelNames: ['route', 'outcome', 'reason'] as const,
      registers: [registry],
    }),
    // Sampled (see pipeline.ts): timing every decision would cost more than deciding.
    policyEvaluation: new Histogram({
      name: 'wardgate_policy_evaluation_seconds',
      help: 'Time to decide one request from its context (a sample: one decision in 64).',
      buckets: [0.000_000_5, 0.000_001, 0.000_002, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_5, 0.001],
      registers: [registry],
    }),
    credentialsRejected: new Counter({
      name: 'wardgate_credentials_rejected_total',
      help: 'Session cookies and bearer tokens that were refused (tampered, expired, foreign, ended), by kind and reason.',
      labelNames: ['kind', 'reason'] as const,
      registers: [registry],
    }),
  };
  new Gauge({
    name: 'wardgate_sessions_active',
    help: 'Sessions not yet ended (shared by every worker, so summed across workers it is not; read with max).',
    // Every worker reads the same shared store: the cluster's value is any one of theirs.
    aggregator: 'max',
    registers: [registry],
    async collect() {
      this.set(await sources.sessionsActive());
    },
  });
  new Gauge({
    name: 'wardgate_requests_in_flight',
    help: 'Requests being handled now.',
    registers: [registry],
    collect() {
      this.set(sources.inFlight());
    },
  });
  new Gauge({
    name: 'wardgate_websockets_open',
    help: 'Open proxied WebSocket connections, by route.',
    labelNames: ['route'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [route, open] of sources.websocketsByRoute()) this.set({ route }, open);
    },
  });
  const buildInfo = new Gauge({
    name: 'wardgate_build_info',
    help: 'Always 1; labels say which wardgate and Node.js are running.',
    labelNames: ['version', 'node'] as const,
    aggregator: 'first',
    registers: [registry],
  });
  buildInfo.set({ version: VERSION, node: process.version }, 1);
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;

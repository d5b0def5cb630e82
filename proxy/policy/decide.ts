import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { CompiledRoute } from '../routes.js';
import type { RequestContext } from './context.js';
import { POLICY_ERROR, type Decision } from './decision.js';

/*
 * The decide stage: the route's compiled policy applied to the request's context, counted
 * by outcome and reason. A policy that throws denies (deny by default); the error is
 * logged for the operator, never shown to the user.
 */

// One decision in this many is timed: two clock reads would cost more than most decisions.
const SAMPLE_EVERY = 64;

export function createDecider(metrics: Metrics, logger: Logger) {
  const counters = new Map<string, ReturnType<Metrics['decisions']['labels']>>();
  let sampled = 0;

  function count(route: string, decision: Decision): void {
    const reason = decision.reasons[0] ?? decision.outcome;
    const key = `${route} ${decision.outcome} ${reason}`;
    let counter = counters.get(key);
    if (!counter) {
      counter = metrics.decisions.labels(route, decision.outcome, reason);
      counters.set(key, counter);
    }
    counter.inc();
  }

  return function decide(route: CompiledRoute, ctx: RequestContext, requestId: string): Decision {
    let decision: Decision;
    try {
      if (++sampled === SAMPLE_EVERY) {
        sampled = 0;
        const started = performance.now();
        decision = route.policy.decide(ctx);
        metrics.policyEvaluation.observe((performance.now() - started) / 1000);
      } else {
        decision = route.policy.decide(ctx);
      }
    } catch (err) {
      logger.error({ reqId: requestId, route: route.id, err: (err as Error).message }, 'policy evaluation failed; request denied');
      decision = POLICY_ERROR;
    }
    count(route.id, decision);
    return decision;
  };
}

export type Decider = ReturnType<typeof createDecider>;

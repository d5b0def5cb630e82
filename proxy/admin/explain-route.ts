import { z } from 'zod';
import { ConfigError } from '../errors.js';
import type { RequestContext } from '../policy/context.js';
import { explainDecision, explanationJson, formatExplanation, parseContext } from '../policy/explain.js';
import { parseBody } from './body.js';
import { AdminApiError } from './errors.js';
import type { ApiRoute, RouteDeps } from './route.js';

/*
 * `wardgate policy explain` over the API: a request described in JSON, decided by a
 * route's policy of the running config, exactly as the CLI decides it. The answer is the
 * CLI's --json output, field for field, with `text`, the CLI's plain-words explanation
 * (each reason said in words, what is missing, what a step-up asks for), beside it.
 */

const explainBody = z.strictObject({
  route: z.string({ error: 'expected the id of the route whose policy decides' }).min(1),
  // Checked by parseContext, which names every fault at its place.
  context: z.unknown(),
});

export function explainRoute({ config, now }: RouteDeps): ApiRoute {
  return {
    method: 'POST',
    path: '/policy/explain',
    action: 'policy.explain',
    async handle(call) {
      const input = parseBody(explainBody, await call.body());
      call.target = input.route;
      const route = config.routes.find((candidate) => candidate.id === input.route);
      if (!route) {
        throw new AdminApiError('route-unknown', `no route "${input.route}"; the routes are ${config.routes.map((r) => r.id).join(', ')}`, { path: 'route' });
      }
      let ctx: RequestContext;
      try {
        ctx = parseContext(input.context, { file: 'context', route, routes: config.routes, now: now() });
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        throw new AdminApiError('context-invalid', err.message, { path: err.path ? `context.${err.path}` : 'context' });
      }
      const explanation = explainDecision(route, config.devices !== undefined, ctx);
      return { status: 200, body: { ...JSON.parse(explanationJson(explanation)) as object, text: formatExplanation(explanation) } };
    },
  };
}

import { Writable } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { parse } from 'yaml';
import { createMetrics } from '../../proxy/metrics.js';
import { compilePolicy } from '../../proxy/policy/compile.js';
import { UNKNOWN_DEVICE, type RequestContext } from '../../proxy/policy/context.js';
import { createDecider } from '../../proxy/policy/decide.js';
import { policySchema } from '../../proxy/policy/rules.js';
import type { CompiledRoute } from '../../proxy/routes.js';

/*
 * The decide stage around the compiled policy: every decision is counted by route, outcome
 * and reason; one in 64 is timed; and a policy that throws denies with policy-error (deny
 * by default), logged for the operator with the request id.
 */

const lines: Array<Record<string, unknown>> = [];
const logger = pino({ level: 'info' }, new Writable({
  write(chunk: Buffer, _encoding, callback) {
    for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
    callback();
  },
}));
const metrics = createMetrics({ inFlight: () => 0, websocketsByRoute: () => new Map(), sessionsActive: async () => 0 });
const decide = createDecider(metrics, logger);

const ctx: RequestContext = {
  identity: undefined,
  session: undefined,
  device: UNKNOWN_DEVICE,
  network: { ip: '10.0.0.1', country: 'GB' },
  time: Date.UTC(2026, 10, 24, 10),
  request: { method: 'GET', host: 'app.test', path: '/' },
  risk: 0,
  grants: [],
  breakGlass: undefined,
};

function route(id: string, decideFn: CompiledRoute['policy']['decide']): CompiledRoute {
  return { id, policy: { decide: decideFn, signInHint: undefined, devices: 'any', remediation: undefined, hideDetails: false } } as unknown as CompiledRoute;
}

t.test('decisions are counted by route, outcome and main reason, and one in 64 is timed', async (t) => {
  const compiled = compilePolicy(policySchema.parse(parse('allow:\n  - authenticated: true\n')), { requireTrustedDevice: false });
  const app = route('app', compiled.decide);
  const outcomes = new Set<string>();
  for (let i = 0; i < 128; i++) outcomes.add(decide(app, ctx, `r${i}`).outcome);
  t.same([...outcomes], ['login'], 'an anonymous request is a login, every time');
  const text = await metrics.registry.metrics();
  t.match(text, 'wardgate_decisions_total{route="app",outcome="login",reason="login-required"} 128', 'all 128 counted under one label set');
  t.match(text, 'wardgate_policy_evaluation_seconds_count 2', 'two of them (one in 64) timed');
});

t.test('a policy that throws denies with policy-error, and the operator is told', async (t) => {
  const broken = route('broken', () => {
    throw new Error('criterion exploded');
  });
  const decision = decide(broken, ctx, 'req-7');
  t.equal(decision.outcome, 'deny', 'refused, never allowed');
  t.same(decision.reasons, ['policy-error'], 'with policy-error');
  const line = lines.find((entry) => entry.msg === 'policy evaluation failed; request denied');
  t.match(line, { reqId: 'req-7', route: 'broken', err: 'criterion exploded', level: 50 }, 'an error log line names the request, the route and the error');
  t.match(await metrics.registry.metrics(), 'wardgate_decisions_total{route="broken",outcome="deny",reason="policy-error"} 1', 'and it is counted');
});

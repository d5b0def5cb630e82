import { request as httpRequest } from 'node:http';
import t from 'tap';
import { startTestGateway, sample, total } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';
import { VERSION } from '../../proxy/version.js';

/*
 * The admin listener's metrics after a known sequence of requests: exact counts per
 * route, method and code, histogram counts, bounded labels, and the process metrics.
 * Every request authenticates with the shared test IdP's bearer token.
 */

const upstream = await startUpstream((req, res) => {
  res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-length': '0' });
  res.end();
});
const wg = await startTestGateway(`
  - id: portal
    host: portal.test
    upstream: { url: "${upstream.url}" }
  - id: api
    host: api.test
    upstream: { url: "${upstream.url}" }`);
t.teardown(async () => {
  await wg.close();
  await upstream.close();
});

function send(host: string, path: string, method = 'GET', auth: Record<string, string> = wg.auth): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: wg.port, path, method, headers: { host, accept: 'application/json', ...auth } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

for (let i = 0; i < 5; i++) await send('portal.test', `/patient/${i}/chart?mrn=${i}`);
for (let i = 0; i < 2; i++) await send('api.test', '/orders', 'POST');
await send('nobody.test', '/x');
// Refused by the authenticate stage: counted under their route, never forwarded.
const unauthenticated = await send('portal.test', '/patient/9', 'GET', {});
const badToken = await send('portal.test', '/patient/9', 'GET', { authorization: 'Bearer not-a-jwt' });
const text = await wg.metrics();

t.test('the traffic was answered as intended', async (t) => {
  t.equal(unauthenticated, 401, 'a request without credentials is 401');
  t.equal(badToken, 401, 'a request with a garbage bearer token is 401');
});

t.test('wardgate_requests_total counts by route, method and code', async (t) => {
  t.equal(sample(text, 'wardgate_requests_total', { route: 'portal', method: 'GET', code: '200' }), 5);
  t.equal(sample(text, 'wardgate_requests_total', { route: 'api', method: 'POST', code: '201' }), 2);
  t.equal(sample(text, 'wardgate_requests_total', { route: 'unrouted', method: 'GET', code: '404' }), 1);
  t.equal(sample(text, 'wardgate_requests_total', { route: 'portal', method: 'GET', code: '401' }), 2, 'requests refused for want of an identity count under their route');
  t.equal(total(text, 'wardgate_requests_total'), 10, 'nothing else was counted');
});

t.test('duration histograms observe every request of their route', async (t) => {
  t.equal(sample(text, 'wardgate_request_duration_seconds_count', { route: 'portal' }), 7, 'the two 401s are timed too');
  t.equal(sample(text, 'wardgate_request_duration_seconds_count', { route: 'api' }), 2);
  t.equal(sample(text, 'wardgate_request_duration_seconds_count', { route: 'unrouted' }), 1);
  t.equal(sample(text, 'wardgate_upstream_duration_seconds_count', { route: 'portal' }), 5, 'upstream time observed per forwarded request (not for the 401s)');
  t.equal(sample(text, 'wardgate_upstream_duration_seconds_count', { route: 'unrouted' }), undefined, 'refused requests have no upstream time');
  t.ok((sample(text, 'wardgate_request_duration_seconds_sum', { route: 'portal' }) ?? 0) > 0, 'durations are positive');
});

t.test('a rejected bearer token is counted by kind and reason; a missing credential is not a rejected one', async (t) => {
  t.equal(sample(text, 'wardgate_credentials_rejected_total', { kind: 'bearer', reason: 'token-invalid' }), 1, 'the garbage token is counted once');
  t.equal(total(text, 'wardgate_credentials_rejected_total'), 1, 'the request without credentials rejected none');
});

t.test('labels stay bounded: no path, query or host reaches a label', async (t) => {
  t.notMatch(text, /patient|mrn|orders|nobody\.test/, 'no request detail appears in metrics');
});

t.test('gauges, build info and process metrics', async (t) => {
  t.equal(sample(text, 'wardgate_requests_in_flight'), 0, 'nothing in flight after the traffic ended');
  t.equal(sample(text, 'wardgate_build_info', { version: VERSION, node: process.version }), 1, 'build_info names the version and Node.js');
  t.ok(sample(text, 'process_cpu_user_seconds_total') !== undefined, 'default process metrics are exported');
  t.ok(sample(text, 'nodejs_eventloop_lag_seconds') !== undefined, 'event loop lag is exported');
  t.match(text, /# TYPE wardgate_upstream_errors_total counter/, 'upstream errors are declared even before the first one');
});

t.test('the in-flight gauge sees a request that is still being answered', async (t) => {
  let release: () => void = () => {};
  const held = await startUpstream((_req, res) => {
    release = () => res.end('late');
  });
  const wg2 = await startTestGateway(`
  - id: held
    host: held.test
    upstream: { url: "${held.url}" }`);
  t.teardown(async () => {
    await wg2.close();
    await held.close();
  });
  const pending = new Promise<void>((resolve) => {
    httpRequest({ host: '127.0.0.1', port: wg2.port, path: '/', headers: { host: 'held.test', ...wg2.auth } }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    }).end();
  });
  const deadline = Date.now() + 3000;
  while (held.seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.equal(sample(await wg2.metrics(), 'wardgate_requests_in_flight'), 1, 'one request in flight');
  release();
  await pending;
  t.equal(sample(await wg2.metrics(), 'wardgate_requests_in_flight'), 0, 'and none once it is answered');
});

t.test('the admin listener answers health, readiness and nothing else', async (t) => {
  const base = `http://127.0.0.1:${wg.adminPort}`;
  t.equal((await fetch(`${base}/healthz`)).status, 200);
  t.equal((await fetch(`${base}/readyz`)).status, 200);
  t.equal((await fetch(`${base}/anything`)).status, 404);
  t.equal((await fetch(`${base}/metrics`, { method: 'POST' })).status, 405);
});

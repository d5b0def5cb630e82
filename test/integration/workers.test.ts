import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import t from 'tap';
import type { DemoIdp } from '../../proxy/demo/idp.js';
import { Browser } from '../helpers/browser.js';
import { API_AUDIENCE, API_CLIENT, TEST_CLIENT, sample } from '../helpers/gateway.js';
import { rigClients } from '../helpers/sign-in-rig.js';
import { clientCredentialsToken, signIn, startTestIdp } from '../helpers/idp.js';
import { freePort, spawnWardgate, waitFor200, writeTempConfig, type WardgateProcess } from '../helpers/process.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { until, within } from '../helpers/wait.js';

/*
 * Worker mode as operators run it: `workers: 2` forks two processes sharing the main
 * listener while the primary serves the admin listener and aggregates every worker's
 * metrics, and holds the store the workers share: a session made in one worker is good
 * in the other, and a logout in one ends it in both. A worker that dies is replaced;
 * SIGTERM drains them all and exits 0.
 */

t.setTimeout(120_000);

const VERSION = (JSON.parse(readFileSync(resolve(import.meta.dirname, '../../package.json'), 'utf8')) as { version: string }).version;
const HOST = 'app.localhost';
const ROUTE = 'app';
const REQUESTS = 200;
const CONCURRENCY = 8;

interface Answer {
  status: number;
  error?: string;
}

let token = '';

/** One request on its own connection (no keep-alive), bounded to 10 s. */
function get(port: number, path: string, host: string): Promise<Answer> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 10_000, headers: { host, authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
      res.on('error', (err) => resolve({ status: 0, error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: 0, error: err.code ?? err.message }));
    req.end();
  });
}

/** Sends `n` GETs, `CONCURRENCY` at a time, each on a new connection; returns their answers. */
async function burst(port: number, n: number, tag: string): Promise<Answer[]> {
  const answers: Answer[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < n) {
      const i = next++;
      answers.push(await get(port, `/${tag}/${i}`, HOST));
    }
  }));
  return answers;
}

/** Access-log lines printed so far (workers inherit the primary's stdout). */
function accessLines(proc: WardgateProcess): Array<{ pid: number; path?: string; status?: number }> {
  return proc.stdout().split('\n').flatMap((line) => {
    if (!line.includes('"kind":"access"')) return [];
    try {
      return [JSON.parse(line) as { pid: number; path?: string; status?: number }];
    } catch {
      return [];
    }
  });
}

/** The admin /readyz status, or 0 when nothing answers. */
async function readyz(adminPort: number): Promise<number> {
  return (await get(adminPort, '/readyz', `127.0.0.1:${adminPort}`)).status;
}

let upstream: TestUpstream;
let proc: WardgateProcess;
let idp: DemoIdp;
let port = 0;
let adminPort = 0;

t.before(async () => {
  upstream = await startUpstream();
  [port, adminPort] = [await freePort(), await freePort()];
  const auth = `http://auth.localhost:${port}`;
  idp = await startTestIdp({
    clients: rigClients(auth),
    resources: { [API_AUDIENCE]: { scope: 'patient/*.read' } },
  });
  t.teardown(() => idp.close());
  token = await clientCredentialsToken(idp, API_CLIENT.id, API_CLIENT.secret, API_AUDIENCE, 'patient/*.read');
  // Several workers must share their keys: configured, not made up by each at start.
  const placeholder = writeTempConfig('');
  const keyFile = join(dirname(placeholder), 'assertion.key');
  writeFileSync(keyFile, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const file = writeTempConfig(`listen:
  http: "127.0.0.1:${port}"
admin:
  listen: "127.0.0.1:${adminPort}"
workers: 2
log:
  level: info
  access: true
shutdown:
  drainTimeout: 5s
identity:
  issuer: "${idp.issuer}"
  clientId: ${TEST_CLIENT.id}
  clientSecret: ${TEST_CLIENT.secret}
  authUrl: "${auth}"
  cookieKeys: ["${randomBytes(32).toString('base64')}"]
  assertion:
    keys: ["${keyFile}"]
  bearer:
    audience: ${API_AUDIENCE}
routes:
  - id: ${ROUTE}
    host: ${HOST}
    auth:
      methods: [session, bearer]
    policy:
      allow: [{ authenticated: true }]
    upstream:
      url: "${upstream.url}"
`);
  proc = spawnWardgate(['start', '--config', file]);
  t.teardown(async () => {
    // The primary forwards SIGTERM to nothing if it is killed outright, so end the
    // workers too: they are the primary's children, found by their access-log pids.
    if (proc.child.exitCode === null && proc.child.signalCode === null) {
      for (const pid of new Set(accessLines(proc).map((l) => l.pid))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      proc.child.kill('SIGKILL');
    }
    await upstream.close();
  });
  await waitFor200(`http://127.0.0.1:${adminPort}/readyz`, 30_000);
});

let firstPids: number[] = [];

t.test(`${REQUESTS} requests on fresh connections all succeed, served by both workers, counted once each in /metrics`, async (t) => {
  const answers = await burst(port, REQUESTS, 'first');
  const failures = answers.filter((a) => a.status !== 200);
  t.equal(answers.length, REQUESTS, `all ${REQUESTS} requests were answered`);
  t.same(failures, [], `every request through the worker pool got 200`);
  t.equal(upstream.seen.length, REQUESTS, 'the upstream saw each request exactly once');

  // Each access line is written by the worker that served the request.
  await until(() => accessLines(proc).filter((l) => l.path?.startsWith('/first/')).length >= REQUESTS, 10_000, 'every access-log line');
  const lines = accessLines(proc).filter((l) => l.path?.startsWith('/first/'));
  t.equal(lines.length, REQUESTS, 'one access-log line per request');
  firstPids = [...new Set(lines.map((l) => l.pid))];
  t.equal(firstPids.length, 2, `the requests were served by two distinct worker processes (pids ${firstPids.join(', ')})`);
  t.notOk(firstPids.includes(proc.child.pid!), 'the primary served none of them: workers do');

  const scrape = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(15_000) });
  const metrics = await scrape.text();
  t.equal(scrape.status, 200, `the admin /metrics scrape succeeds in worker mode (${scrape.status === 200 ? 'ok' : metrics})`);
  t.equal(sample(metrics, 'wardgate_requests_total', { route: ROUTE, method: 'GET', code: '200' }), REQUESTS,
    `wardgate_requests_total{route="${ROUTE}",method="GET",code="200"} is exactly ${REQUESTS}: the primary sums every worker's registry`);
  t.ok((sample(metrics, 'process_cpu_user_seconds_total') ?? 0) > 0, 'default process metrics are aggregated too');
  t.equal(sample(metrics, 'wardgate_build_info', { version: VERSION }), 1,
    'build info is reported once (aggregated with "first"), not summed to the worker count');
});

t.test('a session signed in through one worker is good in both, and a logout in one ends it in both', async (t) => {
  const browser = new Browser();
  const page = await signIn(browser, `http://${HOST}:${port}/signed-in`, 'dr.alice', 'hwk');
  t.equal(page.status, 200, 'dr.alice signed in through the worker pool');
  const cookie = browser.cookies(HOST).find((c) => c.name === '__Host-wardgate');
  t.ok(cookie, 'the app host holds a session cookie');
  const asAlice = (path: string): Promise<Answer> => new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 10_000, headers: { host: HOST, cookie: `__Host-wardgate=${cookie!.value}`, accept: 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    });
    req.on('error', (err) => resolve({ status: 0, error: err.message }));
    req.end();
  });
  const before = await Promise.all(Array.from({ length: 40 }, (_, i) => asAlice(`/session/${i}`)));
  t.same(before.filter((a) => a.status !== 200), [], 'every request with the session cookie got 200, on fresh connections');
  await until(() => accessLines(proc).filter((l) => l.path?.startsWith('/session/')).length >= 40, 10_000, 'access lines for the session requests');
  const pids = new Set(accessLines(proc).filter((l) => l.path?.startsWith('/session/')).map((l) => l.pid));
  t.equal(pids.size, 2, 'both workers honoured the session made in one of them: the store is shared');

  const form = await browser.navigate(`http://${HOST}:${port}/.wardgate/logout`);
  const csrf = /name="csrf" value="([^"]+)"/.exec(form.body)?.[1];
  t.ok(csrf, 'the logout page carries a CSRF token');
  const out = await browser.request(`http://${HOST}:${port}/.wardgate/logout`, { method: 'POST', body: { csrf: csrf! } });
  t.equal(out.status, 302, 'the logout was accepted');
  const after = await Promise.all(Array.from({ length: 40 }, (_, i) => asAlice(`/ended/${i}`)));
  t.same(after.filter((a) => a.status !== 401), [], 'right after the logout answered, no worker accepts the session any more');
});

t.test('a worker killed with SIGKILL is replaced: /readyz recovers and requests keep succeeding', async (t) => {
  t.ok(firstPids.length >= 1, 'a worker pid is known from the access log');
  const victim = firstPids[0]!;
  /** The primary's log line about this worker's death, once it is printed. */
  const diedLine = (): string | undefined => proc.stdout().split('\n')
    .find((line) => line.includes('"msg":"worker died; starting a replacement"') && line.includes(`:${victim},`) && line.includes('"signal":"SIGKILL"'));
  process.kill(victim, 'SIGKILL');

  // Watch /readyz from the moment of the kill: not ready while a worker is missing (the
  // replacement is forked 500 ms after the death), ready again once it is up. Ready after
  // the primary has logged the death means the replacement is in.
  const seen: number[] = [];
  const recovered = until(async () => {
    const status = await readyz(adminPort);
    if (seen.at(-1) !== status) seen.push(status);
    return status === 200 && diedLine() !== undefined;
  }, 15_000, '/readyz to answer 200 again after the worker was killed');
  recovered.catch(() => {}); // awaited below, after the burst

  // While one worker is gone, the other still serves.
  const during = await burst(port, 20, 'during');
  t.same(during.filter((a) => a.status !== 200), [], 'requests sent while a worker was down still got 200 from the survivor');

  await recovered;
  t.ok(seen.includes(503), `/readyz answered 503 while the cluster was one worker short (sequence: ${seen.join(' -> ')})`);
  const died = diedLine();
  t.ok(died, `the primary logged that worker ${victim} died of SIGKILL and that it started a replacement`);
  // Every line carries the logging process's own pid; the dead worker's must not overwrite it.
  t.equal(died?.match(/"pid":/g)?.length, 1,
    `the death line has a single "pid" key (the primary's), the dead worker's pid under another name: ${died}`);
  t.equal(await readyz(adminPort), 200, '/readyz answers 200 once the replacement is ready');

  const after = await burst(port, 100, 'after');
  t.same(after.filter((a) => a.status !== 200), [], 'every request after the replacement got 200');
  await until(() => accessLines(proc).filter((l) => l.path?.startsWith('/after/')).length >= 100, 10_000,
    'access-log lines for the requests after the replacement');
  const afterPids = new Set(accessLines(proc).filter((l) => l.path?.startsWith('/after/')).map((l) => l.pid));
  t.notOk(afterPids.has(victim), 'the killed worker served nothing afterwards');
  t.equal(afterPids.size, 2, `two workers serve again, the survivor and the replacement (pids ${[...afterPids].join(', ')})`);
});

t.test('SIGTERM stops the cluster: exit 0 within a bound, /readyz no longer answers', async (t) => {
  const workerPids = new Set(accessLines(proc).map((l) => l.pid));
  const signalledAt = Date.now();
  proc.child.kill('SIGTERM');
  const code = await within(proc.exited, 15_000, 'the primary to exit');
  const took = Date.now() - signalledAt;
  t.equal(code, 0, 'the primary exited 0');
  t.ok(took < 5000, `it stopped ${took} ms after SIGTERM, with nothing in flight well inside the 5 s drain deadline`);
  const status = await readyz(adminPort);
  t.equal(status, 0, '/readyz no longer answers: the admin listener is closed');
  const probe = await get(port, '/gone', HOST);
  t.equal(probe.error, 'ECONNREFUSED', 'the main listener is closed: new connections are refused');
  const alive = [...workerPids].filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
  t.same(alive, [], 'no worker process outlived the primary');
});

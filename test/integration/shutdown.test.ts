import { createServer as createHttpServer, request, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { WebSocket, WebSocketServer } from 'ws';
import { identityYaml, sharedIdp } from '../helpers/gateway.js';
import { freePort, spawnWardgate, waitFor200, writeTempConfig, type WardgateProcess } from '../helpers/process.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { sleep, until, within } from '../helpers/wait.js';

/*
 * Graceful shutdown of a real wardgate process on SIGTERM: it stops accepting at once,
 * says "not ready", lets in-flight requests finish, cuts what outlives the drain deadline,
 * sends open WebSockets a 1001 close frame, and exits 0. The process verifies bearer
 * tokens against the shared test IdP (running in this process), and every request and
 * handshake through it carries one (the route accepts bearer tokens: routes default to
 * sessions only).
 */

t.setTimeout(90_000);

const HOST = 'app.test';
const SLOW_MS = 1000;
const SLOW_BODY = Buffer.alloc(256 * 1024, 'in-flight-response-');
const { idp, token } = await sharedIdp();
const AUTH = { authorization: `Bearer ${token}` };

interface Running {
  proc: WardgateProcess;
  port: number;
  adminPort: number;
}

/** Spawns `wardgate start` (one process) in front of `upstreamUrl`; killed at teardown. */
async function startWardgate(t: Test, upstreamUrl: string, drainTimeout: string, websockets = false): Promise<Running> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = writeTempConfig(`listen:
  http: "127.0.0.1:${port}"
admin:
  listen: "127.0.0.1:${adminPort}"
workers: 1
${identityYaml(idp.issuer, 1)}
log:
  level: info
  access: false
shutdown:
  drainTimeout: ${drainTimeout}
routes:
  - id: app
    host: ${HOST}
    websockets: ${websockets}
    auth: { methods: [session, bearer] }
    policy: { allow: [{ authenticated: true }] }
    upstream:
      url: "${upstreamUrl}"
`);
  const proc = spawnWardgate(['start', '--config', file]);
  t.teardown(() => {
    if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGKILL');
  });
  await waitFor200(`http://127.0.0.1:${adminPort}/readyz`, 20_000);
  return { proc, port, adminPort };
}

interface Outcome {
  status?: number;
  body?: Buffer;
  error?: NodeJS.ErrnoException;
  endedAt: number;
}

/** One GET on a fresh connection (authenticated unless `headers` says otherwise); never rejects, reports what happened. */
function get(port: number, path: string, host = HOST, headers: Record<string, string> = AUTH): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { host, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks), endedAt: Date.now() }));
      res.on('error', (error: NodeJS.ErrnoException) => resolve({ status: res.statusCode, error, endedAt: Date.now() }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ error, endedAt: Date.now() }));
    req.end();
  });
}

/** Tries fresh TCP connections until one is refused; resolves with the time of refusal. */
async function untilRefused(port: number, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const refused = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
    });
    if (refused) return Date.now();
    await sleep(5);
  }
  throw new Error(`port ${port} still accepted connections ${ms} ms later`);
}

/** Polls the admin /readyz until it answers 503; resolves with the time, or undefined if the listener went away first. */
async function untilNotReady(adminPort: number, ms: number): Promise<number | undefined> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const outcome = await get(adminPort, '/readyz', `127.0.0.1:${adminPort}`, {});
    if (outcome.status === 503) return outcome.endedAt;
    if (outcome.error?.code === 'ECONNREFUSED') return undefined;
    await sleep(5);
  }
  throw new Error(`/readyz still answered 200 ${ms} ms later`);
}

t.test('SIGTERM with a request in flight: it completes, new connections are refused, /readyz says 503, exit 0', async (t) => {
  const upstream: TestUpstream = await startUpstream((_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': SLOW_BODY.length });
      res.end(SLOW_BODY);
    }, SLOW_MS);
  });
  t.teardown(() => upstream.close());
  const { proc, port, adminPort } = await startWardgate(t, upstream.url, '10s');

  const inFlight = get(port, '/slow');
  await until(() => upstream.seen.length === 1, 5000, 'the slow request to reach the upstream');
  const signalledAt = Date.now();
  proc.child.kill('SIGTERM');

  const [refusedAt, notReadyAt] = await Promise.all([untilRefused(port, 5000), untilNotReady(adminPort, 5000)]);
  const response = await within(inFlight, 10_000, 'the in-flight response');
  const code = await within(proc.exited, 10_000, 'wardgate to exit');
  const exitedAfter = Date.now() - signalledAt;

  t.equal(response.error, undefined, 'the in-flight request was not cut off');
  t.equal(response.status, 200, 'the request in flight at SIGTERM completed with 200');
  t.ok(response.body?.equals(SLOW_BODY), `its full ${SLOW_BODY.length}-byte body arrived intact`);
  t.ok(refusedAt < response.endedAt,
    'new connections were refused (ECONNREFUSED) while the in-flight request was still being served: the listener closed at once');
  t.ok(notReadyAt !== undefined, 'the admin listener stayed up while draining');
  t.ok(notReadyAt !== undefined && notReadyAt < response.endedAt, '/readyz answered 503 while the in-flight request was draining');
  t.equal(upstream.seen.length, 1, 'no connection attempt after SIGTERM reached the upstream');
  t.equal(code, 0, 'wardgate exited 0 after a clean drain');
  t.ok(exitedAfter < 6000, `it exited ${exitedAfter} ms after SIGTERM: once in-flight work ends, not at the 10 s drain deadline`);
  t.match(proc.stdout(), /"msg":"draining"/, 'it logged that it was draining');
  t.match(proc.stdout(), /"abandoned":0,"msg":"stopped"/, 'and that it stopped with nothing abandoned');
});

t.test('a request still in flight at the drain deadline is cut off and wardgate exits on time', async (t) => {
  const DEADLINE_MS = 1000;
  // Never answers: only the drain deadline can end this request.
  const upstream: TestUpstream = await startUpstream(() => {});
  t.teardown(() => upstream.close());
  const { proc, port } = await startWardgate(t, upstream.url, '1s');

  const inFlight = get(port, '/hang');
  await until(() => upstream.seen.length === 1, 5000, 'the hanging request to reach the upstream');
  const signalledAt = Date.now();
  proc.child.kill('SIGTERM');

  const response = await within(inFlight, 10_000, 'the hanging request to be cut off');
  const code = await within(proc.exited, 10_000, 'wardgate to exit');
  const exitedAfter = Date.now() - signalledAt;
  const cutAfter = response.endedAt - signalledAt;

  t.ok(response.status === undefined || response.status >= 500,
    `the client did not get a success: the request was cut off (${response.error?.code ?? response.error?.message ?? `status ${response.status}`})`);
  t.ok(cutAfter >= DEADLINE_MS - 50, `it was not cut before the ${DEADLINE_MS} ms drain deadline (cut after ${cutAfter} ms)`);
  t.equal(code, 0, 'wardgate still exits 0 after abandoning the request');
  t.ok(exitedAfter < DEADLINE_MS + 2500,
    `it exited ${exitedAfter} ms after SIGTERM: within the ${DEADLINE_MS} ms deadline plus a small margin, not held by the hung upstream`);
  t.match(proc.stdout(), /"abandoned":1,"msg":"stopped"/, 'it logged the one abandoned request');
});

t.test('an open WebSocket through wardgate gets a 1001 close frame on SIGTERM', async (t) => {
  const server: Server = createHttpServer((_req, res) => res.writeHead(404).end());
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    // Corked: the 101 response and the greeting frame leave in one write, as they often
    // do from real servers that speak first, so wardgate reads them together.
    socket.cork();
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {});
      ws.on('message', (data) => ws.send(`echo: ${data.toString()}`));
      ws.send('hello from upstream');
      process.nextTick(() => socket.uncork());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    for (const client of wss.clients) client.terminate();
    wss.close();
    server.closeAllConnections();
    server.close(() => r());
  }));
  const upstreamUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { proc, port } = await startWardgate(t, upstreamUrl, '5s', true);

  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { host: HOST, ...AUTH } });
  t.teardown(() => ws.terminate());
  ws.on('error', () => {});
  const messages: string[] = [];
  ws.on('message', (data) => messages.push(data.toString()));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  await within(new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
  }), 5000, 'the WebSocket to open through wardgate');
  ws.send('ping');
  await until(() => messages.includes('echo: ping'), 5000, 'the echo of a client message');
  // The greeting is sent by the upstream the moment the upgrade completes, so it can
  // arrive in the same read as the 101 response: it must still reach the client, first.
  t.same(messages, ['hello from upstream', 'echo: ping'],
    'the tunnel carried frames both ways, including the frame the upstream sent together with its 101 response');

  proc.child.kill('SIGTERM');
  const { code, reason } = await within(closed, 5000, 'the WebSocket to be closed');
  const exit = await within(proc.exited, 10_000, 'wardgate to exit');

  t.equal(code, 1001, 'the client received a close frame with code 1001 (going away), not a bare disconnect (1006)');
  t.equal(reason, 'wardgate is shutting down', 'the close frame says why');
  t.equal(exit, 0, 'wardgate exited 0');
});

import { createServer as createHttpsServer } from 'node:https';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import t, { type Test } from 'tap';
import { API_CLIENT, startTestGateway, sample, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { makePki } from '../helpers/pki.js';
import { freePort } from '../helpers/process.js';
import { rawRequest } from '../helpers/raw.js';
import { echo, startUpstream, type TestUpstream } from '../helpers/upstream.js';

/*
 * What wardgate sends upstream and back, against real upstream servers on loopback:
 * header hygiene both ways, route precedence, timeouts, failures, aborts and retries, and
 * the identity wardgate requires and vouches for. Requests authenticate with a bearer
 * token from the shared test IdP (`wg.auth`) unless a test is about requests that do not.
 */

interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

function get(port: number, host: string, path: string, headers: Record<string, string | string[]> = {}, method = 'GET', body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, agent: false, headers: { host, ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { text += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const closers: Array<() => Promise<void>> = [];
t.teardown(async () => {
  for (const close of closers.reverse()) await close();
});

async function gatewayFor(routesYaml: string, extra = '', options: TestGatewayOptions = {}): Promise<TestGateway> {
  const wg = await startTestGateway(routesYaml, extra, options);
  closers.push(() => wg.close());
  return wg;
}

async function upstreamWith(handler = echo, streaming = false): Promise<TestUpstream> {
  const up = await startUpstream(handler, { streaming });
  closers.push(() => up.close());
  return up;
}

const until = async (check: () => boolean, ms = 3000): Promise<boolean> => {
  const deadline = Date.now() + ms;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return check();
};

t.test('request headers: hop-by-hop and client-supplied identity never reach the upstream', async (t) => {
  const up = await upstreamWith();
  const wg = await gatewayFor(`
  - id: app
    host: app.test
    upstream: { url: "${up.url}" }`);
  const res = await get(wg.port, 'app.test', '/x', {
    ...wg.auth,
    connection: 'keep-alive, X-Hop-Secret',
    'x-hop-secret': 'hop',
    'keep-alive': 'timeout=5',
    te: 'trailers',
    'proxy-authorization': 'Basic Zm9vOmJhcg==',
    'x-wardgate-user': 'admin',
    'x-wardgate-assertion': 'forged',
    'x-forwarded-user': 'dr.alice',
    'x-forwarded-email': 'alice@example.org',
    'x-auth-request-email': 'alice@example.org',
    'remote-user': 'alice',
    'x-forwarded-for': '203.0.113.9',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'evil.test',
    forwarded: 'for=203.0.113.9',
    'x-real-ip': '203.0.113.9',
    'x-request-id': 'attacker-chosen-id',
    cookie: ['a=1', 'b=2'],
    'x-app-header': 'kept',
  });
  t.equal(res.status, 200);
  const seen = up.seen.at(-1)!.headers;
  for (const name of ['x-hop-secret', 'keep-alive', 'te', 'proxy-authorization', 'x-wardgate-user',
    'x-forwarded-user', 'x-forwarded-email', 'x-auth-request-email', 'remote-user', 'forwarded', 'x-real-ip']) {
    t.equal(seen[name], undefined, `${name} stripped`);
  }
  t.equal(seen.authorization, undefined, 'the client\'s Authorization (the bearer token wardgate verified) is stripped by default');
  t.not(seen['x-wardgate-assertion'], 'forged', 'the client\'s X-Wardgate-Assertion is not passed on');
  t.match(String(seen['x-wardgate-assertion']), /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the upstream gets wardgate\'s own assertion (a JWT) in its place');
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the real peer, not the client claim');
  t.equal(seen['x-forwarded-proto'], 'http', 'X-Forwarded-Proto is how the client really connected');
  t.equal(seen['x-forwarded-host'], 'app.test', 'X-Forwarded-Host is the host the client asked for');
  t.not(seen['x-request-id'], 'attacker-chosen-id', 'an untrusted client cannot choose the request id');
  t.equal(seen['x-request-id'], res.headers['x-request-id'], 'the upstream and the client see the same request id');
  t.match(String(seen['x-request-id']), /^[0-9a-f-]{36}$/, 'generated ids are UUIDs');
  t.equal(seen.host, `127.0.0.1:${up.port}`, 'Host is the upstream\'s own by default');
  t.equal(seen['x-app-header'], 'kept', 'ordinary headers pass');
  t.equal(seen.cookie, 'a=1; b=2', 'cookies pass');
});

t.test('response headers: hop-by-hop stripped, request id added, multiple Set-Cookie kept', async (t) => {
  const up = await upstreamWith((_req, res) => {
    res.writeHead(200, [
      ['connection', 'keep-alive, X-Internal-Hop'], ['x-internal-hop', 'secret'], ['keep-alive', 'timeout=5'],
      ['proxy-authenticate', 'Basic'], ['set-cookie', 'a=1'], ['set-cookie', 'b=2'], ['x-app', 'yes'], ['content-length', '2'],
    ].flat());
    res.end('ok');
  });
  const wg = await gatewayFor(`
  - id: app
    host: app.test
    upstream: { url: "${up.url}" }`);
  const res = await get(wg.port, 'app.test', '/', wg.auth);
  t.equal(res.body, 'ok');
  t.equal(res.headers['x-internal-hop'], undefined, 'a header named in Connection is not passed on');
  t.equal(res.headers['proxy-authenticate'], undefined, 'proxy-authenticate is hop-by-hop');
  t.not(res.headers['keep-alive'], 'timeout=5', 'the upstream\'s keep-alive parameters are not passed on');
  t.same(res.headers['set-cookie'], ['a=1', 'b=2'], 'both cookies arrive');
  t.equal(res.headers['x-app'], 'yes');
  t.match(String(res.headers['x-request-id']), /^[0-9a-f-]{36}$/);
});

t.test('trusted proxies: only they may extend X-Forwarded-For and pass a request id', async (t) => {
  const up = await upstreamWith();
  const wg = await gatewayFor(`
  - id: app
    host: app.test
    upstream: { url: "${up.url}", preserveHost: true }`, 'trustedProxies: ["127.0.0.0/8"]');
  const res = await get(wg.port, 'app.test:8443', '/', {
    ...wg.auth,
    'x-forwarded-for': '198.51.100.7, 10.0.0.1',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'portal.hospital.example',
    'x-request-id': 'lb-0123456789',
  });
  t.equal(res.status, 200);
  const seen = up.seen.at(-1)!.headers;
  t.equal(seen['x-forwarded-for'], '198.51.100.7, 10.0.0.1, 127.0.0.1', 'the chain is kept and the proxy appended');
  t.equal(seen['x-forwarded-proto'], 'https', 'the load balancer\'s proto is honoured');
  t.equal(seen['x-forwarded-host'], 'portal.hospital.example');
  t.equal(seen['x-request-id'], 'lb-0123456789', 'a trusted proxy\'s request id is kept across hops');
  t.equal(res.headers['x-request-id'], 'lb-0123456789');
  t.equal(seen.host, 'app.test:8443', 'preserveHost sends the client\'s Host');
});

t.test('route precedence: exact host, then the longest prefix', async (t) => {
  const root = await upstreamWith();
  const api = await upstreamWith();
  const admin = await upstreamWith();
  const other = await upstreamWith();
  const wg = await gatewayFor(`
  - id: root
    host: app.test
    upstream: { url: "${root.url}" }
  - id: api
    host: app.test
    paths: ["/api"]
    upstream: { url: "${api.url}" }
  - id: admin
    host: app.test
    paths: ["/api/admin", "/console"]
    upstream: { url: "${admin.url}" }
  - id: other
    host: other.test
    upstream: { url: "${other.url}" }`);
  const hits = async (host: string, path: string): Promise<string> => {
    const before = [root, api, admin, other].map((u) => u.seen.length);
    const res = await get(wg.port, host, path, wg.auth);
    t.equal(res.status, 200, `${host}${path} answered`);
    const after = [root, api, admin, other].map((u) => u.seen.length);
    return ['root', 'api', 'admin', 'other'][after.findIndex((n, i) => n !== before[i])] ?? 'none';
  };
  t.equal(await hits('app.test', '/'), 'root');
  t.equal(await hits('app.test', '/apis'), 'root', '/apis is not under /api');
  t.equal(await hits('app.test', '/api'), 'api');
  t.equal(await hits('app.test', '/api/v1/x'), 'api');
  t.equal(await hits('app.test', '/api/admin/users'), 'admin', 'the longest prefix wins');
  t.equal(await hits('app.test', '/console'), 'admin', 'a route may own several prefixes');
  t.equal(await hits('APP.TEST.', '/api'), 'api', 'host is case-insensitive and a trailing dot is ignored');
  t.equal(await hits('other.test:8080', '/api'), 'other', 'the host decides first, whatever the path');
  t.equal(await hits('app.test', '/x/../api/admin'), 'admin', 'routing sees the canonical path');
  t.equal(await hits('app.test', '/api;v=1/admin;x/users'), 'admin', 'routing sees the path a servlet upstream resolves (;params dropped)');
  t.equal(admin.seen.at(-1)?.url, '/api;v=1/admin;x/users', 'while the upstream still gets the parameters');
});

t.test('request bodies reach the upstream byte for byte (fixed length and chunked)', async (t) => {
  const up = await upstreamWith();
  const wg = await gatewayFor(`
  - id: app
    host: app.test
    upstream: { url: "${up.url}" }`);
  const body = 'x'.repeat(100_000);
  const fixed = await get(wg.port, 'app.test', '/upload', { ...wg.auth, 'content-type': 'text/plain' }, 'POST', body);
  t.equal(JSON.parse(fixed.body).bodyBytes, 100_000, 'fixed-length body forwarded whole');
  const chunked = await get(wg.port, 'app.test', '/upload', { ...wg.auth, 'transfer-encoding': 'chunked' }, 'PUT', body);
  t.equal(JSON.parse(chunked.body).bodyBytes, 100_000, 'chunked body forwarded whole');
  const head = await get(wg.port, 'app.test', '/', wg.auth, 'HEAD');
  t.equal(head.status, 200, 'HEAD passes');
  t.equal(head.body, '', 'HEAD has no body');
});

t.test('upstream failures: 502 for refused and reset, each counted by kind', async (t) => {
  const closed = createNetServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const closedPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const resetting = await upstreamWith((req) => req.socket.destroy());
  const wg = await gatewayFor(`
  - id: refused
    host: refused.test
    upstream: { url: "http://127.0.0.1:${closedPort}" }
  - id: resets
    host: resets.test
    upstream: { url: "${resetting.url}" }`);
  const refused = await get(wg.port, 'refused.test', '/', { ...wg.auth, accept: 'application/json' });
  t.equal(refused.status, 502, 'connection refused is a 502');
  t.equal(JSON.parse(refused.body).reason, 'upstream-unavailable');
  const reset = await get(wg.port, 'resets.test', '/', wg.auth);
  t.equal(reset.status, 502, 'a reset before the response is a 502');
  t.equal(resetting.seen.length, 2, 'a bodiless GET is retried once on a fresh connection, then given up');
  const post = await get(wg.port, 'resets.test', '/', { ...wg.auth, 'content-type': 'text/plain' }, 'POST', 'order');
  t.equal(post.status, 502);
  t.equal(resetting.seen.length, 3, 'a POST is never retried');
  const text = await wg.metrics();
  t.equal(sample(text, 'wardgate_upstream_errors_total', { route: 'refused', kind: 'connect_refused' }), 1);
  t.equal(sample(text, 'wardgate_upstream_errors_total', { route: 'resets', kind: 'reset' }), 2);
  t.equal(sample(text, 'wardgate_requests_total', { route: 'resets', method: 'POST', code: '502' }), 1);
});

t.test('a keep-alive connection the upstream dropped is retried transparently', async (t) => {
  // Answers the first request on each connection, then drops the connection when a
  // second request arrives on it: the race a stale pooled connection runs into.
  let accepted = 0;
  const stale = new Set<import('node:net').Socket>();
  const server: NetServer = createNetServer((socket) => {
    accepted++;
    stale.add(socket);
    let served = 0;
    socket.on('data', () => {
      if (served++ === 0) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok');
      else socket.destroy();
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => {
    server.close(() => r());
    for (const socket of stale) socket.destroy();
  }));
  const wg = await gatewayFor(`
  - id: app
    host: app.test
    upstream: { url: "http://127.0.0.1:${(server.address() as AddressInfo).port}", connections: 1 }`);
  t.equal((await get(wg.port, 'app.test', '/1', wg.auth)).status, 200);
  const second = await get(wg.port, 'app.test', '/2', wg.auth);
  t.equal(second.status, 200, 'the client never sees the stale connection');
  t.equal(second.body, 'ok');
  t.equal(accepted, 2, 'the retry went out on a new connection');
});

t.test('timeouts: headers 504, body cut off, client idle 408, connect (TLS handshake) 504', async (t) => {
  const silent = await upstreamWith(() => { /* never answers */ });
  const stalls = await upstreamWith((_req, res) => {
    res.writeHead(200, { 'content-length': '100' });
    res.write('partial');
  });
  // Accepts TCP but never speaks TLS: the connect phase (TCP + handshake) cannot finish.
  const muted = new Set<import('node:net').Socket>();
  const mute = createNetServer((socket) => {
    muted.add(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => {
    for (const socket of muted) socket.destroy();
    mute.close(() => r());
  }));
  const mutePort = (mute.address() as AddressInfo).port;
  const slowClient = await upstreamWith((req, res) => {
    req.resume();
    req.on('end', () => res.end('done'));
  }, true);
  const wg = await gatewayFor(`
  - id: silent
    host: silent.test
    upstream: { url: "${silent.url}" }
    timeouts: { headers: 300ms }
  - id: stalls
    host: stalls.test
    upstream: { url: "${stalls.url}" }
    timeouts: { body: 300ms }
  - id: mute
    host: mute.test
    upstream: { url: "https://127.0.0.1:${mutePort}" }
    timeouts: { connect: 300ms }
  - id: slowclient
    host: slowclient.test
    upstream: { url: "${slowClient.url}" }
    timeouts: { idle: 300ms }`);

  const headers = await get(wg.port, 'silent.test', '/', { ...wg.auth, accept: 'application/json' });
  t.equal(headers.status, 504, 'no response headers in time: 504');
  t.equal(JSON.parse(headers.body).reason, 'upstream-timeout');

  const body = await get(wg.port, 'stalls.test', '/', wg.auth).then(() => 'complete', (err: NodeJS.ErrnoException) => err.code ?? 'error');
  t.not(body, 'complete', 'a stalled body is cut off, never passed as complete');

  const connect = await get(wg.port, 'mute.test', '/', wg.auth);
  t.equal(connect.status, 504, 'an upstream that never completes the TLS handshake: 504');

  const idle = await rawRequest(wg.port, `POST / HTTP/1.1\r\nHost: slowclient.test\r\nAuthorization: ${wg.auth.authorization}\r\nContent-Length: 100\r\n\r\nonly-some`, 3000);
  t.equal(idle.status, 0, 'a client that stops sending is disconnected without a response');
  t.ok(await until(() => wg.access().some((l) => l.route === 'slowclient' && l.status === 408)), 'and recorded as 408');

  const text = await wg.metrics();
  t.equal(sample(text, 'wardgate_upstream_errors_total', { route: 'silent', kind: 'headers_timeout' }), 1);
  t.equal(sample(text, 'wardgate_upstream_errors_total', { route: 'stalls', kind: 'body_timeout' }), 1);
  t.equal(sample(text, 'wardgate_upstream_errors_total', { route: 'mute', kind: 'connect_timeout' }), 1);
  t.ok(wg.access().some((l) => l.route === 'stalls' && l.status === 504 && l.upstreamError === 'body_timeout'), 'the cut response is logged as 504 body_timeout');
});

t.test('a client that aborts aborts the upstream request: no leaked sockets', async (t) => {
  let upstreamClosed = 0;
  const slow = await upstreamWith((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const timer = setInterval(() => res.write('tick\n'), 20);
    res.on('close', () => {
      clearInterval(timer);
      upstreamClosed++;
    });
  });
  let carrierClosed = false;
  const never = await upstreamWith((req, res) => {
    res.on('close', () => upstreamClosed++);
    req.socket.on('close', () => { carrierClosed = true; });
  });
  const wg = await gatewayFor(`
  - id: slow
    host: slow.test
    upstream: { url: "${slow.url}" }
  - id: never
    host: never.test
    upstream: { url: "${never.url}" }`);

  await new Promise<void>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: wg.port, path: '/', agent: false, headers: { host: 'slow.test', ...wg.auth } }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', () => {});
    req.end();
  });
  t.ok(await until(() => upstreamClosed === 1), 'aborting mid-download closes the upstream response');
  t.ok(await until(() => slow.connections.open.size === 0), 'and its upstream connection');

  const req = httpRequest({ host: '127.0.0.1', port: wg.port, path: '/', agent: false, headers: { host: 'never.test', ...wg.auth } });
  req.on('error', () => {});
  req.end();
  t.ok(await until(() => never.seen.length === 1), 'the request reached the upstream');
  req.destroy();
  t.ok(await until(() => upstreamClosed === 2), 'aborting before the response closes the upstream request');
  t.ok(await until(() => carrierClosed), 'the upstream connection that carried it is closed, not left hanging');
  t.ok(await until(() => wg.access().filter((l) => l.status === 499).length === 2), 'both are logged as 499 (client closed request)');
});

t.test('upstream TLS: CA, server name and client certificate', async (t) => {
  const pki = makePki();
  const server = pki.issue('upstream.internal');
  const client = pki.issue('wardgate-client');
  const stranger = makePki('some other CA');
  const https = createHttpsServer({
    cert: pki.read(server.cert), key: pki.read(server.key), ca: pki.read(pki.caCert),
    requestCert: true, rejectUnauthorized: true,
  }, (req, res) => {
    const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
    res.end(JSON.stringify({ clientCn: peer.subject?.CN }));
  });
  await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => { https.closeAllConnections(); https.close(() => r()); }));
  const port = (https.address() as AddressInfo).port;
  const wg = await gatewayFor(`
  - id: good
    host: good.test
    upstream:
      url: "https://127.0.0.1:${port}"
      tls: { ca: "${pki.caCert}", serverName: upstream.internal, cert: "${client.cert}", key: "${client.key}" }
  - id: wrongca
    host: wrongca.test
    upstream:
      url: "https://127.0.0.1:${port}"
      tls: { ca: "${stranger.caCert}", serverName: upstream.internal, cert: "${client.cert}", key: "${client.key}" }
  - id: wrongname
    host: wrongname.test
    upstream:
      url: "https://127.0.0.1:${port}"
      tls: { ca: "${pki.caCert}", serverName: not-the-upstream.internal }`);
  const good = await get(wg.port, 'good.test', '/', wg.auth);
  t.equal(good.status, 200, 'verified against the configured CA and server name');
  t.same(JSON.parse(good.body), { clientCn: 'wardgate-client' }, 'wardgate presented its client certificate');
  t.equal((await get(wg.port, 'wrongca.test', '/', wg.auth)).status, 502, 'an upstream certificate from another CA is refused');
  t.equal((await get(wg.port, 'wrongname.test', '/', wg.auth)).status, 502, 'a certificate for another name is refused');
  const text = await wg.metrics();
  t.equal(sample(text, 'wardgate_upstream_errors_total', { route: 'wrongca', kind: 'tls' }), 1, 'counted as a TLS failure');
});

// ---------------------------------------------------------------------------------------
// Identity: every routed request needs one, and the upstream learns it only from wardgate.

/** A gateway whose auth host is on its own (known) port, so sign-in URLs are real ones. */
async function identityGateway(t: Test, routesYaml: string): Promise<TestGateway> {
  const port = await freePort();
  const wg = await gatewayFor(routesYaml, '', { port });
  t.equal(wg.port, port, 'the gateway listens on the port its authUrl names');
  return wg;
}

t.test('no credentials: an API client gets 401 + WWW-Authenticate, a browser is sent to sign in, a bad token is 401 invalid_token; nothing is forwarded', async (t) => {
  // Proves the authenticate stage answers every unauthenticated request itself, in the
  // form each kind of client can act on, and that none of them opens a connection upstream.
  const up = await upstreamWith();
  const wg = await identityGateway(t, `
  - id: app
    host: app.test
    upstream: { url: "${up.url}" }`);

  const api = await get(wg.port, 'app.test', '/patients/42', { accept: 'application/json' });
  t.equal(api.status, 401, 'an API request without credentials is 401');
  t.equal(api.headers['www-authenticate'], 'Bearer realm="wardgate"', 'with a Bearer challenge (RFC 6750), no error for a request that sent no token');
  t.equal(api.headers.location, undefined, 'an API client is never redirected');
  t.equal(JSON.parse(api.body).reason, 'login-required', 'the reason is login-required');

  const nav = await get(wg.port, 'app.test', '/chart?mrn=42', { accept: 'text/html,application/xhtml+xml', 'sec-fetch-mode': 'navigate' });
  t.equal(nav.status, 302, 'a browser navigation without a session is redirected');
  const location = new URL(String(nav.headers.location));
  t.equal(`${location.origin}${location.pathname}`, `http://auth.localhost:${wg.port}/.wardgate/sign-in`, 'to the sign-in endpoint on the auth host');
  t.equal(location.searchParams.get('rd'), 'http://app.test/chart?mrn=42', 'rd is the URL the browser asked for, to return to after sign-in');
  t.ok(location.searchParams.get('b'), 'and carries the browser binding (b)');
  // The sign-in is bound to this browser by a cookie wardgate sets on the app host (its
  // exact name is the sign-in flow's business: __Host-wardgate-browser, or one per sign-in).
  const cookies = ([] as string[]).concat(nav.headers['set-cookie'] ?? []);
  const binding = cookies.filter((c) => c.startsWith('__Host-wardgate-'));
  t.ok(binding.length >= 1, 'and the browser is given a __Host-wardgate-* cookie that binds the sign-in to it');
  for (const c of binding) {
    t.match(c, /; Secure(;|$)/i, 'the binding cookie is Secure');
    t.match(c, /; HttpOnly(;|$)/i, 'the binding cookie is HttpOnly');
    t.match(c, /; Path=\/(;|$)/i, 'the binding cookie has Path=/');
    t.notMatch(c, /; Domain=/i, 'the binding cookie is host-only (no Domain)');
  }
  t.notOk(cookies.some((c) => c.startsWith('__Host-wardgate=')), 'no session cookie is set before sign-in');

  const garbage = await get(wg.port, 'app.test', '/patients/42', { authorization: 'Bearer not-a-jwt', accept: 'text/html' });
  t.equal(garbage.status, 401, 'a garbage bearer token is 401, even when the client accepts HTML: a token-bearing request is never redirected');
  t.equal(garbage.headers['www-authenticate'], 'Bearer realm="wardgate", error="invalid_token"', 'the challenge says invalid_token');
  t.match(garbage.body, '<code>token-invalid</code>', 'the reason is token-invalid');
  const garbageJson = await get(wg.port, 'app.test', '/patients/42', { authorization: 'Bearer not-a-jwt', accept: 'application/json' });
  t.equal(JSON.parse(garbageJson.body).reason, 'token-invalid', 'and token-invalid in JSON for API clients');

  t.equal(up.connections.accepted, 0, 'the upstream accepted no connection for any of them');
  t.equal(up.seen.length, 0, 'and saw no request');
  t.ok(await until(() => wg.access().length === 4), 'four access-log lines are written');
  const reasons = wg.access().map((l) => `${l.status} ${l.reason}`);
  t.same(reasons, ['401 login-required', '302 login-required', '401 token-invalid', '401 token-invalid'], 'each refusal is in the access log with its status and reason');
});

t.test('the upstream gets an X-Wardgate-Assertion that verifies against the JWKS wardgate serves on the route host', async (t) => {
  // Proves an upstream can trust who the user is from the assertion alone: signed by a key
  // published at /.well-known/wardgate/jwks.json on its own host, for this route only
  // (aud), naming the token's subject, issued by the auth origin, and short-lived.
  const up = await upstreamWith();
  const wg = await identityGateway(t, `
  - id: chart
    host: chart.test
    upstream: { url: "${up.url}" }`);
  const res = await get(wg.port, 'chart.test', '/x', wg.auth);
  t.equal(res.status, 200);
  const assertion = up.seen.at(-1)!.headers['x-wardgate-assertion'];
  t.type(assertion, 'string', 'the upstream received x-wardgate-assertion');

  const seenBefore = up.seen.length;
  const jwksReply = await get(wg.port, 'chart.test', '/.well-known/wardgate/jwks.json');
  t.equal(jwksReply.status, 200, 'the JWKS is served on the route host, without credentials');
  t.equal(up.seen.length, seenBefore, 'by wardgate itself: the JWKS request was not forwarded');
  const jwks = JSON.parse(jwksReply.body) as JSONWebKeySet;
  t.ok(jwks.keys.length >= 1, 'it publishes at least one key');

  const { kid, alg } = decodeProtectedHeader(String(assertion));
  t.equal(alg, 'ES256', 'the assertion is ES256');
  t.ok(jwks.keys.some((k) => k.kid === kid), 'its kid is in the JWKS');
  const issuer = `http://auth.localhost:${wg.port}`;
  const { payload } = await jwtVerify(String(assertion), createLocalJWKSet(jwks), { issuer, audience: 'chart', algorithms: ['ES256'] });
  t.pass('the signature verifies with jose against the served JWKS, with iss and aud checked');
  t.equal(payload.iss, issuer, 'iss is the auth origin (identity.authUrl)');
  t.equal(payload.aud, 'chart', 'aud is the route id: an assertion for one route is worthless at another');
  t.equal(payload.sub, API_CLIENT.id, 'sub is the subject of the client-credentials token the client presented');
  const now = Math.floor(Date.now() / 1000);
  t.ok(typeof payload.exp === 'number' && payload.exp > now, 'it has not expired');
  t.ok(payload.exp! - payload.iat! <= 60 && payload.exp! - now <= 61, `it is short-lived (${payload.exp! - payload.iat!} s, default ttl 60 s)`);

  await t.rejects(jwtVerify(String(assertion), createLocalJWKSet(jwks), { issuer, audience: 'other-route', algorithms: ['ES256'] }),
    'checked against another route id as audience, it fails');
});

t.test('client-sent X-Wardgate-Assertion and wardgate cookies never reach the upstream as sent', async (t) => {
  // Proves a client cannot forge the identity an upstream sees, nor hand the upstream
  // wardgate's own session cookie: both are removed and only the application's cookies pass.
  const up = await upstreamWith();
  const wg = await gatewayFor(`
  - id: app
    host: app.test
    upstream: { url: "${up.url}" }`);
  const res = await get(wg.port, 'app.test', '/', {
    ...wg.auth,
    'X-Wardgate-Assertion': 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJjaGllZiJ9.',
    cookie: '__Host-wardgate=forged; other=1',
  });
  t.equal(res.status, 200);
  const seen = up.seen.at(-1)!;
  const assertions = seen.rawHeaders.filter((_, i) => i % 2 === 0 && seen.rawHeaders[i]!.toLowerCase() === 'x-wardgate-assertion');
  t.equal(assertions.length, 1, 'the upstream sees exactly one X-Wardgate-Assertion');
  t.not(seen.headers['x-wardgate-assertion'], 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJjaGllZiJ9.', 'and it is not the one the client sent');
  t.equal(decodeProtectedHeader(String(seen.headers['x-wardgate-assertion'])).alg, 'ES256', 'it is wardgate\'s signed assertion');
  t.equal(seen.headers.cookie, 'other=1', 'the Cookie header reaches the upstream without __Host-wardgate, the application\'s cookie kept');

  const onlyOurs = await get(wg.port, 'app.test', '/', { ...wg.auth, cookie: '__Host-wardgate=forged; __Host-wardgate-browser=x' });
  t.equal(onlyOurs.status, 200);
  t.equal(up.seen.at(-1)!.headers.cookie, undefined, 'a Cookie header holding only wardgate cookies is not sent at all');
});

t.test('claim headers: the route\'s X-User carries the subject, and a client-sent X-User is dropped', async (t) => {
  // Proves a route's claimHeaders are set by wardgate from the verified identity, and that
  // a client cannot supply its own copy (it would sit beside, or instead of, wardgate's).
  const up = await upstreamWith();
  const wg = await gatewayFor(`
  - id: legacy
    host: legacy.test
    upstream: { url: "${up.url}" }
    auth:
      claimHeaders: { X-User: sub }
  - id: plain
    host: plain.test
    upstream: { url: "${up.url}" }`);
  const res = await get(wg.port, 'legacy.test', '/', { ...wg.auth, 'X-User': 'chief-of-medicine' });
  t.equal(res.status, 200);
  const seen = up.seen.at(-1)!;
  const xUser = seen.rawHeaders.filter((_, i) => i % 2 === 1 && seen.rawHeaders[i - 1]!.toLowerCase() === 'x-user');
  t.same(xUser, [API_CLIENT.id], 'the upstream sees one x-user: the token\'s subject, api-client; the client\'s is gone');

  const plain = await get(wg.port, 'plain.test', '/', { ...wg.auth, 'X-User': 'chief-of-medicine' });
  t.equal(plain.status, 200);
  t.equal(up.seen.at(-1)!.headers['x-user'], 'chief-of-medicine', 'on a route without claim headers, X-User is just an application header');
});

t.test('Authorization is stripped before forwarding unless the route sets passAuthorization', async (t) => {
  // Proves the bearer token the client proved itself with is wardgate's, not the
  // application's, by default; a route that needs it (an API checking the token itself) opts in.
  const up = await upstreamWith();
  const wg = await gatewayFor(`
  - id: stripped
    host: stripped.test
    upstream: { url: "${up.url}" }
  - id: passed
    host: passed.test
    upstream: { url: "${up.url}" }
    auth: { passAuthorization: true }`);
  t.equal((await get(wg.port, 'stripped.test', '/', wg.auth)).status, 200);
  t.equal(up.seen.at(-1)!.headers.authorization, undefined, 'by default the upstream never sees the client\'s Authorization');
  t.equal((await get(wg.port, 'passed.test', '/', wg.auth)).status, 200);
  t.equal(up.seen.at(-1)!.headers.authorization, wg.auth.authorization, 'with passAuthorization: true the upstream gets it unchanged');
  t.type(up.seen.at(-1)!.headers['x-wardgate-assertion'], 'string', 'and still gets wardgate\'s assertion beside it');
});

t.test('an upstream cannot set wardgate\'s cookies: __Host-wardgate* Set-Cookies are dropped, others pass', async (t) => {
  // Proves an application (or an attacker controlling one) cannot fix, replace or clear a
  // user's wardgate session on the shared host.
  const up = await upstreamWith((_req, res) => {
    res.writeHead(200, [
      ['set-cookie', '__Host-wardgate=evil; Path=/; Secure'],
      ['set-cookie', 'app-session=abc; Path=/; HttpOnly'],
      ['set-cookie', '__Host-wardgate-browser=evil; Path=/; Secure'],
      ['content-length', '2'],
    ].flat());
    res.end('ok');
  });
  const wg = await gatewayFor(`
  - id: app
    host: app.test
    upstream: { url: "${up.url}" }`);
  const res = await get(wg.port, 'app.test', '/', wg.auth);
  t.equal(res.status, 200);
  t.equal(res.body, 'ok');
  t.same(res.headers['set-cookie'], ['app-session=abc; Path=/; HttpOnly'], 'only the application\'s own cookie reaches the client');
});

t.test('/.wardgate/ paths on a routed host are wardgate\'s: an unknown one is 404 no-route, never forwarded', async (t) => {
  // Proves the reserved prefix is answered ahead of routing, so an application's own
  // /.wardgate/... paths can never shadow wardgate's, with or without credentials.
  const up = await upstreamWith();
  const wg = await gatewayFor(`
  - id: app
    host: app.test
    upstream: { url: "${up.url}" }`);
  for (const [what, headers] of [['with credentials', wg.auth], ['without credentials', {}]] as const) {
    const res = await get(wg.port, 'app.test', '/.wardgate/anything', { ...headers, accept: 'application/json' });
    t.equal(res.status, 404, `${what}: 404`);
    t.equal(JSON.parse(res.body).reason, 'no-route', `${what}: reason no-route`);
  }
  const post = await get(wg.port, 'app.test', '/.wardgate/anything/deeper', { ...wg.auth, accept: 'application/json', 'content-type': 'text/plain' }, 'POST', 'x');
  t.equal(post.status, 404, 'a POST deeper under the prefix is answered 404 too');
  t.equal(up.connections.accepted, 0, 'the upstream accepted no connection');
  t.equal(up.seen.length, 0, 'and saw no request');
});

import { createHash, randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import t from 'tap';
import { WebSocket, WebSocketServer } from 'ws';
import { sample, startTestGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';
import { until, within } from '../helpers/wait.js';

/*
 * WebSockets through a real in-process wardgate, to real `ws` upstreams and real `ws`
 * clients: the handshake goes through the same pipeline as every request (normalize,
 * route, authenticate, header hygiene), tunnels carry frames both ways, and wardgate can
 * end a route's tunnels with a well-formed close frame even while the upstream is
 * mid-message. Handshakes authenticate with the shared test IdP's bearer token unless a
 * test is about ones that do not.
 */

const MiB = 1 << 20;

/** Deterministic bytes, so a corrupted or shifted message cannot pass a comparison. */
function pattern(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = (i * 131 + (i >>> 16)) & 0xff;
  return out;
}

// ---------------------------------------------------------------------------------------
// A real ws upstream: echoes every message; each connection is found by the X-Test-Id
// header its client sent, so tests never depend on connection order.

interface UpstreamConnection {
  ws: WebSocket;
  /** The upgrade request as the upstream received it. */
  req: IncomingMessage;
  /** The raw TCP socket under `ws`, for writing frames by hand. */
  socket: Socket;
  errors: Error[];
}

interface WsUpstream {
  port: number;
  url: string;
  /** TCP connections accepted so far. */
  accepted(): number;
  handshakes: Array<{ url: string; headers: IncomingHttpHeaders }>;
  connection(testId: string): Promise<UpstreamConnection>;
  close(): Promise<void>;
}

async function startWsUpstream(): Promise<WsUpstream> {
  const server = createHttpServer((_req, res) => res.writeHead(426).end('websockets only'));
  const wss = new WebSocketServer({ server });
  let accepted = 0;
  server.on('connection', () => accepted++);
  const handshakes: WsUpstream['handshakes'] = [];
  const connections = new Map<string, UpstreamConnection>();
  const waiters = new Map<string, (c: UpstreamConnection) => void>();
  wss.on('connection', (ws, req) => {
    handshakes.push({ url: req.url ?? '', headers: req.headers });
    const conn: UpstreamConnection = { ws, req, socket: req.socket, errors: [] };
    ws.on('error', (err) => conn.errors.push(err));
    ws.on('message', (data, isBinary) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(data as Buffer, { binary: isBinary });
    });
    const id = String(req.headers['x-test-id'] ?? '');
    connections.set(id, conn);
    waiters.get(id)?.(conn);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    accepted: () => accepted,
    handshakes,
    connection: (testId) => within(new Promise<UpstreamConnection>((resolve) => {
      const known = connections.get(testId);
      if (known) resolve(known);
      else waiters.set(testId, resolve);
    }), 5000, `the upstream to receive connection ${testId}`),
    close: async () => {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------------------------------
// A real ws client that records everything it sees.

interface Client {
  ws: WebSocket;
  testId: string;
  /** The client's TCP socket, to see how far a message has arrived. */
  socket: Socket;
  messages: Array<{ data: Buffer; isBinary: boolean }>;
  errors: Error[];
  closed: Promise<{ code: number; reason: string }>;
  nextMessage(what: string, ms?: number): Promise<{ data: Buffer; isBinary: boolean }>;
}

const clients: WebSocket[] = [];

async function openClient(port: number, host: string, path: string, headers: Record<string, string> = {}): Promise<Client> {
  const testId = randomUUID();
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, {
    headers: { host, 'x-test-id': testId, ...wg.auth, ...headers },
    perMessageDeflate: false,
  });
  clients.push(ws);
  const messages: Client['messages'] = [];
  const errors: Error[] = [];
  let socket: Socket | undefined;
  const listeners = new Set<() => void>();
  ws.on('upgrade', (res: IncomingMessage) => {
    socket = res.socket;
  });
  ws.on('message', (data, isBinary) => {
    messages.push({ data: data as Buffer, isBinary });
    for (const listener of listeners) listener();
  });
  ws.on('error', (err) => errors.push(err));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') }));
  });
  await within(new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('close', (code) => reject(new Error(`closed with ${code} before opening: ${errors.map((e) => e.message).join('; ')}`)));
  }), 5000, `a WebSocket to ${host}${path} to open`);
  let read = 0;
  return {
    ws,
    testId,
    socket: socket!,
    messages,
    errors,
    closed,
    nextMessage: (what, ms = 5000) => within(new Promise((resolve) => {
      const check = (): void => {
        if (read < messages.length) {
          listeners.delete(check);
          resolve(messages[read++]!);
        }
      };
      listeners.add(check);
      check();
    }), ms, what),
  };
}

// ---------------------------------------------------------------------------------------
// A raw handshake, for request targets no URL-parsing client will send.

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ACCEPT = createHash('sha1').update(`${KEY}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');

function upgradeRequest(path: string, host: string, extra = '', upgrade = 'websocket'): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\n`
    + `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${KEY}\r\n${extra}\r\n`;
}

/** Sends `request`; resolves with the response head and the open socket once the head is in. */
interface RawUpgrade { status: number; head: string; socket: Socket; rest: Buffer }

function rawUpgrade(port: number, request: string): Promise<RawUpgrade> {
  const socket = connect(port, '127.0.0.1');
  let buffered = Buffer.alloc(0);
  return within(new Promise<RawUpgrade>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      socket.pause();
      const head = buffered.subarray(0, end).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, socket, rest: buffered.subarray(end + 4) });
    };
    socket.on('data', onData);
    socket.on('error', reject);
    socket.on('close', () => reject(new Error('connection closed before a response head')));
    socket.write(request);
  }), 5000, 'the response to a raw upgrade').catch((err: unknown) => {
    socket.destroy();
    throw err;
  });
}

/** A masked client-to-server text frame (payload under 126 bytes). */
function maskedText(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([0x11, 0x22, 0x33, 0x44]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

/** Reads one small unmasked server frame from `socket` (after `rest`). */
function readSmallFrame(socket: Socket, rest: Buffer): Promise<{ opcode: number; payload: Buffer }> {
  let buffered = rest;
  return within(new Promise((resolve) => {
    const tryParse = (): boolean => {
      if (buffered.length < 2) return false;
      const len = buffered[1]! & 0x7f;
      if (len > 125 || buffered.length < 2 + len) return false;
      socket.off('data', onData);
      resolve({ opcode: buffered[0]! & 0x0f, payload: buffered.subarray(2, 2 + len) });
      return true;
    };
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      tryParse();
    };
    if (!tryParse()) {
      socket.on('data', onData);
      socket.resume();
    }
  }), 5000, 'a frame from the upstream through the raw tunnel');
}

// ---------------------------------------------------------------------------------------

const upstream = await startWsUpstream();
const deadPort = await new Promise<number>((resolve) => {
  const probe = createNetServer();
  probe.listen(0, '127.0.0.1', () => {
    const { port } = probe.address() as AddressInfo;
    probe.close(() => resolve(port));
  });
});

const route = (id: string, host: string, url: string, websockets: boolean): string => `
  - id: ${id}
    host: ${host}
    upstream:
      url: "${url}"
    websockets: ${websockets}`;

const wg = await startTestGateway([
  route('ws-main', 'ws.test', upstream.url, true),
  route('ws-other', 'other.test', upstream.url, true),
  route('ws-gauge', 'gauge.test', upstream.url, true),
  route('ws-split', 'split.test', upstream.url, true),
  route('ws-big', 'big.test', upstream.url, true),
  route('ws-dead', 'dead.test', `http://127.0.0.1:${deadPort}`, true),
  route('plain', 'plain.test', upstream.url, false),
].join(''));

t.teardown(async () => {
  for (const ws of clients) ws.terminate();
  await wg.close();
  await upstream.close();
});

/** The Authorization line of a raw handshake that authenticates. */
const authLine = `Authorization: ${wg.auth.authorization}\r\n`;

t.test('an upgrade is proxied: messages both ways, identity headers stripped, forwarding headers set', async (t) => {
  const client = await openClient(wg.port, 'ws.test', '/chat?room=1', {
    'X-Wardgate-User': 'mallory@hospital.test',
    'X-Forwarded-User': 'mallory',
    'X-Auth-Request-Email': 'mallory@hospital.test',
    'X-Forwarded-For': '203.0.113.66',
    'X-Forwarded-Proto': 'https',
    'X-Forwarded-Host': 'evil.test',
    'X-Request-Id': 'client-chosen-request-id',
  });
  const server = await upstream.connection(client.testId);

  client.ws.send('hello from the client');
  const echoed = await client.nextMessage('the echo of a text message');
  t.equal(echoed.data.toString(), 'hello from the client', 'a text message reached the upstream and its echo came back');
  t.notOk(echoed.isBinary, 'text stays text');

  const binary = pattern(200_000);
  client.ws.send(binary);
  const echoedBinary = await client.nextMessage('the echo of a 200 kB binary message');
  t.ok(echoedBinary.isBinary && echoedBinary.data.equals(binary), 'a 200 kB binary message crossed both ways intact');

  server.ws.send('pushed by the upstream');
  const pushed = await client.nextMessage('a message the upstream sent on its own');
  t.equal(pushed.data.toString(), 'pushed by the upstream', 'the upstream can push to the client unprompted');

  const h = server.req.headers;
  t.equal(server.req.url, '/chat?room=1', 'the upstream sees the path and query asked for');
  t.equal(h['x-wardgate-user'], undefined, 'a client-supplied X-Wardgate-User never reaches the upstream');
  t.equal(h['x-forwarded-user'], undefined, 'a client-supplied X-Forwarded-User never reaches the upstream');
  t.equal(h['x-auth-request-email'], undefined, 'a client-supplied X-Auth-Request-Email never reaches the upstream');
  t.equal(h['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the real peer, not the client-supplied chain');
  t.equal(h['x-forwarded-proto'], 'http', 'X-Forwarded-Proto is how the client reached wardgate');
  t.equal(h['x-forwarded-host'], 'ws.test', 'X-Forwarded-Host is the host the client asked for');
  t.match(h['x-request-id'], /^[0-9a-f-]{36}$/, 'X-Request-Id is a wardgate-made UUID');
  t.not(h['x-request-id'], 'client-chosen-request-id', 'an untrusted client cannot choose the request id');
  t.equal(h.host, `127.0.0.1:${upstream.port}`, 'without preserveHost the upstream sees its own host');
  t.equal(h.upgrade, 'websocket', 'the upstream is asked for a websocket upgrade');
  t.equal(h.authorization, undefined, 'the client\'s Authorization (its bearer token) is not passed on');
  t.match(String(h['x-wardgate-assertion']), /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the upstream gets wardgate\'s identity assertion on the handshake');

  // The access log has the 101 for this very upgrade, under the id the upstream saw.
  await until(() => wg.access().some((l) => l.reqId === h['x-request-id']), 2000, 'the access-log line of the upgrade');
  const line = wg.access().find((l) => l.reqId === h['x-request-id'])!;
  t.equal(line.status, 101, 'the access log records the upgrade with status 101');
  t.equal(line.route, 'ws-main', 'the access log names the route');
  t.equal(line.path, '/chat', 'the access log has the canonical path without the query');
  t.equal(line.method, 'GET', 'the access log has the method');

  client.ws.close(1000, 'done');
  const closed = await within(client.closed, 5000, 'a client-initiated close to complete');
  t.equal(closed.code, 1000, 'a client-initiated close handshake passes through the tunnel');
  t.same(client.errors, [], 'the client saw no error');
});

t.test('the upstream sees the canonical path of a raw handshake', async (t) => {
  const testId = randomUUID();
  const res = await rawUpgrade(wg.port, upgradeRequest('/a/./b/../ws?x=1', 'ws.test', `X-Test-Id: ${testId}\r\nX-Wardgate-User: mallory\r\n${authLine}`));
  t.teardown(() => res.socket.destroy());
  t.equal(res.status, 101, 'wardgate switches protocols for /a/./b/../ws');
  t.match(res.head, new RegExp(`sec-websocket-accept: ${ACCEPT.replace(/[+/=]/g, '\\$&')}`, 'i'), 'the upstream\'s Sec-WebSocket-Accept reaches the client');
  const server = await upstream.connection(testId);
  t.equal(server.req.url, '/a/ws?x=1', 'the upstream sees the canonical path /a/ws (dot segments resolved), query kept');
  t.equal(server.req.headers['x-wardgate-user'], undefined, 'X-Wardgate-User is stripped from a raw handshake too');

  res.socket.write(maskedText('raw frame'));
  const frame = await readSmallFrame(res.socket, res.rest);
  t.equal(frame.opcode, 1, 'a text frame comes back');
  t.equal(frame.payload.toString(), 'raw frame', 'bytes written by hand cross the tunnel and the upstream\'s echo comes back');
});

t.test('upgrades are refused by the same pipeline as other requests, and nothing reaches the upstream', async (t) => {
  // The normalize and route refusals carry no credentials: they come before authentication.
  // The route-policy refusals carry a valid token, so the refusal is not a missing identity.
  const cases = [
    { name: 'unknown host', request: upgradeRequest('/ws', 'unknown.test'), status: 404, reason: 'no-route' },
    { name: 'path traversal', request: upgradeRequest('/../../etc/ws', 'ws.test'), status: 400, reason: 'path-traversal' },
    { name: 'route without websockets: true', request: upgradeRequest('/ws', 'plain.test', authLine), status: 403, reason: 'websockets-not-allowed' },
    {
      name: 'a non-websocket upgrade (h2c)',
      request: upgradeRequest('/ws', 'ws.test', `HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n${authLine}`, 'h2c').replace('Connection: Upgrade', 'Connection: Upgrade, HTTP2-Settings'),
      status: 400,
      reason: 'upgrade-not-supported',
    },
  ];
  for (const c of cases) {
    const acceptedBefore = upstream.accepted();
    const handshakesBefore = upstream.handshakes.length;
    const res = await rawRequest(wg.port, c.request);
    t.equal(res.status, c.status, `${c.name}: answered ${c.status}`);
    t.match(res.body, `"reason":"${c.reason}"`, `${c.name}: the client is told ${c.reason}`);
    t.notMatch(res.head, /sec-websocket-accept/i, `${c.name}: no handshake was completed`);
    t.equal(upstream.accepted(), acceptedBefore, `${c.name}: the upstream accepted no TCP connection`);
    t.equal(upstream.handshakes.length, handshakesBefore, `${c.name}: the upstream saw no handshake`);
    await until(() => wg.access().some((l) => l.status === c.status && l.reason === c.reason), 2000, `the access-log line for ${c.name}`);
    t.pass(`${c.name}: the refusal is in the access log with status ${c.status} and reason ${c.reason}`);
  }
});

t.test('an upgrade without credentials, or with a bad token, is refused with 401 and the upstream sees nothing', async (t) => {
  // Proves a WebSocket handshake passes the authenticate stage like any request: it cannot
  // follow a sign-in redirect, so it gets 401 with a challenge, and no tunnel is opened.
  const cases = [
    { name: 'no credentials', extra: '', reason: 'login-required', challenge: 'Bearer realm="wardgate"' },
    { name: 'no credentials, from a browser', extra: 'Accept: text/html\r\nSec-Fetch-Mode: websocket\r\n', reason: 'login-required', challenge: 'Bearer realm="wardgate"' },
    { name: 'a garbage bearer token', extra: 'Authorization: Bearer not-a-jwt\r\n', reason: 'token-invalid', challenge: 'Bearer realm="wardgate", error="invalid_token"' },
  ];
  for (const c of cases) {
    const acceptedBefore = upstream.accepted();
    const handshakesBefore = upstream.handshakes.length;
    const res = await rawRequest(wg.port, upgradeRequest(`/auth-${c.reason}`, 'ws.test', c.extra));
    t.equal(res.status, 401, `${c.name}: answered 401, not redirected`);
    t.match(res.body, c.reason, `${c.name}: the client is told ${c.reason}`);
    t.equal(/\r\nwww-authenticate: ([^\r]*)/i.exec(res.head)?.[1], c.challenge, `${c.name}: WWW-Authenticate is ${c.challenge}`);
    t.notMatch(res.head, /sec-websocket-accept/i, `${c.name}: no handshake was completed`);
    t.equal(upstream.accepted(), acceptedBefore, `${c.name}: the upstream accepted no TCP connection`);
    t.equal(upstream.handshakes.length, handshakesBefore, `${c.name}: the upstream saw no handshake`);
  }
  await until(() => wg.access().filter((l) => l.status === 401 && l.route === 'ws-main').length === cases.length, 2000, 'the access-log lines of the refused upgrades');
  t.pass('each refused upgrade is in the access log with status 401 under its route');

  // A real ws client without credentials never opens.
  const ws = new WebSocket(`ws://127.0.0.1:${wg.port}/ws`, { headers: { host: 'ws.test' } });
  clients.push(ws);
  const status = await within(new Promise<number>((resolve, reject) => {
    ws.on('unexpected-response', (req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      req.destroy();
    });
    ws.on('open', () => reject(new Error('a tunnel opened without credentials')));
    ws.on('error', () => {});
  }), 5000, 'the answer to an upgrade without credentials');
  t.equal(status, 401, 'a ws client without credentials gets 401 and no tunnel');
});

t.test('a websocket upgrade with a method other than GET is answered and recorded, not dropped', async (t) => {
  // RFC 6455 §4.1: the opening handshake is a GET. Anything else must be refused like any
  // other request: with a status the client can read, and an access-log line.
  const acceptedBefore = upstream.accepted();
  const request = upgradeRequest('/post-upgrade', 'ws.test', `Content-Length: 0\r\n${authLine}`).replace(/^GET /, 'POST ');
  const res = await rawRequest(wg.port, request);
  t.ok(res.status >= 400 && res.status < 500, `the client gets a 4xx answer (got ${res.status || 'no response at all'})`);
  t.match(res.body, /"reason":"[a-z-]+"/, 'with a reason code');
  t.equal(upstream.accepted(), acceptedBefore, 'the upstream accepted no TCP connection');
  const logged = await until(() => wg.access().some((l) => l.method === 'POST' && l.path === '/post-upgrade'), 1000, 'an access-log line')
    .then(() => true, () => false);
  t.ok(logged, 'the refused upgrade is in the access log');
});

t.test('an unreachable upstream: 502 and a connect_refused error counted', async (t) => {
  const errorsBefore = sample(await wg.metrics(), 'wardgate_upstream_errors_total', { route: 'ws-dead', kind: 'connect_refused' }) ?? 0;
  const ws = new WebSocket(`ws://127.0.0.1:${wg.port}/ws`, { headers: { host: 'dead.test', ...wg.auth } });
  clients.push(ws);
  const status = await within(new Promise<number>((resolve, reject) => {
    ws.on('unexpected-response', (req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      req.destroy();
    });
    ws.on('open', () => reject(new Error('a tunnel opened to a closed port')));
    ws.on('error', () => {});
  }), 5000, 'the answer to an upgrade for an unreachable upstream');
  t.equal(status, 502, 'the client gets 502 Bad Gateway');
  const errorsAfter = sample(await wg.metrics(), 'wardgate_upstream_errors_total', { route: 'ws-dead', kind: 'connect_refused' });
  t.equal(errorsAfter, errorsBefore + 1, 'wardgate_upstream_errors_total{route="ws-dead",kind="connect_refused"} went up by one');
  await until(() => wg.access().some((l) => l.route === 'ws-dead' && l.status === 502), 2000, 'the access-log line of the failed upgrade');
  const line = wg.access().find((l) => l.route === 'ws-dead' && l.status === 502)!;
  t.equal(line.upstreamError, 'connect_refused', 'the access log says why the upgrade failed');
});

t.test('closeWebSockets ends every tunnel on one route with the given code, and only there', async (t) => {
  const openOn = async (route: string): Promise<number> => sample(await wg.metrics(), 'wardgate_websockets_open', { route }) ?? 0;
  await until(async () => (await openOn('ws-main')) === 0, 3000, 'earlier ws-main tunnels to be gone');
  const a1 = await openClient(wg.port, 'ws.test', '/one');
  const a2 = await openClient(wg.port, 'ws.test', '/two');
  const b = await openClient(wg.port, 'other.test', '/three');
  // Each tunnel carries traffic before the close.
  for (const c of [a1, a2, b]) {
    c.ws.send('before');
    t.equal((await c.nextMessage('an echo before the close')).data.toString(), 'before', 'the tunnel works before the close');
  }

  const count = wg.gateway.closeWebSockets('ws-main', 1008, 'access ended');
  t.equal(count, 2, 'closeWebSockets counts the two tunnels it closed on ws-main');

  for (const [name, c] of [['first', a1], ['second', a2]] as const) {
    const closed = await within(c.closed, 5000, `the ${name} ws-main client to be closed`);
    t.equal(closed.code, 1008, `the ${name} ws-main client sees close code 1008`);
    t.equal(closed.reason, 'access ended', `the ${name} ws-main client sees the reason "access ended"`);
    t.same(c.errors, [], `the ${name} ws-main client saw no protocol error`);
  }

  t.equal(b.ws.readyState, WebSocket.OPEN, 'the tunnel on ws-other is still open');
  b.ws.send('after');
  t.equal((await b.nextMessage('an echo on the other route after the close')).data.toString(), 'after', 'and still carries messages');
  t.equal(wg.gateway.closeWebSockets('ws-nothing-open', 1008, 'access ended'), 0, 'a route with no tunnels closes none');
  await until(async () => (await openOn('ws-main')) === 0, 3000, 'the ws-main gauge to drop to 0');
  t.pass('wardgate_websockets_open{route="ws-main"} drops to 0 once the closed tunnels are gone');
  t.equal(await openOn('ws-other'), 1, 'wardgate_websockets_open{route="ws-other"} still counts the tunnel left open');
  b.ws.close();
  await within(b.closed, 5000, 'the ws-other client to close');
});

t.test('closing while the upstream is mid-frame: the frame is finished, then a clean close', async (t) => {
  const client = await openClient(wg.port, 'split.test', '/stream');
  const server = await upstream.connection(client.testId);
  const payload = pattern(8 * MiB);
  const header = Buffer.alloc(10);
  header[0] = 0x82; // FIN, binary
  header[1] = 127; // 64-bit length, unmasked
  header.writeBigUInt64BE(BigInt(payload.length), 2);

  // Write the header and the first MiB, and wait until it has crossed wardgate: wardgate is
  // now certainly inside the frame.
  const base = client.socket.bytesRead;
  server.socket.write(Buffer.concat([header, payload.subarray(0, MiB)]));
  await until(() => client.socket.bytesRead >= base + header.length + MiB, 5000, 'the first MiB to reach the client');
  t.equal(client.messages.length, 0, 'the message is not complete yet: wardgate is mid-frame');

  t.equal(wg.gateway.closeWebSockets('ws-split', 1008, 'access ended'), 1, 'one tunnel closed on ws-split');
  server.socket.write(payload.subarray(MiB));
  // A frame after the close point: wardgate must not pass it on.
  server.socket.write(Buffer.from([0x81, 5, ...Buffer.from('after')]));

  const closed = await within(client.closed, 10_000, 'the client to be closed');
  t.same(client.errors.map((e) => e.message), [], 'the client saw no framing error (a close frame injected mid-frame would be one)');
  t.equal(closed.code, 1008, 'the client sees close code 1008, not 1002/1006');
  t.equal(closed.reason, 'access ended', 'with the reason given');
  t.equal(client.messages.length, 1, 'exactly one message arrived: the frame after the close point was dropped');
  const message = client.messages[0];
  t.equal(message?.data.length, 8 * MiB, 'the interrupted 8 MiB message arrived whole');
  t.ok(message?.isBinary && message.data.equals(payload), 'and byte for byte intact');
});

t.test('closing while ws is sending an 8 MiB message', async (t) => {
  const client = await openClient(wg.port, 'big.test', '/stream');
  const server = await upstream.connection(client.testId);
  const payload = pattern(8 * MiB);
  const base = client.socket.bytesRead;
  server.ws.send(payload, { binary: true });
  await until(() => client.socket.bytesRead >= base + 512 * 1024, 5000, 'part of the message to reach the client');
  t.equal(wg.gateway.closeWebSockets('ws-big', 1008, 'access ended'), 1, 'one tunnel closed on ws-big');

  const closed = await within(client.closed, 10_000, 'the client to be closed');
  t.same(client.errors.map((e) => e.message), [], 'the client saw no framing error');
  t.equal(closed.code, 1008, 'the client sees close code 1008, not 1002/1006');
  t.equal(closed.reason, 'access ended', 'with the reason given');
  // Closing started after part of the frame was through, so the whole frame is passed on.
  t.equal(client.messages.length, 1, 'the message in flight was delivered');
  t.equal(client.messages[0]?.data.length, 8 * MiB, 'its full 8 MiB length arrived');
  t.ok(client.messages[0]?.data.equals(payload), 'byte for byte intact');
});

t.test('wardgate_websockets_open follows a tunnel from open to closed', async (t) => {
  const open = async (): Promise<number | undefined> => sample(await wg.metrics(), 'wardgate_websockets_open', { route: 'ws-gauge' });
  t.equal((await open()) ?? 0, 0, 'no tunnel on ws-gauge before the test');
  const client = await openClient(wg.port, 'gauge.test', '/live');
  await until(async () => (await open()) === 1, 2000, 'the gauge to read 1');
  t.equal(await open(), 1, 'wardgate_websockets_open{route="ws-gauge"} is 1 while the socket is open');
  client.ws.close(1000);
  await within(client.closed, 5000, 'the client to close');
  await until(async () => (await open()) === 0, 3000, 'the gauge to read 0');
  t.equal(await open(), 0, 'wardgate_websockets_open{route="ws-gauge"} is 0 after it closed');
});

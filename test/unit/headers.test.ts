import t from 'tap';
import { createServer, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { downstreamResponseHeaders, upstreamRequestHeaders, type ForwardingFacts } from '../../proxy/forward/headers.js';

/*
 * Header hygiene in both directions. The inbound header lists are produced by Node's own
 * HTTP parser from raw request text, so `rawHeaders` and the joined `headers` object are
 * exactly what the pipeline hands over in production (repeated Connection headers are
 * joined, Cookie is joined with "; ", and so on).
 */

interface Parsed {
  rawHeaders: string[];
  headers: IncomingHttpHeaders;
}

const pending = new Map<string, (req: IncomingMessage) => void>();
const server = createServer((req, res) => {
  pending.get(req.url ?? '')?.(req);
  res.end();
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address() as AddressInfo;
t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));

let probes = 0;

/** Has Node parse `GET /probe/N` with these header lines; returns what it made of them. */
function parse(lines: readonly string[]): Promise<Parsed> {
  const url = `/probe/${++probes}`;
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    pending.set(url, (req) => {
      pending.delete(url);
      resolve({ rawHeaders: [...req.rawHeaders], headers: { ...req.headers } });
      socket.destroy();
    });
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      if (pending.has(url)) reject(new Error(`Node refused the probe: ${chunk.toString('latin1').split('\r\n')[0]}`));
      socket.destroy();
    });
    socket.write(`GET ${url} HTTP/1.1\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`);
  });
}

const UNTRUSTED: ForwardingFacts = {
  peerAddress: '203.0.113.9',
  peerTrusted: false,
  proto: 'https',
  requestId: 'req-0123456789',
  upstreamHost: undefined,
  authority: 'epic.example',
  passAuthorization: false,
  ownHeaders: undefined,
  identityHeaders: [],
};
const TRUSTED: ForwardingFacts = { ...UNTRUSTED, peerAddress: '10.0.0.2', peerTrusted: true };

async function forward(lines: readonly string[], facts: ForwardingFacts = UNTRUSTED): Promise<string[]> {
  const { rawHeaders, headers } = await parse(lines);
  return upstreamRequestHeaders(rawHeaders, headers, facts);
}

/** The values sent for a header name (any case), in order. */
function values(out: readonly string[], name: string): string[] {
  const found: string[] = [];
  for (let i = 0; i < out.length; i += 2) if (out[i]!.toLowerCase() === name) found.push(out[i + 1]!);
  return found;
}

function names(out: readonly string[]): string[] {
  return out.filter((_, i) => i % 2 === 0);
}

t.test('hop-by-hop headers never cross the proxy', async (t) => {
  const out = await forward([
    'Host: epic.example',
    'Connection: keep-alive',
    'Keep-Alive: timeout=5',
    'Proxy-Connection: keep-alive',
    'Proxy-Authorization: Basic Zm9vOmJhcg==',
    'TE: trailers',
    'Trailer: X-Checksum',
    'Upgrade: h2c',
    'HTTP2-Settings: AAMAAABkAAQAAP__',
    'Accept: text/html',
  ]);
  for (const name of ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'upgrade', 'http2-settings']) {
    t.same(values(out, name), [], `${name} is hop-by-hop and is not sent upstream`);
  }
  t.same(values(out, 'accept'), ['text/html'], 'an end-to-end header beside them is kept');
});

t.test('headers named in Connection are removed, however they are spelled', async (t) => {
  const out = await forward([
    'Host: epic.example',
    'Connection: keep-alive, X-Secret-A ,x-secret-b',
    'connection: X-SECRET-C',
    'X-Secret-A: 1',
    'X-SECRET-B: 2',
    'x-secret-c: 3',
    'X-Kept: 4',
  ]);
  t.same(values(out, 'x-secret-a'), [], 'a name in a comma list, with spaces around it, is removed');
  t.same(values(out, 'x-secret-b'), [], 'a name listed in lower case removes a header sent in upper case');
  t.same(values(out, 'x-secret-c'), [], 'a name in a second Connection header is removed too');
  t.same(values(out, 'x-kept'), ['4'], 'a header Connection does not name is kept');
  t.same(values(out, 'x-forwarded-for'), ['203.0.113.9'], 'naming a header wardgate sets in Connection does not stop wardgate from setting it');
});

t.test('Connection cannot strip what wardgate itself adds', async (t) => {
  const out = await forward(['Host: epic.example', 'Connection: x-forwarded-for, x-forwarded-proto, x-forwarded-host, x-request-id, host'], {
    ...UNTRUSTED,
    upstreamHost: 'epic.example',
  });
  t.same(values(out, 'x-forwarded-for'), ['203.0.113.9'], 'X-Forwarded-For is still set');
  t.same(values(out, 'x-forwarded-proto'), ['https'], 'X-Forwarded-Proto is still set');
  t.same(values(out, 'x-forwarded-host'), ['epic.example'], 'X-Forwarded-Host is still set');
  t.same(values(out, 'x-request-id'), ['req-0123456789'], 'X-Request-Id is still set');
  t.same(values(out, 'host'), ['epic.example'], 'Host is still set when the route preserves it');
});

const IDENTITY_AND_FORWARDING = [
  'X-Forwarded-For: 198.51.100.1',
  'X-Forwarded-Proto: http',
  'X-Forwarded-Host: evil.example',
  'X-Forwarded-User: chief-of-medicine',
  'X-Forwarded-Email: chief@hospital.example',
  'X-Forwarded-Groups: admins',
  'Forwarded: for=198.51.100.1;host=evil.example;proto=http',
  'X-Real-IP: 198.51.100.1',
  'X-Client-IP: 198.51.100.1',
  'X-Request-Id: attacker-chosen-id',
  'X-Wardgate-User: chief-of-medicine',
  'X-WARDGATE-Assertion: eyJhbGciOiJub25lIn0.e30.',
  'X-Auth-Request-User: chief-of-medicine',
  'X-Auth-Request-Email: chief@hospital.example',
  'Remote-User: chief-of-medicine',
  'X-Remote-User: chief-of-medicine',
  'X-Remote-Group: admins',
];

t.test('client-supplied identity and forwarding headers are removed for an untrusted peer', async (t) => {
  const out = await forward(['Host: epic.example', ...IDENTITY_AND_FORWARDING, 'Accept: */*']);
  for (const line of IDENTITY_AND_FORWARDING) {
    const name = line.slice(0, line.indexOf(':')).toLowerCase();
    if (name === 'x-forwarded-for' || name === 'x-forwarded-proto' || name === 'x-forwarded-host' || name === 'x-request-id') continue;
    t.same(values(out, name), [], `${name} from the client never reaches the upstream`);
  }
  t.same(values(out, 'x-forwarded-for'), ['203.0.113.9'], 'X-Forwarded-For is the peer alone: the client\'s claim is dropped');
  t.same(values(out, 'x-forwarded-proto'), ['https'], 'X-Forwarded-Proto is how the peer reached wardgate, not the client\'s claim');
  t.same(values(out, 'x-forwarded-host'), ['epic.example'], 'X-Forwarded-Host is the authority wardgate routed on, not the client\'s claim');
  t.same(values(out, 'x-request-id'), ['req-0123456789'], 'X-Request-Id is wardgate\'s, once');
  t.same(values(out, 'accept'), ['*/*'], 'ordinary headers still pass');
});

t.test('a trusted proxy\'s forwarding chain is kept and extended', async (t) => {
  const out = await forward(['Host: epic.example', ...IDENTITY_AND_FORWARDING, 'X-Forwarded-For: 198.51.100.2, 10.0.0.1', 'X-Forwarded-Proto: https'], TRUSTED);
  t.same(values(out, 'x-forwarded-for'), ['198.51.100.1, 198.51.100.2, 10.0.0.1, 10.0.0.2'], 'every inbound X-Forwarded-For, in order, then the peer: one header');
  t.same(values(out, 'x-forwarded-proto'), ['https'], 'the trusted proxy\'s (last) X-Forwarded-Proto is honoured');
  t.same(values(out, 'x-forwarded-host'), ['evil.example'], 'the trusted proxy\'s X-Forwarded-Host is honoured');
  for (const name of ['forwarded', 'x-real-ip', 'x-wardgate-user', 'x-wardgate-assertion', 'x-auth-request-user', 'remote-user', 'x-forwarded-user']) {
    t.same(values(out, name), [], `${name} is removed even from a trusted proxy: only forwarding facts are taken from it`);
  }
  t.same(values(out, 'x-request-id'), ['req-0123456789'], 'the request id sent is the one wardgate chose for this exchange');

  const proto = await forward(['Host: epic.example', 'X-Forwarded-Proto: javascript'], { ...TRUSTED, proto: 'http' });
  t.same(values(proto, 'x-forwarded-proto'), ['http'], 'an X-Forwarded-Proto other than http or https is ignored, even from a trusted proxy');
  const plain = await forward(['Host: epic.example', 'X-Forwarded-Proto: http'], TRUSTED);
  t.same(values(plain, 'x-forwarded-proto'), ['http'], 'a trusted proxy may say the client used plain http');
  const none = await forward(['Host: epic.example'], TRUSTED);
  t.same(values(none, 'x-forwarded-for'), ['10.0.0.2'], 'with no inbound chain, X-Forwarded-For is the trusted peer itself');
  t.same(values(none, 'x-forwarded-host'), ['epic.example'], 'with no inbound X-Forwarded-Host, the routed authority is sent');
});

t.test('Host is set only when the route asks for one', async (t) => {
  const without = await forward(['Host: evil.example', 'Accept: */*']);
  t.same(values(without, 'host'), [], 'without upstreamHost no Host is sent: the client\'s is dropped and undici uses the upstream\'s own');
  const withHost = await forward(['Host: Epic.Example:8443'], { ...UNTRUSTED, upstreamHost: 'Epic.Example:8443' });
  t.same(values(withHost, 'host'), ['Epic.Example:8443'], 'with upstreamHost exactly that value is sent, once');
});

t.test('pass-through headers keep their case, order and repetitions; Expect is removed', async (t) => {
  const out = await forward([
    'Host: epic.example',
    'Accept: text/html',
    'Cookie: a=1',
    'X-Custom-Header: one',
    'cookie: b=2',
    'ACCEPT: application/json',
    'Expect: 100-continue',
  ]);
  const passed = names(out).filter((n) => !['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id'].includes(n));
  t.same(passed, ['Accept', 'Cookie', 'X-Custom-Header', 'cookie', 'ACCEPT'], 'pass-through names keep the client\'s case and order, and Expect is gone');
  t.same(values(out, 'cookie'), ['a=1', 'b=2'], 'two Cookie headers are both sent, in order, not merged');
  t.same(values(out, 'accept'), ['text/html', 'application/json'], 'two Accept headers are both sent, in order');
  t.same(values(out, 'expect'), [], 'Expect is removed: wardgate answers 100-continue itself');
  t.equal(out.length % 2, 0, 'the list is flat name/value pairs');
});

t.test('downstreamResponseHeaders', async (t) => {
  const out = downstreamResponseHeaders({
    'content-type': 'text/html',
    'set-cookie': ['a=1; Path=/', 'b=2; Path=/'],
    connection: 'keep-alive, x-upstream-secret',
    'keep-alive': 'timeout=5',
    'transfer-encoding': 'chunked',
    'proxy-authenticate': 'Basic',
    trailer: 'x-checksum',
    upgrade: 'h2c',
    'x-upstream-secret': 'internal',
    'x-request-id': 'upstream-id',
    'cache-control': 'no-store',
  }, 'req-0123456789');
  t.same(out, {
    'content-type': 'text/html',
    'set-cookie': ['a=1; Path=/', 'b=2; Path=/'],
    'cache-control': 'no-store',
    'x-request-id': 'req-0123456789',
  }, 'hop-by-hop and Connection-named headers are removed, set-cookie stays an array, and x-request-id is wardgate\'s');
  t.same(downstreamResponseHeaders({ connection: ['close', 'X-A'], 'x-a': '1', vary: 'accept' }, 'req-1'), { vary: 'accept', 'x-request-id': 'req-1' },
    'Connection given as an array (repeated upstream headers) names headers in every element, case-insensitively');
});

t.test('Authorization is wardgate\'s credential: stripped unless the route passes it', async (t) => {
  const lines = ['Host: epic.example', 'Authorization: Bearer eyJ.token.sig', 'Accept: */*'];
  const stripped = await forward(lines);
  t.same(values(stripped, 'authorization'), [], 'by default the client\'s Authorization never reaches the upstream');
  t.same(values(stripped, 'accept'), ['*/*'], 'the headers beside it still pass');
  const passed = await forward(lines, { ...UNTRUSTED, passAuthorization: true });
  t.same(values(passed, 'authorization'), ['Bearer eyJ.token.sig'], 'with passAuthorization the header is sent unchanged, once');
  const trusted = await forward(lines, TRUSTED);
  t.same(values(trusted, 'authorization'), [], 'a trusted proxy does not change that: trust covers forwarding facts only');
});

t.test('wardgate\'s cookies are removed from Cookie; the application\'s pass unchanged', async (t) => {
  const out = await forward([
    'Host: epic.example',
    'Cookie: __Host-wardgate=sealed-session; other=1',
    'Cookie: a=1;  __Host-wardgate-browser=sealed-id ;b=2',
    'Cookie: __Host-wardgate=only',
    'Cookie: plain=yes',
    'Cookie: __host-wardgate=not-ours; __Host-wardgateish=x',
  ]);
  t.same(values(out, 'cookie'), ['other=1', 'a=1;b=2', 'plain=yes', '__host-wardgate=not-ours'],
    'each Cookie header loses __Host-wardgate* pairs, keeps the other pairs byte for byte and in order, and one left empty is not sent');
  // Every name starting __Host-wardgate is wardgate's (so __Host-wardgateish goes too); the
  // prefix is case-sensitive, as cookie names are: wardgate reads no other spelling, so a
  // look-alike such as __host-wardgate is the application's business.
});

t.test('a route\'s claim headers are wardgate\'s: the client\'s copies are dropped, wardgate\'s appended', async (t) => {
  const facts: ForwardingFacts = {
    ...UNTRUSTED,
    ownHeaders: new Set(['x-user', 'x-groups']),
    identityHeaders: ['x-wardgate-assertion', 'header.claims.sig', 'x-user', 'dr.alice', 'x-groups', 'nurses,icu'],
  };
  const out = await forward(['Host: epic.example', 'X-User: chief-of-medicine', 'x-GROUPS: admins', 'X-Wardgate-Assertion: forged', 'X-Other: kept'], facts);
  t.same(values(out, 'x-user'), ['dr.alice'], 'X-User is wardgate\'s value only, whatever case the client used');
  t.same(values(out, 'x-groups'), ['nurses,icu'], 'and so is every other claim header of the route');
  t.same(values(out, 'x-wardgate-assertion'), ['header.claims.sig'], 'the assertion sent is wardgate\'s, once');
  t.same(values(out, 'x-other'), ['kept'], 'other headers pass');
  t.same(out.slice(-6), facts.identityHeaders, 'identity headers come last, exactly as given');

  const named = await forward(['Host: epic.example', 'Connection: x-wardgate-assertion, x-user'], facts);
  t.same(values(named, 'x-wardgate-assertion'), ['header.claims.sig'], 'Connection cannot strip the assertion wardgate adds');
  t.same(values(named, 'x-user'), ['dr.alice'], 'nor a claim header');

  const plain = await forward(['Host: epic.example', 'X-User: someone'], UNTRUSTED);
  t.same(values(plain, 'x-user'), ['someone'], 'on a route without claim headers X-User is an ordinary header');
});

t.test('an upstream cannot set or clear wardgate\'s cookies', async (t) => {
  t.same(downstreamResponseHeaders({
    'set-cookie': ['__Host-wardgate=evil; Path=/; Secure', 'app=1; Path=/', ' __Host-wardgate-browser=x; Path=/; Secure', '__Host-wardgate=; Max-Age=0; Path=/; Secure'],
  }, 'req-1'), { 'set-cookie': ['app=1; Path=/'], 'x-request-id': 'req-1' }, 'every __Host-wardgate* Set-Cookie is dropped (setting and clearing), the application\'s kept');
  t.same(downstreamResponseHeaders({ 'set-cookie': ['__Host-wardgate=evil; Path=/; Secure'], vary: 'cookie' }, 'req-2'), { vary: 'cookie', 'x-request-id': 'req-2' },
    'when nothing is left no Set-Cookie header is sent at all');
});

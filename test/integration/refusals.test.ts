import t from 'tap';
import { rawRequest } from '../helpers/raw.js';
import { startTestGateway, total } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';

/*
 * Every request that cannot be made canonical, or matches no route, is refused before
 * anything is sent upstream. Each case asserts the status, the reason code the client
 * sees, and that the upstream accepted no connection at all.
 *
 * These refusals come from the normalize and route stages, ahead of authentication, so
 * the cases send no credentials: the answer must not depend on who is asking. The same
 * requests with a valid bearer token are refused the same way (checked below), so no
 * refusal here is just a missing credential in disguise.
 */

const upstream = await startUpstream();
const wg = await startTestGateway(`
  - id: app
    host: app.test
    paths: ["/app"]
    upstream:
      url: "${upstream.url}"
`);
t.teardown(async () => {
  await wg.close();
  await upstream.close();
});

const req = (target: string, headers = 'Host: app.test\r\n', method = 'GET'): string =>
  `${method} ${target} HTTP/1.1\r\n${headers}Connection: close\r\n\r\n`;

const cases: Array<{ name: string; request: string; status: number; reason: string }> = [
  { name: 'CONNECT is never proxied', request: 'CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n', status: 400, reason: 'method-not-allowed' },
  { name: 'TRACE is refused', request: req('/app/x', 'Host: app.test\r\n', 'TRACE'), status: 400, reason: 'method-not-allowed' },
  { name: 'absolute-form naming another host', request: req('http://evil.test/app/x'), status: 400, reason: 'foreign-authority' },
  { name: 'absolute-form with userinfo', request: req('http://user@app.test/app/x'), status: 400, reason: 'foreign-authority' },
  { name: 'asterisk-form', request: req('*', 'Host: app.test\r\n', 'OPTIONS'), status: 400, reason: 'target-form' },
  { name: 'dot segments above the root', request: req('/app/../../etc/passwd'), status: 400, reason: 'path-traversal' },
  { name: 'encoded dot segments above the root', request: req('/%2e%2e/%2E%2E/etc/passwd'), status: 400, reason: 'path-traversal' },
  { name: 'servlet path-parameter dot segment', request: req('/app/..;/admin'), status: 400, reason: 'path-traversal' },
  { name: 'encoded slash', request: req('/app/a%2Fb'), status: 400, reason: 'path-encoded-separator' },
  { name: 'encoded backslash', request: req('/app/a%5cb'), status: 400, reason: 'path-encoded-separator' },
  { name: 'bad percent escape', request: req('/app/%zz'), status: 400, reason: 'path-invalid' },
  { name: 'encoded NUL', request: req('/app/a%00b'), status: 400, reason: 'path-invalid' },
  { name: 'two Host headers', request: req('/app/x', 'Host: app.test\r\nHost: other.test\r\n'), status: 400, reason: '' },
  { name: 'malformed Host', request: req('/app/x', 'Host: app test\r\n'), status: 400, reason: '' },
  { name: 'HTTP/1.0 without Host', request: 'GET /app/x HTTP/1.0\r\n\r\n', status: 400, reason: 'host-missing' },
  {
    name: 'Content-Length with Transfer-Encoding (request smuggling)',
    request: 'POST /app/x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    status: 400, reason: 'framing-conflict',
  },
  {
    name: 'two different Content-Length values',
    request: 'POST /app/x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde',
    status: 400, reason: '',
  },
  {
    name: 'Transfer-Encoding other than chunked',
    request: 'POST /app/x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
    status: 400, reason: '',
  },
  { name: 'unknown host', request: req('/app/x', 'Host: unknown.test\r\n'), status: 404, reason: 'no-route' },
  { name: 'known host, path outside every prefix', request: req('/other'), status: 404, reason: 'no-route' },
  { name: 'prefix without a segment boundary', request: req('/application'), status: 404, reason: 'no-route' },
  { name: 'a traversal that resolves outside the prefix', request: req('/app/../other'), status: 404, reason: 'no-route' },
];

/** `request` with an Authorization line added after the request line. */
const withToken = (request: string): string => {
  const end = request.indexOf('\r\n');
  return `${request.slice(0, end + 2)}Authorization: ${wg.auth.authorization}\r\n${request.slice(end + 2)}`;
};

for (const c of cases) {
  t.test(`${c.name}: ${c.status}, nothing forwarded`, async (t) => {
    const before = upstream.connections.accepted;
    const res = await rawRequest(wg.port, c.request);
    t.equal(res.status, c.status, `answered ${c.status}`);
    if (c.reason) t.match(res.body, `"reason":"${c.reason}"`, `reason code ${c.reason} is shown to the client`);
    t.notMatch(res.head, /www-authenticate/i, 'refused before authentication: no challenge');
    t.equal(upstream.connections.accepted, before, 'the upstream accepted no connection');

    const authed = await rawRequest(wg.port, withToken(c.request));
    t.equal(authed.status, c.status, `with a valid bearer token it is still ${c.status}`);
    if (c.reason) t.match(authed.body, `"reason":"${c.reason}"`, `with a valid bearer token the reason is still ${c.reason}`);
    t.equal(upstream.connections.accepted, before, 'and the upstream still accepted no connection');
  });
}

t.test('a routable request without credentials: 401 login-required, nothing forwarded', async (t) => {
  // The authenticate stage comes after normalize and route: a canonical, routed request
  // still reaches no upstream until it carries a verified identity.
  const before = upstream.connections.accepted;
  const res = await rawRequest(wg.port, req('/app/x', 'Host: app.test\r\nAccept: application/json\r\n'));
  t.equal(res.status, 401, 'answered 401');
  t.match(res.body, '"reason":"login-required"', 'reason code login-required');
  t.match(res.head, /\r\nwww-authenticate: Bearer realm="wardgate"/i, 'with a Bearer challenge');
  t.equal(upstream.connections.accepted, before, 'the upstream accepted no connection');
});

t.test('a browser is shown an HTML page with the reason and request id', async (t) => {
  const res = await rawRequest(wg.port, req('/nowhere', 'Host: app.test\r\nAccept: text/html\r\n'));
  t.equal(res.status, 404);
  t.match(res.head, /content-type: text\/html/i, 'HTML for browsers');
  t.match(res.body, /No application is published at this address/, 'plain words');
  t.match(res.body, /<code>no-route<\/code>/, 'the reason code');
  const id = /x-request-id: (\S+)/i.exec(res.head)?.[1];
  t.ok(id && res.body.includes(id), 'the request id on the page matches the header');
});

t.test('refusals are counted and logged with their reason', async (t) => {
  const text = await wg.metrics();
  t.ok(total(text, 'wardgate_requests_total', { route: 'unrouted', code: '404' }) >= 4, '404s counted under route="unrouted"');
  t.ok(total(text, 'wardgate_requests_total', { route: 'unrouted', code: '400' }) >= 15, '400s counted');
  const reasons = new Set(wg.access().map((line) => line.reason));
  for (const reason of ['no-route', 'path-traversal', 'foreign-authority', 'path-encoded-separator']) {
    t.ok(reasons.has(reason), `access log records ${reason}`);
  }
  t.equal(upstream.seen.length, 0, 'across every refusal, the upstream saw no request');
});

t.test('a canonicalizable path is forwarded in its canonical form', async (t) => {
  const res = await rawRequest(wg.port, req('/app/./a//b/%7Euser/../c%3a', `Host: app.test\r\nAuthorization: ${wg.auth.authorization}\r\n`));
  t.equal(res.status, 200);
  t.equal(upstream.seen.at(-1)?.url, '/app/a/b/c%3A', 'upstream sees exactly the path that was routed');
});

import t from 'tap';
import { canonicalHost, canonicalPath, normalizeRequest, type RefusalReason } from '../../proxy/normalize.js';

/*
 * normalize is the one place where routing, policy and the upstream agree on what a
 * request means. Every case here is read as an attacker would: if a path can be written
 * two ways, the second way must either become the first or be refused.
 */

const HOST = ['Host', 'example.com'];

/** The assertions the helpers below use, as any subtest has them. */
type Asserts = Pick<typeof t, 'equal' | 'same' | 'ok' | 'fail'>;

function accept(t: Asserts, target: string, path: string, why: string, query = ''): void {
  const result = normalizeRequest('GET', target, HOST);
  if (!result.ok) {
    t.fail(`${why}: ${JSON.stringify(target)} was refused (${result.reason}) but must become ${JSON.stringify(path)}`);
    return;
  }
  t.equal(result.request.path, path, `${why}: ${JSON.stringify(target)} -> ${JSON.stringify(path)}`);
  t.equal(result.request.query, query, `${why}: the query of ${JSON.stringify(target)} is passed through as sent`);
}

function refuse(t: Asserts, target: string, reason: RefusalReason, why: string, headers: readonly string[] = HOST, method = 'GET'): void {
  const result = normalizeRequest(method, target, headers);
  t.same(result, { ok: false, reason }, `${why}: ${method} ${JSON.stringify(target)} is refused as ${reason}`);
}

t.test('already-canonical paths pass unchanged through the fast path', async (t) => {
  for (const path of ['/', '/a', '/a/b/', '/api/v1/Patient/123', "/a-b_c.d~e!$&'()*+,;=:@x", '/a;v=1/b', '/a..b/c.', '/x/_.hidden']) {
    t.equal(canonicalPath(path), path, `${JSON.stringify(path)} is already canonical and comes back unchanged`);
    accept(t, path, path, 'a canonical path is routed as sent');
  }
  t.equal(canonicalPath('/.well-known/jwks.json'), '/.well-known/jwks.json', 'a segment that merely starts with a dot is a name, not a dot segment');
});

t.test('percent-escapes: unreserved decoded, the rest upper-cased, never decoded twice', async (t) => {
  const cases: [string, string, string][] = [
    ['/%41', '/A', '%41 is the unreserved A and is decoded'],
    ['/%61%62%63', '/abc', 'lower-case letters are decoded'],
    ['/%7e%2D%5f%2E%30', '/~-_.0', 'every unreserved punctuation mark and digit is decoded'],
    ['/a%3ab', '/a%3Ab', 'a reserved escape keeps its encoding with upper-case hex'],
    ['/%3a', '/%3A', '%3a becomes %3A'],
    ['/%3f%23%25%40%20', '/%3F%23%25%40%20', '?, #, %, @ and space stay encoded, hex upper-cased'],
    ['/%c3%a9', '/%C3%A9', 'non-ASCII escapes stay encoded, hex upper-cased'],
    ['/%252e', '/%252e', '%252e is %25 followed by the literal text "2e": not decoded twice'],
    ['/%252E', '/%252E', '%252E stays as sent: only the first escape is one'],
    ['/a/%252e%252e/b', '/a/%252e%252e/b', 'a double-encoded dot-dot is a name, not a traversal'],
    ['/%252f', '/%252f', 'a double-encoded slash is %25 followed by literal text, not a separator'],
  ];
  for (const [input, output, why] of cases) {
    t.equal(canonicalPath(input), output, `${why}: ${input} -> ${output}`);
    t.equal(canonicalPath(output), output, `${why}: the result ${output} is itself canonical`);
  }
});

t.test('dot segments are resolved, encoded or not, and empty segments collapsed', async (t) => {
  const cases: [string, string, string][] = [
    ['/a/./b/../c', '/a/c', 'plain dot segments'],
    ['/a/%2e%2e/b', '/b', '%2e%2e is ..'],
    ['/a/%2E%2e/b', '/b', 'mixed-case %2E%2e is ..'],
    ['/a/.%2e/b', '/b', 'half-encoded .%2e is ..'],
    ['/a/%2e./b', '/b', 'half-encoded %2e. is ..'],
    ['/a/%2e/b', '/a/b', '%2e is .'],
    ['//a///b', '/a/b', 'runs of slashes collapse'],
    ['//', '/', 'only slashes is the root'],
    ['/a/b/', '/a/b/', 'a trailing slash is kept'],
    ['/a//', '/a/', 'a trailing run of slashes becomes one trailing slash'],
    ['/a/b/..', '/a/', 'a trailing .. leaves a trailing slash (RFC 3986 5.2.4)'],
    ['/a/b/.', '/a/b/', 'a trailing . leaves a trailing slash'],
    ['/.', '/', '/. is the root'],
    ['/./', '/', '/./ is the root'],
    ['/a/..', '/', 'climbing back to the root is allowed'],
    ['/a/b/../../c', '/c', 'two levels up, still inside the root'],
    ['/.well-known/../x', '/x', 'a dotted name is popped by .. like any other'],
  ];
  for (const [input, output, why] of cases) accept(t, input, output, why);
});

t.test('paths that cannot be made canonical are refused with the right reason', async (t) => {
  const cases: [string, RefusalReason, string][] = [
    ['/..', 'path-traversal', '.. above the root'],
    ['/../etc/passwd', 'path-traversal', '.. above the root followed by a name'],
    ['/a/../..', 'path-traversal', 'climbing one level past the root'],
    ['/%2e%2e/x', 'path-traversal', 'an encoded .. above the root'],
    ['/a/..;/b', 'path-traversal', '..; (read as .. by servlet containers)'],
    ['/a/..;x=1/admin', 'path-traversal', '..;param'],
    ['/a/.;jsessionid=1/b', 'path-traversal', '.;jsessionid'],
    ['/a/%2e%2e;/b', 'path-traversal', 'encoded dots with a path parameter'],
    ['/a/%2F', 'path-encoded-separator', '%2F'],
    ['/a%2fb', 'path-encoded-separator', '%2f'],
    ['/a%5Cb', 'path-encoded-separator', '%5C'],
    ['/a%5cb', 'path-encoded-separator', '%5c'],
    ['/a\\b', 'path-encoded-separator', 'a literal backslash'],
    ['\\a', 'target-form', 'a backslash instead of the leading slash is not origin-form'],
    ['/..%2f', 'path-encoded-separator', 'an encoded slash after ..'],
    ['/a%00', 'path-invalid', '%00'],
    ['/a%0a', 'path-invalid', 'an encoded line feed'],
    ['/a%7F', 'path-invalid', 'an encoded DEL'],
    ['/a\u0000b', 'path-invalid', 'a literal NUL'],
    ['/a\tb', 'path-invalid', 'a literal tab'],
    ['/a b', 'path-invalid', 'a literal space'],
    ['/a\u007fb', 'path-invalid', 'a literal DEL'],
    ['/a\r\nb', 'path-invalid', 'a literal CR LF'],
    ['/%zz', 'path-invalid', 'an escape that is not hex'],
    ['/%4', 'path-invalid', 'a truncated escape'],
    ['/a%', 'path-invalid', 'a bare percent sign at the end'],
    ['/%g0', 'path-invalid', 'an escape with one bad digit'],
    ['/%u002e%u002e/x', 'path-invalid', 'IIS-style %u escapes'],
    ['/a#b', 'path-invalid', 'a # in the path (a fragment never reaches a server)'],
    ['/a?b#c', 'path-invalid', 'a # in the query'],
    ['/\u0100', 'path-invalid', 'a character beyond latin1 (no single byte can carry it)'],
  ];
  for (const [input, reason, why] of cases) {
    refuse(t, input, reason, why);
    if (input.startsWith('/') && !input.includes('?')) t.equal(canonicalPath(input), undefined, `${why}: canonicalPath has no answer for ${JSON.stringify(input)}`);
  }
});

t.test('a path parameter on an empty segment is refused: servlet containers read it as //', async (t) => {
  // Tomcat strips ";params" before it merges slashes and resolves dots, so it reads
  // "/;/admin" as "/admin" while the router would see a first segment ";" and pick "/".
  for (const input of ['/;/admin', '/;x=1/admin', '/public/;/admin', '/a/;jsessionid=1']) {
    const result = normalizeRequest('GET', input, HOST);
    t.equal(result.ok, false, `${JSON.stringify(input)} is refused: a servlet upstream reads its ";" segment as empty and would see another path than the router`);
    if (!result.ok) t.ok(['path-traversal', 'path-invalid'].includes(result.reason), `${JSON.stringify(input)} is refused as a path fault (${result.reason})`);
  }
});

t.test('bytes outside pchar are percent-encoded, not refused', async (t) => {
  accept(t, '/caf\u00c3\u00a9', '/caf%C3%A9', 'UTF-8 bytes handed over as latin1 are encoded byte by byte');
  accept(t, '/\u00ff', '/%FF', 'the highest latin1 byte is encoded');
  accept(t, '/a|b', '/a%7Cb', 'a literal | is encoded');
  accept(t, '/{x}^', '/%7Bx%7D%5E', 'literal {, } and ^ are encoded');
  accept(t, '/"<>`', '/%22%3C%3E%60', 'quote, angle brackets and backtick are encoded');
  accept(t, '/[1]', '/%5B1%5D', 'square brackets are encoded');
  accept(t, '/a|b/../c', '/c', 'encoding and dot resolution happen together');
});

t.test('the query is passed through untouched and never normalized', async (t) => {
  accept(t, '/a/./b?x=%2e%2e/../y&z=%2F', '/a/b', 'the path is normalized while its query is not', '?x=%2e%2e/../y&z=%2F');
  accept(t, '/a?b?c', '/a', 'only the first ? starts the query', '?b?c');
  accept(t, '/a?', '/a', 'an empty query keeps its ?', '?');
  accept(t, '/a?%zz\\', '/a', 'escapes the path would refuse are not the path\'s business in the query', '?%zz\\');
  accept(t, '/%2e%2e-x?q', '/..-x', 'a name that merely contains dots is not a dot segment', '?q');
});

t.test('methods CONNECT and TRACE are refused; others pass through as sent', async (t) => {
  refuse(t, 'example.com:443', 'method-not-allowed', 'CONNECT would turn wardgate into a tunnel', HOST, 'CONNECT');
  refuse(t, '/', 'method-not-allowed', 'TRACE reflects headers such as cookies', HOST, 'TRACE');
  for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
    const result = normalizeRequest(method, '/x', HOST);
    t.ok(result.ok && result.request.method === method, `${method} is accepted and kept as the request's method`);
  }
});

t.test('request-target forms', async (t) => {
  refuse(t, '*', 'target-form', 'asterisk-form', HOST, 'OPTIONS');
  refuse(t, 'a/b', 'target-form', 'a relative target');
  refuse(t, '', 'target-form', 'an empty target');
  refuse(t, '?x', 'target-form', 'a target that is only a query');
  refuse(t, 'ftp://example.com/', 'target-form', 'absolute-form with a scheme other than http(s)');
  refuse(t, 'http:/example.com/', 'target-form', 'absolute-form missing a slash');

  accept(t, 'http://example.com/a/../b?q=1', '/b', 'absolute-form to the Host header\'s authority becomes origin-form', '?q=1');
  accept(t, 'HTTPS://EXAMPLE.COM/x', '/x', 'scheme and authority compare case-insensitively');
  accept(t, 'http://example.com', '/', 'absolute-form without a path is the root');
  accept(t, 'http://example.com?x=1', '/', 'absolute-form with only a query is the root plus that query', '?x=1');
  accept(t, 'http://example.com//a', '/a', 'absolute-form paths are normalized like any other');
  refuse(t, 'http://example.com/a\\b', 'path-encoded-separator', 'absolute-form paths are checked like any other');
  refuse(t, 'http://example.com#x', 'path-invalid', 'absolute-form with a fragment');

  refuse(t, 'http://evil.example/x', 'foreign-authority', 'absolute-form to another host (open proxying)');
  refuse(t, 'http://user@example.com/x', 'foreign-authority', 'absolute-form with userinfo');
  refuse(t, 'http://user:pw@example.com/x', 'foreign-authority', 'absolute-form with user and password');
  refuse(t, 'http://example.com@evil.example/x', 'foreign-authority', 'userinfo that looks like the right host');
  refuse(t, 'http://example.com:8080/x', 'foreign-authority', 'absolute-form naming a port the Host header does not');
  refuse(t, 'http:///x', 'foreign-authority', 'absolute-form with an empty authority');
  refuse(t, 'http://example.com/x', 'foreign-authority', 'absolute-form whose authority differs from the Host header in its port', ['Host', 'example.com:8443']);
  const port = normalizeRequest('GET', 'http://example.com:8443/x', ['Host', 'example.com:8443']);
  t.ok(port.ok && port.request.path === '/x' && port.request.host === 'example.com', 'absolute-form with the same host and port as the Host header is accepted');
});

t.test('the Host header: required, single, well-formed', async (t) => {
  refuse(t, '/', 'host-missing', 'no Host header', []);
  refuse(t, '/', 'host-missing', 'an empty Host header', ['Host', '']);
  refuse(t, '/', 'host-missing', 'only other headers', ['Accept', '*/*']);
  for (const bad of ['a b', 'exa mple', '[zz]', '[::1', 'example.com:', 'example.com:123456', '.example.com', 'a..b', 'example.com..', 'under_score.example', 'http://example.com', 'user@example.com', '.', 'example.com/x']) {
    refuse(t, '/', 'host-invalid', `Host ${JSON.stringify(bad)} is malformed`, ['Host', bad]);
  }
  refuse(t, '/', 'host-duplicate', 'two Host headers, even identical ones', ['Host', 'example.com', 'host', 'example.com']);
  refuse(t, '/', 'host-duplicate', 'two differing Host headers', ['Host', 'example.com', 'HOST', 'evil.example']);
  refuse(t, '/', 'credentials-duplicate', 'two Authorization headers: wardgate verifies the first, an upstream might use the second',
    ['Host', 'example.com', 'Authorization', 'Bearer a.b.c', 'authorization', 'Bearer forged']);

  const cases: [string, string, string][] = [
    ['Example.COM', 'example.com', 'the host is lower-cased'],
    ['example.com:8443', 'example.com', 'the port is stripped'],
    ['example.com.', 'example.com', 'the trailing dot is stripped'],
    ['EXAMPLE.com.:443', 'example.com', 'case, trailing dot and port together'],
    ['127.0.0.1:80', '127.0.0.1', 'an IPv4 literal keeps its digits'],
    ['[::1]', '[::1]', 'an IPv6 literal stays bracketed'],
    ['[::1]:8443', '[::1]', 'an IPv6 literal loses its port and keeps its brackets'],
    ['[FE80::1]', '[fe80::1]', 'an IPv6 literal is lower-cased'],
  ];
  for (const [authority, host, why] of cases) {
    t.equal(canonicalHost(authority), host, `${why}: canonicalHost(${authority}) is ${host}`);
    const result = normalizeRequest('GET', '/', ['Host', authority]);
    t.ok(result.ok && result.request.host === host && result.request.authority === authority, `${why}: normalize routes on ${host} and keeps the authority ${authority} as sent`);
  }
});

t.test('message framing must be unambiguous', async (t) => {
  const withHost = (...headers: string[]): string[] => [...HOST, ...headers];
  refuse(t, '/', 'framing-conflict', 'Content-Length with Transfer-Encoding', withHost('Content-Length', '5', 'Transfer-Encoding', 'chunked'), 'POST');
  refuse(t, '/', 'framing-conflict', 'Transfer-Encoding before Content-Length', withHost('transfer-encoding', 'chunked', 'content-length', '5'), 'POST');
  refuse(t, '/', 'framing-conflict', 'two differing Content-Length headers', withHost('Content-Length', '5', 'Content-Length', '6'), 'POST');
  refuse(t, '/', 'framing-conflict', 'Transfer-Encoding: gzip, chunked', withHost('Transfer-Encoding', 'gzip, chunked'), 'POST');
  refuse(t, '/', 'framing-conflict', 'Transfer-Encoding: chunked, chunked', withHost('Transfer-Encoding', 'chunked, chunked'), 'POST');
  refuse(t, '/', 'framing-conflict', 'two Transfer-Encoding headers', withHost('Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked'), 'POST');
  refuse(t, '/', 'framing-conflict', 'a Transfer-Encoding other than chunked', withHost('Transfer-Encoding', 'identity'), 'POST');
  for (const bad of ['abc', '-1', '+5', '5.0', '1e3', '0x10', '', '5, 5', '1234567890123456']) {
    refuse(t, '/', 'framing-conflict', `Content-Length ${JSON.stringify(bad)} is not a plain decimal length`, withHost('Content-Length', bad), 'POST');
  }
  t.ok(normalizeRequest('POST', '/', withHost('Content-Length', '5', 'content-length', '5')).ok, 'identical duplicate Content-Length headers are one length and accepted');
  t.ok(normalizeRequest('POST', '/', withHost('Transfer-Encoding', 'Chunked')).ok, 'a single chunked coding is accepted whatever its case');
  t.ok(normalizeRequest('POST', '/', withHost('Content-Length', '0')).ok, 'Content-Length 0 is accepted');
});

/** mulberry32: a tiny seeded PRNG so the random walk below is the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = ['/', '.', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', 'C', ';', 'a'];

function randomPaths(seed: number, count: number): string[] {
  const random = prng(seed);
  const out: string[] = [];
  for (let n = 0; n < count; n++) {
    const length = 1 + Math.floor(random() * 24);
    // Most paths start with "/" so that enough of them are accepted to say something.
    let path = random() < 0.9 ? '/' : '';
    while (path.length < length) path += ALPHABET[Math.floor(random() * ALPHABET.length)];
    out.push(path);
  }
  return out;
}

const PATHS = randomPaths(0x5eed_2026, 5000);

t.test('property: every accepted path is a fixed point with nothing left to reinterpret', async (t) => {
  let accepted = 0;
  const faults: string[] = [];
  for (const input of PATHS) {
    const result = normalizeRequest('GET', input, HOST);
    if (!result.ok) continue;
    accepted++;
    const out = result.request.path;
    const segments = out.split('/').slice(1);
    const problems = [
      canonicalPath(out) !== out && 'not a fixed point',
      !out.startsWith('/') && 'does not start with /',
      out.includes('//') && 'contains //',
      (out.includes('/./') || out.includes('/../')) && 'contains /./ or /../',
      segments.some((s) => s === '.' || s === '..') && 'has a dot segment (also at the end)',
      /%(2f|5c)/i.test(out) && 'contains an encoded separator',
      out.includes('\\') && 'contains a backslash',
      /%(?![0-9A-F]{2})/.test(out) && 'has a malformed or lower-case escape',
      /%(2D|2E|5F|7E|3\d|4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A])/.test(out) && 'keeps an unreserved character encoded',
      new URL(out, 'http://example.com').pathname !== out && 'a WHATWG URL parser (Node, undici) reads it differently',
    ].filter(Boolean);
    const viaAbsolute = normalizeRequest('GET', `http://example.com${input}`, HOST);
    if (!viaAbsolute.ok || viaAbsolute.request.path !== out) problems.push('absolute-form gives another answer');
    if (problems.length) faults.push(`${JSON.stringify(input)} -> ${JSON.stringify(out)}: ${problems.join(', ')}`);
  }
  t.ok(accepted > 1000, `enough random paths (${accepted} of ${PATHS.length}) were accepted for the property to mean something`);
  t.ok(accepted < PATHS.length, 'some random paths were refused, so the alphabet does reach the dangerous cases');
  t.same(faults.slice(0, 20), [], 'no accepted path is ambiguous: fixed point, rooted, no dot or empty segments, no encoded separators, escapes canonical, WHATWG-stable');
});

t.test('property: a servlet container that strips ;params reads the same segments', async (t) => {
  // Tomcat and Jetty drop ";..." from each segment, then merge "//" and resolve dots.
  // Whatever wardgate accepts must not change shape under that reading.
  const faults: string[] = [];
  for (const input of PATHS) {
    const result = normalizeRequest('GET', input, HOST);
    if (!result.ok) continue;
    const out = result.request.path;
    const names = out.split('/').slice(1).map((s) => (s.includes(';') ? s.slice(0, s.indexOf(';')) : s));
    const interior = names.slice(0, -1);
    if (interior.some((n) => n === '' || n === '.' || n === '..') || names.at(-1) === '.' || names.at(-1) === '..') {
      faults.push(`${JSON.stringify(input)} -> ${JSON.stringify(out)}`);
    }
  }
  t.same(faults.slice(0, 10), [], 'no accepted path has a segment that a servlet container reads as empty, . or ..');
});

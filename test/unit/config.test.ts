import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDuration } from '../../config/duration.js';
import { loadConfig, parseConfig } from '../../config/loader.js';
import type { WardgateConfig } from '../../config/schema.js';
import { ConfigError } from '../../proxy/errors.js';

/*
 * "Bad config never starts: the error names the file, the path inside it and what was
 * expected." Every fault below is checked for all three: `file:line:col`, the dotted
 * path with indices, and the words that say what was wanted.
 */

const dir = mkdtempSync(join(tmpdir(), 'wardgate-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const FILE = join(dir, 'wardgate.yaml');

/** The assertions the helpers below use, as any subtest has them. */
type Asserts = Pick<typeof t, 'fail' | 'ok' | 'match' | 'equal'>;

// Throwaway PEM material for the TLS fields, which the loader reads and parses at load.
function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}
openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
  '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=wardgate test']);
openssl(['x509', '-in', join(dir, 'cert.pem'), '-outform', 'DER', '-out', join(dir, 'cert.der')]);
writeFileSync(join(dir, 'not-pem.txt'), 'this is not a certificate\n');

const BASE = `listen:
  http: 127.0.0.1:8080
admin:
  listen: 127.0.0.1:9090
routes:
  - id: epic
    host: epic.example
    upstream:
      url: http://10.1.2.3:3000
  - id: fhir
    host: fhir.example
    paths: [/fhir]
    upstream:
      url: https://10.1.2.4:8443
`;

/** `text` with the first `from` replaced by `to`, literally (no `$` patterns as in String#replace). */
function swap(text: string, from: string, to: string): string {
  const index = text.indexOf(from);
  if (index < 0) throw new Error(`test bug: ${JSON.stringify(from)} is not in the config text`);
  return text.slice(0, index) + to + text.slice(index + from.length);
}

/** `FILE:line:col` of the first occurrence of `needle` (after `after`, when given). */
function at(text: string, needle: string, after = ''): string {
  const start = after ? text.indexOf(after) : 0;
  const index = text.indexOf(needle, start < 0 ? 0 : start);
  if (index < 0 || start < 0) throw new Error(`test bug: ${JSON.stringify(needle)} is not in the config text`);
  const before = text.slice(0, index);
  const line = before.split('\n').length;
  const col = index - (before.lastIndexOf('\n') + 1) + 1;
  return `${FILE}:${line}:${col}`;
}

/** What `fn` throws, or undefined when it returns. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

function load(text: string): WardgateConfig {
  return parseConfig(text, FILE);
}

/** The ConfigError that `text` produces; fails the test when it loads. */
function faultOf(t: Asserts, text: string): ConfigError {
  try {
    load(text);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  t.fail('the config was expected to be refused but loaded');
  return new ConfigError(FILE, '', '(loaded)');
}

interface Expected {
  /** `file:line:col` where the fault is reported. */
  where: string;
  /** The dotted path with indices. */
  path: string;
  /** What the message says was expected. */
  expected: string | RegExp;
}

function expectFault(t: Asserts, why: string, text: string, want: Expected): void {
  const err = faultOf(t, text);
  const first = err.message.split('\n')[0] ?? '';
  t.ok(first.startsWith(`${want.where}: ${want.path}: `), `${why}: reported as "${want.where}: ${want.path}: ..." (got "${first}")`);
  t.match(first, want.expected, `${why}: the message says what was expected`);
  t.equal(err.code, 'config-invalid', `${why}: the error carries the config-invalid code`);
  t.equal(err.path, want.path, `${why}: the error's path property is the dotted path`);
}

t.test('unknown keys are refused (every object is strict) and named', async (t) => {
  const top = `${BASE}bogus: 1\n`;
  t.match(faultOf(t, top).message, /(unknown|unrecognized) key.*"?bogus"?/i, 'an unknown top-level key is refused and named');
  const nested = swap(BASE, '      url: https://10.1.2.4:8443', '      url: https://10.1.2.4:8443\n      retries: 3');
  const message = faultOf(t, nested).message;
  t.match(message, /routes\[1\]\.upstream/, 'an unknown nested key is reported with the path of the object that holds it');
  t.match(message, /(unknown|unrecognized) key.*"?retries"?/i, 'an unknown nested key is named');
});

t.test('unknown keys are located at the key itself, not at the start of their parent', async (t) => {
  // A typo such as `trustedProxy:` in a long file must point at its own line.
  const top = `${BASE}trustedProxy: [10.0.0.0/8]\n`;
  const line = top.split('\n').findIndex((l) => l.startsWith('trustedProxy')) + 1;
  t.match(faultOf(t, top).message, new RegExp(`^${FILE}:${line}:\\d+: trustedProxy: `), 'a top-level unknown key is reported at its own line with its own path');
  const nested = swap(BASE, '      url: https://10.1.2.4:8443', '      url: https://10.1.2.4:8443\n      retries: 3');
  const nestedLine = nested.split('\n').findIndex((l) => l.includes('retries')) + 1;
  t.match(faultOf(t, nested).message, new RegExp(`^${FILE}:${nestedLine}:\\d+: routes\\[1\\]\\.upstream\\.retries: `), 'a nested unknown key is reported at its own line with its full dotted path');
});

t.test('a missing required key is reported at its parent, with its own path', async (t) => {
  const noUrl = swap(BASE, '      url: https://10.1.2.4:8443', '      preserveHost: true');
  expectFault(t, 'missing upstream url', noUrl, {
    where: at(noUrl, 'preserveHost'),
    path: 'routes[1].upstream.url',
    expected: /expected an upstream URL/,
  });
  const noHost = swap(BASE, '    host: fhir.example\n', '');
  expectFault(t, 'missing route host', noHost, { where: at(noHost, 'id: fhir'), path: 'routes[1].host', expected: /expected a host name/ });
  const noAdmin = swap(BASE, 'admin:\n  listen: 127.0.0.1:9090\n', '');
  expectFault(t, 'missing admin section', noAdmin, { where: `${FILE}:1:1`, path: 'admin', expected: /expected object/ });
  const noRoutes = BASE.slice(0, BASE.indexOf('routes:'));
  expectFault(t, 'missing routes', noRoutes, { where: `${FILE}:1:1`, path: 'routes', expected: /expected array/ });
});

t.test('wrong types', async (t) => {
  const workers = `${BASE}workers: two\n`;
  expectFault(t, 'workers as text', workers, { where: at(workers, 'two'), path: 'workers', expected: /expected number/ });
  const ws = swap(BASE, '    host: epic.example', '    host: epic.example\n    websockets: "yes"');
  expectFault(t, 'websockets as a string', ws, { where: at(ws, '"yes"'), path: 'routes[0].websockets', expected: /expected boolean/ });
  const routes = `${BASE.slice(0, BASE.indexOf('routes:'))}routes: {}\n`;
  expectFault(t, 'routes as a mapping', routes, { where: at(routes, '{}'), path: 'routes', expected: /expected array/ });
  const level = `${BASE}log:\n  level: loud\n`;
  expectFault(t, 'a log level outside the enum', level, { where: at(level, 'loud'), path: 'log.level', expected: /expected one of .*"info"/ });
  const workersFraction = `${BASE}workers: 1.5\n`;
  expectFault(t, 'workers as a fraction', workersFraction, { where: at(workersFraction, '1.5'), path: 'workers', expected: /expected int/ });
  const workersZero = `${BASE}workers: 0\n`;
  expectFault(t, 'workers 0', workersZero, { where: at(workersZero, '0\n', 'workers:'), path: 'workers', expected: />=\s*1/ });
});

t.test('durations', async (t) => {
  const words = swap(BASE, '    host: fhir.example', '    host: fhir.example\n    timeouts:\n      connect: 30 seconds');
  expectFault(t, 'a duration in words', words, { where: at(words, '30 seconds'), path: 'routes[1].timeouts.connect', expected: /expected a duration such as .*30s.*got "30 seconds"/ });
  const number = swap(BASE, '    host: fhir.example', '    host: fhir.example\n    timeouts:\n      idle: 30');
  expectFault(t, 'a bare number of unknown unit', number, { where: at(number, '30', 'idle:'), path: 'routes[1].timeouts.idle', expected: /expected a duration/ });
  const zero = `${BASE}shutdown:\n  drainTimeout: 0s\n`;
  expectFault(t, 'a zero duration', zero, { where: at(zero, '0s'), path: 'shutdown.drainTimeout', expected: /expected a duration.*got "0s"/ });
});

t.test('listen addresses', async (t) => {
  for (const bad of ['localhost', '127.0.0.1:99999', '[zz]:80', '127.0.0.1:', ':8080', '[::1]']) {
    const text = swap(BASE, 'http: 127.0.0.1:8080', `http: "${bad}"`);
    expectFault(t, `address ${bad}`, text, { where: at(text, `"${bad}"`), path: 'listen.http', expected: `expected an address such as 127.0.0.1:8080 or [::1]:8443, got "${bad}"` });
  }
  const number = swap(BASE, 'listen: 127.0.0.1:9090', 'listen: 9090');
  expectFault(t, 'an address given as a bare port number', number, { where: at(number, '9090'), path: 'admin.listen', expected: /expected an address/ });
  const v6 = load(swap(BASE, 'http: 127.0.0.1:8080', 'http: "[::1]:8443"'));
  t.same(v6.listen.http, { host: '::1', port: 8443 }, 'a bracketed IPv6 address is accepted and unbracketed');
});

t.test('trusted proxies are CIDRs', async (t) => {
  for (const [bad, index] of [['10.0.0.0/33', 1], ['10.0.0.0', 1], ['fd00::/129', 1], ['proxy.example/8', 1], ['10.0.0.0/8/8', 1]] as const) {
    const text = `${BASE}trustedProxies: [10.0.0.0/8, "${bad}"]\n`;
    expectFault(t, `CIDR ${bad}`, text, { where: at(text, `"${bad}"`), path: `trustedProxies[${index}]`, expected: `expected a CIDR such as 10.0.0.0/8 or fd00::/8, got "${bad}"` });
  }
  const good = load(`${BASE}trustedProxies: [10.0.0.0/8, "fd00::/8", 192.168.1.7/32]\n`);
  t.same(good.trustedProxies, ['10.0.0.0/8', 'fd00::/8', '192.168.1.7/32'], 'IPv4 and IPv6 CIDRs are accepted');
});

t.test('route hosts, ids, prefixes and upstream URLs', async (t) => {
  for (const bad of ['fhir.example:443', '*.example', 'https://fhir.example', 'fhir_api.example', 'fhir.example.']) {
    const text = swap(BASE, 'host: fhir.example', `host: "${bad}"`);
    expectFault(t, `host ${bad}`, text, { where: at(text, `"${bad}"`), path: 'routes[1].host', expected: /expected a host name such as .*\(no port, scheme or wildcard\)/ });
  }
  const upper = load(swap(BASE, 'host: fhir.example', 'host: FHIR.Example'));
  t.equal(upper.routes[1]!.host, 'fhir.example', 'an upper-case host is accepted and lower-cased');

  for (const bad of ['/fhir/', '/fhir/../admin', '/fhir/./x', '/fhir//x', 'fhir', '/fhir/%2e%2e', '/%41']) {
    const text = swap(BASE, 'paths: [/fhir]', `paths: [/r4, "${bad}"]`);
    expectFault(t, `path prefix ${bad}`, text, { where: at(text, `"${bad}"`), path: 'routes[1].paths[1]', expected: /expected a canonical path prefix such as \/api/ });
  }
  const empty = swap(BASE, 'paths: [/fhir]', 'paths: []');
  expectFault(t, 'an empty path list', empty, { where: at(empty, '[]'), path: 'routes[1].paths', expected: /expected at least one path prefix/ });

  for (const bad of ['https://10.1.2.4:8443/api', 'https://user:secret@10.1.2.4:8443', 'ftp://10.1.2.4', 'https://10.1.2.4?x=1', 'https://10.1.2.4#frag', '10.1.2.4:8443', 'not a url']) {
    const text = swap(BASE, 'url: https://10.1.2.4:8443', `url: "${bad}"`);
    expectFault(t, `upstream URL ${bad}`, text, { where: at(text, `"${bad}"`), path: 'routes[1].upstream.url', expected: /expected an http\(s\) origin such as .*\(no path, query or credentials\)/ });
  }

  for (const bad of ['Epic', 'epic api', '-epic', 'e'.repeat(64)]) {
    const text = swap(BASE, 'id: epic', `id: "${bad}"`);
    expectFault(t, `route id ${bad}`, text, { where: at(text, `"${bad}"`), path: 'routes[0].id', expected: /expected a route id of lower-case letters, digits/ });
  }
});

t.test('routes must not collide', async (t) => {
  const ids = swap(BASE, 'id: fhir', 'id: epic');
  expectFault(t, 'duplicate route ids', ids, { where: at(ids, 'epic', '- id: epic\n    host: fhir'), path: 'routes[1].id', expected: 'duplicate route id "epic" (also routes[0])' });

  const defaulted = `${BASE}  - id: epic2\n    host: EPIC.example\n    upstream:\n      url: http://10.1.2.5:3000\n`;
  expectFault(t, 'the same host (any case) and the default prefix on two routes', defaulted, {
    where: at(defaulted, 'id: epic2'),
    path: 'routes[2].paths[0]',
    expected: 'epic.example/ is already served by route "epic"',
  });
  const explicit = `${BASE}  - id: fhir2\n    host: fhir.example\n    paths: [/r4, /fhir]\n    upstream:\n      url: http://10.1.2.5:3000\n`;
  expectFault(t, 'the same host and an explicit prefix on two routes', explicit, {
    where: at(explicit, '/fhir]', 'id: fhir2'),
    path: 'routes[2].paths[1]',
    expected: 'fhir.example/fhir is already served by route "fhir"',
  });
  const other = load(`${BASE}  - id: fhir2\n    host: fhir.example\n    paths: [/fhir2, /fhir/r5]\n    upstream:\n      url: http://10.1.2.5:3000\n`);
  t.same(other.routes[2]!.paths, ['/fhir2', '/fhir/r5'], 'distinct prefixes on one host, nested or merely similar, are allowed');
});

t.test('listeners and routes must exist', async (t) => {
  const none = swap(BASE, 'listen:\n  http: 127.0.0.1:8080\n', 'listen: {}\n');
  expectFault(t, 'no listeners', none, { where: at(none, '{}'), path: 'listen', expected: 'expected at least one of http or https' });
  const empty = `${BASE.slice(0, BASE.indexOf('routes:'))}routes: []\n`;
  expectFault(t, 'empty routes', empty, { where: at(empty, '[]'), path: 'routes', expected: 'expected at least one route' });
});

t.test('upstream TLS files are read and parsed at load', async (t) => {
  const tls = (lines: string): string => swap(BASE, '      url: https://10.1.2.4:8443', `      url: https://10.1.2.4:8443\n      tls:\n${lines}`);
  const certOnly = tls('        cert: cert.pem\n');
  expectFault(t, 'cert without key', certOnly, { where: at(certOnly, 'cert: cert.pem'), path: 'routes[1].upstream.tls', expected: 'cert and key must be given together' });
  const keyOnly = tls('        key: key.pem\n');
  expectFault(t, 'key without cert', keyOnly, { where: at(keyOnly, 'key: key.pem'), path: 'routes[1].upstream.tls', expected: 'cert and key must be given together' });

  const missing = tls('        ca: missing/ca.pem\n');
  expectFault(t, 'an unreadable CA file', missing, { where: at(missing, 'missing/ca.pem'), path: 'routes[1].upstream.tls.ca', expected: `cannot read certificate file ${join(dir, 'missing', 'ca.pem')}: ENOENT` });
  const notPem = tls('        ca: not-pem.txt\n');
  expectFault(t, 'a CA file that is not PEM', notPem, { where: at(notPem, 'not-pem.txt'), path: 'routes[1].upstream.tls.ca', expected: `${join(dir, 'not-pem.txt')} does not hold a PEM certificate` });
  const swapped = tls('        cert: key.pem\n        key: cert.pem\n');
  const swappedError = faultOf(t, swapped);
  t.match(swappedError.message, `${at(swapped, 'key.pem')}: routes[1].upstream.tls.cert: ${join(dir, 'key.pem')} does not hold a PEM certificate`, 'a key given as the certificate is refused');
  t.match(swappedError.message, `${at(swapped, 'cert.pem')}: routes[1].upstream.tls.key: ${join(dir, 'cert.pem')} does not hold a PEM private key`, 'a certificate given as the key is refused, on its own line');

  const good = load(tls('        ca: cert.pem\n        cert: cert.pem\n        key: key.pem\n        serverName: fhir.internal\n'));
  t.ok(Buffer.isBuffer(good.routes[1]!.upstream.tls?.ca), 'PEM files named relative to the config file are read into buffers');
  t.equal(good.routes[1]!.upstream.tls?.serverName, 'fhir.internal', 'serverName is kept');
});

t.test('a DER certificate is refused: TLS stacks take PEM only', async (t) => {
  // new X509Certificate() accepts DER as well as PEM, but tls.createSecureContext() does
  // not, so a DER file that passes the loader fails only when wardgate starts.
  const der = swap(BASE, '      url: https://10.1.2.4:8443', '      url: https://10.1.2.4:8443\n      tls:\n        ca: cert.der\n');
  const err = thrown(() => load(der));
  t.ok(err instanceof ConfigError, 'a DER-encoded CA file is refused at load');
  t.match(err instanceof Error ? err.message : '', `${at(der, 'cert.der')}: routes[1].upstream.tls.ca: ${join(dir, 'cert.der')} does not hold a PEM certificate`, 'the refusal names the file, the path and says PEM was expected');
});

t.test('YAML faults are reported with line and column', async (t) => {
  const tab = swap(BASE, '  http: 127.0.0.1:8080', '\thttp: 127.0.0.1:8080');
  const tabError = faultOf(t, tab);
  t.match(tabError.message, new RegExp(`^${FILE}:2:1: .*[Tt]ab`), 'a tab used as indentation is reported at its line and column');
  t.equal(tabError.code, 'config-invalid', 'a YAML fault is a config-invalid ConfigError');

  const flow = swap(BASE, 'paths: [/fhir]', 'paths: [/fhir');
  t.match(faultOf(t, flow).message, new RegExp(`^${FILE}:\\d+:\\d+: .*\\]`), 'an unclosed flow sequence is reported with a position and the missing ]');

  const duplicate = `${BASE}admin:\n  listen: 127.0.0.1:9191\n`;
  t.match(faultOf(t, duplicate).message, new RegExp(`^${FILE}:${duplicate.split('\n').lastIndexOf('admin:') + 1}:1: .*unique`), 'a duplicate key is reported at the second occurrence');
  const nestedDuplicate = swap(BASE, '    host: epic.example', '    host: epic.example\n    host: evil.example');
  t.match(faultOf(t, nestedDuplicate).message, new RegExp(`^${at(nestedDuplicate, 'host: evil')}: .*unique`), 'a duplicate key inside a route is reported at its own line and column');
});

t.test('the top level must be a mapping', async (t) => {
  for (const [text, what] of [['- listen\n- routes\n', 'a sequence'], ['wardgate\n', 'a scalar'], ['', 'an empty file'], ['# only a comment\n', 'only a comment']] as const) {
    const err = faultOf(t, text);
    t.match(err.message, `${FILE}: expected a mapping at the top level`, `${what} at the top level is refused, naming the file and what was expected`);
  }
});

t.test('several faults are reported at once, one per line', async (t) => {
  const text = swap(BASE, 'id: epic', 'id: Epic').replace('url: https://10.1.2.4:8443', 'url: ftp://10.1.2.4') + 'workers: 0\ntrustedProxies: [10.0.0.0/33]\n';
  const lines = faultOf(t, text).message.split('\n');
  t.equal(lines.length, 4, 'four faults give four lines');
  const expected = [
    `${at(text, 'Epic')}: routes[0].id: `,
    `${at(text, 'ftp://')}: routes[1].upstream.url: `,
    `${at(text, '0\n', 'workers:')}: workers: `,
    `${at(text, '10.0.0.0/33')}: trustedProxies[0]: `,
  ];
  for (const prefix of expected) {
    t.ok(lines.some((line) => line.startsWith(prefix)), `one line starts with "${prefix}"`);
  }
});

t.test('secrets: ${env:NAME}', async (t) => {
  const names = ['WG_TEST_UPSTREAM', 'WG_TEST_EMPTY', 'WG_TEST_UNSET', 'WG_TEST_NESTED'];
  const saved = names.map((n) => process.env[n]);
  t.teardown(() => names.forEach((n, i) => (saved[i] === undefined ? delete process.env[n] : (process.env[n] = saved[i]))));
  process.env.WG_TEST_UPSTREAM = 'http://10.9.9.9:1234';
  process.env.WG_TEST_EMPTY = '';
  delete process.env.WG_TEST_UNSET;
  process.env.WG_TEST_NESTED = '${env:WG_TEST_UPSTREAM}';

  const set = load(swap(BASE, 'url: https://10.1.2.4:8443', 'url: "${env:WG_TEST_UPSTREAM}"'));
  t.equal(set.routes[1]!.upstream.url.href, 'http://10.9.9.9:1234/', 'a set variable is substituted');
  const within = load(swap(BASE, 'http: 127.0.0.1:8080', 'http: "127.0.0.1:${env:WG_TEST_UNSET:-8181}"'));
  t.same(within.listen.http, { host: '127.0.0.1', port: 8181 }, 'a reference inside a longer string is substituted in place; the default is used when unset');
  const empty = load(swap(BASE, 'http: 127.0.0.1:8080', 'http: "${env:WG_TEST_EMPTY:-127.0.0.1:8282}"'));
  t.same(empty.listen.http, { host: '127.0.0.1', port: 8282 }, 'the default is used when the variable is set but empty');
  const wins = load(swap(BASE, 'url: https://10.1.2.4:8443', 'url: "${env:WG_TEST_UPSTREAM:-http://10.0.0.1}"'));
  t.equal(wins.routes[1]!.upstream.url.href, 'http://10.9.9.9:1234/', 'a set variable wins over its default');
  const literal = load(swap(BASE, '      url: https://10.1.2.4:8443', '      url: https://10.1.2.4:8443\n      tls:\n        serverName: "${env:WG_TEST_NESTED}"'));
  t.equal(literal.routes[1]!.upstream.tls?.serverName, '${env:WG_TEST_UPSTREAM}', 'a substituted value is not substituted again');

  const unset = swap(BASE, 'url: https://10.1.2.4:8443', 'url: "${env:WG_TEST_UNSET}"');
  expectFault(t, 'an unset variable without default', unset, { where: at(unset, '"${env:WG_TEST_UNSET}"'), path: 'routes[1].upstream.url', expected: 'environment variable WG_TEST_UNSET is not set' });
  const emptyNoDefault = swap(BASE, 'url: https://10.1.2.4:8443', 'url: "${env:WG_TEST_EMPTY}"');
  expectFault(t, 'an empty variable without default', emptyNoDefault, { where: at(emptyNoDefault, '"${env:WG_TEST_EMPTY}"'), path: 'routes[1].upstream.url', expected: 'environment variable WG_TEST_EMPTY is not set' });
  for (const bad of ['1BAD', 'A-B', '', 'A B']) {
    const text = swap(BASE, 'http: 127.0.0.1:8080', `http: "\${env:${bad}}"`);
    expectFault(t, `variable name "${bad}"`, text, { where: at(text, '"${env:'), path: 'listen.http', expected: `"${bad}" is not an environment variable name` });
  }
});

t.test('secrets: a ${env:NAME:-default} default may itself contain ":-"', async (t) => {
  delete process.env.WG_TEST_UNSET;
  const text = swap(BASE, '      url: https://10.1.2.4:8443', '      url: https://10.1.2.4:8443\n      tls:\n        serverName: "${env:WG_TEST_UNSET:-a:-b}"');
  t.equal(load(text).routes[1]!.upstream.tls?.serverName, 'a:-b', 'everything after the first ":-" is the default, as in the shell');
});

t.test('secrets: ${file:PATH} and $$ escapes', async (t) => {
  mkdirSync(join(dir, 'secrets'), { recursive: true });
  writeFileSync(join(dir, 'secrets', 'upstream-url'), 'http://10.7.7.7:99\n');
  writeFileSync(join(dir, 'secrets', 'two-newlines'), 'fhir.internal\n\n');
  writeFileSync(join(dir, 'secrets', 'crlf'), 'fhir.internal\r\n');
  const withFile = (ref: string): string => swap(BASE, '      url: https://10.1.2.4:8443', `      url: https://10.1.2.4:8443\n      tls:\n        serverName: "${ref}"`);

  const url = load(swap(BASE, 'url: https://10.1.2.4:8443', 'url: "${file:secrets/upstream-url}"'));
  t.equal(url.routes[1]!.upstream.url.href, 'http://10.7.7.7:99/', 'a file is read relative to the config file\'s directory, its trailing newline trimmed');
  t.equal(load(withFile('${file:secrets/two-newlines}')).routes[1]!.upstream.tls?.serverName, 'fhir.internal\n', 'exactly one trailing newline is trimmed');
  t.equal(load(withFile('${file:secrets/crlf}')).routes[1]!.upstream.tls?.serverName, 'fhir.internal', 'a trailing CRLF counts as one newline');
  t.equal(load(withFile(`\${file:${join(dir, 'secrets', 'crlf')}}`)).routes[1]!.upstream.tls?.serverName, 'fhir.internal', 'an absolute file path is used as is');

  const missing = swap(BASE, 'url: https://10.1.2.4:8443', 'url: "${file:secrets/nope}"');
  expectFault(t, 'an unreadable secret file', missing, { where: at(missing, '"${file:'), path: 'routes[1].upstream.url', expected: `cannot read ${join(dir, 'secrets', 'nope')}: ENOENT` });

  t.equal(load(withFile('$${env:HOME}')).routes[1]!.upstream.tls?.serverName, '${env:HOME}', '$${env:X} yields the literal ${env:X}');
  t.equal(load(withFile('$${file:secrets/crlf}')).routes[1]!.upstream.tls?.serverName, '${file:secrets/crlf}', '$${file:X} yields the literal ${file:X}');
  t.equal(load(withFile('pre-$${env:A}-${file:secrets/crlf}')).routes[1]!.upstream.tls?.serverName, 'pre-${env:A}-fhir.internal', 'escaped and real references mix in one string');
});

t.test('defaults', async (t) => {
  const config = load(BASE);
  const epic = config.routes[0]!;
  t.same(epic.timeouts, { connect: 5_000, headers: 30_000, body: 60_000, idle: 120_000 }, 'timeouts default to connect 5s, headers 30s, body 60s, idle 120s');
  t.same(epic.paths, ['/'], 'paths default to ["/"]');
  t.equal(epic.upstream.preserveHost, false, 'preserveHost defaults to false');
  t.equal(epic.upstream.connections, 256, 'connections default to 256');
  t.equal(epic.websockets, false, 'websockets default to off');
  t.same(config.log, { level: 'info', access: true }, 'log level defaults to info, access logging on');
  t.same(config.trustedProxies, [], 'no proxy is trusted by default');
  t.same(config.shutdown, { drainTimeout: 30_000 }, 'drainTimeout defaults to 30s');
  t.ok(Number.isInteger(config.workers) && config.workers >= 1, `workers defaults to a positive integer (${config.workers})`);
  t.equal(epic.upstream.url.href, 'http://10.1.2.3:3000/', 'the upstream URL is parsed');
  t.same(config.admin.listen, { host: '127.0.0.1', port: 9090 }, 'addresses are parsed into host and port');

  const partial = load(swap(BASE, '    host: epic.example', '    host: epic.example\n    timeouts:\n      connect: 1.5s\n      idle: 10m'));
  t.same(partial.routes[0]!.timeouts, { connect: 1_500, headers: 30_000, body: 60_000, idle: 600_000 }, 'timeouts given in part keep the defaults for the rest');
  const level = load(`${BASE}log:\n  level: debug\n`);
  t.same(level.log, { level: 'debug', access: true }, 'a log section given in part keeps access on');
});

t.test('loadConfig', async (t) => {
  const missing = join(dir, 'does-not-exist.yaml');
  const err = thrown(() => loadConfig(missing));
  t.ok(err instanceof ConfigError && err.file === missing, 'a missing file is a ConfigError for that file');
  t.match(err instanceof Error ? err.message : '', new RegExp(`^${missing}: cannot read config file: ENOENT`), 'the message names the file and why it cannot be read');

  writeFileSync(join(dir, 'secrets', 'loaded-url'), 'http://10.6.6.6:66\n');
  const file = join(dir, 'loaded.yaml');
  writeFileSync(file, swap(BASE, 'url: https://10.1.2.4:8443', 'url: "${file:secrets/loaded-url}"'));
  t.equal(loadConfig(file).routes[1]!.upstream.url.href, 'http://10.6.6.6:66/', 'loadConfig reads the file and resolves ${file:} next to it, not in the working directory');
  writeFileSync(file, `${BASE}workers: 0\n`);
  const fault = thrown(() => loadConfig(file));
  t.ok(fault instanceof ConfigError && fault.message.startsWith(`${at(`${BASE}workers: 0\n`, '0\n', 'workers:').replace(FILE, file)}: workers: `), 'loadConfig reports faults at file:line:col of the file it read');
});

t.test('parseDuration', async (t) => {
  const good: [string, number][] = [
    ['500ms', 500], ['30s', 30_000], ['5m', 300_000], ['1h', 3_600_000], ['12h', 43_200_000],
    ['1.5s', 1_500], ['0.25h', 900_000], [' 30s ', 30_000], ['0s', 0], ['0.5ms', 1],
  ];
  for (const [text, ms] of good) t.equal(parseDuration(text), ms, `${JSON.stringify(text)} is ${ms} ms`);
  for (const text of ['30 seconds', '30', 's', '-1s', '1d', '1S', '1H', '', '1e3s', '.5s', '5 s', '1h30m', '1,5s']) {
    t.equal(parseDuration(text), undefined, `${JSON.stringify(text)} is not a duration`);
  }
});

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
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

// Assertion signing keys: EC P-256 only; the others are here to be refused.
function writeKey(name: string, key: KeyObject, type: 'pkcs8' | 'sec1' = 'pkcs8'): void {
  writeFileSync(join(dir, name), key.export({ type, format: 'pem' }));
}
writeKey('assertion.pem', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
writeKey('assertion-old.pem', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'sec1');
writeKey('rsa.pem', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
writeKey('p384.pem', generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey);
writeKey('ed25519.pem', generateKeyPairSync('ed25519').privateKey);

/** A 32-byte cookie key, as `openssl rand -base64 32` prints one. */
const COOKIE_KEY = Buffer.alloc(32, 0x5a).toString('base64');
const OTHER_COOKIE_KEY = Buffer.alloc(32, 0xa5).toString('base64');

/*
 * BASE is valid whatever `workers` defaults to on this machine (the cores Node sees):
 * with more than one worker the cookie and assertion keys are required, so it has them.
 */
const BASE = `listen:
  http: 127.0.0.1:8080
admin:
  listen: 127.0.0.1:9090
identity:
  issuer: http://localhost:8081
  clientId: wardgate
  clientSecret: test-client-secret
  authUrl: http://auth.localhost:8080
  cookieKeys: ["${COOKIE_KEY}"]
  assertion:
    keys: [assertion.pem]
routes:
  - id: epic
    host: epic.example
    upstream:
      url: http://10.1.2.3:3000
    policy:
      allow: [{ authenticated: true }]
  - id: fhir
    host: fhir.example
    paths: [/fhir]
    upstream:
      url: https://10.1.2.4:8443
    policy:
      allow: [{ authenticated: true }]
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

  const defaulted = `${BASE}  - id: epic2\n    host: EPIC.example\n    upstream:\n      url: http://10.1.2.5:3000\n    policy: { allow: [{ authenticated: true }] }\n`;
  expectFault(t, 'the same host (any case) and the default prefix on two routes', defaulted, {
    where: at(defaulted, 'id: epic2'),
    path: 'routes[2].paths[0]',
    expected: 'epic.example/ is already served by route "epic"',
  });
  const explicit = `${BASE}  - id: fhir2\n    host: fhir.example\n    paths: [/r4, /fhir]\n    upstream:\n      url: http://10.1.2.5:3000\n    policy: { allow: [{ authenticated: true }] }\n`;
  expectFault(t, 'the same host and an explicit prefix on two routes', explicit, {
    where: at(explicit, '/fhir]', 'id: fhir2'),
    path: 'routes[2].paths[1]',
    expected: 'fhir.example/fhir is already served by route "fhir"',
  });
  const other = load(`${BASE}  - id: fhir2\n    host: fhir.example\n    paths: [/fhir2, /fhir/r5]\n    upstream:\n      url: http://10.1.2.5:3000\n    policy: { allow: [{ authenticated: true }] }\n`);
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
    ['500ms', 500], ['30s', 30_000], ['5m', 300_000], ['1h', 3_600_000], ['12h', 43_200_000], ['90d', 90 * 86_400_000],
    ['1.5s', 1_500], ['0.25h', 900_000], [' 30s ', 30_000], ['0s', 0], ['0.5ms', 1],
  ];
  for (const [text, ms] of good) t.equal(parseDuration(text), ms, `${JSON.stringify(text)} is ${ms} ms`);
  for (const text of ['30 seconds', '30', 's', '-1s', '1w', '1D', '1S', '1H', '', '1e3s', '.5s', '5 s', '1h30m', '1,5s']) {
    t.equal(parseDuration(text), undefined, `${JSON.stringify(text)} is not a duration`);
  }
});

/*
 * identity: the OIDC client, sessions, assertion keys and bearer tokens; and each route's
 * auth block. The helpers below edit BASE's identity block and its first route.
 */

const AUTH_URL_LINE = '  authUrl: http://auth.localhost:8080\n';
const KEYS = `  cookieKeys: ["${COOKIE_KEY}"]\n  assertion:\n    keys: [assertion.pem]\n`;

/** BASE with `lines` added to its identity block. */
function inIdentity(lines: string, text = BASE): string {
  return swap(text, AUTH_URL_LINE, `${AUTH_URL_LINE}${lines}`);
}

/** BASE with `lines` (indented as route keys) added to the first route, epic. */
function inEpic(lines: string, text = BASE): string {
  return swap(text, '    host: epic.example\n', `    host: epic.example\n${lines}`);
}

const EPIC_POLICY = '    policy:\n      allow: [{ authenticated: true }]\n';

/** BASE with the epic route's policy replaced by `lines` (indented under policy:). */
function epicPolicy(lines: string, text = BASE): string {
  return swap(text, EPIC_POLICY, `    policy:\n${lines}`);
}

/** BASE with one worker and no cookie or assertion keys: the smallest identity block. */
const ONE_WORKER = `${swap(BASE, KEYS, '')}workers: 1\n`;

t.test('identity is required, and so are its issuer, client and sign-in origin', async (t) => {
  const none = swap(BASE, BASE.slice(BASE.indexOf('identity:'), BASE.indexOf('routes:')), '');
  expectFault(t, 'no identity block', none, { where: `${FILE}:1:1`, path: 'identity', expected: /expected object/ });

  const noIssuer = swap(BASE, '  issuer: http://localhost:8081\n', '');
  expectFault(t, 'no issuer', noIssuer, { where: at(noIssuer, 'clientId'), path: 'identity.issuer', expected: /expected an issuer URL such as https:\/\/login\.hospital\.example/ });
  const noSecret = swap(BASE, '  clientSecret: test-client-secret\n', '');
  expectFault(t, 'no client secret', noSecret, { where: at(noSecret, 'issuer:'), path: 'identity.clientSecret', expected: /expected string/ });
  const emptyId = swap(BASE, 'clientId: wardgate', 'clientId: ""');
  expectFault(t, 'an empty client id', emptyId, { where: at(emptyId, '""'), path: 'identity.clientId', expected: />=\s*1/ });
  const noAuthUrl = swap(BASE, AUTH_URL_LINE, '');
  expectFault(t, 'no authUrl', noAuthUrl, { where: at(noAuthUrl, 'issuer:'), path: 'identity.authUrl', expected: /expected an origin such as https:\/\/access\.hospital\.example/ });
});

t.test('issuer and authUrl: https, or plain http on loopback only', async (t) => {
  for (const bad of ['http://login.hospital.example', 'http://10.0.0.5:8081', 'http://localhost.hospital.example', 'http://127.0.0.1.nip.io', 'http://evil-localhost:8081', 'http://[::2]:8081']) {
    const text = swap(BASE, 'issuer: http://localhost:8081', `issuer: "${bad}"`);
    expectFault(t, `issuer ${bad}`, text, { where: at(text, `"${bad}"`), path: 'identity.issuer', expected: `expected https: plain http is allowed only for localhost, got "${bad}"` });
  }
  const authHttp = swap(BASE, 'authUrl: http://auth.localhost:8080', 'authUrl: http://access.hospital.example');
  expectFault(t, 'an http authUrl on a hospital host', authHttp, { where: at(authHttp, 'http://access'), path: 'identity.authUrl', expected: 'expected https: plain http is allowed only for localhost, got "http://access.hospital.example"' });

  for (const bad of ['ftp://login.hospital.example', 'https://user:pw@login.hospital.example', 'https://login.hospital.example/?tenant=1', 'https://login.hospital.example/#x', 'login.hospital.example']) {
    const text = swap(BASE, 'issuer: http://localhost:8081', `issuer: "${bad}"`);
    expectFault(t, `issuer ${bad}`, text, { where: at(text, `"${bad}"`), path: 'identity.issuer', expected: `expected an issuer URL such as https://login.hospital.example (no query or credentials), got "${bad}"` });
  }

  for (const good of ['https://login.hospital.example', 'https://login.hospital.example/realms/clinical', 'http://127.0.0.1:8081', 'http://127.8.9.10:8081', 'http://idp.localhost:8081', 'http://LOCALHOST:8081', 'http://[::1]:8081']) {
    const config = load(swap(BASE, 'issuer: http://localhost:8081', `issuer: "${good}"`));
    t.equal(config.identity.issuer.href, new URL(good).href, `issuer ${good} is accepted and parsed`);
  }
  const https = load(swap(BASE, 'authUrl: http://auth.localhost:8080', 'authUrl: https://access.hospital.example'));
  t.equal(https.identity.authUrl.origin, 'https://access.hospital.example', 'an https authUrl on any host is accepted');
});

t.test('authUrl is an origin: a path, query or credentials are refused', async (t) => {
  for (const bad of ['https://access.hospital.example/wardgate', 'https://access.hospital.example/?a=1', 'https://u:p@access.hospital.example']) {
    const text = swap(BASE, 'authUrl: http://auth.localhost:8080', `authUrl: "${bad}"`);
    expectFault(t, `authUrl ${bad}`, text, { where: at(text, `"${bad}"`), path: 'identity.authUrl', expected: `expected an origin such as https://access.hospital.example (no path, query or credentials), got "${bad}"` });
  }
  const slash = load(swap(BASE, 'authUrl: http://auth.localhost:8080', 'authUrl: https://access.hospital.example/'));
  t.equal(slash.identity.authUrl.href, 'https://access.hospital.example/', 'a bare origin with a trailing slash is still an origin');
});

t.test('scopes must include openid and be scope tokens', async (t) => {
  const noOpenid = inIdentity('  scopes: [email, profile]\n');
  expectFault(t, 'scopes without openid', noOpenid, { where: at(noOpenid, '[email, profile]'), path: 'identity.scopes', expected: 'expected the scopes to include openid' });
  const badToken = inIdentity('  scopes: [openid, "fhir user"]\n');
  expectFault(t, 'a scope with a space', badToken, { where: at(badToken, '"fhir user"'), path: 'identity.scopes[1]', expected: 'expected an OAuth scope token' });
  const custom = load(inIdentity('  scopes: [openid, email, fhirUser, "launch/patient"]\n'));
  t.same(custom.identity.scopes, ['openid', 'email', 'fhirUser', 'launch/patient'], 'scopes given are kept as given, in order');
});

t.test('cookie keys are 32 bytes of base64, and never echoed', async (t) => {
  const cases: [string, string][] = [
    ['c2hvcnQ=', 'got 5 bytes'],
    ['not base64!', 'got 0 bytes'],
    ['a'.repeat(64), 'got 48 bytes'], // `openssl rand -hex 32`, not -base64
    [`${COOKIE_KEY.slice(0, 20)} ${COOKIE_KEY.slice(20)}`, 'got 0 bytes'],
  ];
  for (const [bad, got] of cases) {
    const text = swap(BASE, `cookieKeys: ["${COOKIE_KEY}"]`, `cookieKeys: ["${COOKIE_KEY}", "${bad}"]`);
    expectFault(t, `cookie key ${bad}`, text, { where: at(text, `"${bad}"`), path: 'identity.cookieKeys[1]', expected: `expected a 32-byte key in base64 (openssl rand -base64 32), ${got}` });
    const message = faultOf(t, text).message;
    t.notOk(message.includes(bad), `the refused key ${bad} is not repeated in the message (it is a secret)`);
  }
  const empty = swap(BASE, `cookieKeys: ["${COOKIE_KEY}"]`, 'cookieKeys: []');
  expectFault(t, 'an empty cookie key list', empty, { where: at(empty, '[]'), path: 'identity.cookieKeys', expected: />=\s*1/ });

  const two = load(swap(BASE, `cookieKeys: ["${COOKIE_KEY}"]`, `cookieKeys: ["${OTHER_COOKIE_KEY}", "${COOKIE_KEY}"]`));
  t.same(two.identity.cookieKeys?.map((k) => k.toString('base64')), [OTHER_COOKIE_KEY, COOKIE_KEY], 'cookie keys are decoded to 32-byte buffers, in order (the first seals)');
  const urlSafe = OTHER_COOKIE_KEY.replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
  const safe = load(swap(BASE, `cookieKeys: ["${COOKIE_KEY}"]`, `cookieKeys: ["${urlSafe}"]`));
  t.equal(safe.identity.cookieKeys?.[0]?.toString('base64'), OTHER_COOKIE_KEY, 'URL-safe base64 without padding is the same key');
});

t.test('assertion keys are EC P-256 private keys in PEM files', async (t) => {
  for (const file of ['rsa.pem', 'p384.pem', 'ed25519.pem']) {
    const text = swap(BASE, 'keys: [assertion.pem]', `keys: [assertion.pem, ${file}]`);
    expectFault(t, `assertion key ${file}`, text, { where: at(text, file), path: 'identity.assertion.keys[1]', expected: 'expected an EC P-256 private key (ES256)' });
  }
  const notPem = swap(BASE, 'keys: [assertion.pem]', 'keys: [not-pem.txt]');
  expectFault(t, 'an assertion key file that is not PEM', notPem, { where: at(notPem, 'not-pem.txt'), path: 'identity.assertion.keys[0]', expected: `${join(dir, 'not-pem.txt')} does not hold a PEM private key` });
  const cert = swap(BASE, 'keys: [assertion.pem]', 'keys: [cert.pem]');
  expectFault(t, 'a certificate given as the assertion key', cert, { where: at(cert, 'cert.pem'), path: 'identity.assertion.keys[0]', expected: `${join(dir, 'cert.pem')} does not hold a PEM private key` });
  const missing = swap(BASE, 'keys: [assertion.pem]', 'keys: [keys/nope.key]');
  expectFault(t, 'a missing assertion key file', missing, { where: at(missing, 'keys/nope.key'), path: 'identity.assertion.keys[0]', expected: `cannot read private key file ${join(dir, 'keys', 'nope.key')}: ENOENT` });
  const der = swap(BASE, 'keys: [assertion.pem]', 'keys: [cert.der]');
  expectFault(t, 'a DER file given as the assertion key', der, { where: at(der, 'cert.der'), path: 'identity.assertion.keys[0]', expected: /does not hold a PEM private key/ });

  const good = load(swap(BASE, 'keys: [assertion.pem]', 'keys: [assertion.pem, assertion-old.pem, key.pem]'));
  t.equal(good.identity.assertion.keys?.length, 3, 'PKCS#8 and SEC1 ("BEGIN EC PRIVATE KEY") P-256 keys are accepted, the first signing');
  t.ok(good.identity.assertion.keys?.every((k) => Buffer.isBuffer(k)), 'assertion keys are read into buffers at load');
});

t.test('more than one worker needs shared cookie and assertion keys', async (t) => {
  const text = `${swap(BASE, KEYS, '')}workers: 2\n`;
  const err = faultOf(t, text);
  const lines = err.message.split('\n');
  t.equal(lines.length, 2, 'both missing keys are reported, in one round');
  t.equal(lines[0], `${at(text, 'issuer:')}: identity.cookieKeys: expected cookieKeys when workers > 1 (openssl rand -base64 32)`, 'missing cookieKeys: located at the identity block, path and what to run');
  t.match(lines[1] ?? '', new RegExp(`^${at(text, 'issuer:')}: identity\\.assertion\\.keys: expected assertion keys when workers > 1 \\(openssl ecparam -name prime256v1`), 'missing assertion keys: located at the identity block, path and what to run');
  t.equal(err.path, 'identity.cookieKeys', 'the error carries the first fault\'s path');

  const onlyCookies = `${swap(BASE, '  assertion:\n    keys: [assertion.pem]\n', '  assertion:\n    ttl: 30s\n')}workers: 2\n`;
  expectFault(t, 'workers 2 with cookie keys only', onlyCookies, { where: at(onlyCookies, 'ttl: 30s'), path: 'identity.assertion.keys', expected: /expected assertion keys when workers > 1/ });
  t.equal(faultOf(t, onlyCookies).message.split('\n').length, 1, 'with the cookie keys given, only the assertion keys are reported');

  const one = load(ONE_WORKER);
  t.equal(one.identity.cookieKeys, undefined, 'one worker may go without cookie keys (made up at start)');
  t.equal(one.identity.assertion.keys, undefined, 'one worker may go without assertion keys (made up at start)');
  t.equal(load(`${BASE}workers: 4\n`).workers, 4, 'several workers load when both keys are given');
});

t.test('a route may not take the sign-in host', async (t) => {
  const text = `${BASE}  - id: signin\n    host: Auth.Localhost\n    upstream:\n      url: http://10.1.2.9:80\n    policy: { allow: [{ authenticated: true }] }\n`;
  expectFault(t, 'a route on the authUrl host', text, { where: at(text, 'Auth.Localhost'), path: 'routes[2].host', expected: 'auth.localhost is wardgate\'s sign-in host (identity.authUrl); give the route its own host' });
  const sibling = load(`${BASE}  - id: portal\n    host: auth2.localhost\n    upstream:\n      url: http://10.1.2.9:80\n    policy: { allow: [{ authenticated: true }] }\n`);
  t.equal(sibling.routes[2]!.host, 'auth2.localhost', 'a merely similar host is a route like any other');
});

t.test('route auth: methods', async (t) => {
  const bearer = inEpic('    auth:\n      methods: [bearer]\n');
  expectFault(t, 'bearer without identity.bearer', bearer, { where: at(bearer, '[bearer]'), path: 'routes[0].auth.methods', expected: 'bearer needs identity.bearer (the audience API tokens are issued for)' });
  const configured = load(inIdentity('  bearer:\n    audience: https://fhir.example/fhir\n', bearer));
  t.same(configured.routes[0]!.auth.methods, ['bearer'], 'bearer is accepted once identity.bearer is configured');
  t.same(configured.identity.bearer, { audience: 'https://fhir.example/fhir', algorithms: ['RS256', 'PS256', 'ES256'] }, 'bearer algorithms default to RS256, PS256 and ES256');

  const unknown = inEpic('    auth:\n      methods: [session, password]\n');
  expectFault(t, 'an unknown method', unknown, { where: at(unknown, 'password'), path: 'routes[0].auth.methods[1]', expected: /expected one of "session"\|"bearer"/ });
  const empty = inEpic('    auth:\n      methods: []\n');
  expectFault(t, 'an empty method list', empty, { where: at(empty, '[]'), path: 'routes[0].auth.methods', expected: />=\s*1/ });
});

t.test('unknown keys inside identity and route auth are refused at the key', async (t) => {
  const cases: [string, string, string][] = [
    [inIdentity('  redirectUri: https://access.example/cb\n'), 'redirectUri', 'identity.redirectUri'],
    [inIdentity('  session:\n    idle: 5m\n'), 'idle:', 'identity.session.idle'],
    [inIdentity('  bearer:\n    audience: x\n    audiences: [y]\n'), 'audiences', 'identity.bearer.audiences'],
    [swap(BASE, '    keys: [assertion.pem]\n', '    keys: [assertion.pem]\n    key: assertion.pem\n'), 'key: assertion', 'identity.assertion.key'],
    [inEpic('    auth:\n      require:\n        acr: [phr]\n'), 'require', 'routes[0].auth.require'],
    [epicPolicy('      allow: [{ authenticated: true }]\n      hide: true\n'), 'hide', 'routes[0].policy.hide'],
    [`${BASE}store:\n  type: memory\n  size: 10\n`, 'size', 'store.size'],
  ];
  for (const [text, key, path] of cases) {
    const name = path.split('.').pop()!;
    expectFault(t, `unknown key ${path}`, text, { where: at(text, key), path, expected: `unknown key "${name}"` });
  }
});

t.test('route auth: claim headers', async (t) => {
  const good = load(inEpic('    auth:\n      claimHeaders:\n        X-Epic-User: email\n        X-Groups: groups\n'));
  t.same(good.routes[0]!.auth.claimHeaders, { 'x-epic-user': 'email', 'x-groups': 'groups' }, 'header names are lower-cased; claims kept');

  const claim = inEpic('    auth:\n      claimHeaders:\n        X-User: phone\n');
  expectFault(t, 'an unknown claim', claim, { where: at(claim, 'phone'), path: 'routes[0].auth.claimHeaders.X-User', expected: /expected one of "sub"\|"email"\|"name"\|"groups"\|"acr"\|"amr"/ });

  const name = inEpic('    auth:\n      claimHeaders:\n        "X Epic User": email\n');
  const err = faultOf(t, name);
  const first = err.message.split('\n')[0] ?? '';
  const line = at(name, '"X Epic User"').split(':').slice(-2, -1)[0];
  t.ok(first.startsWith(`${FILE}:${line}:`), `an invalid header name is reported on its own line (got "${first}")`);
  t.match(first, ': routes[0].auth.claimHeaders.X Epic User: ', 'with the path of the header name');
  t.equal(err.code, 'config-invalid', 'as a config-invalid error');
  t.match(first, `${at(name, '"X Epic User"')}: routes[0].auth.claimHeaders.X Epic User: expected an HTTP header name`,
    'the message says a header name was expected, at the key');
});

t.test('bearer tokens: symmetric and unsigned algorithms are refused', async (t) => {
  for (const alg of ['HS256', 'none', 'RS1']) {
    const text = inIdentity(`  bearer:\n    audience: https://fhir.example/fhir\n    algorithms: [ES256, ${alg}]\n`);
    expectFault(t, `algorithm ${alg}`, text, { where: at(text, alg, 'ES256, '), path: 'identity.bearer.algorithms[1]', expected: /expected one of "RS256"\|.*"ES256"/ });
  }
  const noAudience = inIdentity('  bearer:\n    algorithms: [ES256]\n');
  expectFault(t, 'bearer without an audience', noAudience, { where: at(noAudience, 'algorithms'), path: 'identity.bearer.audience', expected: /expected the audience/ });
  const list = load(inIdentity('  bearer:\n    audience: [https://fhir.example/fhir, fhir-api]\n    algorithms: [PS256, EdDSA]\n'));
  t.same(list.identity.bearer, { audience: ['https://fhir.example/fhir', 'fhir-api'], algorithms: ['PS256', 'EdDSA'] }, 'several audiences and chosen asymmetric algorithms are kept');
});

t.test('identity and route auth durations', async (t) => {
  const lifetime = inIdentity('  session:\n    absoluteLifetime: 12 hours\n');
  expectFault(t, 'absoluteLifetime in words', lifetime, { where: at(lifetime, '12 hours'), path: 'identity.session.absoluteLifetime', expected: 'expected a duration such as 500ms, 30s, 5m or 1h, got "12 hours"' });
  const idle = inIdentity('  session:\n    idleTimeout: 0s\n');
  expectFault(t, 'a zero idleTimeout', idle, { where: at(idle, '0s'), path: 'identity.session.idleTimeout', expected: /expected a duration.*got "0s"/ });
  const ttl = swap(BASE, '    keys: [assertion.pem]\n', '    keys: [assertion.pem]\n    ttl: 60\n');
  expectFault(t, 'an assertion ttl without unit', ttl, { where: at(ttl, '60', 'ttl:'), path: 'identity.assertion.ttl', expected: /expected a duration/ });
  const idpTimeout = inIdentity('  idpTimeout: 5 s\n');
  expectFault(t, 'idpTimeout with a space', idpTimeout, { where: at(idpTimeout, '5 s'), path: 'identity.idpTimeout', expected: /expected a duration.*got "5 s"/ });
  const set = load(epicPolicy('      allow: [{ all: [{ authAge: 1h }, { acr: [phr] }, { amr: [hwk] }] }]\n',
    inIdentity('  session:\n    absoluteLifetime: 8h\n    idleTimeout: 15m\n  idpTimeout: 2.5s\n', swap(BASE, '    keys: [assertion.pem]\n', '    keys: [assertion.pem]\n    ttl: 30s\n'))));
  t.same(set.identity.session, { absoluteLifetime: 28_800_000, idleTimeout: 900_000 }, 'session durations are parsed to ms');
  t.equal(set.identity.assertion.ttl, 30_000, 'the assertion ttl is parsed to ms');
  t.equal(set.identity.idpTimeout, 2_500, 'idpTimeout is parsed to ms');
  t.same(set.routes[0]!.policy.allow, [{ kind: 'all', name: undefined, rules: [
    { kind: 'criterion', criterion: 'authAge', value: 3_600_000, name: undefined },
    { kind: 'criterion', criterion: 'acr', value: ['phr'], name: undefined },
    { kind: 'criterion', criterion: 'amr', value: ['hwk'], name: undefined },
  ] }], 'a policy is parsed into rules; authAge to ms, acr and amr kept');
  const partial = load(inIdentity('  session:\n    idleTimeout: 10m\n'));
  t.same(partial.identity.session, { absoluteLifetime: 43_200_000, idleTimeout: 600_000 }, 'a session block given in part keeps the default for the rest');
});

t.test('identity, auth and store defaults', async (t) => {
  const config = load(ONE_WORKER);
  const { identity } = config;
  t.equal(identity.issuer.href, 'http://localhost:8081/', 'the issuer is parsed to a URL');
  t.equal(identity.authUrl.origin, 'http://auth.localhost:8080', 'the authUrl is parsed to a URL');
  t.equal(identity.clientId, 'wardgate', 'the client id is kept');
  t.equal(identity.clientSecret, 'test-client-secret', 'the client secret is kept');
  t.same(identity.scopes, ['openid', 'email', 'profile', 'groups', 'offline_access'], 'scopes default to openid email profile groups offline_access');
  t.same(identity.session, { absoluteLifetime: 43_200_000, idleTimeout: 1_800_000 }, 'sessions default to 12h absolute, 30m idle');
  t.equal(identity.assertion.ttl, 60_000, 'assertions live 60s by default');
  t.equal(identity.assertion.keys, undefined, 'no assertion keys by default');
  t.equal(identity.cookieKeys, undefined, 'no cookie keys by default');
  t.equal(identity.bearer, undefined, 'bearer tokens are off by default');
  t.equal(identity.idpTimeout, 5_000, 'IdP requests time out after 5s by default');
  t.same(config.store, { type: 'memory', maxEntries: 1_000_000, path: '/var/lib/wardgate/store.jsonl' }, 'without grants or break-glass the store defaults to memory with a million entries (the path is only used by the file store)');
  for (const route of config.routes) {
    t.equal(route.auth.methods, undefined, `route ${route.id}: methods default to undefined (resolved at start)`);
    t.same(route.policy.deny, [], `route ${route.id}: no deny rules by default`);
    t.equal(route.policy.devices, undefined, `route ${route.id}: the device mode is resolved at start`);
    t.equal(route.policy.hideDetails, false, `route ${route.id}: refusals explain themselves by default`);
    t.same(route.auth.claimHeaders, {}, `route ${route.id}: no claim headers by default`);
    t.equal(route.auth.passAuthorization, false, `route ${route.id}: the Authorization header is stripped by default`);
  }
  const pass = load(inEpic('    auth:\n      passAuthorization: true\n', ONE_WORKER));
  t.equal(pass.routes[0]!.auth.passAuthorization, true, 'passAuthorization can be turned on');
  t.same(pass.routes[0]!.auth.claimHeaders, {}, 'an auth block given in part keeps the other defaults');

  const store = `${BASE}store:\n  type: redis\n`;
  expectFault(t, 'a store type other than memory or file', store, { where: at(store, 'redis'), path: 'store.type', expected: /expected memory or file/ });
  const small = `${BASE}store:\n  maxEntries: 10\n`;
  expectFault(t, 'a tiny store', small, { where: at(small, '10\n', 'maxEntries'), path: 'store.maxEntries', expected: /at least 1000 entries/ });
  const memoryFile = `${BASE}store:\n  type: memory\n  path: /tmp/x.jsonl\n`;
  expectFault(t, 'a memory store with a file', memoryFile, { where: at(memoryFile, '/tmp/x.jsonl'), path: 'store.path', expected: /keeps nothing in a file/ });
});

t.test('secrets: ${env:...} inside identity', async (t) => {
  const names = ['WG_TEST_SECRET', 'WG_TEST_COOKIE_KEY', 'WG_TEST_IDP'];
  const saved = names.map((n) => process.env[n]);
  t.teardown(() => names.forEach((n, i) => (saved[i] === undefined ? delete process.env[n] : (process.env[n] = saved[i]))));
  names.forEach((n) => delete process.env[n]);

  const text = swap(swap(swap(BASE,
    'clientSecret: test-client-secret', 'clientSecret: "${env:WG_TEST_SECRET:-fallback-secret}"'),
    `cookieKeys: ["${COOKIE_KEY}"]`, `cookieKeys: ["\${env:WG_TEST_COOKIE_KEY:-${COOKIE_KEY}}"]`),
    'issuer: http://localhost:8081', 'issuer: "${env:WG_TEST_IDP:-http://127.0.0.1:8081}"');
  const defaults = load(text);
  t.equal(defaults.identity.clientSecret, 'fallback-secret', 'the default is used for an unset client secret');
  t.equal(defaults.identity.cookieKeys?.[0]?.toString('base64'), COOKIE_KEY, 'the default is used for an unset cookie key, then decoded');
  t.equal(defaults.identity.issuer.href, 'http://127.0.0.1:8081/', 'the default is used for an unset issuer, then checked and parsed');

  process.env.WG_TEST_SECRET = 's3cr3t-from-env';
  process.env.WG_TEST_COOKIE_KEY = OTHER_COOKIE_KEY;
  process.env.WG_TEST_IDP = 'https://login.hospital.example';
  const set = load(text);
  t.equal(set.identity.clientSecret, 's3cr3t-from-env', 'a set variable wins over its default (client secret)');
  t.equal(set.identity.cookieKeys?.[0]?.toString('base64'), OTHER_COOKIE_KEY, 'a set variable wins over its default (cookie key)');
  t.equal(set.identity.issuer.href, 'https://login.hospital.example/', 'a set variable wins over its default (issuer)');

  process.env.WG_TEST_IDP = 'http://login.hospital.example';
  expectFault(t, 'an http issuer from the environment', text, { where: at(text, '"${env:WG_TEST_IDP'), path: 'identity.issuer', expected: 'expected https: plain http is allowed only for localhost, got "http://login.hospital.example"' });
  process.env.WG_TEST_COOKIE_KEY = 'dG9vIHNob3J0';
  delete process.env.WG_TEST_IDP;
  const shortKey = faultOf(t, text);
  t.match(shortKey.message, `${at(text, '"${env:WG_TEST_COOKIE_KEY')}: identity.cookieKeys[0]: expected a 32-byte key in base64 (openssl rand -base64 32), got 9 bytes`, 'a bad key from the environment is located at its reference');
  t.notMatch(shortKey.message, 'dG9vIHNob3J0', 'and its value is not printed');

  const unset = swap(BASE, 'clientSecret: test-client-secret', 'clientSecret: "${env:WG_TEST_UNSET_SECRET}"');
  delete process.env.WG_TEST_UNSET_SECRET;
  expectFault(t, 'an unset client secret without default', unset, { where: at(unset, '"${env:'), path: 'identity.clientSecret', expected: 'environment variable WG_TEST_UNSET_SECRET is not set' });
});

t.test('claim headers cannot take over headers wardgate sets or HTTP needs', async (t) => {
  for (const name of ['Authorization', 'Cookie', 'Host', 'Content-Length', 'X-Wardgate-Assertion', 'X-Forwarded-User', 'Proxy-Authorization']) {
    const text = inEpic(`    auth:\n      claimHeaders:\n        ${name}: email\n`);
    const first = faultOf(t, text).message.split('\n')[0] ?? '';
    t.match(first, `routes[0].auth.claimHeaders.${name}: ${name} is a header wardgate sets, strips or needs for HTTP itself`,
      `${name} is refused as a claim header, named at its path: a claim must not forge credentials, framing or wardgate's own headers`);
  }
});

t.test('every route needs a policy, and policy faults are reported at their line and path', async (t) => {
  const none = swap(BASE, EPIC_POLICY, '');
  expectFault(t, 'a route without a policy', none, { where: at(none, 'id: epic'), path: 'routes[0].policy', expected: 'expected a policy with allow rules: a route without one is refused, since nothing is allowed by default' });

  const unknown = epicPolicy('      allow:\n        - colour: [red]\n');
  expectFault(t, 'an unknown criterion', unknown, { where: at(unknown, '[red]'), path: 'routes[0].policy.allow[0].colour', expected: /unknown criterion "colour"; expected one of: .*cidr.*timeWindow/ });

  const cidr = epicPolicy('      deny:\n        - cidr: [10.0.0.0/8, 10.1.2.3/33]\n      allow: [{ authenticated: true }]\n');
  expectFault(t, 'a bad CIDR inside a deny rule', cidr, { where: at(cidr, '10.1.2.3/33'), path: 'routes[0].policy.deny[0].cidr[1]', expected: /10\.1\.2\.3\/33/ });

  const zone = epicPolicy('      allow:\n        - all:\n            - authenticated: true\n            - timeWindow: { hours: "08:00-18:00", timeZone: Europe/Lundun }\n');
  expectFault(t, 'an unknown time zone', zone, { where: at(zone, 'Europe/Lundun'), path: 'routes[0].policy.allow[0].all[1].timeWindow.timeZone', expected: /Europe\/Lundun/ });

  const trusted = epicPolicy('      devices: trusted\n      allow: [{ authenticated: true }]\n');
  expectFault(t, 'trusted devices without a devices section', trusted, { where: at(trusted, 'trusted'), path: 'routes[0].policy.devices', expected: 'trusted devices need a devices: section (an inventory or posture assertions) to tell them apart' });

  const good = load(epicPolicy('      deny:\n        - name: embargo\n          country: [kp]\n      allow:\n        - groups: [clinicians]\n      remediation: Call 4357.\n      hideDetails: true\n'));
  t.same(good.routes[0]!.policy.deny, [{ kind: 'criterion', criterion: 'country', value: ['KP'], name: 'embargo' }], 'a named deny rule, its country code upper-cased');
  t.equal(good.routes[0]!.policy.remediation, 'Call 4357.', 'the remediation text is kept');
  t.equal(good.routes[0]!.policy.hideDetails, true, 'hideDetails is kept');
});

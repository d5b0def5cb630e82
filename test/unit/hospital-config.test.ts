import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { makePki } from '../helpers/pki.js';
import t, { type Test } from 'tap';
import { parseConfig } from '../../config/loader.js';
import type { WardgateConfig } from '../../config/schema.js';
import { ConfigError } from '../../proxy/errors.js';
import { UpstreamSet } from '../../proxy/forward/upstream.js';
import { createMetrics } from '../../proxy/metrics.js';
import { compileRoute } from '../../proxy/routes.js';

/*
 * config/hospital.yaml is documentation that must not rot. The loader reads every PEM
 * file it names, and those live under /etc/wardgate/ on a real deployment, so this test
 * makes throwaway ones, points the text at them and loads it for real. Its two secrets
 * come from the environment, as the example documents; the test sets them.
 */

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const configFile = join(root, 'config', 'hospital.yaml');
const text = readFileSync(configFile, 'utf8');
const PREFIX = '/etc/wardgate/';

/** Every string value (not comment) in the YAML under /etc/wardgate/, in document order. */
function deploymentPaths(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') {
    if (value.startsWith(PREFIX)) out.push(value);
  } else if (Array.isArray(value)) {
    for (const item of value) deploymentPaths(item, out);
  } else if (value !== null && typeof value === 'object') {
    for (const item of Object.values(value)) deploymentPaths(item, out);
  }
  return out;
}

const referenced = deploymentPaths(parse(text));

/** The environment variables the example reads its secrets from. */
const SECRET_ENV = ['WARDGATE_OIDC_CLIENT_SECRET', 'WARDGATE_COOKIE_KEY'] as const;

/** Sets (or, with `values` undefined, unsets) the example's secrets for one test. */
function secrets(t: Test, values: Record<(typeof SECRET_ENV)[number], string> | undefined): void {
  const saved = SECRET_ENV.map((name) => process.env[name]);
  t.teardown(() => SECRET_ENV.forEach((name, i) => (saved[i] === undefined ? delete process.env[name] : (process.env[name] = saved[i]))));
  for (const name of SECRET_ENV) {
    if (values) process.env[name] = values[name];
    else delete process.env[name];
  }
}

/** `FILE:line:col` of the first non-comment occurrence of `needle` in the example. */
function where(needle: string): string {
  const lines = text.split('\n');
  const index = lines.findIndex((l) => !l.trimStart().startsWith('#') && l.includes(needle));
  if (index < 0) throw new Error(`test bug: ${needle} is not in hospital.yaml`);
  return `${configFile}:${index + 1}:${lines[index]!.indexOf(needle) + 1}`;
}

/**
 * Stand-ins for every file the example names under /etc/wardgate/: certificates and TLS
 * keys from a throwaway PKI, and a fresh EC P-256 key (PKCS#8 PEM) for each assertion key
 * under keys/. Returns the directory standing in for /etc/wardgate/ and the assertion key.
 */
function standIns(t: Test): { dir: string; assertionKey: string } {
  const made = makePki();
  const dir = made.dir;
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const leaf = made.issue('wardgate.stmary-hospital.example');
  const pki = { caCert: made.caCert, leafCert: leaf.cert, leafKey: leaf.key };
  const assertionKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  for (const path of referenced) {
    const target = join(dir, path.slice(PREFIX.length));
    mkdirSync(dirname(target), { recursive: true });
    const name = basename(path);
    if (path.startsWith(`${PREFIX}keys/`)) {
      writeFileSync(target, assertionKey);
      continue;
    }
    const source = name.endsWith('.key') ? pki.leafKey : /(^|-)ca\./.test(name) ? pki.caCert : pki.leafCert;
    copyFileSync(source, target);
  }
  return { dir, assertionKey };
}

/** Which routes wardgate would open to bearer tokens, resolved as the gateway resolves them. */
async function bearerRoutes(config: WardgateConfig): Promise<string[]> {
  const upstreams = new UpstreamSet();
  const metrics = createMetrics({ inFlight: () => 0, websocketsByRoute: () => new Map(), sessionsActive: async () => 0 });
  try {
    const compiled = config.routes.map((route) => compileRoute(route, upstreams, metrics));
    return compiled.filter((route) => route.auth.bearer).map((route) => route.id);
  } finally {
    await upstreams.close(true);
  }
}

t.test('the hospital example loads once its TLS and key files exist and its secrets are set', async (t) => {
  const { dir, assertionKey } = standIns(t);
  const cookieKey = randomBytes(32).toString('base64');
  secrets(t, { WARDGATE_OIDC_CLIENT_SECRET: 'stmary-client-secret', WARDGATE_COOKIE_KEY: cookieKey });

  t.ok(referenced.length >= 6, 'the example names its listener, upstream TLS and assertion key files under /etc/wardgate/');
  t.ok(referenced.some((path) => path.startsWith(`${PREFIX}keys/`) && path.endsWith('.key')), 'among them an assertion key under /etc/wardgate/keys/');

  const config = parseConfig(text.replaceAll(PREFIX, `${dir}/`), configFile);

  t.same(config.routes.map((r) => r.id), ['epic', 'fhir', 'lab', 'pacs', 'vendor'],
    'the five documented applications are routed, in order');
  t.same(config.routes.map((r) => r.host), [
    'epic.stmary-hospital.example',
    'fhir.stmary-hospital.example',
    'lab.stmary-hospital.example',
    'pacs.stmary-hospital.example',
    'vendor.stmary-hospital.example',
  ], 'each application has its own host under the hospital domain');
  t.same(config.routes.filter((r) => r.websockets).map((r) => r.id), ['pacs', 'vendor'],
    'WebSockets are open only where the PACS viewer and the vendor terminal need them');

  const byId = new Map(config.routes.map((r) => [r.id, r]));
  t.same(byId.get('fhir')?.paths, ['/fhir'], 'only the FHIR base is published on the FHIR host');
  t.same(byId.get('epic')?.paths, ['/'], 'routes without paths publish the whole host');
  t.equal(byId.get('pacs')?.timeouts.body, 600_000, 'PACS gets a 10m body timeout for large studies');
  t.equal(byId.get('fhir')?.timeouts.body, 60_000, 'FHIR keeps the default body timeout');
  t.ok(byId.get('fhir')?.upstream.tls?.cert && byId.get('fhir')?.upstream.tls?.key,
    'wardgate presents a client certificate to the FHIR integration engine');
  for (const route of config.routes) {
    t.equal(route.upstream.url.protocol, 'https:', `route ${route.id} reaches its upstream over TLS`);
    t.ok(route.upstream.tls?.ca, `route ${route.id} verifies its upstream against the internal CA`);
  }

  t.equal(config.listen.http, undefined, 'there is no plain HTTP listener');
  t.same(config.listen.https?.address, { host: '0.0.0.0', port: 8443 }, 'HTTPS listens on 0.0.0.0:8443');
  t.ok(config.listen.https?.clientCa, 'device client certificates are requested against the MDM CA');
  t.same(config.admin.listen, { host: '127.0.0.1', port: 9090 }, 'the admin listener stays on loopback');
  t.same(config.trustedProxies, ['10.10.0.4/31'], 'only the load balancers may set X-Forwarded-For');
  t.equal(config.shutdown.drainTimeout, 25_000, 'the drain fits inside a 30s termination grace period');

  // Identity.
  const { identity } = config;
  t.equal(identity.issuer.protocol, 'https:', 'the IdP is reached over https');
  t.equal(identity.authUrl.protocol, 'https:', 'the sign-in origin is https');
  t.equal(identity.authUrl.hostname, 'access.stmary-hospital.example', 'sign-in has its own host under the hospital domain');
  t.notOk(config.routes.some((r) => r.host === identity.authUrl.hostname), 'no route takes the sign-in host');
  t.equal(identity.clientSecret, 'stmary-client-secret', 'the client secret comes from WARDGATE_OIDC_CLIENT_SECRET');
  t.ok(identity.scopes.includes('openid'), 'the scopes include openid');
  t.equal(config.workers, 4, 'the example runs 4 workers...');
  t.same(identity.cookieKeys?.map((k) => k.toString('base64')), [cookieKey], '...so it sets the cookie key, from WARDGATE_COOKIE_KEY, shared by every worker');
  t.equal(identity.assertion.keys?.length, 1, '...and one assertion key, shared by every worker');
  t.equal(identity.assertion.keys?.[0]?.toString(), assertionKey, 'the assertion key is the EC P-256 key file under /etc/wardgate/keys/');
  t.same(identity.session, { absoluteLifetime: 12 * 3_600_000, idleTimeout: 30 * 60_000 }, 'sessions last one 12h shift and end after 30m idle');
  t.equal(identity.assertion.ttl, 60_000, 'assertions live 60s');
  t.same(identity.bearer, { audience: 'https://fhir.stmary-hospital.example/fhir', algorithms: ['RS256', 'ES256'] },
    'bearer tokens are accepted for the FHIR audience, signed with RS256 or ES256');

  t.same(byId.get('epic')?.auth.require.acr, ['phr'], 'Epic requires a phishing-resistant sign-in (acr phr)');
  t.same(byId.get('epic')?.auth.methods, ['session'], 'Epic takes browser sessions only');
  t.equal(byId.get('vendor')?.auth.require.maxAge, 3_600_000, 'vendor engineers re-authenticate at least hourly');
  for (const route of config.routes) t.equal(route.auth.passAuthorization, false, `route ${route.id} strips the client's Authorization header`);
  t.same(await bearerRoutes(config), ['fhir'], 'bearer tokens (issued for the FHIR audience) open the FHIR route only');
});

t.test('with 4 workers the example cannot go without its shared keys', async (t) => {
  const { dir } = standIns(t);
  secrets(t, { WARDGATE_OIDC_CLIENT_SECRET: 'stmary-client-secret', WARDGATE_COOKIE_KEY: randomBytes(32).toString('base64') });
  const cookieLines = /\n  cookieKeys:\n    - "\$\{env:WARDGATE_COOKIE_KEY\}"\n/;
  t.match(text, cookieLines, 'the example lists its cookie key in a form this test can remove');
  const without = text.replace(cookieLines, '\n').replaceAll(PREFIX, `${dir}/`);
  let caught: unknown;
  try {
    parseConfig(without, configFile);
  } catch (err) {
    caught = err;
  }
  t.type(caught, ConfigError, 'without cookieKeys the example is refused');
  t.match(caught instanceof Error ? caught.message : '', /hospital\.yaml:\d+:\d+: identity\.cookieKeys: expected cookieKeys when workers > 1/, 'naming identity.cookieKeys and why');
});

t.test('the Dockerfile health check probes the admin address the example configures', async (t) => {
  // Join backslash continuations so the instruction reads as Docker sees it.
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8').replace(/\\\r?\n/g, ' ');
  const healthcheck = dockerfile.split('\n').find((line) => line.startsWith('HEALTHCHECK'));
  const raw: unknown = parse(text);
  const admin = (raw as { admin?: { listen?: unknown } }).admin?.listen;
  t.type(admin, 'string', 'the example sets admin.listen');
  t.ok(healthcheck?.includes(`'http://${String(admin)}/healthz'`), `HEALTHCHECK fetches /healthz on admin.listen (${String(admin)})`);
});

t.test('as shipped, with its secrets set, the example fails naming the file, the line and every missing file', async (t) => {
  secrets(t, { WARDGATE_OIDC_CLIENT_SECRET: 'stmary-client-secret', WARDGATE_COOKIE_KEY: randomBytes(32).toString('base64') });
  const first = referenced[0]!;
  t.equal(first, '/etc/wardgate/tls/wardgate.crt', 'the first TLS file is the listener certificate');

  let caught: unknown;
  try {
    parseConfig(text, configFile);
  } catch (err) {
    caught = err;
  }
  t.type(caught, ConfigError, 'missing TLS and key files are a ConfigError, not a crash');
  if (!(caught instanceof ConfigError)) return;
  const [firstLine = ''] = caught.message.split('\n');
  t.match(firstLine, `${where(first)}: listen.https.cert: `, 'the first message names the file, the line and column of the bad value and the path inside the config');
  t.match(firstLine, `cannot read certificate file ${first}: ENOENT`, 'the first message names the TLS file that could not be read');
  t.equal(caught.path, 'listen.https.cert', 'the error carries the config path of the first fault');
  for (const path of new Set(referenced)) {
    t.match(caught.message, path, `every unreadable file is reported in one round: ${path}`);
  }
  const assertionKey = referenced.find((path) => path.startsWith(`${PREFIX}keys/`))!;
  t.match(caught.message, `${where(assertionKey)}: identity.assertion.keys[0]: cannot read private key file ${assertionKey}: ENOENT`,
    'the assertion key is reported at its own line with its path');
  t.equal(caught.message.split('\n').length, referenced.length, 'one line per reference to a missing file, and nothing else');
});

t.test('as shipped, without its secrets, the operator is told which variables to set', async (t) => {
  secrets(t, undefined);
  let caught: unknown;
  try {
    parseConfig(text, configFile);
  } catch (err) {
    caught = err;
  }
  t.type(caught, ConfigError, 'unset secrets are a ConfigError, not a crash');
  if (!(caught instanceof ConfigError)) return;
  const lines = caught.message.split('\n');
  t.equal(lines[0], `${where('"${env:WARDGATE_OIDC_CLIENT_SECRET}"')}: identity.clientSecret: environment variable WARDGATE_OIDC_CLIENT_SECRET is not set`,
    'the client secret: file:line:col, path, and the variable to set');
  t.equal(lines[1], `${where('"${env:WARDGATE_COOKIE_KEY}"')}: identity.cookieKeys[0]: environment variable WARDGATE_COOKIE_KEY is not set`,
    'the cookie key: file:line:col, path, and the variable to set');
  t.equal(caught.path, 'identity.clientSecret', 'the error carries the path of the first unset secret');
  for (const path of new Set(referenced)) {
    t.match(caught.message, path, `the same round also reports the unreadable ${path}: one round names every fault`);
  }
});

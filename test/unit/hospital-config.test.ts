import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { makePki } from '../helpers/pki.js';
import t from 'tap';
import { parseConfig } from '../../config/loader.js';
import { ConfigError } from '../../proxy/errors.js';

/*
 * config/hospital.yaml is documentation that must not rot. The loader reads every PEM
 * file it names, and those live under /etc/wardgate/ on a real deployment, so this test
 * makes throwaway ones, points the text at them and loads it for real.
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

t.test('the hospital example loads once its TLS files exist', async (t) => {
  const made = makePki();
  const dir = made.dir;
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const leaf = made.issue('wardgate.stmary-hospital.example');
  const pki = { caCert: made.caCert, leafCert: leaf.cert, leafKey: leaf.key };

  t.ok(referenced.length >= 5, 'the example names its listener and upstream TLS files under /etc/wardgate/');
  for (const path of referenced) {
    const target = join(dir, path.slice(PREFIX.length));
    mkdirSync(dirname(target), { recursive: true });
    const name = basename(path);
    const source = name.endsWith('.key') ? pki.leafKey : /(^|-)ca\./.test(name) ? pki.caCert : pki.leafCert;
    copyFileSync(source, target);
  }

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

t.test('as shipped, the example fails naming the file, the line and the missing TLS file', async (t) => {
  const first = referenced[0]!;
  const line = text.split('\n').findIndex((l) => !l.trimStart().startsWith('#') && l.includes(first)) + 1;
  t.equal(first, '/etc/wardgate/tls/wardgate.crt', 'the first TLS file is the listener certificate');

  let caught: unknown;
  try {
    parseConfig(text, configFile);
  } catch (err) {
    caught = err;
  }
  t.type(caught, ConfigError, 'missing TLS files are a ConfigError, not a crash');
  if (!(caught instanceof ConfigError)) return;
  const [firstLine = ''] = caught.message.split('\n');
  t.match(firstLine, `hospital.yaml:${line}:`, 'the first message names the file and the line of the bad value');
  t.match(firstLine, 'listen.https.cert', 'the first message names the path inside the config');
  t.match(firstLine, first, 'the first message names the TLS file that could not be read');
  t.equal(caught.path, 'listen.https.cert', 'the error carries the config path of the first fault');
  for (const path of new Set(referenced)) {
    t.match(caught.message, path, `every unreadable file is reported in one round: ${path}`);
  }
});

import { Writable } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { parseConfig } from '../../config/loader.js';
import type { DemoIdp } from '../../proxy/demo/idp.js';
import { startGateway, type Gateway } from '../../proxy/gateway.js';
import { clientCredentialsToken, startTestIdp } from './idp.js';

/*
 * Runs a real wardgate in the test process, built from YAML through the real config
 * loader, listening on ephemeral loopback ports, with its log lines captured.
 *
 * Every route needs a verified identity, so each test process shares one real IdP (the
 * demo's oidc-provider on loopback). Tests about forwarding authenticate with a bearer
 * token that IdP issued (`auth` holds the header); sign-in tests bring their own IdP.
 */

export const TEST_CLIENT = { id: 'wardgate', secret: 'wardgate-test-secret' };
export const API_CLIENT = { id: 'api-client', secret: 'api-client-secret' };
export const API_AUDIENCE = 'https://api.wardgate.test';

interface SharedIdp {
  idp: DemoIdp;
  token: string;
}

let shared: Promise<SharedIdp> | undefined;

/** The IdP shared by the tests of this process, and a bearer token it issued. */
export function sharedIdp(): Promise<SharedIdp> {
  shared ??= (async () => {
    const idp = await startTestIdp({
      clients: [
        { client_id: TEST_CLIENT.id, client_secret: TEST_CLIENT.secret, redirect_uris: ['http://auth.localhost/.wardgate/callback'], grant_types: ['authorization_code', 'refresh_token'] },
        { client_id: API_CLIENT.id, client_secret: API_CLIENT.secret, grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
      ],
      resources: { [API_AUDIENCE]: { scope: 'patient/*.read' } },
    });
    t.teardown(() => idp.close());
    const token = await clientCredentialsToken(idp, API_CLIENT.id, API_CLIENT.secret, API_AUDIENCE, 'patient/*.read');
    return { idp, token };
  })();
  return shared;
}

/** The identity block for a test config. */
export function identityYaml(issuer: string, authPort: number, extra = ''): string {
  return [
    'identity:',
    `  issuer: "${issuer}"`,
    `  clientId: ${TEST_CLIENT.id}`,
    `  clientSecret: ${TEST_CLIENT.secret}`,
    `  authUrl: "http://auth.localhost:${authPort}"`,
    '  bearer:',
    `    audience: ${API_AUDIENCE}`,
    extra,
  ].join('\n');
}

export interface LogLine {
  level: number;
  msg: string;
  kind?: string;
  [field: string]: unknown;
}

export interface TestGateway {
  readonly gateway: Gateway;
  readonly port: number;
  /** Headers that authenticate a request (a bearer token from the shared IdP). */
  readonly auth: { authorization: string };
  readonly token: string;
  readonly adminPort: number;
  readonly logs: LogLine[];
  /** Access-log lines only. */
  access(): LogLine[];
  /** The admin /metrics text. */
  metrics(): Promise<string>;
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  /** Listen on this port (sign-in tests need it known before the config is written). */
  port?: number;
  /** The whole `identity:` block, instead of the shared IdP's. */
  identity?: string;
  now?: () => number;
}

/**
 * Data-plane tests are about forwarding, not policy: a route that does not say who may use
 * it lets in anyone signed in (wardgate itself refuses a route without a policy).
 */
function withDefaultPolicy(routesYaml: string): string {
  const routes = parseYaml(routesYaml) as Array<Record<string, unknown>>;
  for (const route of routes) route.policy ??= { allow: [{ authenticated: true }] };
  return stringifyYaml(routes).replace(/^/gm, '  ');
}

/**
 * `routesYaml` is the YAML list under `routes:` (indented two spaces); `extraYaml` adds
 * top-level keys such as trustedProxies or shutdown.
 */
export async function startTestGateway(routesYaml: string, extraYaml = '', options: TestGatewayOptions = {}): Promise<TestGateway> {
  const { idp, token } = await sharedIdp();
  const text = [
    'listen:',
    `  http: "127.0.0.1:${options.port ?? 0}"`,
    'admin:',
    '  listen: "127.0.0.1:0"',
    'workers: 1',
    options.identity ?? identityYaml(idp.issuer, options.port ?? 1),
    // Grants would default to the file store under /var/lib: tests that want a file say where.
    /^store:/m.test(extraYaml) ? '' : 'store:\n  type: memory',
    extraYaml,
    'routes:',
    withDefaultPolicy(routesYaml),
  ].join('\n');
  const config = parseConfig(text, 'test-gateway.yaml');
  // Forwarding tests authenticate with a bearer token: routes that do not say how clients
  // authenticate accept both here (wardgate's own default is session only).
  for (const route of config.routes) route.auth.methods ??= ['session', 'bearer'];
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  const logger = pino({ level: 'info' }, sink);
  const gateway = await startGateway({ config, logger, admin: true, ...(options.now ? { now: options.now } : {}) });
  return {
    gateway,
    port: gateway.ports.http!,
    auth: { authorization: `Bearer ${token}` },
    token,
    adminPort: gateway.ports.admin!,
    logs,
    access: () => logs.filter((line) => line.kind === 'access'),
    metrics: async () => {
      const res = await fetch(`http://127.0.0.1:${gateway.ports.admin}/metrics`);
      return res.text();
    },
    close: () => gateway.shutdown(),
  };
}

/** The value of the first sample matching `labels` in Prometheus text, or undefined. */
export function sample(metricsText: string, name: string, labels: Record<string, string> = {}): number | undefined {
  return samples(metricsText, name, labels)[0];
}

/** The sum of every sample matching `labels` (0 when none). */
export function total(metricsText: string, name: string, labels: Record<string, string> = {}): number {
  return samples(metricsText, name, labels).reduce((a, b) => a + b, 0);
}

function samples(metricsText: string, name: string, labels: Record<string, string>): number[] {
  const values: number[] = [];
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const pair of (match[3] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) found[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) values.push(Number(match[4]));
  }
  return values;
}

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { durationSchema } from './duration.js';
import { HTTP_TOKEN } from './http-token.js';
import { pathPrefixSchema } from './path-prefix.js';
import { adminSchema } from '../proxy/admin/config.js';
import { grantsSchema } from '../proxy/grants/config.js';
import { storeSchema, type StoreConfig } from '../proxy/store/config.js';
import { notificationsSchema } from '../proxy/notify/config.js';
import { policySchema, usesCriterion } from '../proxy/policy/rules.js';
import { devicesSchema } from '../plugins/device/config.js';
import { networkSchema } from '../plugins/network/config.js';
import { riskSchema } from '../plugins/risk/config.js';

/*
 * The config schema. Every value is checked here, at load, so a running wardgate never
 * meets a config it cannot honour; the loader turns the issues into messages that name
 * the file, the line and the path inside it.
 */

const duration = durationSchema();

export interface ListenAddress {
  host: string;
  port: number;
}

const ADDRESS = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/;
const address = z.string({ error: 'expected an address such as 127.0.0.1:8080' }).transform((text, ctx): ListenAddress => {
  const match = ADDRESS.exec(text);
  const port = match ? Number(match[3]) : NaN;
  const host = match ? (match[1] ?? match[2]!) : '';
  if (!match || port < 0 || port > 65535 || (match[1] !== undefined && isIP(host) !== 6)) {
    ctx.addIssue({ code: 'custom', message: `expected an address such as 127.0.0.1:8080 or [::1]:8443, got "${text}"` });
    return z.NEVER;
  }
  return { host, port };
});

const cidr = z.string({ error: 'expected a CIDR such as 10.0.0.0/8' }).refine((text) => {
  const [ip, bits, extra] = text.split('/');
  const family = isIP(ip ?? '');
  if (!family || bits === undefined || extra !== undefined || !/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}, { error: (issue) => `expected a CIDR such as 10.0.0.0/8 or fd00::/8, got "${String(issue.input)}"` });

const HOSTNAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const hostname = z.string({ error: 'expected a host name such as epic.hospital.example' })
  .transform((text) => text.toLowerCase())
  .refine((text) => HOSTNAME.test(text), {
    error: (issue) => `expected a host name such as epic.hospital.example (no port, scheme or wildcard), got "${String(issue.input)}"`,
  });

const pathPrefix = pathPrefixSchema;

type PemKind = 'certificate' | 'private key';

/** A PEM file, read and parsed at load so a bad one is named here, not by a TLS stack at start. */
function pemFile(baseDir: string, kind: PemKind) {
  return z.string({ error: `expected the path of a PEM ${kind} file` }).transform((text, ctx) => {
    const file = resolve(baseDir, text);
    let content: Buffer;
    try {
      content = readFileSync(file);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `cannot read ${kind} file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` });
      return z.NEVER;
    }
    // Node's crypto reads DER too, but its TLS stack takes only PEM: check for PEM here.
    if (!content.toString('latin1').includes('-----BEGIN ')) {
      ctx.addIssue({ code: 'custom', message: `${file} does not hold a PEM ${kind}` });
      return z.NEVER;
    }
    try {
      if (kind === 'certificate') new X509Certificate(content);
      else createPrivateKey(content);
    } catch {
      ctx.addIssue({ code: 'custom', message: `${file} does not hold a PEM ${kind}` });
      return z.NEVER;
    }
    return content;
  });
}

const upstreamUrl = z.string({ error: 'expected an upstream URL such as https://10.1.2.3:8443' }).transform((text, ctx) => {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password
    || (url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    ctx.addIssue({ code: 'custom', message: `expected an http(s) origin such as https://10.1.2.3:8443 (no path, query or credentials), got "${text}"` });
    return z.NEVER;
  }
  return url;
});

const LOOPBACK_HOST = /^(?:localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\])$/;

/** True for names that never leave the machine, where plain HTTP exposes nothing. */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOST.test(host);
}

/**
 * An https URL, or http on loopback only: cookies, codes and tokens cross these URLs, and
 * plain HTTP is acceptable only where nothing leaves the machine (the demo, tests).
 */
function secureUrl(what: string, example: string, originOnly: boolean) {
  return z.string({ error: `expected ${what} such as ${example}` }).transform((text, ctx) => {
    let url: URL | undefined;
    try {
      url = new URL(text);
    } catch {
      url = undefined;
    }
    const shapeOk = url !== undefined && !url.username && !url.password && !url.search && !url.hash
      && (!originOnly || url.pathname === '/' || url.pathname === '');
    if (!url || !shapeOk || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
      ctx.addIssue({ code: 'custom', message: `expected ${what} such as ${example}${originOnly ? ' (no path, query or credentials)' : ' (no query or credentials)'}, got "${text}"` });
      return z.NEVER;
    }
    if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
      ctx.addIssue({ code: 'custom', message: `expected https: plain http is allowed only for localhost, got "${text}"` });
      return z.NEVER;
    }
    return url;
  });
}

const base64Key = z.string({ error: 'expected a 32-byte key in base64 (openssl rand -base64 32)' }).transform((text, ctx) => {
  const bytes = /^[A-Za-z0-9+/_-]+={0,2}$/.test(text) ? Buffer.from(text, 'base64') : Buffer.alloc(0);
  if (bytes.length !== 32) {
    ctx.addIssue({ code: 'custom', message: `expected a 32-byte key in base64 (openssl rand -base64 32), got ${bytes.length} bytes` });
    return z.NEVER;
  }
  return bytes;
});

// RFC 6749 scope tokens.
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
// Claim headers may not take over framing, credentials, or what wardgate itself sets.
const RESERVED_HEADERS = new Set([
  'host', 'authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'content-length', 'content-type',
  'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'expect', 'forwarded',
  'x-real-ip', 'x-request-id', 'x-client-ip', 'remote-user', 'x-remote-user', 'x-remote-group', 'x-remote-groups',
]);
function isReservedHeader(lower: string): boolean {
  return RESERVED_HEADERS.has(lower) || lower.startsWith('proxy-') || lower.startsWith('x-wardgate-')
    || lower.startsWith('x-forwarded-') || lower.startsWith('sec-');
}
const JWS_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

export function buildConfigSchema(baseDir: string) {
  const certificate = pemFile(baseDir, 'certificate');
  const privateKey = pemFile(baseDir, 'private key');
  const p256Key = privateKey.refine((pem) => {
    const key = createPrivateKey(pem);
    return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
  }, { error: 'expected an EC P-256 private key (ES256)' });

  const upstreamTls = z.strictObject({
    /** CA bundle that signs the upstream's certificate; the system store when absent. */
    ca: certificate.optional(),
    /** Name checked against the upstream's certificate, when it differs from the URL's host. */
    serverName: z.string().min(1).optional(),
    /** Client certificate and key for upstreams that require mutual TLS. */
    cert: certificate.optional(),
    key: privateKey.optional(),
  }).refine((tls) => (tls.cert === undefined) === (tls.key === undefined), {
    error: 'cert and key must be given together',
  });

  const timeouts = z.strictObject({
    connect: duration.default(5_000),
    headers: duration.default(30_000),
    body: duration.default(60_000),
    idle: duration.default(120_000),
  });
  const DEFAULT_TIMEOUTS = { connect: 5_000, headers: 30_000, body: 60_000, idle: 120_000 };

  const route = z.strictObject({
    id: z.string({ error: 'expected a route id' }).regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, {
      error: 'expected a route id of lower-case letters, digits, "-" and "_" (it becomes a metric label)',
    }),
    host: hostname,
    paths: z.array(pathPrefix).min(1, { error: 'expected at least one path prefix' }).default(['/']),
    upstream: z.strictObject({
      url: upstreamUrl,
      tls: upstreamTls.optional(),
      /** Send the client's Host header upstream instead of the upstream URL's host. */
      preserveHost: z.boolean().default(false),
      /** Most connections wardgate keeps open to this upstream. */
      connections: z.number().int().min(1).max(10_000).default(256),
    }),
    timeouts: timeouts.default(DEFAULT_TIMEOUTS),
    websockets: z.boolean().default(false),
    auth: z.strictObject({
      /** How clients prove who they are; bearer needs identity.bearer. Default: session only. */
      methods: z.array(z.enum(['session', 'bearer'])).min(1).optional(),
      /** Plain headers with one claim each, for upstreams that cannot verify the assertion. */
      claimHeaders: z.record(
        z.string().regex(HTTP_TOKEN).transform((name) => name.toLowerCase()).refine((name) => !isReservedHeader(name)),
        z.enum(['sub', 'email', 'name', 'groups', 'acr', 'amr']),
        // Zod reports a bad record key as "Invalid key in record" unless the record says more.
        {
          error: (issue) => {
            if (issue.code !== 'invalid_key') return undefined;
            const name = String(issue.input);
            return HTTP_TOKEN.test(name)
              ? `${name} is a header wardgate sets, strips or needs for HTTP itself; choose another name, such as X-Epic-User`
              : `expected an HTTP header name such as X-Epic-User, got "${name}"`;
          },
        },
      ).default({}),
      /** Send the client's Authorization header upstream (stripped by default). */
      passAuthorization: z.boolean().default(false),
    }).default({ claimHeaders: {}, passAuthorization: false }),
    /** Who may reach the route, re-decided on every request (proxy/policy/). Required: nothing is allowed by default. */
    policy: policySchema,
  });

  const listenerTls = z.strictObject({
    address,
    cert: certificate,
    key: privateKey,
    /** CA whose client certificates are requested (not required) so devices can identify. */
    clientCa: certificate.optional(),
  });

  const identity = z.strictObject({
    /** The hospital's OIDC provider (discovery at issuer/.well-known/openid-configuration). */
    issuer: secureUrl('an issuer URL', 'https://login.hospital.example', false),
    clientId: z.string().min(1),
    clientSecret: z.string().min(1),
    scopes: z.array(z.string().regex(SCOPE_TOKEN, { error: 'expected an OAuth scope token' }))
      .default(['openid', 'email', 'profile', 'groups', 'offline_access'])
      .refine((scopes) => scopes.includes('openid'), { error: 'expected the scopes to include openid' }),
    /** wardgate's own sign-in origin: the one redirect URI registered at the IdP lives here. */
    authUrl: secureUrl('an origin', 'https://access.hospital.example', true),
    /** 32-byte keys; the first seals cookies, all open them (rotation). Ephemeral when absent. */
    cookieKeys: z.array(base64Key).min(1).optional(),
    session: z.strictObject({
      absoluteLifetime: duration.default(12 * 3_600_000),
      /** Shared clinical workstations: an unattended session ends on its own. */
      idleTimeout: duration.default(30 * 60_000),
    }).default({ absoluteLifetime: 12 * 3_600_000, idleTimeout: 30 * 60_000 }),
    assertion: z.strictObject({
      /** EC P-256 keys; the first signs X-Wardgate-Assertion, all are published. Ephemeral when absent. */
      keys: z.array(p256Key).min(1).optional(),
      ttl: duration.default(60_000),
    }).default({ ttl: 60_000 }),
    /** Accept JWT access tokens from API clients (SMART on FHIR apps) for this audience. */
    bearer: z.strictObject({
      audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)], {
        error: (issue) => (issue.code === 'invalid_union' ? 'expected the audience API tokens are issued for (or a list of them), such as https://fhir.hospital.example/fhir' : undefined),
      }),
      algorithms: z.array(z.enum(JWS_ALGORITHMS)).min(1).default(['RS256', 'PS256', 'ES256']),
    }).optional(),
    /** Longest wait for any one request to the IdP. */
    idpTimeout: duration.default(5_000),
  });

  return z.strictObject({
    listen: z.strictObject({
      http: address.optional(),
      https: listenerTls.optional(),
    }).refine((listen) => listen.http !== undefined || listen.https !== undefined, {
      error: 'expected at least one of http or https',
    }),
    /** The admin listener: metrics, health, and the admin API (proxy/admin/config.ts). */
    admin: adminSchema({ address, certificate, privateKey }),
    workers: z.number().int().min(1).max(256).default(() => availableParallelism()),
    trustedProxies: z.array(cidr).default([]),
    log: z.strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      access: z.boolean().default(true),
    }).default({ level: 'info', access: true }),
    shutdown: z.strictObject({ drainTimeout: duration.default(30_000) }).default({ drainTimeout: 30_000 }),
    /** Sessions, grants and revocations; `file` keeps grants and break-glass records across restarts. */
    store: storeSchema(baseDir).prefault({}),
    identity,
    /** Which device is behind a request: client certificates, the inventory, MDM posture assertions. */
    devices: devicesSchema(baseDir).optional(),
    /** Where clients connect from: countries by address, for `country` and `cidr` rules. */
    network: networkSchema(baseDir).optional(),
    /** Signals that raise a request's risk score, for `risk` policy rules. */
    risk: riskSchema.optional(),
    /** Time-boxed, approved access (vendors): who asks, who approves, the bounds. */
    grants: grantsSchema.optional(),
    /** Where access changes and break-glass alerts are sent (Slack/Teams-style webhooks). */
    notifications: notificationsSchema.optional(),
    routes: z.array(route).min(1, { error: 'expected at least one route' }),
  }).superRefine((config, ctx) => {
    const authHost = config.identity.authUrl.hostname;
    const adminAudience = config.admin.api?.bearer?.audience;
    const appAudiences = config.identity.bearer ? [config.identity.bearer.audience].flat() : [];
    if (adminAudience !== undefined && appAudiences.includes(adminAudience)) {
      // Then an app's token (a SMART app's) would be an admin token too, scope permitting.
      ctx.addIssue({ code: 'custom', path: ['admin', 'api', 'bearer', 'audience'], message: `${adminAudience} is also identity.bearer.audience: give the admin API an audience of its own` });
    }
    if (config.workers > 1) {
      // Each worker would make up its own keys: cookies sealed by one could not be opened
      // by another, and upstreams would see assertions signed by keys no JWKS publishes.
      if (!config.identity.cookieKeys) ctx.addIssue({ code: 'custom', path: ['identity', 'cookieKeys'], message: 'expected cookieKeys when workers > 1 (openssl rand -base64 32)' });
      if (!config.identity.assertion.keys) ctx.addIssue({ code: 'custom', path: ['identity', 'assertion', 'keys'], message: 'expected assertion keys when workers > 1 (openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt)' });
    }
    config.routes.forEach((r, index) => {
      if (r.host === authHost) {
        ctx.addIssue({ code: 'custom', path: ['routes', index, 'host'], message: `${r.host} is wardgate's sign-in host (identity.authUrl); give the route its own host` });
      }
      if (r.policy.devices === 'trusted' && !config.devices) {
        ctx.addIssue({ code: 'custom', path: ['routes', index, 'policy', 'devices'], message: 'trusted devices need a devices: section (an inventory or posture assertions) to tell them apart' });
      }
      if (!config.grants && usesCriterion(r.policy, 'grant')) {
        ctx.addIssue({ code: 'custom', path: ['routes', index, 'policy'], message: 'grant rules need a grants: section (who approves access requests)' });
      }
      if (r.auth.methods?.includes('bearer') && !config.identity.bearer) {
        ctx.addIssue({ code: 'custom', path: ['routes', index, 'auth', 'methods'], message: 'bearer needs identity.bearer (the audience API tokens are issued for)' });
      }
    });
    const ids = new Map<string, number>();
    const prefixes = new Map<string, string>();
    config.routes.forEach((r, index) => {
      const earlier = ids.get(r.id);
      if (earlier !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['routes', index, 'id'], message: `duplicate route id "${r.id}" (also routes[${earlier}])` });
      }
      ids.set(r.id, index);
      r.paths.forEach((prefix, p) => {
        const key = `${r.host}${prefix}`;
        const owner = prefixes.get(key);
        if (owner !== undefined) {
          ctx.addIssue({ code: 'custom', path: ['routes', index, 'paths', p], message: `${r.host}${prefix} is already served by route "${owner}"` });
        }
        prefixes.set(key, r.id);
      });
    });
  }).transform(({ store, ...config }) => {
    // Grants and break-glass records must outlive a restart: where they are configured, the
    // file store is the default. Elsewhere nothing needs one, and memory writes no files.
    const durable = config.grants !== undefined || config.routes.some((route) => route.policy.breakGlass !== undefined);
    const settled: StoreConfig = { ...store, type: store.type ?? (durable ? 'file' : 'memory') };
    return { ...config, store: settled };
  });
}

export type WardgateConfig = z.output<ReturnType<typeof buildConfigSchema>>;
export type RouteConfig = WardgateConfig['routes'][number];
export type UpstreamConfig = RouteConfig['upstream'];
export type RouteTimeouts = RouteConfig['timeouts'];

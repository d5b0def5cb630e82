import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { parseDuration } from './duration.js';
import { canonicalPath } from '../proxy/normalize.js';

/*
 * The config schema. Every value is checked here, at load, so a running wardgate never
 * meets a config it cannot honour; the loader turns the issues into messages that name
 * the file, the line and the path inside it.
 */

const duration = z.string({ error: 'expected a duration such as 500ms, 30s, 5m or 1h' }).transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) {
    ctx.addIssue({ code: 'custom', message: `expected a duration such as 500ms, 30s, 5m or 1h, got "${text}"` });
    return z.NEVER;
  }
  return ms;
});

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

const pathPrefix = z.string({ error: 'expected a path prefix such as /api' }).refine(
  (text) => text.startsWith('/') && (text === '/' || !text.endsWith('/')) && canonicalPath(text) === text,
  { error: (issue) => `expected a canonical path prefix such as /api (leading slash, no trailing slash, no dot segments or encoded characters), got "${String(issue.input)}"` },
);

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

export function buildConfigSchema(baseDir: string) {
  const certificate = pemFile(baseDir, 'certificate');
  const privateKey = pemFile(baseDir, 'private key');

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
  });

  const listenerTls = z.strictObject({
    address,
    cert: certificate,
    key: privateKey,
    /** CA whose client certificates are requested (not required) so devices can identify. */
    clientCa: certificate.optional(),
  });

  return z.strictObject({
    listen: z.strictObject({
      http: address.optional(),
      https: listenerTls.optional(),
    }).refine((listen) => listen.http !== undefined || listen.https !== undefined, {
      error: 'expected at least one of http or https',
    }),
    admin: z.strictObject({ listen: address }),
    workers: z.number().int().min(1).max(256).default(() => availableParallelism()),
    trustedProxies: z.array(cidr).default([]),
    log: z.strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      access: z.boolean().default(true),
    }).default({ level: 'info', access: true }),
    shutdown: z.strictObject({ drainTimeout: duration.default(30_000) }).default({ drainTimeout: 30_000 }),
    routes: z.array(route).min(1, { error: 'expected at least one route' }),
  }).superRefine((config, ctx) => {
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
  });
}

export type WardgateConfig = z.output<ReturnType<typeof buildConfigSchema>>;
export type RouteConfig = WardgateConfig['routes'][number];
export type UpstreamConfig = RouteConfig['upstream'];
export type RouteTimeouts = RouteConfig['timeouts'];

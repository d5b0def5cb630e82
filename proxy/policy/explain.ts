import { isIP } from 'node:net';
import { z } from 'zod';
import type { RouteConfig } from '../../config/schema.js';
import { pathPrefixSchema } from '../../config/path-prefix.js';
import { ConfigError } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import { canonicalHost, canonicalPath, withoutParams } from '../normalize.js';
import { describeMissing, explainReason } from '../pages/refusal.js';
import { createRouter } from '../router.js';
import { devicesMode, type RoutePolicy } from '../routes.js';
import { compilePolicy } from './compile.js';
import { UNKNOWN_DEVICE, type DeviceContext, type DeviceProblem, type RequestContext } from './context.js';
import { expected, mappingOf, shown } from './criteria/values.js';
import { POLICY_ERROR, type Decision } from './decision.js';

/*
 * `wardgate policy explain`: one request, described in a JSON file, decided by a route's
 * policy exactly as the gateway would decide it, and the decision told in plain words. A
 * security team tests a policy before shipping it; CI can pin outcomes with --expect.
 * Pure: the CLI reads the files, this parses, decides and formats.
 *
 * The context file (unknown keys are refused everywhere except inside `claims`):
 *
 *   {
 *     "identity": {                       // absent or null: an anonymous request (outcome login)
 *       "sub": "dr.alice",                // required
 *       "email": "...", "name": "...",
 *       "groups": ["clinicians"], "amr": ["hwk", "pin"], "acr": "phr",
 *       "authTime": "2026-11-24T09:55:00Z",   // or epoch SECONDS, as auth_time is
 *       "kind": "session",                // or "bearer" (an API token); default session
 *       "scopes": ["patient/Observation.rs"], // bearer only: sessions carry no scopes
 *       "claims": { "client_id": "cardiology-app" } // what `claim` rules read, as given
 *     },
 *     "session": { "createdAt": ISO or epoch ms, "lastSeenAt": ISO or epoch ms },
 *                                         // session identities only; absent: a session that
 *                                         // began at `time` (just signed in, active now)
 *     "device": { "id", "known", "managed", "compliant", "certificate", "observedAt" (ISO or
 *                 epoch ms), "os", "diskEncrypted", "trusted", "problem" },
 *                                         // absent: a device nothing is known about. known,
 *                                         // managed, compliant default to `trusted` (so
 *                                         // {"trusted": true} is a trusted device, {} an
 *                                         // unknown one); trusted defaults to all three
 *     "network": { "ip": "10.1.2.3", "country": "GB" },  // required: ip is
 *                                         // what cidr rules read, and a made-up default would
 *                                         // pass or fail them silently
 *     "time": "2026-11-24T10:00:00Z",     // or epoch ms; default now. Give it (with a zone:
 *                                         // Z or +01:00) for an answer that stays the same
 *     "request": { "method": "GET", "path": "/chart", "host": "epic.example", "websocket": false },
 *                                         // method default GET, host default the route's;
 *                                         // path required, canonical, and routed to this route;
 *                                         // websocket: a WebSocket handshake (default false)
 *     "risk": 0,                          // 0 to 100, default 0
 *     "grants": [{ "notBefore": ISO or ms, "notAfter": ISO or ms, "paths": ["/x"], "methods": ["GET"] }],
 *                                         // approved grants the identity holds on this route;
 *                                         // default none. paths and methods optional
 *     "breakGlass": { "endsAt": ISO or ms }  // emergency access opened on this route; default none
 *   }
 *
 * Combinations the gateway never builds are refused rather than decided: a session for a
 * bearer token or an anonymous request, scopes on a session, a trusted device that is not
 * known, managed and compliant, timestamps after the request's time, a path the router
 * would send to another route.
 */

const HOUR_MS = 3_600_000;
// Epoch ms below this (March 1973) are almost surely seconds, and seconds above it ms.
const SECONDS_OR_MS = 1e11;

/** Every device problem, so a context can name one; a Record so a new problem must be added here. */
const PROBLEMS: Record<DeviceProblem, true> = {
  'device-unknown': true,
  'device-unmanaged': true,
  'device-noncompliant': true,
  'device-mismatch': true,
  'posture-stale': true,
  'posture-invalid': true,
  'posture-signature-invalid': true,
  'posture-expired': true,
  'posture-replayed': true,
  'certificate-unknown': true,
};

// An ISO 8601 date-time with a zone: without one it would be read in the zone of whoever
// runs the command, and a timeWindow rule would answer differently on another machine.
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/i;

/** A point in time as ISO 8601 with a zone, or an epoch number in `unit`; parsed to epoch ms. */
function instant(unit: 'ms' | 's') {
  const what = `an ISO date-time with a zone such as "2026-11-24T10:00:00Z", or epoch ${unit === 'ms' ? 'milliseconds' : 'seconds'}`;
  return z.unknown().transform((input, ctx): number => {
    if (typeof input === 'string') {
      const ms = ISO_DATE_TIME.test(input) ? Date.parse(input) : NaN;
      if (Number.isFinite(ms)) return ms;
    } else if (typeof input === 'number' && Number.isFinite(input) && input >= 0) {
      if (unit === 'ms' && input > 0 && input < SECONDS_OR_MS) {
        ctx.addIssue({ code: 'custom', message: `expected epoch milliseconds, got ${input}, which looks like seconds (multiply by 1000)` });
        return z.NEVER;
      }
      if (unit === 's' && input >= SECONDS_OR_MS) {
        ctx.addIssue({ code: 'custom', message: `expected epoch seconds, got ${input}, which looks like milliseconds (divide by 1000)` });
        return z.NEVER;
      }
      return unit === 'ms' ? input : input * 1000;
    }
    ctx.addIssue({ code: 'custom', message: `expected ${what}, got ${shown(input)}` });
    return z.NEVER;
  });
}

const text = (what: string) => z.string({ error: expected(what) })
  .refine((input) => input.length > 0, { error: `expected ${what}, got an empty string` });
const strings = (what: string) => z.array(z.string({ error: expected(what) }), { error: expected('a list of strings') });
const flag = z.boolean({ error: expected('true or false') });

const identitySchema = z.strictObject({
  sub: text('a subject such as "dr.alice"'),
  email: z.string({ error: expected('an email address (a string)') }).optional(),
  name: z.string({ error: expected('a name (a string)') }).optional(),
  groups: strings('a group name (a string)').default([]),
  amr: strings('an authentication method such as "hwk"').default([]),
  acr: text('an authentication context class such as "phr"').optional(),
  authTime: instant('s').optional(),
  scopes: strings('an OAuth scope (a string)').optional(),
  claims: z.record(z.string(), z.unknown(), { error: expected('a mapping of claim names to values') }).default({}),
  kind: z.enum(['session', 'bearer'], { error: expected('"session" or "bearer"') }).default('session'),
}, { error: mappingOf('sub, email, name, groups, amr, acr, authTime, scopes, claims, kind', 'a mapping such as { "sub": "dr.alice" }, or null for an anonymous request') });

const sessionSchema = z.strictObject({
  createdAt: instant('ms'),
  lastSeenAt: instant('ms'),
}, { error: mappingOf('createdAt, lastSeenAt', 'a mapping { "createdAt": ..., "lastSeenAt": ... }') });

const deviceSchema = z.strictObject({
  id: text('a device id such as "WS-0042"').optional(),
  known: flag.optional(),
  managed: flag.optional(),
  compliant: flag.optional(),
  certificate: flag.optional(),
  observedAt: instant('ms').optional(),
  os: z.string({ error: expected('an operating system name (a string)') }).optional(),
  diskEncrypted: flag.optional(),
  trusted: flag.optional(),
  problem: z.enum(Object.keys(PROBLEMS) as [DeviceProblem, ...DeviceProblem[]], {
    error: (issue) => `expected a device problem: one of ${Object.keys(PROBLEMS).join(', ')}, got ${shown(issue.input)}`,
  }).optional(),
}, { error: mappingOf('id, known, managed, compliant, certificate, observedAt, os, diskEncrypted, trusted, problem', 'a mapping such as { "trusted": true }') });

const networkSchema = z.strictObject({
  ip: z.string({ error: expected('an IP address such as "10.1.2.3"') })
    .refine((input) => isIP(input) !== 0, { error: (issue) => `expected an IPv4 or IPv6 address such as "10.1.2.3", got ${shown(issue.input)}` }),
  country: z.string({ error: expected('a two-letter country code such as "GB"') })
    .refine((input) => /^[A-Za-z]{2}$/.test(input), { error: (issue) => `expected a two-letter ISO 3166-1 country code such as "GB", got ${shown(issue.input)}` })
    // Upper case, as GeoIP providers report it and country rules compare it.
    .transform((input) => input.toUpperCase())
    .optional(),
}, { error: mappingOf('ip, country', 'a mapping such as { "ip": "10.1.2.3", "country": "GB" }') });

// RFC 9110 token, upper case only: Node's parser takes no other, and the method criterion
// compares as sent, so a lower-case method here could match nothing the gateway sees.
const METHOD = /^[!#$%&'*+.^_`|~0-9A-Z-]+$/;

const requestSchema = z.strictObject({
  method: z.string({ error: expected('an HTTP method such as "GET"') }).superRefine((input, ctx) => {
    if (!METHOD.test(input)) ctx.addIssue({ code: 'custom', message: `expected an HTTP method in upper case such as "GET", got ${shown(input)}` });
    else if (input === 'CONNECT' || input === 'TRACE') ctx.addIssue({ code: 'custom', message: `${input} is refused before any policy sees it` });
  }).default('GET'),
  path: z.string({ error: expected('a path such as "/chart"') }).superRefine((input, ctx) => {
    if (input.includes('?') || input.includes('#')) {
      ctx.addIssue({ code: 'custom', message: `expected the path alone, without a query or fragment (policies read the path only), got ${shown(input)}` });
      return;
    }
    const canonical = canonicalPath(input);
    if (canonical === undefined) {
      ctx.addIssue({ code: 'custom', message: `wardgate refuses ${shown(input)} (400) before any policy sees it: it has no canonical form (an encoded slash, a backslash, a bad escape, or .. above the root)` });
    } else if (canonical !== input) {
      ctx.addIssue({ code: 'custom', message: `expected a canonical path, got ${shown(input)}: wardgate would decide on ${shown(canonical)}; write that` });
    }
  }),
  host: z.string({ error: expected('a host name such as "epic.example"') }).superRefine((input, ctx) => {
    const canonical = canonicalHost(input);
    if (canonical !== input) {
      ctx.addIssue({ code: 'custom', message: canonical === undefined
        ? `expected a host name such as "epic.example", got ${shown(input)}`
        : `expected a canonical host name (lower case, no port), got ${shown(input)}: wardgate would route ${shown(canonical)}; write that` });
    }
  }).optional(),
  /** A WebSocket handshake (a GET): grants narrowed to methods do not open one. */
  websocket: z.boolean({ error: expected('true or false') }).optional(),
}, { error: mappingOf('method, path, host, websocket', 'a mapping such as { "method": "GET", "path": "/chart" }') });

const contextSchema = z.strictObject({
  identity: identitySchema.nullable().optional(),
  session: sessionSchema.optional(),
  device: deviceSchema.optional(),
  network: networkSchema,
  time: instant('ms').optional(),
  request: requestSchema,
  risk: z.number({ error: expected('a risk score from 0 to 100') })
    .refine((input) => input >= 0 && input <= 100, { error: (issue) => `expected a risk score from 0 to 100, got ${shown(issue.input)}` })
    .default(0),
  grants: z.array(z.strictObject({
    id: z.string().default('g_explain'),
    notBefore: instant('ms'),
    notAfter: instant('ms'),
    paths: z.array(pathPrefixSchema).min(1).optional(),
    methods: z.array(z.string().regex(METHOD, { error: 'expected an HTTP method in upper case such as "GET"' })).min(1).optional(),
  }, { error: mappingOf('id, notBefore, notAfter, paths, methods', 'a grant such as { "notBefore": "...", "notAfter": "..." }') }), { error: expected('a list of grants') }).default([]),
  breakGlass: z.strictObject({ id: z.string().default('bg_explain'), endsAt: instant('ms') }, { error: mappingOf('id, endsAt', 'a mapping such as { "endsAt": "2026-11-24T11:00:00Z" }') }).optional(),
}, { error: mappingOf('identity, session, device, network, time, request, risk, grants, breakGlass', 'a JSON object with at least network and request') });

type ContextInput = z.output<typeof contextSchema>;

/** A route as far as deciding which requests reach it: its id, host and path prefixes. */
export type RoutedAt = Pick<RouteConfig, 'id' | 'host' | 'paths'>;

export interface ContextOptions {
  /** The context file's name, which every error message begins with. */
  file: string;
  /** The route whose policy decides: its host is request.host's default. */
  route: RoutedAt;
  /** Every route of the config, so a request the router would send elsewhere is refused. */
  routes: readonly RoutedAt[];
  /** Epoch ms: `time` when the file gives none. */
  now: number;
}

type Issue = { path: ReadonlyArray<PropertyKey>; message: string };

/** `identity.groups[1]`: the place in the JSON, as config errors name theirs. */
function jsonPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? String(segment) : `.${String(segment)}`;
  }
  return out;
}

function fail(file: string, issues: readonly [Issue, ...Issue[]]): never {
  const lines = issues.map((issue) => `${file}: ${issue.path.length ? `${jsonPath(issue.path)}: ` : ''}${issue.message}`);
  const error = new ConfigError(file, jsonPath(issues[0].path), issues[0].message);
  // Every fault at once, one a line, as the config loader reports several.
  error.message = lines.join('\n');
  throw error;
}

function zodIssues(error: z.ZodError): [Issue, ...Issue[]] {
  // A failed parse has at least one issue, and each gives at least one here.
  return error.issues.flatMap((issue): Issue[] => {
    // An unknown key is named in its path, as the config loader does (routes[0].upstreem).
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: [...issue.path, key], message: issue.message.replace(/^unknown key[^:]*:/, `unknown key "${key}":`) }));
    }
    return [{ path: issue.path, message: issue.message }];
  }) as [Issue, ...Issue[]];
}

/** The device the gateway would have built from these facts; pushes an issue for impossible ones. */
function deviceOf(given: ContextInput['device'], issues: Issue[]): DeviceContext {
  if (given === undefined) return UNKNOWN_DEVICE;
  const vouched = given.trusted === true;
  const known = given.known ?? vouched;
  const managed = given.managed ?? vouched;
  const compliant = given.compliant ?? vouched;
  // The device provider's order: the first fact that fails is the problem; all holding and
  // still not trusted can only be a stale posture.
  const derived: DeviceProblem | undefined = !known ? 'device-unknown'
    : !managed ? 'device-unmanaged'
      : !compliant ? 'device-noncompliant'
        : given.trusted === false ? 'posture-stale'
          : undefined;
  const problem = given.problem ?? derived;
  const trusted = given.trusted ?? problem === undefined;
  if (trusted && (!known || !managed || !compliant)) {
    issues.push({ path: ['device', 'trusted'], message: 'a trusted device is known, managed and compliant; set those true, or trusted false' });
  }
  if (trusted && given.problem !== undefined) {
    issues.push({ path: ['device', 'problem'], message: 'a trusted device has no problem; leave problem out, or set trusted false' });
  }
  const certificate = given.certificate ?? false;
  return {
    source: certificate ? 'certificate' : known ? 'posture' : 'none',
    id: given.id,
    known,
    managed,
    compliant,
    observedAt: given.observedAt,
    certificate,
    os: given.os,
    diskEncrypted: given.diskEncrypted,
    trusted,
    problem: trusted ? undefined : problem,
  };
}

const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * The RequestContext a parsed JSON value describes, checked as the gateway would build it.
 * Throws a ConfigError naming the file and the JSON path of every fault.
 */
export function parseContext(input: unknown, options: ContextOptions): RequestContext {
  const parsed = contextSchema.safeParse(input);
  if (!parsed.success) fail(options.file, zodIssues(parsed.error));
  const given = parsed.data;
  const issues: Issue[] = [];
  const time = given.time ?? options.now;
  const future = (ms: number | undefined): boolean => ms !== undefined && ms > time;

  let identity: Identity | undefined;
  if (given.identity) {
    const { kind, scopes, authTime } = given.identity;
    if (kind === 'session' && scopes !== undefined) {
      issues.push({ path: ['identity', 'scopes'], message: 'only bearer tokens carry scopes; add "kind": "bearer", or leave scopes out' });
    }
    if (future(authTime)) issues.push({ path: ['identity', 'authTime'], message: `after the request's time (${iso(time)})` });
    identity = {
      kind,
      sub: given.identity.sub,
      email: given.identity.email,
      name: given.identity.name,
      groups: given.identity.groups,
      amr: given.identity.amr,
      acr: given.identity.acr,
      // Seconds, as the ID token's auth_time.
      authTime: authTime === undefined ? undefined : Math.floor(authTime / 1000),
      scopes: scopes ?? [],
      claims: given.identity.claims,
      idpSid: undefined,
      sessionId: undefined,
      // The pipeline refuses an expired identity before decide, so the one a context holds
      // is live; no criterion reads the expiry.
      expiresAt: time + HOUR_MS,
    };
  }

  let session = given.session;
  if (session !== undefined) {
    if (!identity) {
      issues.push({ path: ['session'], message: 'an anonymous request has no session; give an identity, or leave session out' });
    } else if (identity.kind === 'bearer') {
      issues.push({ path: ['session'], message: 'a bearer token has no session (sessions are for browsers); leave session out, or make identity.kind "session"' });
    }
    if (session.lastSeenAt < session.createdAt) issues.push({ path: ['session', 'lastSeenAt'], message: `before session.createdAt (${iso(session.createdAt)})` });
    if (future(session.createdAt)) issues.push({ path: ['session', 'createdAt'], message: `after the request's time (${iso(time)})` });
    if (future(session.lastSeenAt)) issues.push({ path: ['session', 'lastSeenAt'], message: `after the request's time (${iso(time)})` });
  } else if (identity?.kind === 'session') {
    // A signed-in browser always has a session: by default one that has just begun.
    session = { createdAt: time, lastSeenAt: time };
  }

  const device = deviceOf(given.device, issues);
  if (future(device.observedAt)) issues.push({ path: ['device', 'observedAt'], message: `after the request's time (${iso(time)})` });

  const { route } = options;
  const host = given.request.host ?? route.host;
  const path = given.request.path;
  if (host !== route.host) {
    issues.push({ path: ['request', 'host'], message: `route "${route.id}" serves ${route.host}, got ${shown(host)}` });
  } else {
    const reached = createRouter(options.routes).match(host, withoutParams(path));
    if (reached === undefined) {
      issues.push({ path: ['request', 'path'], message: `route "${route.id}" serves ${route.paths.join(', ')} on ${host}; ${shown(path)} reaches no route (404)` });
    } else if (reached.id !== route.id) {
      issues.push({ path: ['request', 'path'], message: `${host}${path} goes to route "${reached.id}", not "${route.id}"; explain it with --route ${reached.id}` });
    }
  }

  if (!identity && given.grants.length > 0) issues.push({ path: ['grants'], message: 'grants belong to a signed-in person; give an identity, or leave grants out' });
  if (!identity && given.breakGlass) issues.push({ path: ['breakGlass'], message: 'break-glass access belongs to a signed-in person; give an identity, or leave breakGlass out' });
  given.grants.forEach((grant, index) => {
    if (grant.notAfter <= grant.notBefore) issues.push({ path: ['grants', index, 'notAfter'], message: 'a grant\'s window ends after it starts' });
  });

  if (issues.length > 0) fail(options.file, issues as [Issue, ...Issue[]]);
  return {
    identity,
    session,
    device,
    network: { ip: given.network.ip, country: given.network.country },
    time,
    request: given.request.websocket
      ? { method: given.request.method, host, path: withoutParams(path), websocket: true }
      : { method: given.request.method, host, path: withoutParams(path) },
    risk: given.risk,
    grants: given.grants.map((grant) => ({ id: grant.id, notBefore: grant.notBefore, notAfter: grant.notAfter, paths: grant.paths, methods: grant.methods })),
    breakGlass: given.breakGlass,
  };
}

/** The context file's text parsed as JSON, then as a context. */
export function parseContextJson(textValue: string, options: ContextOptions): RequestContext {
  let value: unknown;
  try {
    value = JSON.parse(textValue);
  } catch (err) {
    throw new ConfigError(options.file, '', `invalid JSON: ${(err as Error).message}`);
  }
  return parseContext(value, options);
}

/** A decision with what the output needs to put it in context. */
export interface Explanation {
  readonly route: string;
  readonly host: string;
  readonly devices: RoutePolicy['devices'];
  /** The request's time, epoch ms (now, when the context gave none). */
  readonly time: number;
  readonly decision: Decision;
  readonly remediation: string | undefined;
  readonly hideDetails: boolean;
  /** What the policy threw, when it did (the gateway then denies with policy-error). */
  readonly error: string | undefined;
}

/**
 * Decides the context with the route's policy compiled as the gateway compiles it (the
 * same device-mode default), without what a route needs beyond its policy (upstream pools,
 * metrics): nothing is opened or contacted.
 */
export function explainDecision(route: Pick<RouteConfig, 'id' | 'host' | 'policy'>, devicesConfigured: boolean, ctx: RequestContext): Explanation {
  const devices = devicesMode(route.policy, devicesConfigured);
  const policy = compilePolicy(route.policy, { requireTrustedDevice: devices === 'trusted' });
  // As the decide stage does: a policy that throws denies, and the operator sees why.
  let decision: Decision;
  let error: string | undefined;
  try {
    decision = policy.decide(ctx);
  } catch (err) {
    decision = POLICY_ERROR;
    error = err instanceof Error ? err.message : String(err);
  }
  return {
    route: route.id,
    host: route.host,
    devices,
    time: ctx.time,
    decision,
    error,
    remediation: route.policy.remediation,
    hideDetails: route.policy.hideDetails,
  };
}

/** 900000 as 15m: the largest unit that divides it. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [['h', HOUR_MS], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

function ruleLine(decision: Decision): string {
  if (decision.rule !== undefined) return decision.rule;
  if (decision.outcome === 'login') return 'none: not signed in (no identity), so no allow rule can match yet';
  if (decision.closest !== undefined) return `none matched; closest: ${decision.closest}`;
  return 'none: the policy failed';
}

/** The explanation for people: outcome, deciding rule, reasons in plain words, what to do. */
export function formatExplanation(e: Explanation): string {
  const { decision } = e;
  const lines = [
    `route:    ${e.route} (${e.host}), devices: ${e.devices}`,
    `time:     ${iso(e.time)}`,
    `outcome:  ${decision.outcome}`,
    `rule:     ${ruleLine(decision)}`,
  ];
  if (decision.reasons.length > 0) {
    lines.push('reasons:');
    const width = Math.max(...decision.reasons.map((reason) => reason.length));
    for (const reason of decision.reasons) {
      const words = explainReason(reason);
      lines.push(words ? `  ${reason.padEnd(width)}  ${words}` : `  ${reason}`);
    }
  }
  if (decision.missing.length > 0) {
    lines.push('missing:');
    for (const category of decision.missing) lines.push(`  ${describeMissing(category)} (${category})`);
  }
  const stepUp = decision.stepUp;
  if (stepUp) {
    const asks = [
      ...(stepUp.acr ? [`acr ${stepUp.acr.join(' or ')}`] : []),
      ...(stepUp.amr ? [`amr ${stepUp.amr.join(' + ')}`] : []),
      ...(stepUp.maxAgeMs !== undefined ? [`signed in within ${formatDuration(stepUp.maxAgeMs)}`] : []),
    ];
    lines.push(`step-up:  sign in again${asks.length ? ` with ${asks.join(', ')}` : ' (a new session)'}`);
  }
  if (e.error !== undefined) lines.push(`error:    ${e.error}`);
  if (decision.outcome === 'deny') {
    if (e.remediation) lines.push(`remediation: ${e.remediation}`);
    // What the user is shown differs from this explanation: say so.
    if (e.hideDetails) lines.push('note:     the deny page hides these details (hideDetails: true)');
  }
  return `${lines.join('\n')}\n`;
}

/** The explanation for machines: the Decision as it is, with its route; absent fields are null. */
export function explanationJson(e: Explanation): string {
  const { decision } = e;
  return `${JSON.stringify({
    route: e.route,
    devices: e.devices,
    time: iso(e.time),
    outcome: decision.outcome,
    reasons: decision.reasons,
    rule: decision.rule ?? null,
    closest: decision.closest ?? null,
    missing: decision.missing,
    stepUp: decision.stepUp ?? null,
    ...(e.error !== undefined ? { error: e.error } : {}),
  }, null, 2)}\n`;
}

export const OUTCOMES: readonly Decision['outcome'][] = ['allow', 'deny', 'login', 'step-up'];

import { randomBytes, randomUUID } from 'node:crypto';
import { lookup as dnsLookup } from 'node:dns';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, LookupFunction } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { Agent, fetch as undiciFetch, type RequestInit as UndiciRequestInit } from 'undici';
import { html, type Html } from './page.js';

/*
 * The demo identity provider: a real OpenID Provider (oidc-provider) with five fixed hospital
 * users, so wardgate's relying party can be shown and tested against the real protocol (PKCE,
 * refresh rotation, back-channel logout, JWT access tokens for APIs) without an external IdP.
 *
 * The sign-in page asks for no secret: the person picks a user and how they "authenticated".
 * What matters for wardgate is what the IdP *asserts* (amr, acr, auth_time), and letting the
 * person pick a password even when the application asked for a security key is deliberate:
 * the relying party must notice the weaker result itself.
 *
 * oidc-provider is a devDependency and ships no type declarations; the small part of its API
 * used here is declared below and the module is loaded at run time (see loadOidcProvider).
 */

// ---------------------------------------------------------------------------------------------
// Users

export type DemoMethod = 'hwk' | 'pwd';

export interface DemoUser {
  id: string;
  name: string;
  email: string;
  groups: readonly string[];
  /** How this user can sign in, strongest first. */
  methods: readonly DemoMethod[];
}

export type DemoUserId = 'dr.alice' | 'nurse.bob' | 'rad.carol' | 'vendor.dave' | 'admin.erin' | 'sec.frank';

export const DEMO_USERS: Readonly<Record<DemoUserId, DemoUser>> = Object.freeze({
  'dr.alice': { id: 'dr.alice', name: 'Dr Alice Hart', email: 'alice@hospital.example', groups: ['clinicians'], methods: ['hwk', 'pwd'] },
  'nurse.bob': { id: 'nurse.bob', name: 'Bob Okafor', email: 'bob@hospital.example', groups: ['clinicians'], methods: ['pwd'] },
  'rad.carol': { id: 'rad.carol', name: 'Dr Carol Lindqvist', email: 'carol@hospital.example', groups: ['radiology', 'clinicians'], methods: ['hwk', 'pwd'] },
  'vendor.dave': { id: 'vendor.dave', name: 'Dave Brenner', email: 'dave@devicevendor.example', groups: ['vendor-support'], methods: ['pwd'] },
  'admin.erin': { id: 'admin.erin', name: 'Erin Walsh', email: 'erin@hospital.example', groups: ['security-admins'], methods: ['hwk', 'pwd'] },
  // A second approver, for grants that need two of them.
  'sec.frank': { id: 'sec.frank', name: 'Frank Osei', email: 'frank@hospital.example', groups: ['security-admins'], methods: ['hwk', 'pwd'] },
});

/** What the IdP asserts for each way of signing in (RFC 8176 amr values). */
export const METHOD_RESULT: Readonly<Record<DemoMethod, { amr: readonly string[]; acr: string; label: string }>> = Object.freeze({
  // A security key is proof of possession of a hardware key, unlocked with a PIN.
  hwk: { amr: ['hwk', 'pin'], acr: 'phr', label: 'Security key' },
  pwd: { amr: ['pwd'], acr: 'pwd', label: 'Password' },
});

function findUser(id: string): DemoUser | undefined {
  return Object.hasOwn(DEMO_USERS, id) ? DEMO_USERS[id as DemoUserId] : undefined;
}

function isMethod(value: string): value is DemoMethod {
  return value === 'hwk' || value === 'pwd';
}

// ---------------------------------------------------------------------------------------------
// Options and result

export interface DemoIdpClient {
  client_id: string;
  client_secret?: string;
  redirect_uris?: string[];
  post_logout_redirect_uris?: string[];
  backchannel_logout_uri?: string;
  grant_types?: string[];
  response_types?: string[];
  token_endpoint_auth_method?: string;
  scope?: string;
}

/** Lifetimes in seconds, named as oidc-provider names its models. */
export interface DemoIdpTtl {
  AccessToken?: number;
  IdToken?: number;
  RefreshToken?: number;
  Session?: number;
  Interaction?: number;
  ClientCredentials?: number;
  AuthorizationCode?: number;
  Grant?: number;
}

export interface DemoIdpOptions {
  /** 0 picks a free port. */
  port: number;
  clients: DemoIdpClient[];
  /**
   * Resource indicators (http:// or https:// URLs) that get JWT access tokens, with the
   * scopes each accepts and, when listed, the only clients that may ask for it (the admin
   * API's audience is not for every app).
   */
  resources?: Record<string, { scope: string; clients?: readonly string[] }>;
  ttl?: DemoIdpTtl;
  logger?: (msg: string, fields?: object) => void;
}

export interface DemoIdp {
  /** `http://localhost:<port>` */
  issuer: string;
  port: number;
  provider: Provider;
  close(): Promise<void>;
  /**
   * Ends every IdP session of `user` (only the one with `sid`, when given), revokes the grants
   * made in them, and sends back-channel logout to clients that have a backchannel_logout_uri.
   * Every session is ended even if a delivery fails; failed deliveries then reject the promise.
   */
  backchannelLogout(user: string, sid?: string): Promise<void>;
  /** Makes every further refresh of `user`'s refresh tokens fail (invalid_grant), e.g. an account disabled at the IdP. */
  disableUser(user: string): void;
  enableUser(user: string): void;
}

const DEFAULT_TTL: Required<DemoIdpTtl> = {
  AccessToken: 600,
  IdToken: 600,
  RefreshToken: 86_400,
  Session: 86_400,
  Interaction: 600,
  ClientCredentials: 3600,
  AuthorizationCode: 60,
  Grant: 86_400,
};

const SCOPES = ['openid', 'email', 'profile', 'groups', 'offline_access'];

// ---------------------------------------------------------------------------------------------
// The part of oidc-provider's API used here (it has no type declarations of its own).

export interface ProviderClient {
  clientId: string;
  clientName?: string;
  scope?: string;
  backchannelLogoutUri?: string;
  grantTypeAllowed(type: string): boolean;
  backchannelLogout(sub: string, sid: string | undefined): Promise<void>;
}

export interface ProviderGrant {
  jti: string;
  accountId: string;
  clientId: string;
  exp?: number;
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: string[]): void;
  addResourceScope(resource: string, scope: string): void;
  save(ttl?: number): Promise<string>;
}

export interface InteractionDetails {
  uid: string;
  prompt: { name: string; reasons: string[]; details: Record<string, unknown> };
  params: Record<string, unknown>;
  session?: { accountId?: string; uid?: string };
  grantId?: string;
}

export type InteractionResults =
  | { login: { accountId: string; amr?: string[]; acr?: string; ts?: number; remember?: boolean } }
  | { consent: { grantId: string } }
  | { error: string; error_description?: string };

export interface Provider {
  readonly issuer: string;
  proxy: boolean;
  callback(): (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
  interactionFinished(req: IncomingMessage, res: ServerResponse, result: InteractionResults, options?: { mergeWithLastSubmission?: boolean }): Promise<void>;
  urlFor(name: string, params?: Record<string, string>): string;
  on(event: string, listener: (...args: never[]) => void): unknown;
  readonly Client: { find(id: string): Promise<ProviderClient | undefined> };
  readonly Grant: { new (init: { accountId: string; clientId: string }): ProviderGrant; find(id: string): Promise<ProviderGrant | undefined> };
}

/** The Koa context oidc-provider hands to configuration functions (the parts used here). */
interface ProviderContext {
  host: string;
  type: string;
  status: number;
  body: unknown;
  oidc?: {
    provider: Provider;
    client?: ProviderClient;
    account?: { accountId: string };
    session?: { accountId?: string; exp?: number; grantIdFor(clientId: string): string | undefined };
    result?: { consent?: { grantId?: string } };
    params?: Record<string, unknown>;
    requestParamOIDCScopes?: Set<string>;
    requestParamClaims?: Set<string>;
    requestParamScopes?: Set<string>;
    resourceServers?: Record<string, { scope?: string }>;
  };
}

interface ProviderCheck {
  readonly reason: string;
}

interface OidcProviderModule {
  Provider: new (issuer: string, configuration: object) => Provider;
  errors: {
    InvalidTarget: new (description?: string) => Error;
    SessionNotFound: new (description?: string) => Error;
  };
  interactionPolicy: {
    base(): Array<{ name: string; checks: { add(check: ProviderCheck, index?: number): void } }>;
    Check: new (reason: string, description: string, check: (ctx: ProviderContext) => boolean) => ProviderCheck;
  };
}

// A variable specifier keeps tsc from looking for declarations the package does not ship.
const OIDC_PROVIDER_MODULE: string = 'oidc-provider';

async function loadOidcProvider(): Promise<OidcProviderModule> {
  return (await import(OIDC_PROVIDER_MODULE)) as OidcProviderModule;
}

// ---------------------------------------------------------------------------------------------
// Storage

interface StoredPayload {
  [key: string]: unknown;
  grantId?: string;
  uid?: string;
  accountId?: string;
  consumed?: number;
  authorizations?: Record<string, { sid?: string; grantId?: string } | undefined>;
}

/** Models whose entries carry a grantId that revocation follows; others (Interaction, Session) may mention one too. */
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest', 'PreAuthorizedCode']);

interface StoredEntry {
  payload: StoredPayload;
  expiresAt: number | undefined;
}

/*
 * An in-memory store per IdP. oidc-provider's own memory adapter would do, but this one lets
 * backchannelLogout and disableUser find a user's sessions, and keeps two IdPs in one test
 * process apart.
 */
class DemoStore {
  private readonly entries = new Map<string, StoredEntry>();
  private readonly sessionUids = new Map<string, string>();
  private readonly grants = new Map<string, Set<string>>();
  private lastSweep = 0;

  get(key: string): StoredPayload | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      this.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  set(model: string, id: string, payload: StoredPayload, expiresIn: number | undefined): void {
    const key = `${model}:${id}`;
    if (this.entries.has(key)) this.delete(key);
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    this.entries.set(key, { payload, expiresAt });
    if (model === 'Session' && typeof payload.uid === 'string') this.sessionUids.set(payload.uid, id);
    if (GRANTABLE.has(model) && typeof payload.grantId === 'string') {
      const members = this.grants.get(payload.grantId) ?? new Set<string>();
      members.add(key);
      this.grants.set(payload.grantId, members);
    }
    // Expired entries are otherwise only dropped when read; a sweep a minute bounds memory.
    if (Date.now() - this.lastSweep > 60_000) this.sweep();
  }

  delete(key: string): void {
    const entry = this.entries.get(key);
    this.entries.delete(key);
    if (!entry) return;
    const { payload } = entry;
    const id = key.slice(key.indexOf(':') + 1);
    if (typeof payload.uid === 'string' && this.sessionUids.get(payload.uid) === id) this.sessionUids.delete(payload.uid);
    if (typeof payload.grantId === 'string') {
      const members = this.grants.get(payload.grantId);
      members?.delete(key);
      if (members?.size === 0) this.grants.delete(payload.grantId);
    }
  }

  sessionIdByUid(uid: string): string | undefined {
    return this.sessionUids.get(uid);
  }

  /** Deletes every token issued under the grant (not the grant itself, as oidc-provider expects). */
  revokeTokens(grantId: string): void {
    for (const key of [...(this.grants.get(grantId) ?? [])]) this.delete(key);
    this.grants.delete(grantId);
  }

  /** Deletes every token issued under the grant, and the grant. */
  revokeGrant(grantId: string): void {
    this.revokeTokens(grantId);
    this.delete(`Grant:${grantId}`);
  }

  /** Live sessions, as [id, payload]. */
  sessions(): Array<[string, StoredPayload]> {
    const found: Array<[string, StoredPayload]> = [];
    for (const key of [...this.entries.keys()]) {
      if (!key.startsWith('Session:')) continue;
      const payload = this.get(key);
      if (payload) found.push([key.slice('Session:'.length), payload]);
    }
    return found;
  }

  private sweep(): void {
    const now = Date.now();
    this.lastSweep = now;
    for (const [key, entry] of [...this.entries]) {
      if (entry.expiresAt !== undefined && entry.expiresAt <= now) this.delete(key);
    }
  }
}

/** The adapter interface oidc-provider calls, one instance per model (no device flow, so no findByUserCode). */
class DemoAdapter {
  constructor(
    private readonly model: string,
    private readonly store: DemoStore,
  ) {}

  async upsert(id: string, payload: StoredPayload, expiresIn?: number): Promise<void> {
    this.store.set(this.model, id, payload, expiresIn);
  }

  async find(id: string): Promise<StoredPayload | undefined> {
    return this.store.get(`${this.model}:${id}`);
  }

  async findByUid(uid: string): Promise<StoredPayload | undefined> {
    const id = this.store.sessionIdByUid(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id: string): Promise<void> {
    const payload = this.store.get(`${this.model}:${id}`);
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id: string): Promise<void> {
    this.store.delete(`${this.model}:${id}`);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    this.store.revokeTokens(grantId);
  }
}

// ---------------------------------------------------------------------------------------------
// Outgoing requests

/*
 * Browsers resolve every `*.localhost` name to loopback themselves; glibc does not, and the
 * demo's relying parties live at names like `epic.localhost`. oidc-provider's own dispatcher
 * also refuses loopback addresses (SSRF protection), which is right for a real IdP but would
 * stop every back-channel logout in the demo, where all relying parties are on this machine.
 */
const localhostLookup: LookupFunction = (hostname, options, callback) => {
  const name = hostname.toLowerCase().replace(/\.$/, '');
  if (name === 'localhost' || name.endsWith('.localhost')) {
    if (options.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
    else callback(null, '127.0.0.1', 4);
    return;
  }
  dnsLookup(hostname, options, callback);
};

// ---------------------------------------------------------------------------------------------
// Pages

const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  // No form-action: browsers apply it to the redirects after a form post, and the sign-in
  // form's redirect chain ends at the relying party.
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
};

/** `trustedTail` is markup from oidc-provider itself, placed as is at the end of the body. */
function layout(title: string, body: Html, marker = '', trustedTail = ''): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="demo-idp" content="${marker}">
<title>${title}</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 44rem; padding: 0 1rem; color: #1d2733; }
  h1 { font-size: 1.4rem; }
  .banner { background: #fff4d6; border: 1px solid #e6c36a; padding: .5rem .75rem; border-radius: 4px; }
  .ask { background: #e3f0ff; border: 1px solid #7aa7e0; padding: .5rem .75rem; border-radius: 4px; }
  .user { border: 1px solid #c9d2dc; border-radius: 4px; padding: .6rem .8rem; margin: .6rem 0; }
  .user small { color: #52606d; }
  button { margin: .4rem .4rem 0 0; padding: .35rem .8rem; font: inherit; cursor: pointer; }
</style>
</head>
<body>
<h1>${title}</h1>
<p class="banner">Demo identity provider. Every person and address here is fictional; no password is asked.</p>
${body}
`.text + `${trustedTail}\n</body>\n</html>\n`;
}

function sendHtml(res: ServerResponse, status: number, page: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const payload = Buffer.from(page, 'utf8');
  res.writeHead(status, { ...PAGE_HEADERS, 'content-length': payload.length });
  res.end(payload);
}

function sendMessage(res: ServerResponse, status: number, title: string, message: string): void {
  sendHtml(res, status, layout(title, html`<p>${message}</p>`, 'error'));
}

function stringParam(params: Record<string, unknown>, name: string): string | undefined {
  const value = params[name];
  return typeof value === 'string' ? value : undefined;
}

function renderLogin(details: InteractionDetails, disabled: ReadonlySet<string>): string {
  const params = details.params;
  const clientId = stringParam(params, 'client_id') ?? 'an application';
  const acrValues = (stringParam(params, 'acr_values') ?? '').split(' ').filter(Boolean);
  const reasons = details.prompt.reasons;
  const notes: Html[] = [];
  if (acrValues.includes('phr')) {
    notes.push(html`<p class="ask">This application asks for a security key.</p>`);
  }
  if (details.session?.accountId && (reasons.includes('max_age') || reasons.includes('login_prompt'))) {
    notes.push(html`<p class="ask">This application asks you to sign in again.</p>`);
  }
  const action = `/interaction/${encodeURIComponent(details.uid)}/login`;
  const users = Object.values(DEMO_USERS).map((user) => {
    const buttons = disabled.has(user.id)
      ? html`<p><em>Account disabled</em></p>`
      : user.methods.map((method) => html`<button type="submit" name="method" value="${method}">${METHOD_RESULT[method].label}</button>`);
    return html`<form class="user" method="post" action="${action}">
<input type="hidden" name="user" value="${user.id}">
<strong>${user.name}</strong> <small>${user.id} &middot; ${user.email} &middot; ${user.groups.join(', ')}</small><br>
${buttons}
</form>`;
  });
  const abort = `/interaction/${encodeURIComponent(details.uid)}/abort`;
  return layout(
    'Sign in',
    html`<p>Sign in to <strong>${clientId}</strong> as:</p>
${notes}
${users}
<form method="post" action="${abort}"><button type="submit">Cancel</button></form>`,
    'login',
  );
}

// ---------------------------------------------------------------------------------------------
// Request bodies

class BadRequest extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const MAX_FORM_BYTES = 8 * 1024;

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    req.resume();
    throw new BadRequest(400, 'The sign-in form must be sent as application/x-www-form-urlencoded.');
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new BadRequest(413, 'The sign-in form is too large.');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function single(form: URLSearchParams, name: string): string | undefined {
  const values = form.getAll(name);
  return values.length === 1 ? values[0] : undefined;
}

// ---------------------------------------------------------------------------------------------
// Listening

function listenOn(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ port, host, exclusive: true });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function errorCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

/**
 * Listens on 127.0.0.1 and, best effort, on ::1 with the same port, because `localhost` may
 * resolve to either. With port 0 a port taken on ::1 only is retried with another one.
 */
async function listenLoopback(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  port: number,
  onError: (err: Error) => void,
): Promise<{ servers: Server[]; port: number }> {
  const listening = (servers: Server[], actual: number): { servers: Server[]; port: number } => {
    // Errors after start-up (EMFILE on accept, say) are logged; unhandled they would end the process.
    for (const server of servers) server.on('error', onError);
    return { servers, port: actual };
  };
  for (let attempt = 0; ; attempt++) {
    const v4 = createServer(handler);
    await listenOn(v4, port, '127.0.0.1');
    const actual = (v4.address() as AddressInfo).port;
    const v6 = createServer(handler);
    try {
      await listenOn(v6, actual, '::1');
      return listening([v4, v6], actual);
    } catch (err) {
      const code = errorCode(err);
      if (code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT') return listening([v4], actual);
      await closeServer(v4);
      if (port !== 0 || attempt >= 5) throw err;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The IdP

/** Fresh keys per IdP, so a token of one demo IdP never verifies against another's JWKS. */
async function signingKeys(): Promise<JWK[]> {
  return Promise.all(
    (['RS256', 'ES256'] as const).map(async (alg) => {
      const { privateKey } = await generateKeyPair(alg, { extractable: true });
      const jwk = await exportJWK(privateKey);
      return { ...jwk, alg, use: 'sig', kid: `demo-${alg.toLowerCase()}-${randomUUID().slice(0, 8)}` };
    }),
  );
}

function clientMetadata(client: DemoIdpClient): Record<string, unknown> {
  const metadata: Record<string, unknown> = {
    ...client,
    // auth_time always in the ID token: wardgate decides step-up on it.
    require_auth_time: true,
  };
  if (client.token_endpoint_auth_method === undefined && client.client_secret === undefined) {
    metadata['token_endpoint_auth_method'] = 'none';
  }
  if (client.redirect_uris === undefined) {
    // An API client (client_credentials only) has no front channel.
    metadata['redirect_uris'] = [];
    metadata['response_types'] = client.response_types ?? [];
  }
  if (client.backchannel_logout_uri !== undefined) {
    metadata['backchannel_logout_session_required'] = true;
  }
  return metadata;
}

export async function startDemoIdp(options: DemoIdpOptions): Promise<DemoIdp> {
  const log = options.logger ?? ((): void => {});
  const ttl: Required<DemoIdpTtl> = { ...DEFAULT_TTL, ...options.ttl };
  const resources = options.resources ?? {};
  const disabled = new Set<string>();
  const store = new DemoStore();
  const oidc = await loadOidcProvider();
  const outgoing = new Agent({ connect: { lookup: localhostLookup } });

  let provider: Provider | undefined;
  let providerHandler: ((req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined;

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (!provider || !providerHandler) {
      sendMessage(res, 503, 'Starting', 'The identity provider is starting.');
      return;
    }
    const path = (req.url ?? '/').split('?')[0]!;
    if (path.startsWith('/interaction/')) {
      handleInteraction(provider, req, res, path).catch((err: unknown) => {
        log('demo idp: interaction failed', { err: String(err) });
        sendMessage(res, 500, 'Something went wrong', 'The sign-in page failed. Go back to the application and start again.');
      });
      return;
    }
    providerHandler(req, res).catch((err: unknown) => {
      log('demo idp: request failed', { err: String(err) });
      if (!res.headersSent) sendMessage(res, 500, 'Something went wrong', 'The identity provider failed.');
    });
  };

  async function handleInteraction(p: Provider, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const match = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?$/.exec(path);
    if (!match) {
      sendMessage(res, 404, 'Not found', 'There is no such page.');
      return;
    }
    const uid = match[1]!;
    const action = match[2];
    const method = req.method ?? 'GET';
    if (action === undefined ? method !== 'GET' && method !== 'HEAD' : method !== 'POST') {
      req.resume();
      res.setHeader('allow', action === undefined ? 'GET, HEAD' : 'POST');
      sendMessage(res, 405, 'Method not allowed', 'This page does not accept that method.');
      return;
    }

    let details: InteractionDetails;
    try {
      details = await p.interactionDetails(req, res);
    } catch (err) {
      if (err instanceof oidc.errors.SessionNotFound) {
        req.resume();
        sendMessage(res, 400, 'Sign-in expired', 'This sign-in request has expired or was already used. Go back to the application and start again.');
        return;
      }
      throw err;
    }
    if (details.uid !== uid) {
      req.resume();
      sendMessage(res, 400, 'Sign-in mismatch', 'This page belongs to another sign-in request. Go back to the application and start again.');
      return;
    }

    if (action === undefined) {
      if (details.prompt.name === 'consent') {
        await grantConsent(p, req, res, details);
        return;
      }
      sendHtml(res, 200, renderLogin(details, disabled));
      return;
    }

    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (err) {
      if (err instanceof BadRequest) {
        sendMessage(res, err.status, 'Bad request', err.message);
        return;
      }
      throw err;
    }

    if (action === 'abort') {
      await p.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User aborted interaction' }, { mergeWithLastSubmission: false });
      return;
    }

    const userId = single(form, 'user') ?? '';
    const methodName = single(form, 'method') ?? '';
    const user = findUser(userId);
    if (!user) {
      sendMessage(res, 400, 'Unknown user', `There is no demo user "${userId}".`);
      return;
    }
    if (!isMethod(methodName) || !user.methods.includes(methodName)) {
      sendMessage(res, 400, 'Unknown sign-in method', `${user.name} cannot sign in with "${methodName}".`);
      return;
    }
    if (disabled.has(user.id)) {
      sendMessage(res, 403, 'Account disabled', `The account ${user.id} is disabled.`);
      return;
    }
    const result = METHOD_RESULT[methodName];
    log('demo idp: sign-in', { user: user.id, method: methodName, acr: result.acr });
    await p.interactionFinished(
      req,
      res,
      { login: { accountId: user.id, amr: [...result.amr], acr: result.acr, ts: Math.floor(Date.now() / 1000), remember: true } },
      { mergeWithLastSubmission: false },
    );
  }

  /*
   * Consent is only ever asked for explicitly (prompt=consent), and every client here is first
   * party: it is given without a screen. The grant can start empty because loadExistingGrant,
   * which runs when the authorization resumes, fills in whatever the request asked for.
   */
  async function grantConsent(p: Provider, req: IncomingMessage, res: ServerResponse, details: InteractionDetails): Promise<void> {
    // The login prompt comes first, so a consent interaction always has a signed-in user.
    const grant = new p.Grant({ accountId: details.session!.accountId!, clientId: String(details.params['client_id']) });
    const grantId = await grant.save();
    await p.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  /*
   * "Skipping consent" from oidc-provider's docs: every client of the demo is first party, so
   * the grant simply covers whatever was asked for. A grant of another account (the session
   * changed user) is never reused.
   */
  async function loadExistingGrant(ctx: ProviderContext): Promise<ProviderGrant | undefined> {
    const o = ctx.oidc;
    const client = o?.client;
    const session = o?.session;
    const accountId = o?.account?.accountId ?? session?.accountId;
    if (!o || !client || !session || !accountId) return undefined;
    const grantId = o.result?.consent?.grantId ?? session.grantIdFor(client.clientId);
    let grant = grantId ? await o.provider.Grant.find(grantId) : undefined;
    if (grant && (grant.accountId !== accountId || grant.clientId !== client.clientId)) grant = undefined;
    grant ??= new o.provider.Grant({ accountId, clientId: client.clientId });
    const scopes = [...(o.requestParamOIDCScopes ?? [])];
    if (scopes.length) grant.addOIDCScope(scopes.join(' '));
    const claims = [...(o.requestParamClaims ?? [])];
    if (claims.length) grant.addOIDCClaims(claims);
    const requested = o.requestParamScopes ?? new Set<string>();
    for (const [indicator, server] of Object.entries(o.resourceServers ?? {})) {
      const granted = (server.scope ?? '').split(' ').filter((s) => s && requested.has(s));
      if (granted.length) grant.addResourceScope(indicator, granted.join(' '));
    }
    if (typeof session.exp === 'number' && (grant.exp === undefined || grant.exp < session.exp)) grant.exp = session.exp;
    await grant.save();
    return grant;
  }

  function findAccount(_ctx: ProviderContext, id: string): { accountId: string; claims: () => Promise<Record<string, unknown>> } | undefined {
    const user = findUser(id);
    if (!user || disabled.has(user.id)) return undefined;
    return {
      accountId: user.id,
      claims: async () => ({
        sub: user.id,
        email: user.email,
        email_verified: true,
        name: user.name,
        groups: [...user.groups],
      }),
    };
  }

  function getResourceServerInfo(ctx: ProviderContext, indicator: string): object {
    const resource = Object.hasOwn(resources, indicator) ? resources[indicator] : undefined;
    if (!resource || !/^https?:\/\//.test(indicator)) throw new oidc.errors.InvalidTarget();
    const clientId = ctx.oidc?.client?.clientId;
    if (resource.clients && (clientId === undefined || !resource.clients.includes(clientId))) throw new oidc.errors.InvalidTarget();
    const clientCredentials = ctx.oidc?.params?.['grant_type'] === 'client_credentials';
    return {
      scope: resource.scope,
      audience: indicator,
      accessTokenFormat: 'jwt',
      accessTokenTTL: clientCredentials ? ttl.ClientCredentials : ttl.AccessToken,
      jwt: { sign: { alg: 'ES256' } },
    };
  }

  /** A page rendered inside oidc-provider, which has already set the status. */
  function page(ctx: ProviderContext, title: string, body: Html, marker: string): void {
    ctx.type = 'html';
    ctx.body = layout(title, body, marker);
  }

  const policy = oidc.interactionPolicy.base();
  // A disabled account's IdP session must not carry on silently: ask for a sign-in again.
  policy.find((prompt) => prompt.name === 'login')?.checks.add(
    new oidc.interactionPolicy.Check('account_disabled', 'the account is disabled', (ctx) => {
      const accountId = ctx.oidc?.session?.accountId;
      return accountId !== undefined && disabled.has(accountId);
    }),
  );

  const configuration = {
    adapter: (model: string) => new DemoAdapter(model, store),
    clients: options.clients.map(clientMetadata),
    jwks: { keys: [] as JWK[] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    findAccount,
    scopes: SCOPES,
    claims: {
      // Under openid, so every ID token says how and when the user signed in, not only
      // those whose request asked for these claims by name.
      openid: ['sub', 'acr', 'amr', 'auth_time'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
      sid: null,
    },
    conformIdTokenClaims: false,
    acrValues: ['phr', 'pwd'],
    responseTypes: ['code'],
    pkce: { required: () => true },
    interactions: {
      policy,
      url: (_ctx: ProviderContext, interaction: { uid: string }) => `/interaction/${interaction.uid}`,
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx: ProviderContext, form: string) => {
          // `form` is oidc-provider's own markup (action and xsrf token); the buttons submit it.
          const body = html`<p>Do you want to sign out of the demo identity provider at ${ctx.host}?</p>`;
          ctx.type = 'html';
          ctx.body = layout(
            'Sign out',
            body,
            'logout',
            `${form}\n<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>\n<button type="submit" form="op.logoutForm">No, stay signed in</button>`,
          );
        },
        postLogoutSuccessSource: async (ctx: ProviderContext) => {
          page(ctx, 'Signed out', html`<p>You are signed out of the demo identity provider.</p>`, 'logged-out');
        },
      },
      backchannelLogout: { enabled: true },
      revocation: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Sign-ins without a resource keep an opaque access token for userinfo.
        defaultResource: async (_ctx: ProviderContext, _client: ProviderClient, oneOf?: string | string[]) => oneOf,
        getResourceServerInfo: async (ctx: ProviderContext, indicator: string) => getResourceServerInfo(ctx, indicator),
        useGrantedResource: async () => false,
      },
    },
    issueRefreshToken: async (_ctx: ProviderContext, client: ProviderClient) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    loadExistingGrant,
    ttl: {
      AccessToken: ttl.AccessToken,
      IdToken: ttl.IdToken,
      RefreshToken: ttl.RefreshToken,
      Session: ttl.Session,
      Interaction: ttl.Interaction,
      ClientCredentials: ttl.ClientCredentials,
      AuthorizationCode: ttl.AuthorizationCode,
      Grant: Math.max(ttl.Grant, ttl.RefreshToken, ttl.Session),
    },
    renderError: async (ctx: ProviderContext, out: { error?: string; error_description?: string }) => {
      const body = html`<p><strong>${out.error ?? 'error'}</strong></p><p>${out.error_description ?? ''}</p>`;
      page(ctx, 'Sign-in error', body, 'error');
    },
    fetch: (url: string, init: UndiciRequestInit) => undiciFetch(url, { ...init, dispatcher: outgoing }),
  };

  let servers: Server[];
  let port: number;
  try {
    ({ servers, port } = await listenLoopback(handler, options.port, (err) => log('demo idp: listener error', { err: err.message })));
  } catch (err) {
    await outgoing.close().catch(() => {});
    throw err;
  }
  const issuer = `http://localhost:${port}`;
  let created: Provider;
  try {
    // Generated after listening, so a port in use fails fast.
    configuration.jwks.keys = await signingKeys();
    created = new oidc.Provider(issuer, configuration);
    // oidc-provider checks static client metadata on first use; a demo with a broken client
    // should fail here instead of on the first sign-in.
    for (const client of options.clients) await created.Client.find(client.client_id);
  } catch (err) {
    await Promise.all(servers.map(closeServer));
    await outgoing.close().catch(() => {});
    throw err;
  }
  created.proxy = false;
  created.on('error', (err: Error) => log('demo idp: error', { err: err.message }));
  created.on('server_error', (_ctx: unknown, err: Error) => log('demo idp: server error', { err: err.message, stack: err.stack }));
  created.on('grant.error', (_ctx: unknown, err: Error) => log('demo idp: grant error', { err: err.message }));
  created.on('backchannel.error', (_ctx: unknown, err: Error, client: ProviderClient, accountId: string) =>
    log('demo idp: back-channel logout failed', { err: err.message, client: client.clientId, accountId }),
  );
  provider = created;
  providerHandler = created.callback();

  async function backchannelLogout(user: string, sid?: string): Promise<void> {
    const p = created;
    const failures: string[] = [];
    for (const [sessionId, payload] of store.sessions()) {
      if (payload.accountId !== user) continue;
      const authorizations = Object.entries(payload.authorizations ?? {});
      if (sid !== undefined && !authorizations.some(([, a]) => a?.sid === sid)) continue;
      // The session ends first, so nothing can ride on it while the relying parties are told.
      store.delete(`Session:${sessionId}`);
      for (const [clientId, authorization] of authorizations) {
        if (authorization?.grantId) store.revokeGrant(authorization.grantId);
        const client = await p.Client.find(clientId).catch(() => undefined);
        if (!client?.backchannelLogoutUri) continue;
        try {
          await client.backchannelLogout(user, authorization?.sid);
          log('demo idp: back-channel logout sent', { client: clientId, user, sid: authorization?.sid });
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          log('demo idp: back-channel logout failed', { client: clientId, user, err: message });
          failures.push(`${clientId}: ${message}`);
        }
      }
    }
    if (failures.length) throw new Error(`back-channel logout failed for ${failures.join('; ')}`);
  }

  let closing: Promise<void> | undefined;
  return {
    issuer,
    port,
    provider: created,
    close: () => {
      closing ??= (async () => {
        await Promise.all(servers.map(closeServer));
        await outgoing.close().catch(() => {});
      })();
      return closing;
    },
    backchannelLogout,
    disableUser: (user: string) => {
      disabled.add(user);
    },
    enableUser: (user: string) => {
      disabled.delete(user);
    },
  };
}


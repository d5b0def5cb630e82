import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';

/*
 * A scriptable stand-in for a browser, for tests of sign-in flows and cookie security.
 *
 * Requests go to URLs as a browser sees them (`http://epic.localhost:8443/x`) but always
 * connect to loopback, as Chromium does for `*.localhost`, so tests need no DNS set-up and can
 * never reach another machine. The cookie jar follows RFC 6265bis where a security test could
 * tell the difference: host-only versus Domain cookies, Path, expiry, Secure (allowed over
 * plain http on localhost names, as Chromium allows), the __Host- and __Secure- prefixes, and
 * SameSite both when a cookie is set and when it is sent.
 */

export type SameSite = 'strict' | 'lax' | 'none' | 'unset';

export interface Cookie {
  name: string;
  value: string;
  /** The host (host-only cookies) or the Domain attribute, lowercase, without a leading dot. */
  domain: string;
  hostOnly: boolean;
  path: string;
  secure: boolean;
  httpOnly: boolean;
  sameSite: SameSite;
  /** Epoch ms; undefined for a session cookie. */
  expiresAt: number | undefined;
  /** Epoch ms. */
  createdAt: number;
}

export interface BrowserOptions {
  /** Trust anchors for https URLs. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Default true. */
  rejectUnauthorized?: boolean;
  userAgent?: string;
  /** Per request, default 10 s. */
  timeoutMs?: number;
}

export type FormFields = Record<string, string | number | boolean | readonly string[]>;
export type RequestBody = string | Buffer | URLSearchParams | FormFields;

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** URLSearchParams and plain objects are sent as an HTML form (application/x-www-form-urlencoded). */
  body?: RequestBody;
  accept?: string;
  /**
   * URL of the page that caused the request. Undefined means the user typed the URL, which
   * counts as same-site for cookies (as in Chromium).
   */
  initiator?: string;
}

export interface BrowserResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The URL this response came from. */
  url: string;
}

export interface NavigateOptions extends RequestOptions {
  /** Default 20. */
  maxHops?: number;
  /** Stops before requesting a URL for which this is true; the redirect that led there is the result. */
  stopBefore?: (url: URL) => boolean;
}

export interface NavigateResult extends BrowserResponse {
  /** Every URL requested, in order (the last is `url`). */
  hops: string[];
  /** With `stopBefore`: the URL the navigation would have gone to next. */
  stoppedAt?: string;
}

export const NAVIGATION_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** How a request relates to the site of the cookies it may carry. */
type CookieContext =
  /** Same-site, or typed by the user: every cookie goes. */
  | 'same-site'
  /** Cross-site top-level navigation with a safe method: Lax and None cookies go. */
  | 'top-level-safe'
  /** Cross-site top-level navigation with an unsafe method (a form POST). */
  | 'top-level-unsafe'
  /** Cross-site subresource or fetch: only None cookies go. */
  | 'cross-site';

// Chromium still sends cookies without a SameSite attribute on a cross-site top-level POST
// during their first two minutes ("Lax-allowing-unsafe"), so sign-in flows using form_post work.
const LAX_ALLOWING_UNSAFE_MS = 2 * 60 * 1000;

// ---------------------------------------------------------------------------------------------
// Hosts and sites

function isLocalhostName(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost');
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function isLoopbackIp(host: string): boolean {
  const h = unbracket(host);
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}

/** "Potentially trustworthy" as browsers decide it: https, or a loopback name or address. */
export function isSecureOrigin(url: URL): boolean {
  return url.protocol === 'https:' || isLocalhostName(url.hostname) || isLoopbackIp(url.hostname);
}

/** The address to connect to: always loopback; anything else is refused. */
function connectAddress(url: URL): string {
  const host = url.hostname;
  if (isLocalhostName(host)) return '127.0.0.1';
  if (isLoopbackIp(host)) return unbracket(host);
  throw new Error(`Browser only connects to loopback; refusing ${url.host}`);
}

/*
 * Registrable domain with the public suffix list's default rule ("*"): the last label is a
 * public suffix. The test hosts are all `*.localhost`, which the list does not name, so this
 * is exactly what a browser computes for them.
 */
function registrableDomain(host: string): string {
  if (isIP(unbracket(host))) return host;
  const labels = host.split('.');
  if (labels.length <= 2) return host;
  return labels.slice(-2).join('.');
}

function isPublicSuffix(domain: string): boolean {
  return !domain.includes('.');
}

/** Schemeful site: scheme plus registrable domain. */
export function siteOf(url: URL): string {
  return `${url.protocol}//${registrableDomain(url.hostname)}`;
}

function domainMatch(host: string, domain: string): boolean {
  if (host === domain) return true;
  return !isIP(unbracket(host)) && host.endsWith(`.${domain}`);
}

function pathMatch(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

function defaultPath(url: URL): string {
  const path = url.pathname;
  if (!path.startsWith('/')) return '/';
  const last = path.lastIndexOf('/');
  return last <= 0 ? '/' : path.slice(0, last);
}

// ---------------------------------------------------------------------------------------------
// Cookie jar

interface ParsedSetCookie {
  name: string;
  value: string;
  expiresAt: number | undefined;
  /** The Domain attribute was present with a value. */
  domain: string | undefined;
  path: string | undefined;
  secure: boolean;
  httpOnly: boolean;
  sameSite: SameSite;
}

// Control characters other than horizontal tab make a browser drop the whole line.
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;

function trimWs(text: string): string {
  return text.replace(/^[ \t]+|[ \t]+$/g, '');
}

function parseSetCookie(line: string, now: number): ParsedSetCookie | undefined {
  if (CONTROL.test(line)) return undefined;
  const parts = line.split(';');
  const pair = parts.shift() ?? '';
  const eq = pair.indexOf('=');
  const name = eq === -1 ? '' : trimWs(pair.slice(0, eq));
  const value = eq === -1 ? trimWs(pair) : trimWs(pair.slice(eq + 1));
  if (name === '' && value === '') return undefined;
  if (name.length + value.length > 4096) return undefined;

  const cookie: ParsedSetCookie = { name, value, expiresAt: undefined, domain: undefined, path: undefined, secure: false, httpOnly: false, sameSite: 'unset' };
  let maxAge: number | undefined;
  let expires: number | undefined;
  for (const part of parts) {
    const i = part.indexOf('=');
    const attr = trimWs(i === -1 ? part : part.slice(0, i)).toLowerCase();
    const av = i === -1 ? '' : trimWs(part.slice(i + 1));
    switch (attr) {
      case 'expires': {
        const t = Date.parse(av);
        if (!Number.isNaN(t)) expires = t;
        break;
      }
      case 'max-age':
        if (/^-?\d+$/.test(av)) maxAge = Number(av);
        break;
      case 'domain':
        if (av !== '') cookie.domain = av.replace(/^\./, '').toLowerCase();
        break;
      case 'path':
        cookie.path = av.startsWith('/') ? av : undefined;
        break;
      case 'secure':
        cookie.secure = true;
        break;
      case 'httponly':
        cookie.httpOnly = true;
        break;
      case 'samesite': {
        const v = av.toLowerCase();
        cookie.sameSite = v === 'strict' || v === 'lax' || v === 'none' ? v : 'unset';
        break;
      }
      default:
        break;
    }
  }
  if (maxAge !== undefined) cookie.expiresAt = maxAge <= 0 ? 0 : now + maxAge * 1000;
  else if (expires !== undefined) cookie.expiresAt = expires;
  return cookie;
}

function hasPrefix(name: string, prefix: string): boolean {
  return name.toLowerCase().startsWith(prefix.toLowerCase());
}

/** Why a Set-Cookie was refused, or undefined when it was stored (or deleted a cookie). */
export type CookieRejection = string;

class CookieJar {
  private list: Cookie[] = [];

  clear(): void {
    this.list = [];
  }

  private live(now: number): Cookie[] {
    this.list = this.list.filter((c) => c.expiresAt === undefined || c.expiresAt > now);
    return this.list;
  }

  /** Stores one Set-Cookie line received for `url`; returns why it was refused, if it was. */
  store(url: URL, line: string, context: CookieContext): CookieRejection | undefined {
    const now = Date.now();
    const parsed = parseSetCookie(line, now);
    if (!parsed) return 'unparsable';
    const host = url.hostname;
    const secureOrigin = isSecureOrigin(url);

    let domain = host;
    let hostOnly = true;
    if (parsed.domain !== undefined) {
      if (isPublicSuffix(parsed.domain) || isIP(unbracket(parsed.domain))) {
        // Only a Domain equal to the host itself is tolerated, as a host-only cookie.
        if (parsed.domain !== host) return `Domain=${parsed.domain} is a public suffix or an address`;
      } else if (!domainMatch(host, parsed.domain)) {
        return `Domain=${parsed.domain} does not match ${host}`;
      } else {
        domain = parsed.domain;
        hostOnly = false;
      }
    }
    const path = parsed.path ?? defaultPath(url);

    if (parsed.secure && !secureOrigin) return 'Secure cookie from an insecure origin';
    if (!parsed.secure && !secureOrigin) {
      const shadows = this.live(now).some(
        (c) => c.secure && c.name === parsed.name && (domainMatch(c.domain, domain) || domainMatch(domain, c.domain)) && pathMatch(path, c.path),
      );
      if (shadows) return 'would overwrite a Secure cookie from an insecure origin';
    }
    if (parsed.sameSite === 'none' && !parsed.secure) return 'SameSite=None without Secure';
    if (parsed.sameSite !== 'none' && context === 'cross-site') return 'SameSite cookie from a cross-site subresource response';

    if (parsed.name === '' && (hasPrefix(parsed.value, '__Secure-') || hasPrefix(parsed.value, '__Host-'))) {
      return 'nameless cookie that looks prefixed';
    }
    if (hasPrefix(parsed.name, '__Secure-') && !parsed.secure) return '__Secure- cookie without Secure';
    if (hasPrefix(parsed.name, '__Host-')) {
      if (!parsed.secure) return '__Host- cookie without Secure';
      if (parsed.domain !== undefined) return '__Host- cookie with a Domain attribute';
      if (parsed.path !== '/') return '__Host- cookie without Path=/';
    }

    const index = this.list.findIndex((c) => c.name === parsed.name && c.domain === domain && c.hostOnly === hostOnly && c.path === path);
    const createdAt = index === -1 ? now : this.list[index]!.createdAt;
    if (index !== -1) this.list.splice(index, 1);
    if (parsed.expiresAt !== undefined && parsed.expiresAt <= now) return undefined;
    this.list.push({
      name: parsed.name,
      value: parsed.value,
      domain,
      hostOnly,
      path,
      secure: parsed.secure,
      httpOnly: parsed.httpOnly,
      sameSite: parsed.sameSite,
      expiresAt: parsed.expiresAt,
      createdAt,
    });
    return undefined;
  }

  /** The cookies a request to `url` carries in `context`, in the order a browser sends them. */
  forRequest(url: URL, context: CookieContext): Cookie[] {
    const now = Date.now();
    const host = url.hostname;
    const secureOrigin = isSecureOrigin(url);
    return this.live(now)
      .filter((c) => (c.hostOnly ? c.domain === host : domainMatch(host, c.domain)))
      .filter((c) => pathMatch(url.pathname || '/', c.path))
      .filter((c) => !c.secure || secureOrigin)
      .filter((c) => {
        switch (c.sameSite) {
          case 'none':
            return true;
          case 'strict':
            return context === 'same-site';
          case 'lax':
            return context === 'same-site' || context === 'top-level-safe';
          case 'unset':
            return context === 'same-site' || context === 'top-level-safe' || (context === 'top-level-unsafe' && now - c.createdAt < LAX_ALLOWING_UNSAFE_MS);
        }
      })
      .sort((a, b) => b.path.length - a.path.length || a.createdAt - b.createdAt);
  }

  forHost(host: string): Cookie[] {
    const h = host.toLowerCase();
    return this.live(Date.now()).filter((c) => (c.hostOnly ? c.domain === h : domainMatch(h, c.domain)));
  }
}

function cookieHeaderOf(cookies: readonly Cookie[]): string {
  return cookies.map((c) => (c.name === '' ? c.value : `${c.name}=${c.value}`)).join('; ');
}

// ---------------------------------------------------------------------------------------------
// HTML forms

export interface ParsedForm {
  id: string | undefined;
  /** Absolute URL. */
  action: string;
  method: 'GET' | 'POST';
  /** Fields a submission sends without any button (hidden, text and similar inputs with a name). */
  fields: Array<[string, string]>;
  /** Submit buttons, inside the form or pointing at it with `form=`. */
  buttons: Array<{ name: string | undefined; value: string; label: string }>;
}

const ENTITY: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', middot: '\u00b7' };

export function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, ref: string) => {
    if (ref[0] === '#') {
      const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return Number.isFinite(code) ? String.fromCodePoint(code) : whole;
    }
    return ENTITY[ref.toLowerCase()] ?? whole;
  });
}

function attributes(tag: string): Map<string, string> {
  const attrs = new Map<string, string>();
  const re = /([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  // Skip the tag name.
  const body = tag.replace(/^<\s*[a-z]+/i, '').replace(/\/?>$/, '');
  for (const m of body.matchAll(re)) {
    const name = m[1]!.toLowerCase();
    if (!attrs.has(name)) attrs.set(name, decodeEntities(m[2] ?? m[3] ?? m[4] ?? ''));
  }
  return attrs;
}

/** The forms of a page, enough of HTML for the pages tests meet (no nested or broken markup). */
export function parseForms(page: string, baseUrl: string): ParsedForm[] {
  const forms: Array<ParsedForm & { start: number; end: number }> = [];
  for (const m of page.matchAll(/<form\b[^>]*>/gi)) {
    const start = m.index;
    const close = page.indexOf('</form', start);
    const attrs = attributes(m[0]);
    const method = (attrs.get('method') ?? 'get').toUpperCase() === 'POST' ? 'POST' : 'GET';
    forms.push({
      id: attrs.get('id'),
      action: new URL(attrs.get('action') || baseUrl, baseUrl).href,
      method,
      fields: [],
      buttons: [],
      start,
      end: close === -1 ? page.length : close,
    });
  }
  const owner = (at: number, attrs: Map<string, string>): ParsedForm | undefined => {
    const formId = attrs.get('form');
    if (formId !== undefined) return forms.find((f) => f.id === formId);
    return forms.find((f) => at > f.start && at < f.end);
  };
  for (const m of page.matchAll(/<input\b[^>]*>/gi)) {
    const attrs = attributes(m[0]);
    const form = owner(m.index, attrs);
    const name = attrs.get('name');
    const type = (attrs.get('type') ?? 'text').toLowerCase();
    if (!form || attrs.has('disabled')) continue;
    if (type === 'submit') {
      form.buttons.push({ name, value: attrs.get('value') ?? '', label: attrs.get('value') ?? '' });
    } else if (name !== undefined && !['button', 'reset', 'image', 'file', 'checkbox', 'radio'].includes(type)) {
      form.fields.push([name, attrs.get('value') ?? '']);
    } else if (name !== undefined && (type === 'checkbox' || type === 'radio') && attrs.has('checked')) {
      form.fields.push([name, attrs.get('value') ?? 'on']);
    }
  }
  for (const m of page.matchAll(/<button\b[^>]*>([\s\S]*?)<\/button>/gi)) {
    const tag = /^<button\b[^>]*>/i.exec(m[0])![0];
    const attrs = attributes(tag);
    const form = owner(m.index, attrs);
    const type = (attrs.get('type') ?? 'submit').toLowerCase();
    if (!form || type !== 'submit' || attrs.has('disabled')) continue;
    const label = decodeEntities((m[1] ?? '').replace(/<[^>]*>/g, '')).trim();
    form.buttons.push({ name: attrs.get('name'), value: attrs.get('value') ?? '', label });
  }
  return forms.map(({ start: _s, end: _e, ...form }) => form);
}

// ---------------------------------------------------------------------------------------------
// The browser

function encodeBody(body: RequestBody | undefined): { payload: Buffer | undefined; contentType: string | undefined } {
  if (body === undefined) return { payload: undefined, contentType: undefined };
  if (typeof body === 'string') return { payload: Buffer.from(body, 'utf8'), contentType: undefined };
  if (Buffer.isBuffer(body)) return { payload: body, contentType: undefined };
  const form = body instanceof URLSearchParams ? body : new URLSearchParams();
  if (!(body instanceof URLSearchParams)) {
    for (const [name, value] of Object.entries(body)) {
      if (Array.isArray(value)) for (const v of value as readonly string[]) form.append(name, v);
      else form.append(name, String(value));
    }
  }
  return { payload: Buffer.from(form.toString(), 'utf8'), contentType: 'application/x-www-form-urlencoded' };
}

function hasHeader(headers: Record<string, string>, name: string): boolean {
  return Object.keys(headers).some((h) => h.toLowerCase() === name);
}

interface SendOptions {
  method: string;
  headers: Record<string, string>;
  payload: Buffer | undefined;
  contentType: string | undefined;
  cookieContext: CookieContext;
}

export class Browser {
  private readonly jar = new CookieJar();
  /** Set-Cookie lines the jar refused, newest last, for tests that check a refusal. */
  readonly rejectedCookies: Array<{ url: string; line: string; reason: string }> = [];

  constructor(private readonly options: BrowserOptions = {}) {}

  /** Cookies in the jar that a request to `host` could carry (any path), for inspection. */
  cookies(host: string): Cookie[] {
    return this.jar.forHost(host).map((c) => ({ ...c }));
  }

  /**
   * Stores a cookie as if `raw` came in a Set-Cookie header from `http://<host>/` (or from
   * `host` itself when it is a URL). Returns whether it was accepted.
   */
  setCookie(host: string, raw: string): boolean {
    const url = new URL(host.includes('://') ? host : `http://${host}/`);
    const reason = this.jar.store(url, raw, 'same-site');
    if (reason !== undefined) this.rejectedCookies.push({ url: url.href, line: raw, reason });
    return reason === undefined;
  }

  clearCookies(): void {
    this.jar.clear();
  }

  /** The Cookie header a same-site request to `url` would carry ('' if none). */
  cookieHeader(url: string): string {
    return cookieHeaderOf(this.jar.forRequest(new URL(url), 'same-site'));
  }

  /** One request, redirects not followed (like fetch with redirect: 'manual'). */
  async request(url: string, opts: RequestOptions = {}): Promise<BrowserResponse> {
    const target = new URL(url);
    const method = (opts.method ?? 'GET').toUpperCase();
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.accept !== undefined) headers['accept'] = opts.accept;
    else if (!hasHeader(headers, 'accept')) headers['accept'] = '*/*';
    let context: CookieContext = 'same-site';
    if (opts.initiator !== undefined) {
      const from = new URL(opts.initiator);
      if (siteOf(from) !== siteOf(target)) context = 'cross-site';
      if (method !== 'GET' && method !== 'HEAD' && !hasHeader(headers, 'origin')) headers['origin'] = from.origin;
    }
    const { payload, contentType } = encodeBody(opts.body);
    return this.send(target, { method, headers, payload, contentType, cookieContext: context });
  }

  /**
   * A top-level navigation: follows 301/302/303/307/308 like a browser (303, and 301/302 after
   * a POST, turn into GET; 307/308 keep method and body) up to `maxHops` requests.
   */
  async navigate(url: string, opts: NavigateOptions = {}): Promise<NavigateResult> {
    const maxHops = opts.maxHops ?? 20;
    const initiator = opts.initiator === undefined ? undefined : new URL(opts.initiator);
    let method = (opts.method ?? 'GET').toUpperCase();
    let { payload, contentType } = encodeBody(opts.body);
    let current = new URL(url);
    const hops: string[] = [];
    const chain: URL[] = [];
    let crossOriginRedirect = false;

    for (;;) {
      if (hops.length >= maxHops) throw new Error(`navigation exceeded ${maxHops} hops: ${hops.join(' -> ')}`);
      hops.push(current.href);
      chain.push(current);

      const headers: Record<string, string> = {
        'upgrade-insecure-requests': '1',
        'sec-fetch-mode': 'navigate',
        'sec-fetch-dest': 'document',
        'sec-fetch-user': '?1',
        'sec-fetch-site': fetchSite(initiator, chain),
        ...opts.headers,
      };
      headers['accept'] = opts.accept ?? NAVIGATION_ACCEPT;
      if (method !== 'GET' && method !== 'HEAD' && initiator && !hasHeader(opts.headers ?? {}, 'origin')) {
        // After a cross-origin redirect the origin of a re-sent POST is opaque.
        headers['origin'] = crossOriginRedirect ? 'null' : initiator.origin;
      }
      let cookieContext: CookieContext = 'same-site';
      if (initiator && siteOf(initiator) !== siteOf(current)) {
        cookieContext = method === 'GET' || method === 'HEAD' ? 'top-level-safe' : 'top-level-unsafe';
      }

      const response = await this.send(current, { method, headers, payload, contentType, cookieContext });
      const location = response.headers.location;
      if (!REDIRECTS.has(response.status) || location === undefined) return { ...response, hops };

      const next = new URL(location, current);
      if (next.protocol !== 'http:' && next.protocol !== 'https:') return { ...response, hops, stoppedAt: next.href };
      if (opts.stopBefore?.(next)) return { ...response, hops, stoppedAt: next.href };
      if (response.status === 303 ? method !== 'HEAD' : (response.status === 301 || response.status === 302) && method === 'POST') {
        method = 'GET';
        payload = undefined;
        contentType = undefined;
      }
      if (next.origin !== current.origin) crossOriginRedirect = true;
      current = next;
    }
  }

  /**
   * Submits `form` as a click on its button (the first one, or the one whose name and value
   * match `button`) would, with `overrides` replacing or adding fields. `from` is the page.
   */
  async submit(from: BrowserResponse, form: ParsedForm, overrides: Record<string, string> = {}, button?: { name: string; value: string }, opts: NavigateOptions = {}): Promise<NavigateResult> {
    const data = new URLSearchParams();
    for (const [name, value] of form.fields) if (!(name in overrides)) data.append(name, value);
    const chosen = button ? form.buttons.find((b) => b.name === button.name && b.value === button.value) : form.buttons[0];
    if (button && !chosen) throw new Error(`form ${form.action} has no button ${button.name}=${button.value}`);
    if (chosen?.name !== undefined && !(chosen.name in overrides)) data.append(chosen.name, chosen.value);
    for (const [name, value] of Object.entries(overrides)) data.set(name, value);
    if (form.method === 'GET') {
      const target = new URL(form.action);
      target.search = data.toString();
      return this.navigate(target.href, { ...opts, initiator: from.url });
    }
    return this.navigate(form.action, { ...opts, method: 'POST', body: data, initiator: from.url });
  }

  private send(url: URL, opts: SendOptions): Promise<BrowserResponse> {
    const address = connectAddress(url);
    const secure = url.protocol === 'https:';
    if (!secure && url.protocol !== 'http:') return Promise.reject(new Error(`unsupported scheme ${url.protocol}`));
    const headers: OutgoingHttpHeaders = { host: url.host, 'user-agent': this.options.userAgent ?? 'wardgate-test-browser/1', ...opts.headers };
    const cookies = this.jar.forRequest(url, opts.cookieContext);
    if (cookies.length && !hasHeader(opts.headers, 'cookie')) headers['cookie'] = cookieHeaderOf(cookies);
    if (opts.payload !== undefined) {
      headers['content-length'] = String(opts.payload.length);
      if (opts.contentType && !hasHeader(opts.headers, 'content-type')) headers['content-type'] = opts.contentType;
    }
    const timeoutMs = this.options.timeoutMs ?? 10_000;

    return new Promise<BrowserResponse>((resolve, reject) => {
      const common = {
        host: address,
        port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
        method: opts.method,
        path: `${url.pathname}${url.search}`,
        headers,
        agent: false as const,
        setHost: false,
      };
      const req = secure
        ? httpsRequest({
            ...common,
            servername: isIP(unbracket(url.hostname)) ? undefined : url.hostname,
            ca: this.options.ca,
            rejectUnauthorized: this.options.rejectUnauthorized ?? true,
          })
        : httpRequest(common);
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`${opts.method} ${url.href} timed out after ${timeoutMs} ms`)));
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          for (const line of res.headers['set-cookie'] ?? []) {
            const context = opts.cookieContext === 'cross-site' ? 'cross-site' : 'same-site';
            const reason = this.jar.store(url, line, context);
            if (reason !== undefined) this.rejectedCookies.push({ url: url.href, line, reason });
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), url: url.href });
        });
      });
      req.end(opts.payload);
    });
  }
}

/** Sec-Fetch-Site of a navigation, from its initiator and every URL in its redirect chain. */
function fetchSite(initiator: URL | undefined, chain: readonly URL[]): string {
  if (!initiator) return 'none';
  let value = 'same-origin';
  for (const url of chain) {
    if (url.origin === initiator.origin) continue;
    if (siteOf(url) !== siteOf(initiator)) return 'cross-site';
    value = 'same-site';
  }
  return value;
}

import { startDemoIdp, type DemoIdp, type DemoIdpClient, type DemoIdpOptions, type DemoMethod } from '../../proxy/demo/idp.js';
import { parseForms, type Browser, type BrowserResponse, type NavigateOptions, type NavigateResult } from './browser.js';

/*
 * The demo IdP as tests use it: started on a free port, and driven by a Browser the way a
 * person would (pick a user and a method on the sign-in page, confirm sign-out).
 */

export interface TestIdpOptions {
  clients: DemoIdpClient[];
  resources?: DemoIdpOptions['resources'];
  ttl?: DemoIdpOptions['ttl'];
  logger?: DemoIdpOptions['logger'];
}

/** Set WARDGATE_TEST_IDP_LOG=1 to see what the IdP logs while a test runs. */
function defaultLogger(): DemoIdpOptions['logger'] {
  if (!process.env['WARDGATE_TEST_IDP_LOG']) return undefined;
  return (msg, fields) => console.error(msg, fields ?? '');
}

/** Starts the demo IdP on a free port. The caller closes it (for example in t.teardown). */
export async function startTestIdp(opts: TestIdpOptions): Promise<DemoIdp> {
  return startDemoIdp({ port: 0, clients: opts.clients, resources: opts.resources, ttl: opts.ttl, logger: opts.logger ?? defaultLogger() });
}

function isHtml(page: BrowserResponse): boolean {
  return String(page.headers['content-type'] ?? '').startsWith('text/html');
}

function marker(page: BrowserResponse): string | undefined {
  if (page.status !== 200 || !isHtml(page)) return undefined;
  return /<meta name="demo-idp" content="([a-z-]*)">/.exec(page.body)?.[1];
}

/** The demo IdP's sign-in page (`/interaction/<uid>`). */
export function isIdpLoginPage(page: BrowserResponse): boolean {
  return marker(page) === 'login' && /^\/interaction\/[^/]+$/.test(new URL(page.url).pathname);
}

/** The IdP's sign-out confirmation page. */
export function isIdpLogoutPage(page: BrowserResponse): boolean {
  return marker(page) === 'logout';
}

/** oidc-provider's self-submitting form (form_post responses, sign-out before a change of user). */
function isAutoSubmitPage(page: BrowserResponse): boolean {
  return page.status === 200 && isHtml(page) && page.body.includes('document.forms[0].submit()');
}

const MAX_PAGES = 10;

/** Continues from `page` through self-submitting forms, as a browser running their script would. */
async function autoSubmit(browser: Browser, page: NavigateResult, opts: NavigateOptions): Promise<NavigateResult | undefined> {
  if (!isAutoSubmitPage(page)) return undefined;
  const form = parseForms(page.body, page.url)[0];
  if (!form) return undefined;
  return browser.submit(page, form, {}, undefined, { stopBefore: opts.stopBefore });
}

/**
 * Navigates to `startUrl` and signs in as `user` with `method` whenever the IdP's sign-in page
 * comes up, following redirects and self-submitting forms. Returns the first page that is not
 * a redirect, not the IdP's sign-in page and not a self-submitting form (or, with
 * `opts.stopBefore`, the redirect it stopped at), with every URL visited in `hops`.
 *
 * A user or method the page does not offer is posted anyway, so tests can see the refusal.
 */
export async function signIn(browser: Browser, startUrl: string, user: string, method: DemoMethod | string = 'pwd', opts: NavigateOptions = {}): Promise<NavigateResult> {
  const hops: string[] = [];
  let page = await browser.navigate(startUrl, opts);
  for (let pages = 0; ; pages++) {
    hops.push(...page.hops);
    if (pages >= MAX_PAGES) throw new Error(`sign-in did not finish after ${MAX_PAGES} pages: ${hops.join(' -> ')}`);
    if (page.stoppedAt !== undefined) break;
    if (isIdpLoginPage(page)) {
      const form = parseForms(page.body, page.url).find((f) => f.fields.some(([name, value]) => name === 'user' && value === user));
      const offered = form?.buttons.some((b) => b.name === 'method' && b.value === method);
      if (form && offered) {
        page = await browser.submit(page, form, {}, { name: 'method', value: method }, { stopBefore: opts.stopBefore });
      } else {
        const action = new URL(`${new URL(page.url).pathname}/login`, page.url).href;
        page = await browser.navigate(action, { method: 'POST', body: { user, method }, initiator: page.url, stopBefore: opts.stopBefore });
      }
      continue;
    }
    const next = await autoSubmit(browser, page, opts);
    if (!next) break;
    page = next;
  }
  return { ...page, hops };
}

/**
 * Navigates to `url` (typically the relying party's logout, or the IdP's end_session URL) and,
 * if the IdP asks for confirmation, confirms ("Yes, sign me out": xsrf + logout=yes), then
 * follows on. Returns the final page with every URL visited.
 */
export async function logoutAtIdp(browser: Browser, url: string, opts: NavigateOptions = {}): Promise<NavigateResult> {
  const hops: string[] = [];
  let page = await browser.navigate(url, opts);
  for (let pages = 0; ; pages++) {
    hops.push(...page.hops);
    if (pages >= MAX_PAGES) throw new Error(`sign-out did not finish after ${MAX_PAGES} pages: ${hops.join(' -> ')}`);
    if (page.stoppedAt !== undefined) break;
    if (isIdpLogoutPage(page)) {
      const form = parseForms(page.body, page.url).find((f) => f.id === 'op.logoutForm');
      if (!form) throw new Error(`the IdP's sign-out page at ${page.url} has no op.logoutForm`);
      page = await browser.submit(page, form, {}, { name: 'logout', value: 'yes' }, { stopBefore: opts.stopBefore });
      continue;
    }
    const next = await autoSubmit(browser, page, opts);
    if (!next) break;
    page = next;
  }
  return { ...page, hops };
}

/** A real client_credentials token request (client_secret_basic); returns the access token. */
export async function clientCredentialsToken(idp: DemoIdp, clientId: string, clientSecret: string, resource: string, scope: string): Promise<string> {
  // RFC 6749 2.3.1: id and secret are form-encoded before Basic encoding.
  const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
  const response = await fetch(idp.provider.urlFor('token'), {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`token endpoint answered ${response.status}: ${text}`);
  const body = JSON.parse(text) as { access_token?: unknown };
  if (typeof body.access_token !== 'string') throw new Error(`token response without access_token: ${text}`);
  return body.access_token;
}

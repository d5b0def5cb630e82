// Credentials for the identity-aware contenders, printed on stdout as the one header wrk sends.
//
//   node test/bench/sign-in.mjs session URL [--user dr.alice] [--method hwk] [--cookie NAME]
//                                            [--header "Name: value"]...
//       Opens URL (behind wardgate or Apache + mod_auth_openidc) in the test Browser
//       (dist/test/helpers/browser.js), signs in at the bench IdP as --user with --method
//       (dist/test/helpers/idp.js signIn), checks that the page it lands on is a 200, and prints
//       "Cookie: NAME=value" with the session cookie the Browser now holds for URL's host.
//       NAME defaults to whichever of __Host-wardgate (wardgate) and mod_auth_openidc_session
//       (mod_auth_openidc) was set.
//       --header "Name: value" (repeatable) adds a header to every request to URL's host (the
//       application), and to no other: the X-Device-Posture assertion an MDM agent adds, for a
//       route that refuses untrusted devices before anyone signs in. signIn's own opts.headers
//       reach only its first navigation (not the requests after the IdP's form, whose
//       redirects lead back to the application), so with --header the sign-in goes in three
//       steps, with the Browser's stopBefore: URL with the headers up to the first redirect
//       off the application's host; signIn from there (auth host, IdP) up to the redirect back
//       to the application's host; that last URL with the headers, which must answer 200.
//   node test/bench/sign-in.mjs token INFO_FILE
//       A client_credentials access token (a JWT for wardgate's bearer audience) from the IdP
//       described by INFO_FILE (written by idp.mjs), printed as "Authorization: Bearer <jwt>".
//
// The Browser connects only to loopback and *.localhost names, and treats http://*.localhost
// as a secure context, as Chromium does; the printed header is for a request with the same Host.
// Exits 1, with the pages it went through on stderr, when no credential came out.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const load = (path) => import(pathToFileURL(join(ROOT, path)).href);

const SESSION_COOKIES = ['__Host-wardgate', 'mod_auth_openidc_session'];

function fail(message) {
  console.error(`sign-in: ${message}`);
  process.exit(1);
}

/** "Name: value" arguments as a headers object. */
function parseHeaders(lines) {
  const headers = {};
  for (const line of lines) {
    const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):\s*(.*)$/.exec(line);
    if (!m || m[2] === '') fail(`--header expects "Name: value", got ${JSON.stringify(line.slice(0, 60))}`);
    headers[m[1].toLowerCase()] = m[2];
  }
  return headers;
}

/** signIn, with `headers` on the requests to URL's host only (see the top). */
async function signInWithHeaders(browser, signIn, url, user, method, headers) {
  const app = new URL(url).host;
  const offApp = (next) => next.host !== app;
  const first = await browser.navigate(url, { headers, stopBefore: offApp });
  if (first.stoppedAt === undefined) return first; // no sign-in asked for: the caller judges the page
  const away = await signIn(browser, first.stoppedAt, user, method, { stopBefore: (next) => next.host === app });
  if (away.stoppedAt === undefined) return { ...away, hops: [...first.hops, ...away.hops] };
  const back = await browser.navigate(away.stoppedAt, { headers, stopBefore: offApp });
  return { ...back, hops: [...first.hops, ...away.hops, ...back.hops] };
}

async function session(url, { user, method, cookie, header }) {
  const { Browser } = await load('dist/test/helpers/browser.js');
  const { signIn } = await load('dist/test/helpers/idp.js');
  const browser = new Browser({ timeoutMs: 15_000 });
  const headers = parseHeaders(header);
  const page = Object.keys(headers).length
    ? await signInWithHeaders(browser, signIn, url, user, method, headers)
    : await signIn(browser, url, user, method);
  const trail = () => `pages: ${page.hops.join(' -> ')}\nlast: ${page.status} ${page.url}\n${page.body.slice(0, 600)}`
    + (browser.rejectedCookies.length ? `\nrefused cookies: ${JSON.stringify(browser.rejectedCookies)}` : '');
  if (page.status !== 200) fail(`signing in at ${url} as ${user} (${method}) did not end on a 200\n${trail()}`);
  const host = new URL(url).hostname;
  const held = browser.cookies(host);
  const names = cookie ? [cookie] : SESSION_COOKIES;
  const found = held.find((c) => names.includes(c.name));
  if (!found) fail(`no session cookie (${names.join(' or ')}) for ${host} after signing in; held: ${held.map((c) => c.name).join(', ') || 'none'}\n${trail()}`);
  const others = held.filter((c) => c !== found).map((c) => c.name);
  const extra = Object.keys(headers).length ? `, with ${Object.keys(headers).join(', ')} on ${new URL(url).host}` : '';
  console.error(`sign-in: ${user} (${method}) at ${url}${extra}: ${page.hops.length} requests, cookie ${found.name} (${found.value.length} chars)${others.length ? `; not sent: ${others.join(', ')}` : ''}`);
  console.log(`Cookie: ${found.name}=${found.value}`);
}

async function token(infoFile) {
  const info = JSON.parse(readFileSync(infoFile, 'utf8'));
  const { clientId, clientSecret, audience, scope } = info.api;
  // RFC 6749 2.3.1: id and secret are form-encoded before Basic encoding.
  const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
  const response = await fetch(info.tokenEndpoint, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: audience, scope }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  if (response.status !== 200) fail(`token endpoint answered ${response.status}: ${text}`);
  const body = JSON.parse(text);
  if (typeof body.access_token !== 'string' || body.access_token.split('.').length !== 3) fail(`no JWT access token in ${text}`);
  console.error(`sign-in: ${clientId} token for ${audience}, expires in ${body.expires_in} s`);
  console.log(`Authorization: Bearer ${body.access_token}`);
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    user: { type: 'string', default: 'dr.alice' },
    method: { type: 'string', default: 'hwk' },
    cookie: { type: 'string' },
    header: { type: 'string', multiple: true, default: [] },
  },
});
const [mode, arg] = positionals;
try {
  if (mode === 'session' && arg) await session(arg, values);
  else if (mode === 'token' && arg) await token(arg);
  else {
    console.error('usage: node sign-in.mjs session URL [--user U] [--method hwk|pwd] [--cookie NAME] [--header "Name: value"]... | node sign-in.mjs token INFO_FILE');
    process.exit(2);
  }
} catch (err) {
  fail(err instanceof Error ? err.stack ?? err.message : String(err));
}

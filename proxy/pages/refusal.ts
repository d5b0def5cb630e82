import type { OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { STATUS_CODES } from 'node:http';
import type { Response } from '../exchange.js';
import type { Category } from '../policy/criterion.js';
import { escapeHtml, pageShell } from './html.js';

/*
 * What a refused request is told. Browsers get a short page in plain words; API clients
 * get JSON. Both carry the same reason code and request id, so a clinician can read the
 * code to the help desk and the help desk finds the log line.
 */

const EXPLANATIONS: Record<string, string> = {
  'method-not-allowed': 'This kind of request (CONNECT or TRACE) is never passed through.',
  'target-form': 'The address in the request is not in a form wardgate accepts.',
  'foreign-authority': 'The request named a different site than the one it was sent to.',
  'host-missing': 'The request did not say which site it was for.',
  'host-invalid': 'The site name in the request is malformed.',
  'host-duplicate': 'The request named more than one site.',
  'credentials-duplicate': 'The request carried more than one set of credentials (Authorization header).',
  'path-invalid': 'The address contains characters or escapes that are not allowed.',
  'path-encoded-separator': 'The address contains an encoded slash or a backslash, which is not allowed.',
  'path-traversal': 'The address tries to step outside the application.',
  'framing-conflict': 'The request declared its length in conflicting ways.',
  'malformed-request': 'The request could not be read as HTTP.',
  'headers-too-large': 'The request headers are too large.',
  'request-timeout': 'The request took too long to arrive.',
  'no-route': 'No application is published at this address.',
  'websockets-not-allowed': 'This application does not accept WebSocket connections.',
  'upgrade-not-supported': 'Only WebSocket upgrades are passed through.',
  'upstream-unavailable': 'The application could not be reached. Try again shortly.',
  'upstream-timeout': 'The application did not answer in time. Try again shortly.',
  'shutting-down': 'This wardgate instance is restarting. Try again.',
  'login-required': 'Sign in to reach this application.',
  'step-up-required': 'This application needs a stronger or more recent sign-in.',
  'auth-strength-insufficient': 'This application needs a stronger sign-in than the one you used, such as a security key. Sign in again with it, or ask the help desk.',
  'idp-unavailable': 'The sign-in service cannot be reached right now. Try again shortly; if you are already signed in elsewhere, that keeps working.',
  'return-url-invalid': 'The sign-in link does not lead back to an application published here.',
  'signin-state-invalid': 'This sign-in link has expired or was already used. Go back to the application and sign in again.',
  'signin-browser-mismatch': 'This sign-in was started in a different browser. Go back to the application and sign in again.',
  'signin-idp-error': 'The sign-in service did not sign you in.',
  'signin-failed': 'The sign-in could not be completed. Go back to the application and sign in again.',
  'handoff-invalid': 'This sign-in link has expired or was already used. Go back to the application and sign in again.',
  'handoff-browser-mismatch': 'This sign-in link was made for a different browser. Go back to the application and sign in again.',
  'csrf-failed': 'The form was not sent from this site, or it has expired. Reload the page and try again.',
  'csrf-invalid': 'The form was not sent from this page, or your sign-in ended since it was opened. Nothing was changed. Reload the page and try again.',
  'grant-requester-not-allowed': 'Your account may not ask for access here. The security team can ask on your behalf.',
  'grant-approver-not-allowed': 'Only the people who approve access requests can open this page.',
  'break-glass-not-configured': 'This application has no emergency (break-glass) access.',
  'break-glass-not-allowed': 'Your account may not use emergency (break-glass) access to this application.',
  'endpoint-method': 'This wardgate address does not accept that kind of request.',
  'body-too-large': 'The request body is too large for this wardgate address.',
  'token-invalid': 'The access token is not valid.',
  'token-expired': 'The access token has expired.',
  'token-audience': 'The access token was issued for a different service.',
  'token-issuer': 'The access token was issued by an unknown party.',
  'token-algorithm': 'The access token is signed in a way that is not accepted.',
  'token-unknown-key': 'The access token is signed with an unknown key.',
  'store-unavailable': 'wardgate cannot reach its session store right now. Try again shortly.',
  'internal-error': 'Something went wrong inside wardgate. The request id below helps the help desk find out what.',
  'access-denied': 'You do not have access to this application right now.',
  'policy-error': 'wardgate could not evaluate the access rules for this application, so it refused the request.',
  'device-untrusted': 'This application can be used only from a device the hospital manages and has checked recently.',
  'device-unknown': 'wardgate does not know this device.',
  'device-unmanaged': 'This device is not managed by the hospital.',
  'device-noncompliant': 'This device does not meet the hospital\'s security requirements right now.',
  'device-mismatch': 'The device certificate and the device posture report name different devices.',
  'certificate-unknown': 'This device\'s certificate is not in the hospital\'s device inventory.',
  'posture-stale': 'This device has not been checked by the hospital\'s device management recently enough.',
  'posture-invalid': 'The device posture report is malformed or not meant for wardgate.',
  'posture-signature-invalid': 'The device posture report is not signed by the hospital\'s device management.',
  'posture-expired': 'The device posture report is too old.',
  'posture-replayed': 'The device posture report was already used by someone else.',
  'network-unauthorized': 'This application cannot be reached from your network.',
  'country-unauthorized': 'This application cannot be reached from the country you are connecting from.',
  'outside-hours': 'This application is closed at this time.',
  'user-unauthorized': 'Your account does not have access to this application.',
  'email-unauthorized': 'Your account does not have access to this application.',
  'domain-unauthorized': 'Accounts of your organisation do not have access to this application.',
  'groups-unauthorized': 'Your account is not in a group that has access to this application.',
  'claim-unauthorized': 'Your account or app does not have access to this application.',
  'acr-insufficient': 'This application needs a stronger sign-in, such as with a security key.',
  'amr-insufficient': 'This application needs a stronger sign-in, such as with a security key.',
  'auth-age-exceeded': 'This application needs a more recent sign-in.',
  'session-age-exceeded': 'Your session is too old for this application. Sign in again.',
  'idle-exceeded': 'Your session was idle too long for this application. Sign in again.',
  'method-unauthorized': 'This kind of request is not allowed here.',
  'path-unauthorized': 'This part of the application is not open to you.',
  'fhir-resource-unauthorized': 'This kind of record is not open to you or your app.',
  'scope-insufficient': 'Your app\'s access token does not allow this request.',
  'risk-too-high': 'Something about this request looked unusual, so it was refused.',
  'grant-missing': 'This application is open to you only while an approved access grant is in force, and none is now.',
};

/** What was missing, in plain words, by the category of the criteria that refused. */
const MISSING: Record<Category, string> = {
  'sign-in': 'a current sign-in',
  identity: 'an account that is allowed to use this application',
  authentication: 'a stronger or more recent sign-in, such as with a security key',
  scope: 'an app permission (access token scope) that covers this request',
  device: 'a trusted device: managed by the hospital, compliant and recently checked',
  network: 'an allowed network or country',
  time: 'the application\'s opening hours',
  request: 'a kind of request or record this application allows you',
  risk: 'a sign-in without signs of risk',
  grant: 'an access grant in force',
};

/**
 * The plain-words explanation of a reason code, undefined for codes without one (pass
 * reasons such as groups-ok). `wardgate policy explain` prints the same words the deny
 * page shows, so a security team reads what the user would.
 */
export function explainReason(code: string): string | undefined {
  return Object.hasOwn(EXPLANATIONS, code) ? EXPLANATIONS[code] : undefined;
}

/** What a category of missing condition means, in the deny page's words. */
export function describeMissing(category: Category): string {
  return MISSING[category];
}

/** A policy refusal's explanation; left out when the route hides details. */
export interface RefusalDetails {
  reasons: readonly string[];
  missing: readonly Category[];
  rule: string | undefined;
  remediation: string | undefined;
}

/** A way in the refused user can take: ask for a grant, break the glass. */
export interface RefusalLink {
  href: string;
  label: string;
}

export interface Refusal {
  status: number;
  reason: string;
  requestId: string;
  /** Extra headers, such as WWW-Authenticate or Set-Cookie. */
  headers?: OutgoingHttpHeaders;
  details?: RefusalDetails;
  links?: readonly RefusalLink[];
}

function wantsHtml(accept: string | undefined): boolean {
  return accept !== undefined && accept.includes('text/html');
}

function render(refusal: Refusal, accept: string | undefined): { type: string; body: string } {
  const explanation = EXPLANATIONS[refusal.reason] ?? 'The request was refused.';
  const details = refusal.details;
  if (!wantsHtml(accept)) {
    return {
      type: 'application/json',
      body: JSON.stringify({
        status: refusal.status,
        reason: refusal.reason,
        message: explanation,
        ...(details ? { reasons: details.reasons, missing: details.missing, rule: details.rule, remediation: details.remediation } : {}),
        ...(refusal.links?.length ? { links: refusal.links } : {}),
        requestId: refusal.requestId,
      }),
    };
  }
  const title = `${refusal.status} ${STATUS_CODES[refusal.status] ?? ''}`.trim();
  let body = `<p>${escapeHtml(explanation)}</p>`;
  if (details) {
    const needs = details.missing.map((category) => `<li>${escapeHtml(MISSING[category])}</li>`).join('');
    if (needs) body += `<p>To use this application you need:</p><ul>${needs}</ul>`;
    const more = details.reasons.slice(1).map((reason) => EXPLANATIONS[reason]).filter((text): text is string => text !== undefined && text !== explanation);
    for (const text of new Set(more)) body += `<p>${escapeHtml(text)}</p>`;
    if (details.remediation) body += `<p class="remedy">${escapeHtml(details.remediation)}</p>`;
  }
  for (const link of refusal.links ?? []) body += `<p class="way"><a href="${escapeHtml(link.href)}">${escapeHtml(link.label)}</a></p>`;
  const codes = details ? details.reasons : [refusal.reason];
  body += `<p>Reason: ${codes.map((code) => `<code>${escapeHtml(code)}</code>`).join(' ')}<br>`;
  if (details?.rule) body += `Rule: <code>${escapeHtml(details.rule)}</code><br>`;
  body += `Request id: <code>${escapeHtml(refusal.requestId)}</code></p>`;
  return {
    type: 'text/html; charset=utf-8',
    body: pageShell(title, body, 'code{background:#f2f2f2;padding:.1rem .3rem}.remedy{border-left:4px solid #0a6;padding-left:.8rem}.way{font-weight:600}'),
  };
}

function headersFor(refusal: Refusal, type: string, body: string, close: boolean): OutgoingHttpHeaders {
  return {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-request-id': refusal.requestId,
    ...refusal.headers,
    ...(close ? { connection: 'close' } : {}),
  };
}

/** Answers on a normal response. Malformed requests also close the connection. */
export function sendRefusal(res: Response, refusal: Refusal, accept: string | undefined): void {
  const { type, body } = render(refusal, accept);
  res.writeHead(refusal.status, headersFor(refusal, type, body, refusal.status === 400));
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** Answers on a raw socket (upgrade requests and unparsable ones), then closes it. */
export function writeRefusal(socket: Socket, refusal: Refusal, accept: string | undefined): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const { type, body } = render(refusal, accept);
  const headers = headersFor(refusal, type, body, true);
  let head = `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? ''}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    for (const item of Array.isArray(value) ? value : [value]) head += `${name}: ${String(item)}\r\n`;
  }
  socket.end(`${head}\r\n${body}`);
}

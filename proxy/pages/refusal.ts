import type { OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { STATUS_CODES } from 'node:http';
import type { Response } from '../exchange.js';
import { escapeHtml } from './html.js';

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
};

export interface Refusal {
  status: number;
  reason: string;
  requestId: string;
  /** Extra headers, such as WWW-Authenticate or Set-Cookie. */
  headers?: OutgoingHttpHeaders;
}

function wantsHtml(accept: string | undefined): boolean {
  return accept !== undefined && accept.includes('text/html');
}

function render(refusal: Refusal, accept: string | undefined): { type: string; body: string } {
  const explanation = EXPLANATIONS[refusal.reason] ?? 'The request was refused.';
  if (!wantsHtml(accept)) {
    return {
      type: 'application/json',
      body: JSON.stringify({ status: refusal.status, reason: refusal.reason, message: explanation, requestId: refusal.requestId }),
    };
  }
  const title = `${refusal.status} ${STATUS_CODES[refusal.status] ?? ''}`.trim();
  return {
    type: 'text/html; charset=utf-8',
    body: `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>`
      + '<meta name="viewport" content="width=device-width, initial-scale=1">'
      + '<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}'
      + 'code{background:#f2f2f2;padding:.1rem .3rem}</style></head><body>'
      + `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(explanation)}</p>`
      + `<p>Reason: <code>${escapeHtml(refusal.reason)}</code><br>Request id: <code>${escapeHtml(refusal.requestId)}</code></p>`
      + '</body></html>',
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

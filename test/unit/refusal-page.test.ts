import t from 'tap';
import type { OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { Response } from '../../proxy/exchange.js';
import { escapeHtml } from '../../proxy/pages/html.js';
import { sendRefusal, writeRefusal, type Refusal } from '../../proxy/pages/refusal.js';

/*
 * What a refused client is told. The reason and request id are echoed back, so they must
 * be escaped on the HTML page; API clients get the same facts as JSON.
 */

interface Sent {
  status: number;
  headers: OutgoingHttpHeaders;
  body: string | undefined;
}

/** A stand-in for ServerResponse that records what sendRefusal does with it. */
function capture(refusal: Refusal, accept: string | undefined, method = 'GET'): Sent {
  const sent: Sent = { status: 0, headers: {}, body: undefined };
  const res = {
    req: { method },
    writeHead(status: number, headers: OutgoingHttpHeaders) {
      sent.status = status;
      sent.headers = headers;
      return this;
    },
    end(body?: string) {
      sent.body = body;
      return this;
    },
  };
  sendRefusal(res as unknown as Response, refusal, accept);
  return sent;
}

const HOSTILE: Refusal = { status: 403, reason: '<script>alert(1)</script>', requestId: '"><img src=x onerror=alert(2)>&\'' };

t.test('escapeHtml', async (t) => {
  t.equal(escapeHtml(`<a href="x" title='y'>&</a>`), '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;', 'all five HTML metacharacters are escaped');
  t.equal(escapeHtml('&amp;'), '&amp;amp;', 'an existing entity is escaped again, so text shows as sent');
  t.equal(escapeHtml('plain text 123 /?=;'), 'plain text 123 /?=;', 'text without metacharacters is unchanged');
  t.equal(escapeHtml(''), '', 'the empty string stays empty');
});

t.test('the HTML page escapes the reason and the request id', async (t) => {
  const sent = capture(HOSTILE, 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8');
  const body = sent.body ?? '';
  t.equal(sent.status, 403, 'the refusal status is the response status');
  t.equal(sent.headers['content-type'], 'text/html; charset=utf-8', 'a browser gets an HTML page');
  t.notMatch(body, /<script>|<img/, 'no markup from the reason or request id reaches the page as markup');
  t.match(body, '<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>', 'the reason is shown, escaped');
  t.match(body, '<code>&quot;&gt;&lt;img src=x onerror=alert(2)&gt;&amp;&#39;</code>', 'the request id is shown, escaped');
  t.match(body, 'The request was refused.', 'an unknown reason gets the generic explanation');
  t.match(body, '<title>403 Forbidden</title>', 'the title is the status and its name');
  t.equal(sent.headers['content-length'], Buffer.byteLength(body), 'Content-Length is the byte length of the page');
  t.equal(sent.headers['x-content-type-options'], 'nosniff', 'the page cannot be sniffed into another type');
  t.equal(sent.headers['cache-control'], 'no-store', 'refusals are never cached');
  t.equal(sent.headers['x-request-id'], HOSTILE.requestId, 'the request id is also a header, for the help desk');
  t.equal(sent.headers.connection, undefined, 'a 403 does not close the connection');
});

t.test('API clients get JSON with the same facts', async (t) => {
  for (const accept of [undefined, 'application/json', '*/*', 'application/fhir+json']) {
    const sent = capture({ status: 400, reason: 'path-traversal', requestId: 'req-0123456789' }, accept);
    t.equal(sent.headers['content-type'], 'application/json', `Accept ${String(accept)} gets JSON`);
    t.same(JSON.parse(sent.body ?? ''), {
      status: 400,
      reason: 'path-traversal',
      message: 'The address tries to step outside the application.',
      requestId: 'req-0123456789',
    }, `Accept ${String(accept)}: the JSON carries status, reason code, explanation and request id`);
    t.equal(sent.headers.connection, 'close', `Accept ${String(accept)}: a 400 closes the connection`);
  }
  const hostile = capture(HOSTILE, 'application/json');
  t.same(JSON.parse(hostile.body ?? ''), { status: 403, reason: HOSTILE.reason, message: 'The request was refused.', requestId: HOSTILE.requestId },
    'hostile text round-trips through JSON unchanged (JSON is never rendered as HTML: nosniff)');
});

t.test('HEAD gets the headers and no body', async (t) => {
  const sent = capture({ status: 404, reason: 'no-route', requestId: 'req-0123456789' }, 'text/html', 'HEAD');
  t.equal(sent.body, undefined, 'no body is written for HEAD');
  t.ok(Number(sent.headers['content-length']) > 0, 'Content-Length still says how long the page would be');
});

t.test('writeRefusal answers on a raw socket and closes it', async (t) => {
  let written = '';
  let destroyed = false;
  const socket = {
    writable: true,
    end(data: string) {
      written = data;
    },
    destroy() {
      destroyed = true;
    },
  };
  writeRefusal(socket as unknown as Socket, { status: 400, reason: 'framing-conflict', requestId: 'req-<x>' }, 'text/html');
  const [head = '', body = ''] = written.split('\r\n\r\n');
  t.match(head, /^HTTP\/1\.1 400 Bad Request\r\n/, 'a status line opens the response');
  t.match(head, /\r\nconnection: close(\r\n|$)/, 'the connection is announced as closing');
  t.match(head, new RegExp(`\\r\\ncontent-length: ${Buffer.byteLength(body)}(\\r\\n|$)`), 'Content-Length matches the body');
  t.match(body, '<code>req-&lt;x&gt;</code>', 'the request id is escaped on the raw-socket page too');
  t.equal(destroyed, false, 'a writable socket is ended, not destroyed');

  const closed = { writable: false, end() { t.fail('nothing is written to a socket that cannot be written'); }, destroy() { destroyed = true; } };
  writeRefusal(closed as unknown as Socket, { status: 400, reason: 'malformed-request', requestId: 'req-1' }, undefined);
  t.equal(destroyed, true, 'a socket that cannot be written is destroyed');
});

t.test('extra headers (WWW-Authenticate, Set-Cookie) ride on a refusal', async (t) => {
  const refusal: Refusal = {
    status: 401,
    reason: 'token-invalid',
    requestId: 'req-0123456789',
    headers: { 'www-authenticate': 'Bearer realm="wardgate", error="invalid_token"', 'set-cookie': ['__Host-wardgate=; Max-Age=0; Path=/; Secure', 'b=2'] },
  };
  const sent = capture(refusal, 'application/json');
  t.equal(sent.status, 401);
  t.equal(sent.headers['www-authenticate'], 'Bearer realm="wardgate", error="invalid_token"', 'WWW-Authenticate is sent');
  t.same(sent.headers['set-cookie'], ['__Host-wardgate=; Max-Age=0; Path=/; Secure', 'b=2'], 'Set-Cookie stays a list');
  t.same(JSON.parse(sent.body ?? ''), { status: 401, reason: 'token-invalid', message: 'The access token is not valid.', requestId: 'req-0123456789' },
    'the body still carries status, reason, explanation and request id');
  t.equal(sent.headers['x-request-id'], 'req-0123456789', 'the standard headers are still there');
  t.equal(sent.headers.connection, undefined, 'a 401 does not close the connection');

  let written = '';
  const socket = { writable: true, end(data: string) { written = data; }, destroy() {} };
  writeRefusal(socket as unknown as Socket, refusal, undefined);
  const head = written.split('\r\n\r\n')[0] ?? '';
  t.match(head, /^HTTP\/1\.1 401 Unauthorized\r\n/, 'the raw-socket refusal has the status line');
  t.match(head, /\r\nwww-authenticate: Bearer realm="wardgate", error="invalid_token"(\r\n|$)/, 'and WWW-Authenticate');
  t.equal(head.match(/\r\nset-cookie: /g)?.length, 2, 'each Set-Cookie of a list is its own header line on a raw socket');
  t.match(head, /\r\nset-cookie: b=2(\r\n|$)/, 'written as given');
  t.match(head, /\r\nconnection: close(\r\n|$)/, 'and the connection still closes');
});

t.test('identity refusals explain themselves in plain words', async (t) => {
  for (const [reason, words] of [
    ['login-required', 'Sign in to reach this application.'],
    ['token-invalid', 'The access token is not valid.'],
    ['token-expired', 'The access token has expired.'],
    ['step-up-required', 'stronger or more recent sign-in'],
  ] as const) {
    const sent = capture({ status: 401, reason, requestId: 'req-1' }, 'text/html');
    t.match(sent.body, words, `${reason} has its own explanation`);
    t.notMatch(sent.body, 'The request was refused.', `${reason} does not fall back to the generic text`);
  }
});

import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendPage, sendStatusPage, type Html } from './page.js';

/*
 * What the demo apps share besides page markup: reading the request target safely, JSON
 * responses, the `/api/echo` endpoint that shows what wardgate forwarded, and the routing
 * of a one-page app. Bad input ends in a 400, 404 or 405, never in a thrown error.
 */

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

// Only the path and query are read from it; the host part is never used.
const PLACEHOLDER_ORIGIN = 'http://demo.invalid';

/**
 * The request target as a URL, or undefined when it is not origin-form (`/path?query`).
 * Prefixing the origin, rather than resolving against it, keeps `//host/path` a path; and
 * since the authority ends at that first `/`, what follows can only be path, query and
 * fragment, which the URL parser encodes rather than rejects, so this cannot throw.
 */
export function requestTarget(req: IncomingMessage): URL | undefined {
  const target = req.url ?? '';
  return target.startsWith('/') ? new URL(PLACEHOLDER_ORIGIN + target) : undefined;
}

export function isReadMethod(method: string | undefined): boolean {
  return method === 'GET' || method === 'HEAD';
}

export function sendJson(res: ServerResponse, status: number, body: unknown, contentType = 'application/json'): void {
  const payload = Buffer.from(JSON.stringify(body, null, 2), 'utf8');
  res.writeHead(status, {
    'content-type': `${contentType}; charset=utf-8`,
    'content-length': payload.length,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(payload);
}

/** Answers with exactly what arrived, so a demo can show what wardgate added and removed. */
export function sendEcho(res: ServerResponse, app: string, req: IncomingMessage): void {
  sendJson(res, 200, { app, method: req.method, url: req.url, headers: req.headers });
}

/** A handler serving one page at `/` and the echo endpoint; anything else is an error page. */
export function onePageApp(app: string, title: string, renderHome: (req: IncomingMessage) => Html): RequestHandler {
  return (req, res) => {
    const target = requestTarget(req);
    if (target === undefined) {
      sendStatusPage(res, 400, 'The request target must be a path such as /.');
    } else if (target.pathname === '/api/echo') {
      sendEcho(res, app, req);
    } else if (target.pathname !== '/') {
      sendStatusPage(res, 404, `Nothing here at ${target.pathname}.`);
    } else if (!isReadMethod(req.method)) {
      sendStatusPage(res, 405, `${req.method ?? 'This method'} is not supported here.`, { allow: 'GET, HEAD' });
    } else {
      sendPage(res, 200, title, renderHome(req));
    }
  };
}

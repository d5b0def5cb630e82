import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Response } from '../exchange.js';

/*
 * Small HTTP pieces the identity endpoints share: redirects that never get cached or
 * leak their URL (codes ride in them) and bounded form bodies.
 */

const NO_STORE = {
  'cache-control': 'no-store',
  pragma: 'no-cache',
  // Sign-in URLs carry codes and state: never send them on as a Referer.
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
};

/** 302 by default; 303 after a form POST, so the browser fetches the page again with GET. */
export function redirect(res: Response, location: string, cookies: readonly string[] = [], status: 302 | 303 = 302): void {
  res.writeHead(status, { ...NO_STORE, location, 'content-length': 0, ...(cookies.length ? { 'set-cookie': [...cookies] } : {}) });
  res.end();
}

/** An HTML page; `headers` replace the defaults (a page whose forms need Origin sent loosens Referrer-Policy). */
export function sendPage(res: Response, status: number, body: string, cookies: readonly string[] = [], headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    ...NO_STORE,
    ...headers,
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'",
    ...(cookies.length ? { 'set-cookie': [...cookies] } : {}),
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

export function sendJson(res: Response, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { ...NO_STORE, ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

export class BodyTooLargeError extends Error {}

/**
 * The whole body, refused with BodyTooLargeError past `limit` bytes: the rest is not read
 * (the caller answers and the connection closes). Shared by forms and the admin API's JSON.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        reject(new BodyTooLargeError(`body over ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

/** A urlencoded form body of at most `limit` bytes; other bodies read as empty. */
export async function readForm(req: IncomingMessage, limit = 16_384): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  let body: Buffer;
  try {
    body = await readBody(req, limit);
  } catch (err) {
    // Nothing more of an oversized form is worth reading.
    if (err instanceof BodyTooLargeError) req.destroy();
    throw err;
  }
  return type === 'application/x-www-form-urlencoded' ? new URLSearchParams(body.toString('utf8')) : new URLSearchParams();
}

/** A value that may travel in a URL in place of a secret it stands for. */
export function digest(value: string): string {
  return createHash('sha256').update(value).digest('base64url');
}

/** The token of an `Authorization: Bearer` header; undefined for another scheme or none. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined || header.length < 8) return undefined;
  // RFC 7235: the scheme is case-insensitive.
  return header.charCodeAt(6) === 0x20 && header.slice(0, 6).toLowerCase() === 'bearer' ? header.slice(7).trim() : undefined;
}

/** A quoted-string for a WWW-Authenticate parameter (quotes and backslashes dropped). */
export const quoted = (value: string): string => `"${value.replace(/["\\]/g, '')}"`;

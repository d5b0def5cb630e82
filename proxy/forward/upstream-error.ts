import type { UpstreamErrorKind } from '../metrics.js';

/*
 * Maps what undici and Node report into a small, stable set of kinds: a metric label, a
 * log field, and the status the client gets (502 for a broken upstream, 504 for a slow one).
 */

const BY_CODE: Record<string, UpstreamErrorKind> = {
  ECONNREFUSED: 'connect_refused',
  EHOSTUNREACH: 'connect_refused',
  ENETUNREACH: 'connect_refused',
  UND_ERR_CONNECT_TIMEOUT: 'connect_timeout',
  ETIMEDOUT: 'connect_timeout',
  ENOTFOUND: 'dns',
  EAI_AGAIN: 'dns',
  ECONNRESET: 'reset',
  EPIPE: 'reset',
  UND_ERR_SOCKET: 'reset',
  UND_ERR_CLOSED: 'reset',
  HPE_INVALID_CONSTANT: 'reset',
  UND_ERR_HEADERS_TIMEOUT: 'headers_timeout',
  UND_ERR_BODY_TIMEOUT: 'body_timeout',
  UND_ERR_HEADERS_OVERFLOW: 'other',
};

export function classifyUpstreamError(err: Error): UpstreamErrorKind {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const known = BY_CODE[code];
  if (known) return known;
  if (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT') || code.includes('SIGNATURE')) return 'tls';
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? classifyUpstreamError(cause) : 'other';
}

/** The status a client gets when nothing was sent yet. */
export function statusForUpstreamError(kind: UpstreamErrorKind): 502 | 504 {
  return kind === 'connect_timeout' || kind === 'headers_timeout' || kind === 'body_timeout' ? 504 : 502;
}

/** Whether a failure looks like a keep-alive connection the upstream had already closed. */
export function isStaleConnection(kind: UpstreamErrorKind): boolean {
  return kind === 'reset';
}

import type { Exchange } from '../exchange.js';
import type { Metrics, UpstreamErrorKind } from '../metrics.js';
import type { CompiledRoute } from '../routes.js';

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

/** The reason code a client sees for a failure with `status`. */
export function reasonForUpstreamStatus(status: 502 | 504): 'upstream-timeout' | 'upstream-unavailable' {
  return status === 504 ? 'upstream-timeout' : 'upstream-unavailable';
}

/** Notes an upstream failure on the exchange (kind and reason) and counts it; returns its status. */
export function recordUpstreamFailure(ex: Exchange, route: CompiledRoute, err: Error, metrics: Metrics): 502 | 504 {
  const kind = classifyUpstreamError(err);
  const status = statusForUpstreamError(kind);
  ex.upstreamError = kind;
  ex.reason = reasonForUpstreamStatus(status);
  metrics.upstreamErrors.inc({ route: route.id, kind });
  return status;
}

import type { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Exchange, Response } from '../exchange.js';
import type { Metrics } from '../metrics.js';
import { sendRefusal } from '../pages/refusal.js';
import type { CompiledRoute } from '../routes.js';
import { downstreamResponseHeaders } from './headers.js';
import { classifyUpstreamError, isStaleConnection, reasonForUpstreamStatus, recordUpstreamFailure } from './upstream-error.js';

/*
 * Forwards one HTTP exchange with undici's `stream`: the request body is read from the
 * client only as fast as the upstream takes it, and the response is written to the client
 * only as fast as it drains, so a 1 GiB body in either direction holds flat memory.
 */

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/**
 * One request on its way upstream. It is also the abort signal undici listens to:
 * undici takes any object with `on`/`once`/`removeListener` and `aborted`, and a
 * per-request AbortController (an EventTarget, with its listener bookkeeping) measured as
 * a large share of wardgate's CPU time per request.
 */
export class UpstreamAttempt {
  aborted = false;
  retried = false;
  sent = 0;
  private onAbort: (() => void) | undefined;

  constructor(
    readonly ex: Exchange,
    readonly res: Response,
    readonly route: CompiledRoute,
    readonly headers: string[],
    readonly body: IncomingMessage | null,
    readonly metrics: Metrics,
  ) {}

  on(_event: 'abort', listener: () => void): this {
    this.onAbort = listener;
    return this;
  }

  once(event: 'abort', listener: () => void): this {
    return this.on(event, listener);
  }

  removeListener(_event: 'abort', listener: () => void): this {
    if (this.onAbort === listener) this.onAbort = undefined;
    return this;
  }

  /** Aborts the upstream request (the client went away). */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const listener = this.onAbort;
    this.onAbort = undefined;
    listener?.();
  }
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function onResponseStart({ statusCode, headers, opaque }: Dispatcher.StreamFactoryData<UpstreamAttempt>): Response {
  const attempt = opaque;
  attempt.route.upstreamDuration.observe((performance.now() - attempt.sent) / 1000);
  attempt.res.writeHead(statusCode, downstreamResponseHeaders(headers, attempt.ex.id));
  return attempt.res;
}

function onFinished(this: UpstreamAttempt, err: Error | null): void {
  const { ex, res, route } = this;
  // Already accounted for: the client left, or the pipeline saw the response cut off.
  if (!err || ex.clientGone || ex.upstreamError) return;
  const kind = classifyUpstreamError(err);
  // An upstream may close a keep-alive connection just as we reuse it; a bodiless
  // idempotent request is safe to send once more on a fresh connection.
  if (!res.headersSent && !this.retried && this.body === null && isStaleConnection(kind) && IDEMPOTENT.has(ex.req.method ?? '')) {
    this.retried = true;
    dispatch(this);
    return;
  }
  const status = recordUpstreamFailure(ex, route, err, this.metrics);
  if (res.headersSent) {
    // Too late for a status: cut the response so the client cannot mistake it for whole.
    res.destroy(err);
    return;
  }
  sendRefusal(res, { status, reason: reasonForUpstreamStatus(status), requestId: ex.id }, ex.req.headers.accept);
}

function dispatch(attempt: UpstreamAttempt): void {
  const { ex, route } = attempt;
  const canonical = ex.canonical!;
  attempt.sent = performance.now();
  route.upstream.pool.stream<UpstreamAttempt>(
    {
      path: canonical.path + canonical.query,
      method: canonical.method as Dispatcher.HttpMethod,
      headers: attempt.headers,
      body: attempt.body,
      headersTimeout: route.timeouts.headers,
      bodyTimeout: route.timeouts.body,
      signal: attempt as unknown as EventEmitter,
      opaque: attempt,
    },
    onResponseStart,
    onFinished.bind(attempt),
  );
}

/** Sends the exchange upstream; returns the attempt, which the pipeline aborts if the client leaves. */
export function forwardHttp(ex: Exchange, res: Response, route: CompiledRoute, headers: string[], metrics: Metrics): UpstreamAttempt {
  const attempt = new UpstreamAttempt(ex, res, route, headers, hasBody(ex.req) ? ex.req : null, metrics);
  dispatch(attempt);
  return attempt;
}

import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { BlockList, Socket } from 'node:net';
import type { AccessLog } from './access-log.js';
import type { Logger } from './logger.js';
import { beginExchange, type Exchange, type Response } from './exchange.js';
import { upstreamRequestHeaders } from './forward/headers.js';
import { forwardHttp, type UpstreamAttempt } from './forward/http.js';
import { recordUpstreamFailure, statusForUpstreamError } from './forward/upstream-error.js';
import type { UpgradeOutcome, WebSocketTunnels } from './forward/websocket.js';
import type { Authentication } from './identity/authenticate.js';
import { appendClaimHeaders } from './identity/claim-headers.js';
import { isReservedPath } from './identity/endpoints.js';
import type { IdentityService } from './identity/service.js';
import { UNROUTED, type Metrics } from './metrics.js';
import { normalizeRequest } from './normalize.js';
import { accessLinks } from './pages/access-links.js';
import { denial } from './pages/decision.js';
import { sendRefusal, writeRefusal } from './pages/refusal.js';
import { buildContext, type ContextProviders } from './policy/build-context.js';
import type { BreakGlassFacts, RequestContext } from './policy/context.js';
import type { Decider } from './policy/decide.js';
import { BREAK_GLASS_RULE } from './policy/compile.js';
import type { Decision } from './policy/decision.js';
import type { Router } from './router.js';
import type { CompiledRoute } from './routes.js';
import { StoreUnavailableError } from './store/store.js';

/*
 * The request's way, top to bottom:
 *
 *   accept -> normalize -> route -> authenticate -> context -> decide -> forward -> record
 *
 * Each stage either hands the exchange on or answers it; nothing reaches `forward` that
 * every earlier stage did not let through. wardgate's own paths (/.wardgate/..., sign-in,
 * logout, JWKS) are answered right after `normalize`, on the auth host and on every
 * routed host, and never forwarded. WebSocket upgrades take the same way, and are decided
 * like any request.
 */

export interface PipelineState {
  inFlight: number;
  draining: boolean;
}

export interface PipelineDeps {
  router: Router<CompiledRoute>;
  identity: IdentityService;
  providers: ContextProviders;
  decide: Decider;
  logger: Logger;
  tunnels: WebSocketTunnels;
  metrics: Metrics;
  accessLog: AccessLog | undefined;
  trustedProxies: BlockList | undefined;
  state: PipelineState;
}

/** An authentication the policy decides on: an identity, or none (anonymous). */
type Decidable = Exclude<Authentication, { kind: 'refused' }>;

const IDLE_TIMED_OUT = Symbol('wardgate.idleTimedOut');

/** Marks a client connection as ended by wardgate's idle timeout (recorded as 408). */
export function markIdleTimeout(socket: Socket): void {
  (socket as Socket & { [IDLE_TIMED_OUT]?: boolean })[IDLE_TIMED_OUT] = true;
}

/** Marks responses (and upstream requests) allowed only by break-glass: `<id>; until=<time>`. */
const BREAK_GLASS_HEADER = 'x-wardgate-break-glass';
const breakGlassValue = (facts: BreakGlassFacts): string => `${facts.id}; until=${new Date(facts.endsAt).toISOString()}`;

function idleTimedOut(socket: Socket): boolean {
  return (socket as Socket & { [IDLE_TIMED_OUT]?: boolean })[IDLE_TIMED_OUT] === true;
}

export function createPipeline(deps: PipelineDeps) {
  const { router, identity, providers, decide, logger, tunnels, metrics, accessLog, trustedProxies, state } = deps;
  const { authenticator, endpoints, signer, authHost, authUrl } = identity;
  const unroutedDuration = metrics.requestDuration.labels(UNROUTED);

  function upstreamHeaders(ex: Exchange, route: CompiledRoute, breakGlass: BreakGlassFacts | undefined): string[] {
    const who = ex.identity!;
    const added = ['x-wardgate-assertion', signer.assertionFor(who, route.id)];
    // The application's own audit trail should show emergency access too.
    if (breakGlass) added.push(BREAK_GLASS_HEADER, breakGlassValue(breakGlass));
    if (route.auth.claimHeaders.length > 0) appendClaimHeaders(added, who, route.auth.claimHeaders);
    return upstreamRequestHeaders(ex.req.rawHeaders, ex.req.headers, {
      peerAddress: ex.peer.address,
      peerTrusted: ex.peer.trusted,
      proto: ex.peer.proto,
      requestId: ex.id,
      upstreamHost: route.preserveHost ? ex.canonical!.authority : undefined,
      authority: ex.canonical!.authority,
      passAuthorization: route.auth.passAuthorization,
      ownHeaders: route.auth.ownHeaders,
      identityHeaders: added,
    });
  }

  /** normalize: answers the refusal itself and returns false when refused. */
  function normalize(ex: Exchange, refuse: (status: number, reason: string) => void): boolean {
    const normalized = normalizeRequest(ex.req.method ?? '', ex.req.url ?? '', ex.req.rawHeaders);
    if (!normalized.ok) {
      refuse(400, normalized.reason);
      return false;
    }
    ex.canonical = normalized.request;
    return true;
  }

  /** wardgate's own paths, on the auth host and on every routed host. */
  function isReserved(ex: Exchange): boolean {
    const { host, path } = ex.canonical!;
    return (host === authHost || router.hasHost(host)) && isReservedPath(path);
  }

  /** route: answers the refusal itself and returns undefined when refused. */
  function routeOf(ex: Exchange, refuse: (status: number, reason: string) => void): CompiledRoute | undefined {
    const route = router.match(ex.canonical!.host, ex.canonical!.routingPath);
    if (!route) {
      refuse(404, 'no-route');
      return undefined;
    }
    ex.route = route;
    return route;
  }

  /** A stage that failed unexpectedly: the request is answered, never forwarded. */
  function failed(ex: Exchange, err: unknown, refuse: (status: number, reason: string) => void): void {
    const unavailable = err instanceof StoreUnavailableError;
    logger.error({ reqId: ex.id, err: (err as Error).message }, 'request could not be authenticated or decided');
    refuse(unavailable ? 503 : 500, unavailable ? 'store-unavailable' : 'internal-error');
  }

  /** context: who, from which device and network, when, asking for what. */
  function contextFor(ex: Exchange, auth: Decidable): Promise<{ auth: Decidable; ctx: RequestContext }> | { auth: Decidable; ctx: RequestContext } {
    const ctx = buildContext(ex, auth, providers);
    return ctx instanceof Promise ? ctx.then((built) => ({ auth, ctx: built })) : { auth, ctx };
  }

  /** decide: the route's policy on that context. Refusals keep the user, for the log. */
  function decideFor(ex: Exchange, route: CompiledRoute, ctx: RequestContext): Decision {
    const decision = decide(route, ctx, ex.id);
    ex.decision = decision;
    ex.identity = ctx.identity;
    ex.client = ctx.network.ip;
    if (decision.outcome !== 'allow') ex.reason = decision.reasons[0];
    return decision;
  }

  /**
   * An open WebSocket, decided again from a fresh context (now, the device as the inventory
   * and its posture say now). The tunnel itself is activity, so idle rules count from now.
   */
  function stillAllowed(ex: Exchange, route: CompiledRoute, auth: Decidable): boolean | Promise<boolean> {
    const check = (ctx: RequestContext): boolean => {
      const now = ctx.session ? { ...ctx, session: { ...ctx.session, lastSeenAt: ctx.time } } : ctx;
      const decision = route.policy.decide(now);
      if (decision.outcome === 'allow') return true;
      logger.info({ reqId: ex.id, route: route.id, user: ex.identity?.sub, outcome: decision.outcome, reasons: decision.reasons }, 'WebSocket closed: the policy no longer allows it');
      return false;
    };
    const ctx = buildContext(ex, auth, providers);
    return ctx instanceof Promise ? ctx.then(check) : check(ctx);
  }

  function record(ex: Exchange, status: number, bytesOut: number): void {
    const routeId = ex.route?.id ?? UNROUTED;
    const seconds = (performance.now() - ex.started) / 1000;
    requestCounter(routeId, ex.req.method ?? '', status).inc();
    (ex.route?.duration ?? unroutedDuration).observe(seconds);
    accessLog?.write({
      reqId: ex.id,
      route: routeId,
      method: ex.req.method,
      host: ex.canonical?.host,
      // The canonical path only: query strings often carry patient identifiers.
      path: ex.canonical?.path,
      status,
      durationMs: Math.round(seconds * 1e6) / 1000,
      bytesOut,
      // Behind a load balancer the peer is the balancer: log the client policy judged.
      client: ex.client ?? ex.peer.address,
      user: ex.identity?.sub,
      outcome: ex.decision?.outcome,
      rule: ex.decision?.rule,
      reason: ex.reason,
      upstreamError: ex.upstreamError,
    });
  }

  // prom-client hashes a labels object on every inc(); the few label sets in use are kept.
  const counters = new Map<string, ReturnType<Metrics['requests']['labels']>>();
  function requestCounter(route: string, method: string, code: number): ReturnType<Metrics['requests']['labels']> {
    const key = `${route} ${method} ${code}`;
    let counter = counters.get(key);
    if (!counter) {
      counter = metrics.requests.labels(route, method, String(code));
      counters.set(key, counter);
    }
    return counter;
  }

  function handleRequest(req: IncomingMessage, res: Response): void {
    const ex = beginExchange(req, trustedProxies);
    // Node detaches the socket from the request once the exchange is over; keep our own.
    const socket = req.socket;
    const bytesBefore = socket.bytesWritten;
    let attempt: UpstreamAttempt | undefined;
    state.inFlight++;
    res.once('close', () => {
      state.inFlight--;
      let status = res.statusCode;
      if (!res.writableFinished) {
        // undici destroys the response with its error when the upstream breaks mid-body;
        // a client that leaves destroys it without one.
        if (!ex.upstreamError && res.errored && ex.route) recordUpstreamFailure(ex, ex.route, res.errored, metrics);
        if (ex.upstreamError) status = statusForUpstreamError(ex.upstreamError);
        else {
          ex.clientGone = true;
          attempt?.abort();
          status = idleTimedOut(socket) ? 408 : 499;
        }
      }
      record(ex, status, socket.bytesWritten - bytesBefore);
    });
    // Draining: answer what is in flight, but tell every client to reconnect elsewhere.
    if (state.draining) res.setHeader('connection', 'close');

    const refuse = (status: number, reason: string): void => {
      ex.reason = reason;
      if (!res.headersSent) sendRefusal(res, { status, reason, requestId: ex.id }, req.headers.accept);
    };
    if (!normalize(ex, refuse)) return;
    if (isReserved(ex)) {
      void endpoints.handle(ex, res, ex.canonical!.host === authHost);
      return;
    }
    const route = routeOf(ex, refuse);
    if (!route) return;
    socket.setTimeout(route.timeouts.idle);
    authenticator.authenticate(ex, route)
      .then((auth) => (auth.kind === 'refused' ? auth : contextFor(ex, auth)))
      .then((result) => {
        if (res.destroyed) return;
        if ('kind' in result) return authenticator.refuse(ex, res, route, result);
        const { auth, ctx } = result;
        const decision = decideFor(ex, route, ctx);
        if (decision.outcome === 'deny') {
          const { authority, path, query } = ex.canonical!;
          const links = accessLinks(route, ctx.identity, `${authUrl.protocol}//${authority}${path}${query}`, authUrl);
          return sendRefusal(res, denial(decision, route.policy, ex.id, links), req.headers.accept);
        }
        if (decision.outcome !== 'allow') return authenticator.challenge(ex, res, route, decision, auth);
        const breakGlass = decision.rule === BREAK_GLASS_RULE ? ctx.breakGlass : undefined;
        if (breakGlass) res.setHeader(BREAK_GLASS_HEADER, breakGlassValue(breakGlass));
        attempt = forwardHttp(ex, res, route, upstreamHeaders(ex, route, breakGlass), metrics);
      })
      .catch((err: unknown) => failed(ex, err, refuse));
  }

  function handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const ex = beginExchange(req, trustedProxies);
    socket.on('error', () => socket.destroy());
    const bytesBefore = socket.bytesWritten;
    const finish = (status: number): void => record(ex, status, socket.bytesWritten - bytesBefore);
    const refuse = (status: number, reason: string): void => {
      ex.reason = reason;
      writeRefusal(socket, { status, reason, requestId: ex.id }, req.headers.accept);
      finish(status);
    };
    if (state.draining) return refuse(503, 'shutting-down');
    if (!normalize(ex, refuse)) return;
    if (isReserved(ex)) return refuse(400, 'upgrade-not-supported');
    const route = routeOf(ex, refuse);
    if (!route) return;
    // A WebSocket handshake is a GET (RFC 6455); anything else is not one we pass on.
    if (req.method !== 'GET' || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return refuse(400, 'upgrade-not-supported');
    if (!route.websockets) return refuse(403, 'websockets-not-allowed');
    authenticator.authenticate(ex, route)
      .then((auth) => (auth.kind === 'refused' ? auth : contextFor(ex, auth)))
      .then((result) => {
        if (socket.destroyed) return finish(499);
        if ('kind' in result) return finish(authenticator.refuseUpgrade(ex, socket, route, result));
        const { auth, ctx } = result;
        const decision = decideFor(ex, route, ctx);
        if (decision.outcome === 'deny') {
          const refusal = denial(decision, route.policy, ex.id);
          writeRefusal(socket, refusal, req.headers.accept);
          return finish(refusal.status);
        }
        if (decision.outcome !== 'allow') return finish(authenticator.challengeUpgrade(ex, socket, route, decision, auth));
        const breakGlass = decision.rule === BREAK_GLASS_RULE ? ctx.breakGlass : undefined;
        tunnels.forward(ex, socket, head, route, upstreamHeaders(ex, route, breakGlass), () => stillAllowed(ex, route, auth), (outcome: UpgradeOutcome) => finish(outcome.status));
      })
      .catch((err: unknown) => failed(ex, err, refuse));
  }

  /** Requests Node's parser could not read: answered here, never routed. */
  function handleClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    const code = err.code ?? '';
    if (code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, reason] = code === 'HPE_HEADER_OVERFLOW' ? [431, 'headers-too-large']
      : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'request-timeout']
      : code === 'HPE_UNEXPECTED_CONTENT_LENGTH' || code === 'HPE_INVALID_TRANSFER_ENCODING' || code === 'HPE_INVALID_CONTENT_LENGTH' ? [400, 'framing-conflict']
      : [400, 'malformed-request'];
    const requestId = randomUUID();
    writeRefusal(socket, { status, reason, requestId }, undefined);
    requestCounter(UNROUTED, 'unparsed', status).inc();
    accessLog?.write({ reqId: requestId, route: UNROUTED, method: undefined, host: undefined, path: undefined, status, reason, parserError: code, client: socket.remoteAddress });
  }

  return { handleRequest, handleUpgrade, handleClientError };
}

export type Pipeline = ReturnType<typeof createPipeline>;

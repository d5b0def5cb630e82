import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { createProxyServer } from 'http-proxy-3';
import type { Exchange } from '../exchange.js';
import type { Metrics } from '../metrics.js';
import type { CompiledRoute } from '../routes.js';
import { writeRefusal } from '../pages/refusal.js';
import { recordUpstreamFailure } from './upstream-error.js';
import { FrameBoundaryTracker, closeFrame } from './ws-frames.js';

/*
 * WebSocket upgrades, proxied by http-proxy-3 once the pipeline has let them through.
 * Every open tunnel is tracked by route so that wardgate can end them on demand (shutdown
 * now; revoked sessions and expired grants later) with a proper close frame.
 */

/** The outcome of an upgrade attempt, for the record stage; failures are already noted on the exchange. */
export interface UpgradeOutcome {
  status: number;
}

interface Tunnel {
  routeId: string;
  /** The wardgate session that opened it; revoking the session closes it. */
  sessionId: string | undefined;
  client: Socket;
  upstream: Socket | undefined;
  tracker: FrameBoundaryTracker;
  closing: ((chunk: Buffer) => void) | undefined;
  /** Decides the tunnel again (a window closed, a device fell out of compliance). */
  stillAllowed: StillAllowed;
}

/** The policy's answer for an open tunnel, now: true keeps it open. */
export type StillAllowed = () => boolean | Promise<boolean>;

interface Pending {
  route: CompiledRoute;
  tunnel: Tunnel;
  done: (outcome: UpgradeOutcome) => void;
}

/** How long a closing tunnel may take to finish its current frame and say goodbye. */
const CLOSE_GRACE_MS = 1000;

export class WebSocketTunnels {
  private readonly proxy = createProxyServer({ ws: true, xfwd: false });
  private readonly byRoute = new Map<string, Set<Tunnel>>();
  private readonly bySession = new Map<string, Set<Tunnel>>();
  private readonly pending = new WeakMap<IncomingMessage, Pending>();
  private readonly opening = new WeakMap<Socket, Tunnel>();

  constructor(private readonly metrics: Metrics) {
    this.proxy.on('proxyReqWs', (proxyReq, req) => {
      const pending = this.pending.get(req);
      if (pending) this.watchHandshake(proxyReq, pending);
    });
    this.proxy.on('open', (upstream) => {
      const tunnel = this.opening.get(upstream);
      if (!tunnel) return;
      this.opening.delete(upstream);
      upstream.on('data', (chunk: Buffer) => {
        if (tunnel.closing) tunnel.closing(chunk);
        else tunnel.tracker.consume(chunk);
      });
    });
    // Errors are reported through the per-call callback; this keeps a stray one from
    // becoming an unhandled 'error' event that would end the process.
    this.proxy.on('error', () => {});
  }

  /** Open tunnels per route, for the websockets_open gauge. */
  counts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [routeId, tunnels] of this.byRoute) counts.set(routeId, tunnels.size);
    return counts;
  }

  /**
   * Proxies an authorized upgrade. `headers` is the sanitized header list for upstream;
   * `done` is called once with the handshake's outcome.
   */
  forward(ex: Exchange, socket: Socket, head: Buffer, route: CompiledRoute, headers: string[], stillAllowed: StillAllowed, done: (o: UpgradeOutcome) => void): void {
    const req = ex.req;
    const upstreamHeaders: Record<string, string> = {};
    for (let i = 0; i < headers.length; i += 2) upstreamHeaders[headers[i]!.toLowerCase()] = headers[i + 1]!;
    upstreamHeaders.connection = 'Upgrade';
    upstreamHeaders.upgrade = 'websocket';
    // http-proxy-3 builds the upstream request from req.headers; the client's own are put
    // back once it has (below), since the tunnel's later policy checks read them.
    const clientHeaders = req.headers;
    req.headers = upstreamHeaders;
    req.url = ex.canonical!.path + ex.canonical!.query;

    const tunnel: Tunnel = {
      routeId: route.id,
      sessionId: ex.identity?.sessionId,
      client: socket,
      upstream: undefined,
      tracker: new FrameBoundaryTracker(),
      closing: undefined,
      stillAllowed,
    };
    let reported = false;
    const report = (outcome: UpgradeOutcome): void => {
      if (reported) return;
      reported = true;
      done(outcome);
    };
    this.pending.set(req, { route, tunnel, done: report });
    this.proxy.ws(req, socket, head, {
      target: route.upstream.wsTarget,
      agent: route.upstream.wsAgent,
      changeOrigin: !route.preserveHost,
    }, (err) => {
      const status = recordUpstreamFailure(ex, route, err, this.metrics);
      // Before the upgrade nothing has been sent: answer like any other refusal. After it,
      // the socket speaks WebSocket and http-proxy-3 just ends it.
      if (tunnel.upstream === undefined) writeRefusal(socket, { status, reason: ex.reason!, requestId: ex.id }, req.headers.accept);
      report({ status });
    });
    // Synchronous up to here: the upstream request already holds its own copy.
    req.headers = clientHeaders;
  }

  private watchHandshake(proxyReq: ClientRequest, { route, tunnel, done }: Pending): void {
    proxyReq.setTimeout(route.timeouts.headers, () => {
      proxyReq.destroy(Object.assign(new Error('upstream WebSocket handshake timed out'), { code: 'UND_ERR_HEADERS_TIMEOUT' }));
    });
    proxyReq.on('response', (res: IncomingMessage) => done({ status: res.statusCode ?? 502 }));
    // Runs before http-proxy-3's own 'upgrade' listener, which pipes the sockets right after.
    proxyReq.on('upgrade', (_res: IncomingMessage, upstream: Socket) => {
      proxyReq.setTimeout(0);
      tunnel.upstream = upstream;
      // The frame tracker attaches on 'open', after http-proxy-3 has put back the bytes
      // that came with the 101 and piped the sockets: a 'data' listener added before
      // that would switch the socket to flowing and swallow those bytes.
      this.opening.set(upstream, tunnel);
      let set = this.byRoute.get(tunnel.routeId);
      if (!set) {
        set = new Set();
        this.byRoute.set(tunnel.routeId, set);
      }
      set.add(tunnel);
      const { sessionId } = tunnel;
      if (sessionId !== undefined) {
        let mine = this.bySession.get(sessionId);
        if (!mine) {
          mine = new Set();
          this.bySession.set(sessionId, mine);
        }
        mine.add(tunnel);
      }
      tunnel.client.once('close', () => {
        set.delete(tunnel);
        if (sessionId !== undefined) {
          const mine = this.bySession.get(sessionId);
          mine?.delete(tunnel);
          if (mine?.size === 0) this.bySession.delete(sessionId);
        }
        upstream.destroy();
      });
      done({ status: 101 });
    });
  }

  /** Closes one route's tunnels with `code`; returns how many were open. */
  closeRoute(routeId: string, code: number, reason: string): number {
    const tunnels = this.byRoute.get(routeId);
    if (!tunnels) return 0;
    for (const tunnel of tunnels) this.close(tunnel, code, reason);
    return tunnels.size;
  }

  /** Closes the tunnels opened by these sessions (they were revoked); returns how many. */
  closeSessions(sessionIds: readonly string[], code: number, reason: string): number {
    let count = 0;
    for (const id of sessionIds) {
      const tunnels = this.bySession.get(id);
      if (!tunnels) continue;
      for (const tunnel of tunnels) this.close(tunnel, code, reason);
      count += tunnels.size;
    }
    return count;
  }

  /**
   * Decides every open tunnel again and closes, with 1008, those the policy no longer
   * allows: a request is decided once, a WebSocket for as long as it stays open.
   * Returns how many were closed (or are being closed, for answers still pending).
   */
  recheck(): number {
    let closed = 0;
    const end = (tunnel: Tunnel): void => this.close(tunnel, 1008, 'access ended');
    for (const tunnels of this.byRoute.values()) {
      for (const tunnel of tunnels) {
        if (tunnel.closing) continue;
        let verdict: boolean | Promise<boolean>;
        try {
          verdict = tunnel.stillAllowed();
        } catch {
          verdict = false;
        }
        if (verdict === true) continue;
        closed++;
        if (verdict === false) end(tunnel);
        else verdict.then((ok) => (ok ? undefined : end(tunnel)), () => end(tunnel));
      }
    }
    return closed;
  }

  closeAll(code: number, reason: string): number {
    let count = 0;
    for (const routeId of this.byRoute.keys()) count += this.closeRoute(routeId, code, reason);
    return count;
  }

  private close(tunnel: Tunnel, code: number, reason: string): void {
    const { client, upstream } = tunnel;
    if (tunnel.closing || !upstream) return;
    upstream.unpipe(client);
    client.unpipe(upstream);
    const timer = setTimeout(() => {
      client.destroy();
      upstream.destroy();
    }, CLOSE_GRACE_MS);
    timer.unref();
    const finish = (): void => {
      tunnel.closing = () => {};
      // The close frame goes out before the upstream is dropped: http-proxy-3 ends the
      // client socket when the upstream closes.
      client.end(closeFrame(code, reason));
      // Read (and drop) the client's close reply so its FIN is seen and the socket ends now,
      // not when the grace timer fires.
      client.resume();
      upstream.destroy();
    };
    if (tunnel.tracker.atBoundary) {
      finish();
      return;
    }
    // Mid-frame: pass on the rest of the current frame, then close.
    tunnel.closing = (chunk) => {
      const n = tunnel.tracker.consume(chunk, true);
      client.write(chunk.subarray(0, n));
      if (tunnel.tracker.atBoundary) finish();
    };
    upstream.resume();
  }
}

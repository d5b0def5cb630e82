import { Agent as HttpsAgent } from 'node:https';
import { Pool } from 'undici';
import type { RouteConfig } from '../../config/schema.js';

/*
 * One undici Pool per upstream. Routes that name the same upstream with the same TLS and
 * connect settings share a pool, so keep-alive connections are reused across them.
 */

export interface Upstream {
  readonly pool: Pool;
  /** Target for http-proxy-3 WebSocket upgrades: same origin, TLS and server name. */
  readonly wsTarget: URL;
  readonly wsAgent: HttpsAgent | undefined;
}

function poolKey(route: RouteConfig): string {
  const { url, tls, connections } = route.upstream;
  return JSON.stringify([
    url.origin, connections, route.timeouts.connect, tls?.serverName,
    tls?.ca?.toString('base64'), tls?.cert?.toString('base64'), tls?.key?.toString('base64'),
  ]);
}

function createUpstream(route: RouteConfig): Upstream {
  const { url, tls, connections } = route.upstream;
  const secure = url.protocol === 'https:';
  const tlsOptions = secure
    ? { ca: tls?.ca, cert: tls?.cert, key: tls?.key, servername: tls?.serverName ?? url.hostname, rejectUnauthorized: true }
    : undefined;
  const pool = new Pool(url.origin, {
    connections,
    connect: { timeout: route.timeouts.connect, ...tlsOptions },
    // The per-request values are passed on each dispatch; these are only the fallbacks.
    headersTimeout: route.timeouts.headers,
    bodyTimeout: route.timeouts.body,
  });
  return {
    pool,
    wsTarget: url,
    // WebSocket handshakes are single-use connections; an agent carries the TLS settings.
    wsAgent: tlsOptions ? new HttpsAgent({ ...tlsOptions, keepAlive: false, timeout: route.timeouts.connect }) : undefined,
  };
}

/** Builds the upstreams for a set of routes, sharing pools where routes agree. */
export class UpstreamSet {
  private readonly byKey = new Map<string, Upstream>();

  for(route: RouteConfig): Upstream {
    const key = poolKey(route);
    let upstream = this.byKey.get(key);
    if (!upstream) {
      upstream = createUpstream(route);
      this.byKey.set(key, upstream);
    }
    return upstream;
  }

  /** Waits for in-flight requests to end; `force` aborts them instead. */
  async close(force = false): Promise<void> {
    await Promise.all([...this.byKey.values()].map(async (u) => {
      u.wsAgent?.destroy();
      await (force ? u.pool.destroy() : u.pool.close());
    }));
  }
}

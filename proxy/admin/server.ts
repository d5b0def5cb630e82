import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { WardgateConfig } from '../../config/schema.js';
import { listen } from '../listen.js';
import { API_PREFIX, createAdminApi } from './api.js';
import type { AdminApiDeps } from './route.js';

/*
 * The admin listener: a separate address (loopback or a management network) for
 * Prometheus, orchestrators and, when admin.api is configured, the admin API. Nothing
 * here is routed to an upstream. With admin.tls it speaks HTTPS; with tls.clientCa it
 * asks for (never requires) a client certificate, so scrapes and probes need none and the
 * API decides what a missing or foreign one means.
 */

export interface AdminSources {
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Liveness: the process can answer. */
  healthy(): boolean;
  /** Readiness: listeners are up and not draining. */
  ready(): boolean;
}

function json(status: number, body: unknown): { status: number; type: string; body: string } {
  return { status, type: 'application/json', body: JSON.stringify(body) };
}

export async function startAdminServer(config: WardgateConfig, sources: AdminSources, deps: Omit<AdminApiDeps, 'config'>): Promise<Server> {
  const { admin } = config;
  const api = admin.api ? createAdminApi({ ...deps, config, api: admin.api }) : undefined;
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '').split('?')[0];
    const send = ({ status, type, body }: { status: number; type: string; body: string }): void => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (path === API_PREFIX || path?.startsWith(`${API_PREFIX}/`)) {
      if (api) api.handle(req, res);
      else send(json(404, { error: 'not-found', message: 'the admin API is not enabled (admin.api)' }));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(json(405, { error: 'method-not-allowed' }));
    if (path === '/healthz') return send(sources.healthy() ? json(200, { status: 'ok' }) : json(503, { status: 'unhealthy' }));
    if (path === '/readyz') return send(sources.ready() ? json(200, { status: 'ready' }) : json(503, { status: 'not-ready' }));
    if (path === '/metrics') {
      sources.metrics().then(
        ({ contentType, body }) => send({ status: 200, type: contentType, body }),
        (err: unknown) => send(json(500, { error: 'metrics-unavailable', message: String(err) })),
      );
      return;
    }
    send(json(404, { error: 'not-found' }));
  };
  const tls = admin.tls;
  const server = tls
    ? createHttpsServer({
      cert: tls.cert,
      key: tls.key,
      minVersion: 'TLSv1.2',
      ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: false } : {}),
    }, handler)
    : createServer(handler);
  server.on('clientError', (_err, socket) => socket.destroy());
  await listen(server, admin.listen, 'admin');
  return server;
}

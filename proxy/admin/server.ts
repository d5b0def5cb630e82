import { createServer, type Server } from 'node:http';
import type { ListenAddress } from '../../config/schema.js';
import { listen } from '../listen.js';

/*
 * The admin listener: a separate address (loopback or a management network) for
 * Prometheus and orchestrators. Nothing here is routed to an upstream.
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

export async function startAdminServer(address: ListenAddress, sources: AdminSources): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const send = ({ status, type, body }: { status: number; type: string; body: string }): void => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
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
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await listen(server, address, 'admin');
  return server;
}

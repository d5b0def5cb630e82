import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/*
 * A real HTTP upstream on loopback that records what reached it, so tests can assert what
 * wardgate forwarded (and that refused requests forwarded nothing).
 */

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  bodyBytes: number;
}

export interface TestUpstream {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  readonly seen: SeenRequest[];
  /** Connections accepted so far, and those still open. */
  readonly connections: { accepted: number; open: Set<Socket> };
  close(): Promise<void>;
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => void;

/** Echoes what it received as JSON. */
export const echo: UpstreamHandler = (_req, res, seen) => {
  const body = JSON.stringify({ method: seen.method, url: seen.url, headers: seen.headers, bodyBytes: seen.bodyBytes });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
};

/**
 * Starts an upstream. By default the request body is read fully before `handler` runs;
 * pass `streaming: true` to get the request untouched (the handler reads it).
 */
export async function startUpstream(handler: UpstreamHandler = echo, options: { streaming?: boolean } = {}): Promise<TestUpstream> {
  const seen: SeenRequest[] = [];
  const connections = { accepted: 0, open: new Set<Socket>() };
  const server = createServer((req, res) => {
    const record: SeenRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0 };
    seen.push(record);
    if (options.streaming) {
      handler(req, res, record);
      return;
    }
    req.on('data', (chunk: Buffer) => {
      record.bodyBytes += chunk.length;
    });
    req.on('end', () => handler(req, res, record));
  });
  server.on('connection', (socket) => {
    connections.accepted++;
    connections.open.add(socket);
    socket.on('close', () => connections.open.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    seen,
    connections,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

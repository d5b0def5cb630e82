// The Node ceiling: the least a Node reverse proxy can do. A plain http server that
// forwards every request through one undici Pool and streams the answer back. No routing,
// no policy, no logging. Usage: node bare-undici.mjs UPSTREAM_URL PORT (or env UPSTREAM, PORT).
import http from 'node:http';
import { Pool } from 'undici';

const upstream = process.argv[2] ?? process.env.UPSTREAM ?? 'http://127.0.0.1:8080';
const port = Number(process.argv[3] ?? process.env.PORT ?? 8081);
const pool = new Pool(upstream, { connections: 256 });
// Hop-by-hop headers belong to one connection and are not forwarded; undici sets host itself.
const HOP = ['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer', 'host'];

http.createServer((req, res) => {
  const headers = { ...req.headers };
  for (const name of HOP) delete headers[name];
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.stream(
    { method: req.method, path: req.url, headers, body: hasBody ? req : null },
    ({ statusCode, headers: upstreamHeaders }) => {
      for (const name of HOP) delete upstreamHeaders[name];
      res.writeHead(statusCode, upstreamHeaders);
      return res; // undici writes the body into res and ends it
    },
    (err) => {
      if (!err) return;
      if (!res.headersSent) res.writeHead(502);
      res.end();
    },
  );
}).listen(port, '127.0.0.1');

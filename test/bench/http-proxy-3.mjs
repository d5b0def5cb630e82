// What Node users deploy today: http-proxy-3 (the maintained http-proxy) behind a plain
// http server, with a keep-alive agent so it reuses upstream connections as it would in
// production. Usage: node http-proxy-3.mjs UPSTREAM_URL PORT (or env UPSTREAM, PORT).
import http from 'node:http';
import { createProxyServer } from 'http-proxy-3';

const upstream = process.argv[2] ?? process.env.UPSTREAM ?? 'http://127.0.0.1:8080';
const port = Number(process.argv[3] ?? process.env.PORT ?? 8082);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const proxy = createProxyServer({ target: upstream, agent, changeOrigin: true });

proxy.on('error', (_err, _req, res) => {
  // res is a ServerResponse for http requests (a socket only for websocket upgrades).
  if (res instanceof http.ServerResponse) {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  } else {
    res.destroy();
  }
});

http.createServer((req, res) => proxy.web(req, res)).listen(port, '127.0.0.1');

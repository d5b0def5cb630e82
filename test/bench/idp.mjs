// The benchmark's identity provider: the demo IdP (a real oidc-provider, dist/proxy/demo/idp.js,
// built by `npm run build`) with the clients the identity-aware contenders need:
//   wardgate-bench  wardgate's relying party, redirect http://auth.localhost:<wardgate port>/.wardgate/callback
//   apache-bench    mod_auth_openidc's, redirect http://bench.localhost:<apache port>/redirect_uri
//   bench-api       an API client (client_credentials) whose tokens are JWTs for wardgate's bearer audience
// Tokens live long (access and ID tokens 1 h), so nothing is refreshed while a contender is measured.
//
//   node test/bench/idp.mjs --wardgate-port N --apache-port N [--port N] [--info FILE]
//
// --port 0 (the default) picks a free port. Once listening it writes what the other scripts need
// (issuer, client ids and secrets, audience) as JSON to --info (or stdout), then runs until
// SIGTERM or SIGINT. Set BENCH_IDP_LOG=1 to log every IdP event to stderr (sign-ins always are).
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'wardgate-port': { type: 'string' },
    'apache-port': { type: 'string' },
    info: { type: 'string' },
  },
});
const port = (name) => {
  const text = values[name];
  const n = Number(text);
  if (text === undefined || !Number.isInteger(n) || n < 0 || n > 65535) {
    console.error(`usage: node idp.mjs --wardgate-port N --apache-port N [--port N] [--info FILE] (bad --${name}: ${text ?? 'missing'})`);
    process.exit(2);
  }
  return n;
};
const idpPort = port('port');
const wardgatePort = port('wardgate-port');
const apachePort = port('apache-port');

const { startDemoIdp } = await import(pathToFileURL(join(ROOT, 'dist/proxy/demo/idp.js')).href);

// Fresh secrets per run: nothing here outlives the benchmark.
const secret = () => randomBytes(18).toString('base64url');
const wardgate = { clientId: 'wardgate-bench', clientSecret: secret(), redirectUri: `http://auth.localhost:${wardgatePort}/.wardgate/callback` };
const apache = { clientId: 'apache-bench', clientSecret: secret(), redirectUri: `http://bench.localhost:${apachePort}/redirect_uri` };
const api = { clientId: 'bench-api', clientSecret: secret(), audience: 'http://api.bench.localhost/', scope: 'bench.read' };

const verbose = process.env.BENCH_IDP_LOG === '1';
const idp = await startDemoIdp({
  port: idpPort,
  clients: [
    { client_id: wardgate.clientId, client_secret: wardgate.clientSecret, redirect_uris: [wardgate.redirectUri], grant_types: ['authorization_code', 'refresh_token'] },
    { client_id: apache.clientId, client_secret: apache.clientSecret, redirect_uris: [apache.redirectUri], grant_types: ['authorization_code', 'refresh_token'] },
    { client_id: api.clientId, client_secret: api.clientSecret, grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
  ],
  resources: { [api.audience]: { scope: api.scope } },
  ttl: { AccessToken: 3600, IdToken: 3600, ClientCredentials: 3600, RefreshToken: 86_400, Session: 86_400, Grant: 86_400 },
  logger: (msg, fields) => {
    if (verbose || /sign-in|error|failed/.test(msg)) console.error(new Date().toISOString(), msg, JSON.stringify(fields ?? {}));
  },
});

const info = {
  issuer: idp.issuer,
  port: idp.port,
  discovery: `${idp.issuer}/.well-known/openid-configuration`,
  tokenEndpoint: idp.provider.urlFor('token'),
  wardgate,
  apache,
  api,
};
const text = `${JSON.stringify(info, null, 2)}\n`;
if (values.info) writeFileSync(values.info, text, { mode: 0o600 });
else process.stdout.write(text);
console.error(`bench idp: ${idp.issuer} (wardgate ${wardgate.redirectUri}, apache ${apache.redirectUri})`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  idp.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

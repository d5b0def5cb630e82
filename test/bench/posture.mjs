// Device posture assertions for the benchmark's wardgate-policy-* contenders: what a hospital
// MDM's agent adds to every request of a managed laptop (plugins/device/posture.ts).
//
//   node test/bench/posture.mjs keys PRIVATE_PEM PUBLIC_PEM
//       Generates the bench MDM's EC P-256 key pair: the private key (PKCS#8, mode 0600) signs,
//       the public key (SPKI) goes in the bench config's devices.posture.keys.
//   node test/bench/posture.mjs mint PRIVATE_PEM --issuer ISS [--audience wardgate]
//                               [--device bench-laptop-01] [--ttl 900] [--header x-device-posture]
//       Prints "X-Device-Posture: <jwt>": typ device-posture+jwt, ES256, iss, aud, sub = the
//       device id, managed and compliant true, observed_at = iat = now (epoch s),
//       exp = now + --ttl seconds, a fresh jti.
//
// jose comes from the project's node_modules, as wardgate verifies with it.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { importPKCS8, SignJWT } from 'jose';

function usage() {
  console.error('usage: node posture.mjs keys PRIVATE_PEM PUBLIC_PEM | node posture.mjs mint PRIVATE_PEM --issuer ISS [--audience A] [--device ID] [--ttl SECONDS] [--header NAME]');
  process.exit(2);
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    issuer: { type: 'string' },
    audience: { type: 'string', default: 'wardgate' },
    device: { type: 'string', default: 'bench-laptop-01' },
    ttl: { type: 'string', default: '900' },
    header: { type: 'string', default: 'X-Device-Posture' },
  },
});
const [mode, ...files] = positionals;

if (mode === 'keys' && files.length === 2) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(files[0], privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(files[1], publicKey.export({ type: 'spki', format: 'pem' }));
} else if (mode === 'mint' && files.length === 1 && values.issuer) {
  const ttl = Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl <= 0) usage();
  const key = await importPKCS8(readFileSync(files[0], 'utf8'), 'ES256');
  const now = Math.floor(Date.now() / 1000);
  const jwt = await new SignJWT({ managed: true, compliant: true, observed_at: now, os: 'bench', disk_encryption: true })
    .setProtectedHeader({ alg: 'ES256', typ: 'device-posture+jwt' })
    .setIssuer(values.issuer)
    .setAudience(values.audience)
    .setSubject(values.device)
    .setJti(randomUUID())
    .setIssuedAt(now)
    .setExpirationTime(now + ttl)
    .sign(key);
  console.log(`${values.header}: ${jwt}`);
} else {
  usage();
}

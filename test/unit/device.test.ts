import t from 'tap';
import { execFileSync, execSync } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { Agent, createServer, request } from 'node:https';
import { Socket, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import pino from 'pino';
import { deviceCertificate, parseSubjectAltName, type DeviceCertificate } from '../../plugins/device/certificate.js';
import { devicesSchema, type DevicesConfig } from '../../plugins/device/config.js';
import { bindingKey, PostureVerifier } from '../../plugins/device/posture.js';
import { createDeviceProvider, type DeviceProvider } from '../../plugins/device/provider.js';
import { beginExchange, type Exchange } from '../../proxy/exchange.js';
import type { Identity } from '../../proxy/identity/identity.js';
import type { DeviceContext, PartialContext } from '../../proxy/policy/context.js';
import { MemoryStore } from '../../proxy/store/memory.js';
import { StoreUnavailableError, type Json } from '../../proxy/store/store.js';
import { makePki, type Pki } from '../helpers/pki.js';
import { until } from '../helpers/wait.js';

/*
 * The device context provider. A device is recognised by a client certificate that chains
 * to the device CA (looked up in the inventory by SPKI pin or SAN) and/or by a posture
 * assertion signed by the MDM. Proved here with real certificates over real TLS, real keys,
 * and a real MemoryStore for the replay guard: what each source says, how they combine,
 * every way an assertion is refused and the problem code it gets, that an assertion cannot
 * be carried over to another user, and that the answer comes synchronously once cached.
 */

const dir = mkdtempSync(join(tmpdir(), 'wardgate-device-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const ISSUER = 'https://mdm.hospital.example';
const silent = pino({ level: 'silent' });

let clock = Date.now();
const now = (): number => clock;
const seconds = (): number => Math.floor(clock / 1000);

// --- keys ---

const mdm = await generateKeyPair('ES256', { extractable: true });
const rogueKey = await generateKeyPair('ES256', { extractable: true });
const MDM_PEM = await exportSPKI(mdm.publicKey);
writeFileSync(join(dir, 'mdm.pub.pem'), MDM_PEM);
writeFileSync(join(dir, 'mdm.jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(mdm.publicKey)), kid: 'mdm-1' }] }));

interface Sign {
  claims?: JWTPayload;
  header?: Record<string, unknown>;
  key?: CryptoKey;
}

/** A posture assertion as the MDM issues it: every claim fresh and valid unless overridden (undefined removes one). */
async function assertion(options: Sign = {}): Promise<string> {
  const claims: JWTPayload = {
    iss: ISSUER, aud: 'wardgate', sub: 'LT-0017', jti: randomUUID(), iat: seconds(), exp: seconds() + 300,
    observed_at: seconds() - 60, managed: true, compliant: true, os: 'Windows 11 24H2', disk_encryption: true, ...options.claims,
  };
  for (const [name, value] of Object.entries(claims)) if (value === undefined) delete claims[name];
  const header: Record<string, unknown> = { alg: 'ES256', typ: 'device-posture+jwt', ...options.header };
  for (const [name, value] of Object.entries(header)) if (value === undefined) delete header[name];
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(options.key ?? mdm.privateKey);
}

// --- certificates ---

const pki = makePki('wardgate device CA');
const serverCert = pki.issue('gateway.test');
const laptop = pki.issue('laptop-17.devices.hospital.example');
const cart = pki.issue('cart-3.devices.hospital.example');
const stranger = pki.issue('laptop-99.devices.hospital.example');
const rogue = makePki('rogue CA').issue('laptop-17.devices.hospital.example');

/** A leaf from `ca` with the given subjectAltName extension line (pki.issue knows only one DNS name). */
function issueWith(ca: Pki, name: string, san: string): { cert: string; key: string } {
  const key = join(ca.dir, `${name}.key`);
  const csr = join(ca.dir, `${name}.csr`);
  const cert = join(ca.dir, `${name}.crt`);
  const ext = join(ca.dir, `${name}.ext`);
  writeFileSync(ext, `subjectAltName=${san}\n`);
  const run = (args: string[]): void => void execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  run(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
  run(['x509', '-req', '-in', csr, '-CA', ca.caCert, '-CAkey', ca.caKey, '-CAcreateserial', '-days', '1', '-extfile', ext, '-out', cert]);
  return { cert, key };
}
const badge = issueWith(pki, 'badge-1', 'URI:urn:uuid:6f1c0a52-1b7e-4c55-9a39-0f7d1e1c2b3a,DNS:badge-1.devices.hospital.example');
const twoNames = issueWith(pki, 'two-names', 'DNS:laptop-17.devices.hospital.example,DNS:cart-3.devices.hospital.example');

/** The SPKI pin as the inventory documentation says to make one, with openssl alone. */
function pinOf(cert: string): string {
  const hash = execSync(`openssl x509 -in '${cert}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`);
  return `sha256/${hash.toString().trim()}`;
}
const LAPTOP_PIN = pinOf(laptop.cert);

// --- config and provider ---

const schema = devicesSchema(dir);
const POSTURE = { issuer: ISSUER, keys: ['mdm.pub.pem'] };
const LAPTOP = { id: 'LT-0017', spki: LAPTOP_PIN, managed: true, compliant: true, os: 'Windows 11 23H2', diskEncrypted: false };

let inventories = 0;
/** A config with an inventory of `devices` (written as JSON) and whatever else `extra` says. */
function configWith(devices: object[] | undefined, extra: Record<string, unknown> = {}): DevicesConfig {
  const input: Record<string, unknown> = { ...extra };
  if (devices) {
    const name = `inventory-${++inventories}.json`;
    writeFileSync(join(dir, name), JSON.stringify({ devices }));
    input.inventory = name;
  }
  return schema.parse(input);
}

const providers: DeviceProvider[] = [];
t.teardown(() => Promise.all(providers.map((p) => p.close())));

function providerWith(config: DevicesConfig, store = new MemoryStore()): DeviceProvider {
  const provider = createDeviceProvider({ config, store, logger: silent, now, watchInventory: false });
  providers.push(provider);
  return provider;
}

function identity(sub: string): Identity {
  return {
    kind: 'session', sub, email: undefined, name: undefined, groups: [], idpSid: undefined, sessionId: 's', scopes: [],
    amr: [], acr: undefined, authTime: undefined, expiresAt: clock + 3_600_000, claims: {},
  };
}

function partial(sub: string | undefined): PartialContext {
  return { identity: sub === undefined ? undefined : identity(sub), session: undefined, request: { method: 'GET', host: 'epic.example', path: '/' }, time: clock };
}

/** An exchange over a plain (unconnected, non-TLS) socket: no certificate, only headers. */
function exchange(headers: Record<string, string> = {}): Exchange {
  return beginExchange({ headers, socket: new Socket() } as unknown as IncomingMessage, undefined);
}

/** The device context for an assertion (no certificate) presented by `sub` (null: nobody signed in). */
async function withPosture(provider: DeviceProvider, token: string, sub: string | null = 'dr.alice'): Promise<DeviceContext> {
  return provider.provide(exchange({ 'x-device-posture': token }), partial(sub ?? undefined));
}

const postureOnly = providerWith(configWith(undefined, { posture: POSTURE }));

// --- the TLS listener: as the gateway's https listener, requesting but not requiring a certificate ---

let current: DeviceProvider = postureOnly;
const seen: Array<{ socket: Socket; certificate: DeviceCertificate | undefined }> = [];
const caPem = readFileSync(pki.caCert);
const server = createServer({
  cert: readFileSync(serverCert.cert), key: readFileSync(serverCert.key), ca: caPem, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2',
}, (req, res) => {
  const user = req.headers['x-test-user'];
  const result = current.provide(beginExchange(req, undefined), partial(typeof user === 'string' ? user : undefined));
  seen.push({ socket: req.socket, certificate: deviceCertificate(req.socket) });
  const sync = !(result instanceof Promise);
  Promise.resolve(result).then(
    (device) => res.end(JSON.stringify({ device, sync })),
    (err: unknown) => res.writeHead(500).end(String(err)),
  );
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = (server.address() as AddressInfo).port;
t.teardown(() => {
  server.closeAllConnections();
  return new Promise<void>((resolve) => server.close(() => resolve()));
});

interface Answer {
  device: DeviceContext;
  sync: boolean;
}

/** One request over TLS, presenting `client`'s certificate (or none). */
function call(client: { cert: string; key: string } | undefined, headers: Record<string, string> = {}, agent?: Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path: '/', servername: 'gateway.test', ca: caPem, headers, agent: agent ?? false,
      ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}: ${body}`));
        else resolve(JSON.parse(body) as Answer);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** `device` as it reads after JSON (undefined fields dropped), for comparing with a TLS answer. */
const json = (device: Partial<DeviceContext>): unknown => JSON.parse(JSON.stringify(device));

// ================= certificates =================

t.test('subjectAltName text: DNS and URI names only, quoted values unquoted, nothing smuggled', async (t) => {
  t.same(parseSubjectAltName('DNS:Laptop.Example, URI:urn:uuid:1, IP Address:10.0.0.1, email:a@b.example'), ['DNS:laptop.example', 'URI:urn:uuid:1'],
    'DNS lower-cased, URI kept, other kinds left out');
  t.same(parseSubjectAltName('URI:"urn:x, DNS:evil.example", DNS:ok.example'), ['URI:urn:x, DNS:evil.example', 'DNS:ok.example'],
    'a quoted value holding ", DNS:" stays one URI');
  t.same(parseSubjectAltName('DNS:"a\\"b", DNS:c.example'), ['DNS:a"b', 'DNS:c.example'], 'escapes inside quotes');
  t.same(parseSubjectAltName(undefined), [], 'no extension, no names');
  t.same(parseSubjectAltName('DNS:"unterminated'), [], 'a broken quoted value ends the parse');
  t.same(parseSubjectAltName('no-colon'), [], 'not a SAN list');
  t.equal(deviceCertificate(new Socket()), undefined, 'a plain TCP socket has no device certificate');
});

t.test('a device certificate is identified by its SPKI pin and trusted when the inventory says so', async (t) => {
  current = providerWith(configWith([{ ...LAPTOP, observedAt: new Date(clock - 3_600_000).toISOString() }]));
  const { device, sync } = await call(laptop);
  t.same(device, json({
    source: 'certificate', id: 'LT-0017', known: true, managed: true, compliant: true, observedAt: clock - 3_600_000, certificate: true,
    os: 'Windows 11 23H2', diskEncrypted: false, trusted: true,
  }), 'every field from the inventory entry, trusted, no problem');
  t.ok(sync, 'no assertion: the answer is synchronous');
});

t.test('the certificate is worked out once per connection', async (t) => {
  current = providerWith(configWith([LAPTOP]));
  const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: caPem, cert: readFileSync(laptop.cert), key: readFileSync(laptop.key) });
  t.teardown(() => agent.destroy());
  const first = await call(laptop, {}, agent);
  const second = await call(laptop, {}, agent);
  t.equal(first.device.id, 'LT-0017', 'first request identified');
  t.equal(second.device.id, 'LT-0017', 'second request identified');
  const [a, b] = seen.slice(-2);
  t.equal(a?.socket, b?.socket, 'both requests came over one kept-alive connection');
  t.ok(a?.certificate !== undefined && a.certificate === b?.certificate, 'and got the very same certificate object: computed once, kept on the socket');
  t.equal(a?.certificate?.spki, LAPTOP_PIN, 'the pin equals what openssl computes');
  t.same(a?.certificate?.sans, ['DNS:laptop-17.devices.hospital.example'], 'the SAN as DNS:name');
});

t.test('by SAN: DNS and URI names; two names of two devices are a mismatch', async (t) => {
  current = providerWith(configWith([
    { id: 'LT-0017', san: 'laptop-17.devices.hospital.example', managed: true, compliant: true },
    { id: 'CART-3', san: 'DNS:Cart-3.Devices.Hospital.Example', managed: true, compliant: true },
    { id: 'BADGE-1', san: 'URI:urn:uuid:6f1c0a52-1b7e-4c55-9a39-0f7d1e1c2b3a', managed: true, compliant: true },
  ], { certificates: { match: 'san' } }));
  t.match((await call(cart)).device, { source: 'certificate', id: 'CART-3', trusted: true }, 'a DNS SAN matches case-insensitively');
  t.match((await call(badge)).device, { id: 'BADGE-1', trusted: true }, 'a URI SAN (the certificate has a DNS name too, unlisted)');
  t.match((await call(twoNames)).device, { certificate: true, known: false, trusted: false, problem: 'device-mismatch' },
    'one certificate naming two listed devices identifies neither');
  t.match((await call(stranger)).device, { certificate: true, known: false, problem: 'certificate-unknown' }, 'no listed name: unknown');
});

t.test('a certificate that does not chain to the device CA is ignored', async (t) => {
  current = providerWith(configWith([LAPTOP]));
  const { device } = await call(rogue);
  t.same(device, json({ ...UNKNOWN, problem: 'device-unknown' }), 'same name, other CA: no certificate, no device');
  t.same((await call(undefined)).device, json(UNKNOWN), 'no certificate at all: the unknown device');
});

const UNKNOWN: DeviceContext = {
  source: 'none', id: undefined, known: false, managed: false, compliant: false, observedAt: undefined, certificate: false,
  os: undefined, diskEncrypted: undefined, trusted: false, problem: 'device-unknown',
};

t.test('a certificate from the device CA that the inventory does not list is certificate-unknown', async (t) => {
  current = providerWith(configWith([LAPTOP]));
  t.same((await call(stranger)).device, json({ ...UNKNOWN, certificate: true, problem: 'certificate-unknown' }),
    'certificate true, known false, untrusted, and the problem says why');
});

t.test('inventory state decides trust; problems in their order', async (t) => {
  const cases: Array<[string, object, Record<string, unknown>, string | undefined]> = [
    ['unmanaged', { ...LAPTOP, managed: false, compliant: false }, {}, 'device-unmanaged'],
    ['noncompliant', { ...LAPTOP, compliant: false }, {}, 'device-noncompliant'],
    ['observed two days ago', { ...LAPTOP, observedAt: new Date(clock - 48 * 3_600_000).toISOString() }, {}, 'posture-stale'],
    ['observed 23 h ago', { ...LAPTOP, observedAt: new Date(clock - 23 * 3_600_000).toISOString() }, {}, undefined],
    ['observed 2 h ago, maxObservedAge 1h', { ...LAPTOP, observedAt: new Date(clock - 2 * 3_600_000).toISOString() }, { maxObservedAge: '1h' }, 'posture-stale'],
    ['undated, default maxObservedAge', LAPTOP, {}, undefined],
    ['undated, maxObservedAge set explicitly', LAPTOP, { maxObservedAge: '24h' }, 'posture-stale'],
  ];
  for (const [why, entry, extra, problem] of cases) {
    current = providerWith(configWith([entry], extra));
    const { device } = await call(laptop);
    t.equal(device.problem, problem, `${why}: problem ${String(problem)}`);
    t.equal(device.trusted, problem === undefined, `${why}: trusted only without a problem`);
    t.equal(device.known, true, `${why}: the device is known all the same`);
  }
});

t.test('certificate and assertion together', async (t) => {
  current = providerWith(configWith([{ ...LAPTOP, managed: true, compliant: false }], { posture: POSTURE }));
  const same = await call(laptop, { 'x-device-posture': await assertion(), 'x-test-user': 'dr.alice' });
  t.same(same.device, json({
    source: 'certificate', id: 'LT-0017', known: true, managed: true, compliant: true, observedAt: (seconds() - 60) * 1000, certificate: true,
    os: 'Windows 11 24H2', diskEncrypted: true, trusted: true,
  }), 'same device: identified by the certificate, state from the fresher signed assertion (compliant now)');
  t.notOk(same.sync, 'a new assertion is verified asynchronously');

  const other = await call(laptop, { 'x-device-posture': await assertion({ claims: { sub: 'LT-9999' } }), 'x-test-user': 'dr.alice' });
  t.match(other.device, { source: 'certificate', id: 'LT-0017', certificate: true, trusted: false, problem: 'device-mismatch' },
    'an assertion for another device: mismatch, untrusted');

  const forged = await call(laptop, { 'x-device-posture': await assertion({ key: rogueKey.privateKey }), 'x-test-user': 'dr.alice' });
  t.match(forged.device, { source: 'certificate', id: 'LT-0017', known: true, trusted: false, problem: 'posture-signature-invalid' },
    'a forged assertion makes even a listed certificate untrusted, and says why');

  const unknownCert = await call(stranger, { 'x-device-posture': await assertion(), 'x-test-user': 'dr.alice' });
  t.match(unknownCert.device, { source: 'posture', id: 'LT-0017', certificate: true, known: true, trusted: false, problem: 'certificate-unknown' },
    'an unlisted certificate stays a refusal even with a valid assertion');

  current = providerWith(configWith(undefined, { posture: POSTURE }));
  const noInventory = await call(laptop, { 'x-device-posture': await assertion(), 'x-test-user': 'dr.alice' });
  t.match(noInventory.device, { source: 'posture', id: 'LT-0017', certificate: true, trusted: true, problem: undefined },
    'posture only: a certificate is noted but identifies nothing');
  t.match((await call(laptop)).device, { source: 'none', certificate: true, known: false, problem: 'device-unknown' },
    'posture only, certificate, no assertion: unknown');
});

// ================= posture assertions =================

t.test('a valid assertion alone makes a known device; its claims fill the context', async (t) => {
  const device = await withPosture(postureOnly, await assertion());
  t.same(device, {
    source: 'posture', id: 'LT-0017', known: true, managed: true, compliant: true, observedAt: (seconds() - 60) * 1000, certificate: false,
    os: 'Windows 11 24H2', diskEncrypted: true, trusted: true, problem: undefined,
  }, 'every field from the assertion; trusted');
  const bare = await withPosture(postureOnly, await assertion({ claims: { os: undefined, disk_encryption: undefined } }));
  t.match(bare, { os: undefined, diskEncrypted: undefined, trusted: true }, 'os and disk_encryption are optional');
  t.match(await withPosture(postureOnly, await assertion({ claims: { managed: false } })), { known: true, trusted: false, problem: 'device-unmanaged' }, 'managed false');
  t.match(await withPosture(postureOnly, await assertion({ claims: { compliant: false } })), { trusted: false, problem: 'device-noncompliant' }, 'compliant false');
  t.same(await postureOnly.provide(exchange(), partial('dr.alice')), UNKNOWN, 'no assertion, no certificate: the unknown device');
});

t.test('forged, tampered and algorithm attacks are posture-signature-invalid', async (t) => {
  const good = await assertion();
  const [h, p, s] = good.split('.') as [string, string, string];
  const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  const expect = async (token: string, why: string): Promise<void> => {
    const device = await withPosture(postureOnly, token);
    t.match(device, { source: 'none', id: undefined, known: false, trusted: false, problem: 'posture-signature-invalid' }, why);
  };
  await expect(await assertion({ key: rogueKey.privateKey }), 'signed with another key (forged): nothing of it is believed');
  await expect(`${h}.${b64({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), compliant: true, sub: 'LT-1' })}.${s}`, 'claims changed after signing');
  await expect(`${b64({ alg: 'none', typ: 'device-posture+jwt' })}.${p}.`, 'alg none');
  const hsHeader = b64({ alg: 'HS256', typ: 'device-posture+jwt' });
  await expect(`${hsHeader}.${p}.${createHmac('sha256', MDM_PEM).update(`${hsHeader}.${p}`).digest('base64url')}`,
    'HS256 keyed with the published public key');
  await expect(await assertion({ header: { alg: 'ES384' }, key: (await generateKeyPair('ES384')).privateKey }), 'an algorithm not pinned (ES384)');
});

t.test('expired assertions and old observations are posture-expired', async (t) => {
  t.match(await withPosture(postureOnly, await assertion({ claims: { exp: seconds() - 60 } })), { trusted: false, problem: 'posture-expired' }, 'exp a minute ago');
  t.match(await withPosture(postureOnly, await assertion({ claims: { exp: seconds() - 10 } })), { trusted: true }, 'exp within the 30 s tolerance');
  t.match(await withPosture(postureOnly, await assertion({ claims: { observed_at: seconds() - 16 * 60 } })), { trusted: false, problem: 'posture-expired' },
    'observed 16 minutes ago: older than maxAge 15m');
  t.match(await withPosture(postureOnly, await assertion({ claims: { observed_at: seconds() - 15 * 60 } })), { trusted: true }, 'observed exactly 15 minutes ago');
});

t.test('malformed assertions and wrong issuer, audience, typ or claims are posture-invalid', async (t) => {
  const expect = async (token: string, why: string): Promise<void> => {
    t.match(await withPosture(postureOnly, token), { source: 'none', known: false, trusted: false, problem: 'posture-invalid' }, why);
  };
  await expect(await assertion({ claims: { iss: 'https://evil.example' } }), 'wrong issuer');
  await expect(await assertion({ claims: { aud: 'other-proxy' } }), 'wrong audience');
  await expect(await assertion({ header: { typ: undefined } }), 'no typ');
  await expect(await assertion({ header: { typ: 'JWT' } }), 'typ JWT: an ID or access token cannot pass as an assertion');
  for (const claim of ['sub', 'jti', 'managed', 'compliant', 'observed_at', 'exp', 'iat']) {
    await expect(await assertion({ claims: { [claim]: undefined } }), `${claim} missing`);
  }
  await expect(await assertion({ claims: { managed: 'yes' } }), 'managed not a boolean');
  await expect(await assertion({ claims: { observed_at: '2025-03-01' } }), 'observed_at not a number');
  await expect(await assertion({ claims: { os: 11 } }), 'os not a string');
  await expect(await assertion({ claims: { disk_encryption: 'on' } }), 'disk_encryption not a boolean');
  await expect(await assertion({ claims: { sub: '' } }), 'empty sub');
  await expect(await assertion({ claims: { nbf: seconds() + 120 } }), 'not valid yet (nbf)');
  await expect(await assertion({ claims: { iat: seconds() + 120 } }), 'issued in the future');
  await expect(await assertion({ claims: { observed_at: seconds() + 120 } }), 'observed in the future');
  for (const garbage of ['', 'garbage', 'a.b', 'a.b.c.d', '!!.x.y']) await expect(garbage, `garbage ${JSON.stringify(garbage)}`);
  t.match(await withPosture(postureOnly, await assertion({ header: { typ: 'application/device-posture+jwt' } })), { trusted: true },
    'typ with the application/ prefix is the same typ');
});

t.test('an oversize assertion is refused before any crypto, synchronously', async (t) => {
  const result = postureOnly.provide(exchange({ 'x-device-posture': 'a'.repeat(9000) }), partial('dr.alice'));
  t.notOk(result instanceof Promise, 'answered synchronously');
  t.match(result, { trusted: false, problem: 'posture-invalid' }, 'posture-invalid');
});

t.test('keys: a JWKS key with kid serves only that kid; a PEM key serves any kid', async (t) => {
  const jwks = providerWith(configWith(undefined, { posture: { ...POSTURE, keys: ['mdm.jwks.json'] } }));
  t.match(await withPosture(jwks, await assertion({ header: { kid: 'mdm-1' } })), { trusted: true }, 'JWKS: the named kid');
  t.match(await withPosture(jwks, await assertion()), { trusted: true }, 'JWKS: no kid, the key of that type is tried');
  t.match(await withPosture(jwks, await assertion({ header: { kid: 'mdm-2' } })), { problem: 'posture-signature-invalid' }, 'JWKS: an unknown kid');
  t.match(await withPosture(postureOnly, await assertion({ header: { kid: 'whatever-the-mdm-calls-it' } })), { trusted: true }, 'PEM: any kid');
  const both = providerWith(configWith(undefined, { posture: { ...POSTURE, keys: ['mdm.jwks.json', 'mdm.pub.pem'] } }));
  t.match(await withPosture(both, await assertion({ header: { kid: 'mdm-2' } })), { trusted: true }, 'JWKS and PEM: an unknown kid falls to the PEM keys');
  t.match(await withPosture(both, await assertion({ key: rogueKey.privateKey })), { problem: 'posture-signature-invalid' },
    'several candidate keys, none verifies: still signature-invalid');
});

t.test('replay: an assertion is bound to the first user who presents it', async (t) => {
  const store = new MemoryStore();
  const provider = providerWith(configWith(undefined, { posture: POSTURE }), store);
  const token = await assertion({ claims: { jti: 'jti-replay-1' } });
  t.match(await withPosture(provider, token, 'dr.alice'), { trusted: true }, 'Alice presents it first: accepted');
  t.equal(await store.get<Json>(bindingKey('jti-replay-1')), 'dr.alice', 'the store binds the jti to Alice');
  t.match(await withPosture(provider, token, 'dr.alice'), { trusted: true }, 'Alice again: fine');
  t.match(await withPosture(provider, token, 'mallory'), { source: 'none', known: false, trusted: false, problem: 'posture-replayed' },
    'the same assertion under another user: replayed');
  t.match(await withPosture(provider, token, 'mallory'), { problem: 'posture-replayed' }, 'and stays refused for that user');

  const otherProcess = providerWith(configWith(undefined, { posture: POSTURE }), store);
  t.match(await withPosture(otherProcess, token, 'mallory'), { problem: 'posture-replayed' }, 'another process sharing the store refuses it too');
  t.match(await withPosture(otherProcess, token, 'dr.alice'), { trusted: true }, 'and accepts it from Alice (the store names her)');

  t.match(await withPosture(provider, token, null), { trusted: true }, 'without a signed-in identity there is nothing to bind to: not checked');
  const fresh = await assertion({ claims: { jti: 'jti-anonymous' } });
  await withPosture(provider, fresh, null);
  t.equal(await store.get<Json>(bindingKey('jti-anonymous')), undefined, 'and an anonymous request binds nothing');
});

t.test('caching: the second answer is synchronous, and does not outlive the assertion', async (t) => {
  const store = new MemoryStore();
  const provider = providerWith(configWith(undefined, { posture: POSTURE }), store);
  const token = await assertion({ claims: { observed_at: seconds() - 60, exp: seconds() + 3600 } });
  const first = provider.provide(exchange({ 'x-device-posture': token }), partial('dr.alice'));
  t.ok(first instanceof Promise, 'first sight: verification and the replay guard run asynchronously');
  t.match(await first, { trusted: true }, 'and it passes');
  const second = provider.provide(exchange({ 'x-device-posture': token }), partial('dr.alice'));
  t.notOk(second instanceof Promise, 'second time: answered synchronously from memory');
  t.match(second, { trusted: true }, 'with the same answer');
  const otherUser = provider.provide(exchange({ 'x-device-posture': token }), partial('dr.bob'));
  t.ok(otherUser instanceof Promise, 'another user: the binding must be asked of the store');
  t.match(await otherUser, { problem: 'posture-replayed' }, 'and it is refused');
  const again = provider.provide(exchange({ 'x-device-posture': token }), partial('dr.bob'));
  t.notOk(again instanceof Promise, 'the refusal for that (jti, user) is remembered: synchronous');

  const forged = await assertion({ key: rogueKey.privateKey });
  await withPosture(provider, forged);
  const forgedAgain = provider.provide(exchange({ 'x-device-posture': forged }), partial('dr.alice'));
  t.notOk(forgedAgain instanceof Promise, 'a refused assertion is remembered briefly: no second signature check');

  const saved = clock;
  clock += 15 * 60_000;
  const late = provider.provide(exchange({ 'x-device-posture': token }), partial('dr.alice'));
  t.ok(late instanceof Promise, 'once the observation is maxAge old the cached answer is dropped');
  t.match(await late, { trusted: false, problem: 'posture-expired' }, 'and the fresh check refuses it as expired');
  clock = saved;
});

t.test('concurrent requests with one new assertion share one verification and one store call', async (t) => {
  const store = new MemoryStore();
  let adds = 0;
  const counting = Object.assign(Object.create(store) as MemoryStore, {
    add: (key: string, value: Json, ttl: number): Promise<boolean> => {
      adds++;
      return store.add(key, value, ttl);
    },
  });
  const provider = providerWith(configWith(undefined, { posture: POSTURE }), counting);
  const token = await assertion();
  const results = await Promise.all(Array.from({ length: 5 }, () => withPosture(provider, token, 'dr.alice')));
  t.ok(results.every((device) => device.trusted), 'all five trusted');
  t.equal(adds, 1, 'the store was asked once for the (jti, user) pair');
});

t.test('a store outage rejects (503 upstream of here) and is not remembered as a replay', async (t) => {
  const store = new MemoryStore();
  let down = true;
  const flaky = Object.assign(Object.create(store) as MemoryStore, {
    add: (key: string, value: Json, ttl: number): Promise<boolean> => (down ? Promise.reject(new StoreUnavailableError('primary gone')) : store.add(key, value, ttl)),
  });
  const provider = providerWith(configWith(undefined, { posture: POSTURE }), flaky);
  const token = await assertion();
  await t.rejects(withPosture(provider, token), { code: 'store-unavailable' }, 'the store error comes through');
  down = false;
  t.match(await withPosture(provider, token), { trusted: true }, 'once the store is back the same assertion is accepted');
});

t.test('the verifier on its own: construction guards', async (t) => {
  const store = new MemoryStore();
  const jwk = await exportJWK(mdm.publicKey);
  t.throws(() => new PostureVerifier({ issuer: ISSUER, audience: 'wardgate', keys: [jwk], algorithms: ['HS256'], store }), /not a public-key algorithm/, 'HS256 refused');
  t.throws(() => new PostureVerifier({ issuer: ISSUER, audience: 'wardgate', keys: [jwk], algorithms: [], store }), /must not be empty/, 'no algorithms refused');
  t.throws(() => new PostureVerifier({ issuer: ISSUER, audience: 'wardgate', keys: [], store }), /keys must not be empty/, 'no keys refused');
  const verifier = new PostureVerifier({ issuer: ISSUER, audience: 'wardgate', keys: [jwk], store, now });
  t.match(await verifier.check(await assertion(), undefined), { ok: true, posture: { deviceId: 'LT-0017', managed: true } }, 'defaults: ES256, device-posture+jwt');
});

t.test('reload(): the provider re-reads its inventory (SIGHUP)', async (t) => {
  const config = configWith([LAPTOP]);
  const provider = providerWith(config);
  const file = config.inventory?.file ?? '';
  writeFileSync(file, JSON.stringify({ devices: [{ ...LAPTOP, id: 'LT-0017-RENAMED' }] }));
  provider.reload();
  await until(() => provider.inventory?.byId('LT-0017-RENAMED') !== undefined, 5_000, 'the reloaded inventory');
  current = provider;
  t.match((await call(laptop)).device, { id: 'LT-0017-RENAMED', trusted: true }, 'requests see the new inventory');
});

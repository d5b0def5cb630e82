import t from 'tap';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { devicesSchema } from '../../plugins/device/config.js';
import { Inventory, normalizeSan, parseInventory, readInventorySync, type InventoryData } from '../../plugins/device/inventory.js';
import { until } from '../helpers/wait.js';

/*
 * The device inventory and the `devices:` config section: a bad inventory or key file
 * refuses the config naming the place of the fault inside that file; a good inventory is
 * indexed by id, SPKI pin and SAN; a changed file is picked up by the watcher (or reload(),
 * SIGHUP) and replaces the old one whole, while a bad one is logged and the old one stays.
 */

const dir = mkdtempSync(join(tmpdir(), 'wardgate-devices-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const PIN_A = `sha256/${Buffer.alloc(32, 1).toString('base64')}`;
const PIN_B = `sha256/${Buffer.alloc(32, 2).toString('base64')}`;

const GOOD = `devices:
  - id: LT-0017
    spki: ${PIN_A}
    managed: true
    compliant: true
    os: Windows 11 23H2
    diskEncrypted: true
    observedAt: 2025-03-01T08:00:00Z
  - id: CART-3
    san: Cart-3.Devices.Hospital.Example
    managed: true
    compliant: false
  - id: BADGE-1
    san: urn:uuid:6f1c0a52-1b7e-4c55-9a39-0f7d1e1c2b3a
    spki: ${PIN_B}
    managed: false
    compliant: true
    observedAt: 2025-03-01T09:00:00+01:00
`;

function data(text: string, file = 'devices.yaml'): InventoryData {
  const parsed = parseInventory(text, file);
  if (!parsed.ok) throw new Error(`test bug: inventory refused: ${parsed.errors.join('; ')}`);
  return parsed.data;
}

function faults(text: string, file = 'devices.yaml'): string[] {
  const parsed = parseInventory(text, file);
  return parsed.ok ? [] : parsed.errors;
}

t.test('a good inventory is indexed by id, SPKI pin and normalized SAN', async (t) => {
  const inventory = data(GOOD);
  t.equal(inventory.devices.length, 3, 'three devices');
  t.same(inventory.byId.get('LT-0017'), {
    id: 'LT-0017', spki: PIN_A, san: undefined, managed: true, compliant: true, os: 'Windows 11 23H2', diskEncrypted: true,
    observedAt: Date.parse('2025-03-01T08:00:00Z'),
  }, 'every field, observedAt as epoch ms');
  t.equal(inventory.bySpki.get(PIN_A)?.id, 'LT-0017', 'found by its SPKI pin');
  t.equal(inventory.bySan.get('DNS:cart-3.devices.hospital.example')?.id, 'CART-3', 'a bare DNS name is a DNS SAN, lower-cased');
  t.equal(inventory.bySan.get('URI:urn:uuid:6f1c0a52-1b7e-4c55-9a39-0f7d1e1c2b3a')?.id, 'BADGE-1', 'a bare value with a scheme is a URI SAN');
  t.equal(inventory.byId.get('BADGE-1')?.observedAt, Date.parse('2025-03-01T08:00:00Z'), 'a time zone offset is honoured');
  t.ok(Object.isFrozen(inventory.devices) && Object.isFrozen(inventory.byId.get('CART-3')), 'records are frozen: lookups share them');
});

t.test('SANs: DNS:/URI: prefixes accepted, nonsense refused', async (t) => {
  t.equal(normalizeSan('DNS:Laptop.Example'), 'DNS:laptop.example', 'DNS: prefix, lower-cased');
  t.equal(normalizeSan('dns:laptop.example'), 'DNS:laptop.example', 'prefix in any case');
  t.equal(normalizeSan('URI:spiffe://hospital.example/device/7'), 'URI:spiffe://hospital.example/device/7', 'URI: prefix kept exact');
  t.equal(normalizeSan('spiffe://hospital.example/Device/7'), 'URI:spiffe://hospital.example/Device/7', 'a URI is not lower-cased');
  for (const bad of ['', 'two words', 'bad_name!.example', 'DNS:', '-leading.example', 'a\u0000b']) {
    t.equal(normalizeSan(bad), undefined, `refused: ${JSON.stringify(bad)}`);
  }
});

t.test('the same inventory as JSON', async (t) => {
  const json = JSON.stringify({ devices: [{ id: 'LT-1', spki: PIN_A, managed: true, compliant: true }] }, null, '\t');
  t.equal(data(json, 'devices.json').bySpki.get(PIN_A)?.id, 'LT-1', 'JSON (tab-indented) reads as the YAML it is a subset of');
  t.match(faults('{"devices": [{"id": "LT-1", "managed": true, "compliant": true}]}', 'devices.json'),
    [/^devices\.json:1:14: devices\[0\]: expected spki or san/], 'JSON faults carry line and column too');
});

t.test('faults name file:line:col and the path inside the inventory', async (t) => {
  const at = (text: string, needle: string): string => {
    const index = text.indexOf(needle);
    const before = text.slice(0, index);
    return `devices.yaml:${before.split('\n').length}:${index - before.lastIndexOf('\n')}`;
  };
  const badPin = `${GOOD}  - id: LT-4
    spki: sha256/not-a-hash
    managed: true
    compliant: true
`;
  t.same(faults(badPin), [`${at(badPin, 'sha256/not-a-hash')}: devices[3].spki: expected "sha256/" and the base64 SHA-256 of the certificate's DER SubjectPublicKeyInfo (openssl x509 -in device.crt -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64), got "sha256/not-a-hash"`],
    'a malformed pin: where, which entry, what was expected and how to make one');

  const cases: Array<[string, string, RegExp]> = [
    ['missing managed', 'devices:\n  - id: A\n    spki: PIN\n    compliant: true\n', /^devices\.yaml:2:5: devices\[0\]\.managed: expected managed: true or false$/],
    ['managed as a string', 'devices:\n  - id: A\n    spki: PIN\n    managed: "yes"\n    compliant: true\n', /^devices\.yaml:4:14: devices\[0\]\.managed: expected managed: true or false$/],
    ['a typo\'d key', 'devices:\n  - id: A\n    spki: PIN\n    managed: true\n    complaint: true\n', /devices\.yaml:5:5: devices\[0\]\.complaint: unknown key "complaint"/],
    ['neither spki nor san', 'devices:\n  - id: A\n    managed: true\n    compliant: true\n', /^devices\.yaml:2:5: devices\[0\]: expected spki or san/],
    ['empty id', 'devices:\n  - id: ""\n    spki: PIN\n    managed: true\n    compliant: true\n', /^devices\.yaml:2:9: devices\[0\]\.id: expected a device id, got an empty string$/],
    ['observedAt without a time zone', 'devices:\n  - id: A\n    spki: PIN\n    managed: true\n    compliant: true\n    observedAt: 2025-03-01T08:00:00\n',
      /^devices\.yaml:6:17: devices\[0\]\.observedAt: expected an ISO 8601 date-time with a time zone, such as 2025-03-01T08:00:00Z, got "2025-03-01T08:00:00"$/],
    ['a bad SAN', 'devices:\n  - id: A\n    san: not a name\n    managed: true\n    compliant: true\n', /^devices\.yaml:3:10: devices\[0\]\.san: expected a DNS name .* got "not a name"$/],
    ['devices not a list', 'devices: {}\n', /^devices\.yaml:1:10: devices: expected a list of devices$/],
    ['not a mapping', '- id: A\n', /^devices\.yaml:1:1: expected a mapping with a devices list$/],
    ['no devices key', 'device: []\n', /devices\.yaml:1:1: devices: expected a list of devices/],
    ['a stray top-level key', 'devices: []\ndevice: []\n', /^devices\.yaml:2:1: device: unknown key "device"$/],
    ['YAML syntax', 'devices:\n  - id: A\n    managed: [true\n', /^devices\.yaml:\d+:\d+: /],
    ['duplicate YAML key', 'devices: []\ndevices: []\n', /^devices\.yaml:2:1: Map keys must be unique/],
  ];
  for (const [why, text, want] of cases) {
    const found = faults(text.replaceAll('PIN', PIN_A));
    t.ok(found.some((line) => want.test(line)), `${why}: ${want} (got ${JSON.stringify(found)})`);
  }
});

t.test('duplicate ids, pins and SANs are refused, naming both entries', async (t) => {
  const text = `devices:
  - { id: A, spki: ${PIN_A}, san: a.example, managed: true, compliant: true }
  - { id: B, spki: ${PIN_A}, managed: true, compliant: true }
  - { id: A, san: A.Example, managed: true, compliant: true }
`;
  t.same(faults(text), [
    'devices.yaml:4:11: devices[2].id: duplicate id "A" (also devices[0])',
    `devices.yaml:3:20: devices[1].spki: duplicate spki "${PIN_A}" (also devices[0])`,
    'devices.yaml:4:19: devices[2].san: duplicate san "DNS:a.example" (also devices[0])',
  ], 'each duplicate at its place; SANs compare after normalization (A.Example is a.example)');
});

t.test('a flood of faults is capped', async (t) => {
  const many = `devices:\n${Array.from({ length: 50 }, (_, i) => `  - { id: D${i}, managed: true, compliant: true }\n`).join('')}`;
  const found = faults(many);
  t.equal(found.length, 21, 'twenty faults and a count of the rest');
  t.equal(found[20], '... and 30 more faults', 'the rest counted');
});

t.test('an unreadable inventory names the file and the cause', async (t) => {
  const missing = join(dir, 'nope.yaml');
  const read = readInventorySync(missing);
  t.same(read, { ok: false, errors: [`cannot read device inventory ${missing}: ENOENT`] }, 'ENOENT, with the absolute path');
});

// --- the devices: config section ---

const pemFile = (name: string, content: string | Buffer): string => {
  writeFileSync(join(dir, name), content);
  return name;
};
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const rsaSmall = generateKeyPairSync('rsa', { modulusLength: 1024 });
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
pemFile('mdm.pub.pem', ec.publicKey.export({ type: 'spki', format: 'pem' }));
pemFile('p384.pub.pem', p384.publicKey.export({ type: 'spki', format: 'pem' }));
pemFile('rsa1024.pub.pem', rsaSmall.publicKey.export({ type: 'spki', format: 'pem' }));
pemFile('rsa.pub.pem', rsa.publicKey.export({ type: 'spki', format: 'pem' }));
pemFile('private.pem', ec.privateKey.export({ type: 'pkcs8', format: 'pem' }));
pemFile('garbage.pem', '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n');
pemFile('other.pem', '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n');
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
  '-keyout', join(dir, 'cert.key'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=mdm'], { stdio: 'ignore' });
const ecJwk = { ...ec.publicKey.export({ format: 'jwk' }), kid: 'mdm-1', use: 'sig', x5t: 'dropped' };
pemFile('mdm.jwks.json', JSON.stringify({ keys: [rsa.publicKey.export({ format: 'jwk' }), ecJwk] }));
pemFile('rsa.jwks.json', JSON.stringify({ keys: [rsa.publicKey.export({ format: 'jwk' })] }));
pemFile('oct.jwks.json', JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }));
pemFile('private.jwks.json', JSON.stringify({ keys: [ec.privateKey.export({ format: 'jwk' })] }));
pemFile('empty.jwks.json', JSON.stringify({ keys: [] }));
const ed = generateKeyPairSync('ed25519');
pemFile('ed25519.pub.pem', ed.publicKey.export({ type: 'spki', format: 'pem' }));
const ecPublic = ec.publicKey.export({ format: 'jwk' });
pemFile('unusable.jwks.json', JSON.stringify({ keys: [{ ...ecPublic, use: 'enc' }, { ...ecPublic, alg: 'ES384' }, { ...ecPublic, key_ops: ['encrypt'] }] }));
for (const [name, member] of [['kid', { kid: '' }], ['alg', { alg: 7 }], ['use', { use: true }], ['key_ops', { key_ops: 'verify' }]] as const) {
  pemFile(`bad-${name}.jwks.json`, JSON.stringify({ keys: [{ ...ecPublic, ...member }] }));
}
pemFile('not-object.jwks.json', JSON.stringify({ keys: ['key'] }));
pemFile('broken.jwks.json', JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'AAAA' }] }));
pemFile('devices.yaml', GOOD);
pemFile('bad-devices.yaml', `${GOOD}  - id: LT-4\n    spki: sha256/short\n    managed: true\n    compliant: true\n`);

const schema = devicesSchema(dir);
const POSTURE = { issuer: 'https://mdm.hospital.example', keys: ['mdm.pub.pem'] };

/** The messages of the issues `input` produces, each prefixed with its config path. */
function issues(input: unknown): string[] {
  const parsed = schema.safeParse(input);
  return parsed.success ? [] : parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

t.test('config: defaults, and the inventory parsed at load', async (t) => {
  const config = schema.parse({ inventory: 'devices.yaml', posture: POSTURE });
  t.equal(config.inventory?.file, join(dir, 'devices.yaml'), 'the inventory path is resolved against the config directory');
  t.equal(config.inventory?.initial.byId.get('CART-3')?.compliant, false, 'and its content is parsed at load');
  t.same(config.certificates, { match: 'spki' }, 'certificates match by SPKI by default');
  t.equal(config.maxObservedAge, 24 * 3_600_000, 'maxObservedAge defaults to 24h');
  t.equal(config.undatedStale, false, 'with the default, entries without observedAt are not stale');
  t.match(config.posture, {
    header: 'x-device-posture', issuer: 'https://mdm.hospital.example', audience: 'wardgate', typ: 'device-posture+jwt',
    algorithms: ['ES256'], maxAge: 15 * 60_000, clockTolerance: 30_000,
  }, 'posture defaults');
  t.match(config.posture?.keys, [{ jwk: { kty: 'EC', crv: 'P-256' }, file: join(dir, 'mdm.pub.pem'), index: undefined }], 'the PEM key, as a JWK without kid');

  const explicit = schema.parse({ inventory: 'devices.yaml', maxObservedAge: '12h', certificates: { match: 'san' } });
  t.equal(explicit.maxObservedAge, 12 * 3_600_000, 'maxObservedAge as given');
  t.equal(explicit.undatedStale, true, 'set explicitly, it makes entries without observedAt stale');
  t.equal(explicit.certificates.match, 'san', 'match by SAN');
  t.equal(explicit.posture, undefined, 'an inventory alone is enough');

  const header = schema.parse({ posture: { ...POSTURE, header: 'X-MDM-Posture', typ: 'application/Posture+JWT', clockTolerance: '0s' } });
  t.equal(header.posture?.header, 'x-mdm-posture', 'header names are lower-cased, as Node keys them');
  t.equal(header.posture?.typ, 'posture+jwt', 'typ is compared in its short, lower-case form');
  t.equal(header.posture?.clockTolerance, 0, 'a clock tolerance of zero is allowed');
});

t.test('config: a bad inventory refuses the config with the fault inside the inventory', async (t) => {
  const found = issues({ inventory: 'bad-devices.yaml' });
  t.equal(found.length, 1, 'one fault');
  t.match(found[0], new RegExp(`^inventory: ${join(dir, 'bad-devices.yaml').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:20:11: devices\\[3\\]\\.spki: expected "sha256/"`),
    'the config path, then the inventory file:line:col and the path inside it');
  t.same(issues({ inventory: 'missing.yaml' }), [`inventory: cannot read device inventory ${join(dir, 'missing.yaml')}: ENOENT`], 'a missing inventory');
});

t.test('config: structure faults', async (t) => {
  t.same(issues({}), [': expected inventory, posture or both: how else would a device be recognised?'], 'neither inventory nor posture');
  t.same(issues({ posture: POSTURE, maxObservedAge: '1h' }), ['maxObservedAge: maxObservedAge applies to inventory entries; there is no inventory (posture assertions have posture.maxAge)'],
    'maxObservedAge without an inventory');
  t.match(issues({ inventory: 'devices.yaml', maxObservedAge: 'soon' }), ['maxObservedAge: expected a duration such as 500ms, 30s, 5m or 1h, got "soon"'], 'a bad duration');
  t.match(issues({ inventory: 'devices.yaml', certificates: { match: 'cn' } }), ['certificates.match: expected spki or san'], 'an unknown match');
  t.match(issues({ inventory: 'devices.yaml', extra: 1 }), [/Unrecognized key.*extra/], 'unknown keys are refused');
  t.same(issues('devices.yaml'), [': expected a mapping with inventory and/or posture'], 'not a mapping');
  t.match(issues({ posture: { keys: ['mdm.pub.pem'] } }), [/^posture\.issuer: expected the issuer/], 'posture needs an issuer');
  t.match(issues({ posture: { ...POSTURE, keys: [] } }), ['posture.keys: expected at least one key file'], 'and keys');
  t.match(issues({ posture: { ...POSTURE, header: 'authorization' } }), [/^posture\.header: authorization is a header HTTP or wardgate itself uses/], 'a reserved header');
  t.match(issues({ posture: { ...POSTURE, header: 'x bad' } }), [/^posture\.header: expected an HTTP header name/], 'not a header name');
  t.match(issues({ posture: { ...POSTURE, maxAge: '0s' } }), [/^posture\.maxAge: expected a duration/], 'maxAge must be positive');
});

t.test('config: algorithms are public-key only', async (t) => {
  t.match(issues({ posture: { ...POSTURE, algorithms: ['HS256'] } }),
    [/^posture\.algorithms\.0: expected a public-key algorithm \(RS256, .*\), got "HS256": HMAC would make the published key a signing secret$/], 'HS256 refused, and why');
  t.match(issues({ posture: { ...POSTURE, algorithms: ['none'] } }), [/^posture\.algorithms\.0: expected a public-key algorithm .* got "none"$/], 'none refused');
  t.match(issues({ posture: { ...POSTURE, algorithms: [] } }), ['posture.algorithms: expected at least one algorithm'], 'an empty list refused');
});

t.test('config: key files are read and checked at load', async (t) => {
  const key = (keys: string[], algorithms?: string[]): string[] => issues({ posture: { ...POSTURE, keys, ...(algorithms ? { algorithms } : {}) } });
  const path = (name: string): string => join(dir, name);
  t.same(key(['missing.pem']), [`posture.keys.0: cannot read posture key file ${path('missing.pem')}: ENOENT`], 'a missing file');
  t.same(key(['private.pem']), [`posture.keys.0: ${path('private.pem')} holds a private key; give wardgate only the public key (openssl pkey -in key.pem -pubout)`], 'a private key');
  t.same(key(['cert.pem']), [`posture.keys.0: ${path('cert.pem')} holds a certificate; give wardgate its public key (openssl x509 -in cert.pem -pubkey -noout)`], 'a certificate');
  t.match(key(['garbage.pem']), [new RegExp(`^posture\\.keys\\.0: ${path('garbage.pem')} holds a PEM public key that cannot be read`)], 'an unreadable PEM key');
  t.same(key(['other.pem']), [`posture.keys.0: ${path('other.pem')} holds no PEM public key (-----BEGIN PUBLIC KEY-----)`], 'a PEM file of something else');
  t.same(key(['rsa1024.pub.pem'], ['RS256']), [`posture.keys.0: ${path('rsa1024.pub.pem')} holds an RSA key of 1024 bits (at least 2048 expected)`], 'a short RSA key');
  t.same(key(['p384.pub.pem']), [`posture.keys: ${path('p384.pub.pem')} holds an EC P-384 key, which none of the algorithms ES256 can use`], 'a key no pinned algorithm fits');
  t.same(key(['p384.pub.pem'], ['ES384']), [], 'fine once ES384 is pinned');
  t.same(key(['rsa.pub.pem'], ['RS256', 'PS256']), [], 'an RSA key for RS256 and PS256');
  t.same(key(['oct.jwks.json']), [`posture.keys.0: ${path('oct.jwks.json')}: keys[0]: a symmetric key (kty oct); posture assertions are verified with public keys only`], 'a symmetric JWK');
  t.same(key(['private.jwks.json']), [`posture.keys.0: ${path('private.jwks.json')}: keys[0]: holds private key material (d); publish only the public key`], 'a private JWK');
  t.same(key(['empty.jwks.json']), [`posture.keys.0: ${path('empty.jwks.json')}: expected a JWKS, {"keys": [...]} with at least one key`], 'an empty JWKS');
  t.match(key(['broken.jwks.json']), [new RegExp(`^posture\\.keys\\.0: ${path('broken.jwks.json')}: keys\\[0\\]: not a usable public key`)], 'a malformed JWK');
  t.match(key(['devices.yaml']), [new RegExp(`^posture\\.keys\\.0: ${path('devices.yaml')} is neither a PEM public key nor JSON`)], 'not a key file at all');
  t.same(key(['rsa.pub.pem']), [`posture.keys: ${path('rsa.pub.pem')} holds an RSA key, which none of the algorithms ES256 can use`], 'an RSA key for ES256');
  t.same(key(['ed25519.pub.pem']), [`posture.keys: ${path('ed25519.pub.pem')} holds an OKP Ed25519 key, which none of the algorithms ES256 can use`], 'an Ed25519 key for ES256');
  t.same(key(['ed25519.pub.pem'], ['EdDSA']), [], 'an Ed25519 key for EdDSA');
  t.same(key(['unusable.jwks.json']), [`posture.keys: ${path('unusable.jwks.json')} holds no signing key that the algorithms ES256 can use`],
    'a JWKS whose keys are for encryption, another alg, or other operations');
  t.same(key(['bad-kid.jwks.json']), [`posture.keys.0: ${path('bad-kid.jwks.json')}: keys[0]: kid must be a non-empty string`], 'an empty kid');
  t.same(key(['bad-alg.jwks.json']), [`posture.keys.0: ${path('bad-alg.jwks.json')}: keys[0]: alg must be a string`], 'a numeric alg');
  t.same(key(['bad-use.jwks.json']), [`posture.keys.0: ${path('bad-use.jwks.json')}: keys[0]: use must be a string`], 'a boolean use');
  t.same(key(['bad-key_ops.jwks.json']), [`posture.keys.0: ${path('bad-key_ops.jwks.json')}: keys[0]: key_ops must be a list of strings`], 'key_ops not a list');
  t.same(key(['not-object.jwks.json']), [`posture.keys.0: ${path('not-object.jwks.json')}: keys[0]: expected a JSON Web Key object`], 'a key that is not an object');
  t.same(key(['rsa.jwks.json']), [`posture.keys: ${path('rsa.jwks.json')} holds no signing key that the algorithms ES256 can use`], 'a JWKS with no key for ES256');

  const config = schema.parse({ posture: { ...POSTURE, keys: ['mdm.jwks.json', 'mdm.pub.pem'] } });
  t.same(config.posture?.keys.map((k) => k.jwk), [
    rsa.publicKey.export({ format: 'jwk' }),
    { kty: 'EC', kid: 'mdm-1', use: 'sig', crv: 'P-256', x: ecJwk.x, y: ecJwk.y },
    ec.publicKey.export({ format: 'jwk' }),
  ], 'a JWKS keeps its keys (public members only, x5t dropped; a key for another algorithm passed over at use), PEM keys follow');
});

// --- reloading ---

type LogLine = { level: number; msg: string; devices?: number; errors?: string[]; file?: string };

function capturingLogger(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { logger: pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as LogLine) }), lines };
}

const device = (id: string, pin: string): string => `  - { id: ${id}, spki: ${pin}, managed: true, compliant: true }\n`;

t.test('reload: a changed file is seen by the watcher; a good one replaces, a bad one keeps the old', async (t) => {
  const live = mkdtempSync(join(dir, 'live-'));
  const file = join(live, 'devices.yaml');
  writeFileSync(file, `devices:\n${device('OLD-1', PIN_A)}`);
  const initial = readInventorySync(file);
  if (!initial.ok) throw new Error('test bug: initial inventory refused');
  const { logger, lines } = capturingLogger();
  const inventory = new Inventory({ file, initial: initial.data, logger, debounceMs: 20 });
  t.teardown(() => inventory.close());
  t.equal(inventory.byId('OLD-1')?.id, 'OLD-1', 'the initial inventory is in force');

  writeFileSync(file, `devices:\n${device('NEW-1', PIN_A)}${device('NEW-2', PIN_B)}`);
  await until(() => inventory.byId('NEW-1') !== undefined, 5_000, 'the watcher to load the rewritten inventory');
  t.equal(inventory.byId('OLD-1'), undefined, 'the old inventory is gone entirely');
  t.equal(inventory.bySpki(PIN_B)?.id, 'NEW-2', 'the new one answers every lookup');
  t.equal(inventory.size, 2, 'two devices');
  t.match(lines.at(-1), { level: 30, msg: 'device inventory reloaded', devices: 2, file }, 'the reload is logged with the count');

  const before = lines.length;
  writeFileSync(file, `devices:\n${device('BAD', 'sha256/nope')}`);
  await until(() => lines.length > before, 5_000, 'the watcher to refuse the broken inventory');
  t.match(lines.at(-1), { level: 50, msg: /^device inventory not reloaded, keeping the previous one: .*devices\.yaml:2:22: devices\[0\]\.spki: expected/, devices: 2 },
    'the refusal is an error naming the fault inside the file and the count kept');
  t.equal(inventory.byId('NEW-2')?.id, 'NEW-2', 'the previous inventory stays in force');
  t.equal(inventory.byId('BAD'), undefined, 'nothing of the bad file is used');

  // Config management writes a new file and renames it over the old one (a new inode).
  writeFileSync(join(live, 'devices.yaml.tmp'), `devices:\n${device('SWAPPED', PIN_B)}`);
  renameSync(join(live, 'devices.yaml.tmp'), file);
  await until(() => inventory.byId('SWAPPED') !== undefined, 5_000, 'the watcher to load the renamed-in inventory');
  t.equal(inventory.size, 1, 'a file replaced by rename is picked up too');
});

t.test('reload(): SIGHUP-style reload, unchanged content is a no-op, a vanished file keeps the old', async (t) => {
  const live = mkdtempSync(join(dir, 'hup-'));
  const file = join(live, 'devices.yaml');
  writeFileSync(file, `devices:\n${device('A', PIN_A)}`);
  const initial = readInventorySync(file);
  if (!initial.ok) throw new Error('test bug: initial inventory refused');
  const { logger, lines } = capturingLogger();
  const inventory = new Inventory({ file, initial: initial.data, logger, watch: false });
  t.teardown(() => inventory.close());

  t.equal(await inventory.reload(), true, 'reloading the same content succeeds');
  t.equal(lines.length, 0, 'and logs nothing: nothing changed');

  writeFileSync(file, `devices:\n${device('B', PIN_B)}`);
  const [first, second] = await Promise.all([inventory.reload(), inventory.reload()]);
  t.ok(first && second, 'concurrent reloads both report success');
  t.equal(inventory.byId('B')?.id, 'B', 'reload() without a watcher reads the new content');
  t.equal(lines.filter((l) => l.msg === 'device inventory reloaded').length, 1, 'concurrent reloads fold into one replacement');

  rmSync(file);
  t.equal(await inventory.reload(), false, 'a missing file is refused');
  t.match(lines.at(-1), { level: 50, errors: [`cannot read device inventory ${file}: ENOENT`] }, 'with the cause');
  t.equal(inventory.byId('B')?.id, 'B', 'and the old inventory stays');
});

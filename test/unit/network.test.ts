import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { BlockList, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Reader, type CountryResponse } from 'maxmind';
import pino from 'pino';
import { Client } from 'undici';
import { networkSchema } from '../../plugins/network/config.js';
import { canonicalIp, clientAddress, forwardedAddress } from '../../plugins/network/client-address.js';
import { CountryResolver, openCountryDatabase, parseNetwork } from '../../plugins/network/countries.js';
import { createNetworkProvider, type NetworkProvider } from '../../plugins/network/provider.js';
import { beginExchange, type Peer } from '../../proxy/exchange.js';
import type { NetworkContext, PartialContext } from '../../proxy/policy/context.js';
import { buildMmdb, countryRecord, encodeValue, writeCountryMmdb, writeMmdb, type MmdbValue } from '../helpers/mmdb.js';
import { until } from '../helpers/wait.js';

/*
 * The network context: who the client is (the socket peer, or X-Forwarded-For read from
 * the right behind trusted proxies only) and which country it is in (the hospital's own
 * table first, then a MaxMind database that is reloaded when its file changes). The
 * databases are real .mmdb files written by test/helpers/mmdb.ts and read by the real
 * `maxmind` package.
 */

const dir = mkdtempSync(join(tmpdir(), 'wardgate-network-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const tempFile = (name = 'db.mmdb'): string => join(dir, `${++files}-${name}`);

interface LogLine {
  level: number;
  msg: string;
  file?: string;
  err?: string;
}

/** A real pino logger whose lines are kept for the test to read. */
function capturingLogger(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as LogLine) });
  return { logger, lines };
}

const ERROR = 50;
const WARN = 40;

// ---------------------------------------------------------------------------------------
// Client address

const proxies = new BlockList();
proxies.addSubnet('10.0.0.0', 8, 'ipv4');
proxies.addSubnet('fd00::', 8, 'ipv6');

const trustedPeer: Peer = { address: '10.0.0.1', trusted: true, proto: 'https' };
const untrustedPeer: Peer = { address: '198.51.100.7', trusted: false, proto: 'https' };

t.test('an untrusted peer is the client, whatever X-Forwarded-For says', async (t) => {
  t.equal(clientAddress(untrustedPeer, '203.0.113.5', proxies), '198.51.100.7', 'a direct client cannot name another address');
  t.equal(clientAddress(untrustedPeer, '203.0.113.5, 10.0.0.2', proxies), '198.51.100.7', 'nor claim to come through our proxies');
  t.equal(clientAddress(untrustedPeer, undefined, proxies), '198.51.100.7', 'without the header the peer is the client');
  t.equal(clientAddress({ ...untrustedPeer, address: '::ffff:198.51.100.7' }, undefined, proxies), '198.51.100.7',
    'an IPv4-mapped peer address is reported as IPv4');
});

t.test('behind trusted proxies the first untrusted address from the right is the client', async (t) => {
  t.equal(clientAddress(trustedPeer, undefined, proxies), '10.0.0.1', 'a trusted peer without the header is itself the client');
  t.equal(clientAddress(trustedPeer, '203.0.113.5', proxies), '203.0.113.5', 'one hop: the address the proxy saw');
  t.equal(clientAddress(trustedPeer, '203.0.113.5, 10.0.0.2, 10.0.0.3', proxies), '203.0.113.5', 'a chain of trusted proxies is skipped');
  t.equal(clientAddress(trustedPeer, '10.0.0.4, 10.0.0.3', proxies), '10.0.0.4',
    'when every entry is a trusted proxy, the leftmost one is the client (an internal caller)');
  t.equal(clientAddress(trustedPeer, '203.0.113.5, fd00::2', proxies), '203.0.113.5', 'IPv6 proxies are skipped the same way');
  t.equal(clientAddress(trustedPeer, '203.0.113.5', undefined), '203.0.113.5', 'with no proxy list, the rightmost entry is the client');
});

t.test('addresses left of the client are never used: they are the client\'s own words', async (t) => {
  t.equal(clientAddress(trustedPeer, '10.0.0.9, 203.0.113.5, 10.0.0.2', proxies), '203.0.113.5',
    'a spoofed trusted-looking address left of the client is ignored');
  t.equal(clientAddress(trustedPeer, '1.1.1.1, 8.8.8.8, 203.0.113.5', proxies), '203.0.113.5',
    'spoofed public addresses left of the client are ignored');
});

t.test('a malformed entry ends the walk at the last trusted address reached', async (t) => {
  t.equal(clientAddress(trustedPeer, '203.0.113.5, garbage, 10.0.0.2', proxies), '10.0.0.2',
    'the trusted proxy right of the bad entry is the answer, not the address left of it');
  t.equal(clientAddress(trustedPeer, '203.0.113.5, unknown', proxies), '10.0.0.1', 'a malformed rightmost entry leaves the peer');
  t.equal(clientAddress(trustedPeer, '', proxies), '10.0.0.1', 'an empty header leaves the peer');
  t.equal(clientAddress(trustedPeer, '203.0.113.5,, 10.0.0.2', proxies), '10.0.0.2', 'an empty entry is malformed');
  t.equal(clientAddress(trustedPeer, '203.0.113.5, 10.0.0.2,', proxies), '10.0.0.1', 'a trailing comma is an empty, malformed entry');
  for (const bad of ['01.2.3.4', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1.2.3.4:99999', '1.2.3.4:', '[1.2.3.4]', '[2001:db8::1',
    '[2001:db8::1]x', 'fe80::1%eth0', 'host.example', '"203.0.113.5"', '_hidden', '2001:db8::1:443:1:2:3:4:5']) {
    t.equal(clientAddress(trustedPeer, `6.6.6.6, ${bad}`, proxies), '10.0.0.1', `"${bad}" is malformed and nothing left of it is used`);
  }
});

t.test('entries may carry ports, brackets, whitespace and IPv6 in any spelling', async (t) => {
  t.equal(clientAddress(trustedPeer, '203.0.113.5:5678', proxies), '203.0.113.5', 'an IPv4 port is dropped');
  t.equal(clientAddress(trustedPeer, '[2001:db8::1]:443', proxies), '2001:db8::1', 'a bracketed IPv6 address with a port');
  t.equal(clientAddress(trustedPeer, '[2001:db8::1]', proxies), '2001:db8::1', 'a bracketed IPv6 address without a port');
  t.equal(clientAddress(trustedPeer, '2001:DB8:0:0:0:0:0:0001', proxies), '2001:db8::1', 'IPv6 is reported in canonical (RFC 5952) form');
  t.equal(clientAddress(trustedPeer, ' \t203.0.113.5 \t,\t10.0.0.2 ', proxies), '203.0.113.5', 'spaces and tabs around entries are ignored');
  t.equal(clientAddress(trustedPeer, '203.0.113.5, [fd00::2]:8443', proxies), '203.0.113.5', 'a bracketed trusted proxy with a port is skipped');
  t.equal(forwardedAddress('2001:db8:0:1:0:0:0:1'), '2001:db8:0:1::1', 'the longest zero run is the one compressed');
  t.equal(forwardedAddress('2001:0:0:1:0:0:0:0'), '2001:0:0:1::', 'the first of the longest runs, and a trailing run');
  t.equal(forwardedAddress('2001:db8:1:1:1:1:0:1'), '2001:db8:1:1:1:1:0:1', 'a single zero group is not compressed');
});

t.test('IPv4-mapped IPv6 addresses are IPv4', async (t) => {
  t.equal(clientAddress(trustedPeer, '::ffff:203.0.113.5', proxies), '203.0.113.5', 'dotted mapped form');
  t.equal(clientAddress(trustedPeer, '[::ffff:203.0.113.5]:80', proxies), '203.0.113.5', 'bracketed mapped form with a port');
  t.equal(clientAddress(trustedPeer, '::ffff:cb00:7105', proxies), '203.0.113.5', 'hexadecimal mapped form');
  t.equal(clientAddress(trustedPeer, '203.0.113.5, ::ffff:10.0.0.2', proxies), '203.0.113.5', 'a mapped trusted proxy is recognised as trusted');
  t.equal(clientAddress({ ...trustedPeer, address: '::ffff:10.0.0.1' }, '203.0.113.5', proxies), '203.0.113.5', 'a mapped peer works too');
  t.equal(canonicalIp('::ffff:0:203.0.113.5'), '::ffff:0:cb00:7105', 'an IPv4-translated (not mapped) address stays IPv6');
});

// ---------------------------------------------------------------------------------------
// Country resolution

const silent = pino({ level: 'silent' });

t.test('the config table: longest prefix wins, IPv4 and IPv6', async (t) => {
  const resolver = new CountryResolver({
    logger: silent,
    countries: { '10.0.0.0/8': 'NL', '10.1.0.0/16': 'BE', '10.1.2.0/24': 'DE', '10.1.2.128/25': 'FR', '2001:db8::/32': 'NL', '2001:db8:1::/48': 'BE' },
  });
  t.teardown(() => resolver.close());
  t.equal(resolver.country('10.9.9.9'), 'NL', 'only the /8 matches');
  t.equal(resolver.country('10.1.9.9'), 'BE', 'the /16 beats the /8');
  t.equal(resolver.country('10.1.2.3'), 'DE', 'the /24 beats the /16');
  t.equal(resolver.country('10.1.2.200'), 'FR', 'a /25 (a prefix not on a byte boundary) beats the /24');
  t.equal(resolver.country('10.1.2.127'), 'DE', 'just outside the /25 the /24 answers');
  t.equal(resolver.country('11.0.0.1'), undefined, 'outside every network: unknown');
  t.equal(resolver.country('2001:db8::1'), 'NL', 'IPv6 /32');
  t.equal(resolver.country('2001:db8:1::1'), 'BE', 'IPv6 /48 beats /32');
  t.equal(resolver.country('2001:db9::1'), undefined, 'IPv6 outside: unknown');
  t.equal(resolver.country('::ffff:10.1.2.3'), 'DE', 'an IPv4-mapped address is looked up as IPv4');
  t.equal(resolver.country('not an address'), undefined, 'a non-address is unknown, not an error');
  t.equal(resolver.country(''), undefined, 'an empty address (a socket already gone) is unknown');
});

t.test('a catch-all /0 in the table answers for everything else', async (t) => {
  const resolver = new CountryResolver({ logger: silent, countries: { '0.0.0.0/0': 'NL', '10.0.0.0/8': 'BE' } });
  t.teardown(() => resolver.close());
  t.equal(resolver.country('8.8.8.8'), 'NL', '/0 matches any IPv4 address');
  t.equal(resolver.country('10.0.0.1'), 'BE', 'a longer prefix still wins over /0');
  t.equal(resolver.country('2001:db8::1'), undefined, 'an IPv4 /0 says nothing about IPv6');
});

t.test('the MaxMind database written by the test writer answers for IPv4 and IPv6', async (t) => {
  const file = tempFile();
  await writeCountryMmdb(file, [
    ['1.0.0.0/8', 'AU'], ['1.2.0.0/16', 'CN'], ['203.0.113.0/24', 'US'],
    ['2001:db8::/32', 'NL'], ['2001:db8:1::/48', 'DE'],
  ]);
  const resolver = new CountryResolver({ logger: silent, geoip: file });
  t.teardown(() => resolver.close());
  t.equal(resolver.country('1.9.9.9'), 'AU', 'IPv4 /8');
  t.equal(resolver.country('1.2.3.4'), 'CN', 'a more specific IPv4 network inside it');
  t.equal(resolver.country('203.0.113.77'), 'US', 'another IPv4 network');
  t.equal(resolver.country('2001:db8:5::1'), 'NL', 'IPv6 /32');
  t.equal(resolver.country('2001:db8:1::5'), 'DE', 'IPv6 /48 inside it');
  t.equal(resolver.country('9.9.9.9'), undefined, 'an IPv4 address not in the database is unknown');
  t.equal(resolver.country('2a00::1'), undefined, 'an IPv6 address not in the database is unknown');
  t.equal(resolver.country('::ffff:1.2.3.4'), 'CN', 'an IPv4-mapped address is looked up as IPv4');
  t.equal(resolver.database?.databaseType, 'GeoLite2-Country', 'the database in use is reported');
});

t.test('the hospital\'s table beats the database', async (t) => {
  const file = tempFile();
  await writeCountryMmdb(file, [['203.0.113.0/24', 'US'], ['2001:db8::/32', 'US']]);
  const resolver = new CountryResolver({ logger: silent, geoip: file, countries: { '203.0.113.0/25': 'NL', '2001:db8:ff::/48': 'BE' } });
  t.teardown(() => resolver.close());
  t.equal(resolver.country('203.0.113.10'), 'NL', 'the table answers inside its network, though the database says US');
  t.equal(resolver.country('203.0.113.200'), 'US', 'outside the table\'s network the database answers');
  t.equal(resolver.country('2001:db8:ff::1'), 'BE', 'IPv6 too: the table answers first');
  t.equal(resolver.country('2001:db8:fe::1'), 'US', 'and the database for the rest');
});

t.test('records without country fall back to registered_country; odd codes are unknown', async (t) => {
  const file = tempFile();
  const entries: Array<[string, MmdbValue]> = [
    ['198.51.100.0/24', countryRecord('NL')],
    ['192.0.2.0/26', { registered_country: { iso_code: 'DE', names: { en: 'Germany' } } }],
    ['192.0.2.64/26', { continent: { code: 'EU' } }],
    ['192.0.2.128/26', { country: { iso_code: 'nl' } }],
    ['192.0.2.192/26', { country: { iso_code: 42 } }],
  ];
  await writeMmdb(file, entries);
  const resolver = new CountryResolver({ logger: silent, geoip: file });
  t.teardown(() => resolver.close());
  t.equal(resolver.country('192.0.2.1'), 'DE', 'a satellite or anycast network: the registered country');
  t.equal(resolver.country('192.0.2.65'), undefined, 'a record with neither is unknown');
  t.equal(resolver.country('192.0.2.129'), undefined, 'a lower-case code is not trusted as a country');
  t.equal(resolver.country('192.0.2.193'), undefined, 'a non-string code is unknown');
});

t.test('the writer\'s files read back right with 24, 28 and 32-bit records and IPv4 trees', async (t) => {
  const entries: Array<[string, string]> = [['1.0.0.0/8', 'AU'], ['1.2.0.0/16', 'CN'], ['0.0.0.0/0', 'ZZ'], ['2001:db8::/32', 'NL']];
  for (const recordSize of [24, 28, 32] as const) {
    const reader = new Reader<CountryResponse>(buildMmdb(entries.map(([cidr, code]) => [cidr, countryRecord(code)]), { recordSize }));
    t.equal(reader.metadata.recordSize, recordSize, `${recordSize}: the metadata says ${recordSize}`);
    t.same(['1.1.1.1', '1.2.3.4', '8.8.8.8', '2001:db8::1', '2001:db9::1'].map((ip) => reader.get(ip)?.country?.iso_code),
      ['AU', 'CN', 'ZZ', 'NL', undefined], `${recordSize}: IPv4, nested IPv4, IPv4 /0 and IPv6 lookups; IPv4 /0 covers only ::/96`);
  }
  const v4 = new Reader<CountryResponse>(buildMmdb([['10.0.0.0/8', countryRecord('NL')]], { ipVersion: 4, databaseType: 'Test-IPv4' }));
  t.equal(v4.metadata.ipVersion, 4, 'an ip_version 4 database');
  t.equal(v4.get('10.1.2.3')?.country?.iso_code, 'NL', 'looks up IPv4');
  t.equal(v4.metadata.databaseType, 'Test-IPv4', 'the database type is written');
  const file = tempFile();
  writeFileSync(file, buildMmdb([['10.0.0.0/8', countryRecord('NL')]], { ipVersion: 4 }));
  const resolver = new CountryResolver({ logger: silent, geoip: file });
  t.teardown(() => resolver.close());
  t.equal(resolver.country('10.0.0.1'), 'NL', 'the resolver reads an IPv4 database');
  t.equal(resolver.country('2001:db8::1'), undefined, 'and does not ask it about IPv6');
});

t.test('28-bit records above 2^24 (the shared middle nibble) are written and read right', async (t) => {
  // A 17 MB value first in the data section pushes the country records' pointers past 2^24.
  const filler: MmdbValue = { filler: Buffer.alloc(17 * 1024 * 1024) };
  const entries: Array<[string, MmdbValue]> = [['192.0.2.0/24', filler], ['198.51.100.0/24', countryRecord('NL')],
    ['198.51.101.0/24', countryRecord('DE')], ['2001:db8::/32', countryRecord('BE')]];
  const content = buildMmdb(entries, { recordSize: 28 });
  const reader = openCountryDatabase(content, 'big.mmdb');
  t.equal(reader.get('198.51.100.1')?.country?.iso_code, 'NL', 'an IPv4 record past 2^24 in a left record (prefix ends in 0)');
  t.equal(reader.get('198.51.101.1')?.country?.iso_code, 'DE', 'an IPv4 record past 2^24 in a right record (prefix ends in 1)');
  t.equal(reader.get('2001:db8::1')?.country?.iso_code, 'BE', 'an IPv6 record past 2^24');
});

t.test('a database damaged beyond what the load check samples: unknown, and said once', async (t) => {
  // More good networks than the check samples, then one whose record is garbage.
  const nl = countryRecord('NL');
  const entries: Array<[string, MmdbValue]> = Array.from({ length: 80 }, (_, i): [string, MmdbValue] => [`1.0.${i}.0/24`, nl]);
  entries.push(['2001:db8::/32', countryRecord('BE')]);
  const content = buildMmdb(entries);
  const { searchTreeSize } = new Reader<CountryResponse>(content).metadata;
  // The BE record follows the NL one in the data section: make its first byte an invalid type.
  const be = searchTreeSize + 16 + encodeValue(nl).length;
  content[be] = 0;
  content[be + 1] = 0;
  const file = tempFile();
  writeFileSync(file, content);
  const { logger, lines } = capturingLogger();
  const resolver = new CountryResolver({ logger, geoip: file });
  t.teardown(() => resolver.close());
  t.equal(resolver.country('1.0.5.1'), 'NL', 'the readable part answers');
  t.equal(resolver.country('2001:db8::1'), undefined, 'an unreadable record is unknown, not an exception');
  t.equal(resolver.country('2001:db8::2'), undefined, 'again');
  const errors = lines.filter((l) => l.level === ERROR);
  t.equal(errors.length, 1, 'the damage is logged once, not per lookup');
  t.match(errors[0]?.msg, /the database is corrupt/, 'and says what is wrong');
});

// ---------------------------------------------------------------------------------------
// Reloading the database

t.test('the database is reloaded when its file changes, atomically or in place', async (t) => {
  const file = tempFile();
  await writeCountryMmdb(file, [['203.0.113.0/24', 'US']]);
  const { logger, lines } = capturingLogger();
  const resolver = new CountryResolver({ logger, geoip: file, watchIntervalMs: 20 });
  t.teardown(() => resolver.close());
  t.equal(resolver.country('203.0.113.9'), 'US', 'the first database answers');
  const generation = resolver.generation;

  // geoipupdate's way: a new file renamed over the old one.
  const next = `${file}.tmp`;
  await writeCountryMmdb(next, [['203.0.113.0/24', 'FR']]);
  renameSync(next, file);
  await until(() => resolver.country('203.0.113.9') === 'FR', 5_000, 'the renamed-in database to be used');
  t.pass('a database renamed over the file is picked up');
  t.ok(resolver.generation > generation, 'the generation moved on, so per-socket answers are recomputed');
  t.ok(lines.some((l) => l.msg === 'GeoIP database reloaded' && l.file === file), 'the reload is logged with the file');

  // A plain overwrite of the same file. (Another size too: file times tick coarsely, and a
  // same-size rewrite within one tick of the last read is indistinguishable by stat.)
  await writeCountryMmdb(file, [['203.0.113.0/24', 'DE'], ['198.51.100.0/24', 'DE']]);
  await until(() => resolver.country('203.0.113.9') === 'DE', 5_000, 'the overwritten database to be used');
  t.pass('a database written over in place is picked up');
});

t.test('a bad new database file is kept out: the old one stays and the error is logged', async (t) => {
  const file = tempFile();
  await writeCountryMmdb(file, [['203.0.113.0/24', 'US']]);
  const { logger, lines } = capturingLogger();
  const resolver = new CountryResolver({ logger, geoip: file, watchIntervalMs: 20 });
  t.teardown(() => resolver.close());
  t.equal(resolver.country('203.0.113.9'), 'US', 'the good database answers');

  const refusal = (pattern: RegExp): LogLine | undefined => lines.find((l) => l.level === ERROR && pattern.test(l.err ?? ''));
  writeFileSync(file, 'this is not a database');
  await until(() => refusal(/is not a MaxMind DB \(\.mmdb\) file/) !== undefined, 5_000, 'the corrupt file to be refused');
  t.equal(refusal(/is not a MaxMind DB/)?.msg, 'GeoIP database not reloaded: keeping the database already loaded',
    'the log says what is wrong with the file, and that the old database stays');
  t.equal(refusal(/is not a MaxMind DB/)?.file, file, 'the log names the file');
  t.equal(resolver.country('203.0.113.9'), 'US', 'the old database still answers');

  await writeMmdb(file, [['203.0.113.0/24', { autonomous_system_number: 64_500, autonomous_system_organization: 'Example' }]], { databaseType: 'GeoLite2-ASN' });
  await until(() => refusal(/holds no countries/) !== undefined, 5_000, 'the ASN database to be refused');
  t.match(refusal(/holds no countries/)?.err, /holds no countries \(database type "GeoLite2-ASN"\)/, 'a database without countries is refused too');
  t.equal(resolver.country('203.0.113.9'), 'US', 'and the old database still answers');

  rmSync(file);
  await until(() => lines.some((l) => l.level === WARN), 5_000, 'the missing file to be noticed');
  t.equal(lines.find((l) => l.level === WARN)?.msg, 'GeoIP database file is gone: keeping the database already loaded', 'a deleted file is a warning');
  t.equal(resolver.country('203.0.113.9'), 'US', 'the loaded database keeps answering without its file');

  await writeCountryMmdb(file, [['203.0.113.0/24', 'FR']]);
  await until(() => resolver.country('203.0.113.9') === 'FR', 5_000, 'the good file to be loaded again');
  t.pass('a good file after bad ones is loaded');
});

t.test('reload() on demand, and after close nothing is reloaded', async (t) => {
  const file = tempFile();
  await writeCountryMmdb(file, [['203.0.113.0/24', 'US']]);
  const resolver = new CountryResolver({ logger: silent, geoip: file, watchIntervalMs: 60_000 });
  await writeCountryMmdb(file, [['203.0.113.0/24', 'FR']]);
  t.equal(await resolver.reload(), true, 'an explicit reload succeeds');
  t.equal(resolver.country('203.0.113.9'), 'FR', 'and is used at once');
  await resolver.close();
  await writeCountryMmdb(file, [['203.0.113.0/24', 'DE']]);
  t.equal(await resolver.reload(), false, 'a closed resolver does not reload');
  t.equal(resolver.country('203.0.113.9'), 'FR', 'and keeps its last answer');
});

// ---------------------------------------------------------------------------------------
// Config

type Issue = { path: PropertyKey[]; message: string };

function issues(value: unknown): Issue[] {
  const parsed = networkSchema(dir).safeParse(value);
  return parsed.success ? [] : parsed.error.issues.map((i) => ({ path: i.path, message: i.message }));
}

t.test('a good network section: paths resolved, networks and codes normalized', async (t) => {
  const file = tempFile('good.mmdb');
  await writeCountryMmdb(file, [['203.0.113.0/24', 'US']]);
  const parsed = networkSchema(dir).parse({
    geoip: file.slice(dir.length + 1),
    countries: { '10.0.0.0/8': 'nl', '2001:0DB8::/32': 'Be', '::ffff:192.168.0.0/112': 'DE' },
  });
  t.equal(parsed.geoip, file, 'the database path is resolved against the config file\'s directory');
  t.same(parsed.countries, { '10.0.0.0/8': 'NL', '2001:db8::/32': 'BE', '192.168.0.0/16': 'DE' },
    'codes are upper-cased, IPv6 networks canonical, IPv4-mapped networks IPv4');
  t.same(networkSchema(dir).parse({}), {}, 'both keys are optional');
});

t.test('bad networks and country codes are refused, naming the key and value', async (t) => {
  t.same(issues({ countries: { '10.0.0.0/33': 'NL' } }), [{ path: ['countries', '10.0.0.0/33'],
    message: 'expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32, got "10.0.0.0/33" (as a key of countries)' }], 'a prefix too long');
  t.same(issues({ countries: { 'intranet': 'NL' } })[0]?.message,
    'expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32, got "intranet" (as a key of countries)', 'not a CIDR at all');
  t.same(issues({ countries: { '10.0.0.1': 'NL' } })[0]?.message,
    'expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32, got "10.0.0.1" (as a key of countries)', 'an address without a prefix');
  t.same(issues({ countries: { '10.1.2.3/8': 'NL' } })[0]?.message,
    '"10.1.2.3/8" has host bits set: expected its network address, 10.0.0.0/8 (as a key of countries)', 'host bits set, with the fix');
  t.same(issues({ countries: { '10.0.0.0/8': 'NLD' } }), [{ path: ['countries', '10.0.0.0/8'],
    message: 'expected a two-letter ISO 3166-1 country code such as NL for 10.0.0.0/8, got "NLD"' }], 'a three-letter code');
  t.same(issues({ countries: { '10.0.0.0/8': 31 } })[0]?.message,
    'expected a two-letter ISO 3166-1 country code such as NL for 10.0.0.0/8, got 31', 'a number');
  t.same(issues({ countries: { '2001:db8::/32': 'NL', '2001:0db8::/32': 'BE' } }), [{ path: ['countries', '2001:0db8::/32'],
    message: '2001:0db8::/32 is the same network as 2001:db8::/32: list it once' }], 'one network spelled twice');
  t.equal(issues({ countries: ['10.0.0.0/8'] })[0]?.message, 'expected a mapping of CIDRs to country codes, such as 10.0.0.0/8: NL', 'a list');
  t.same(issues({ geoip: 'x.mmdb', country: {} }).map((i) => i.path), [['geoip'], []], 'unknown keys are refused (strict)');
  t.equal(parseNetwork('fe80::1%eth0/64'), 'expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32, got "fe80::1%eth0/64"', 'zone ids are not networks');
});

t.test('the database file is checked at load', async (t) => {
  const missing = join(dir, 'missing.mmdb');
  t.same(issues({ geoip: 'missing.mmdb' }), [{ path: ['geoip'], message: `cannot read GeoIP database ${missing}: ENOENT` }],
    'a missing file is named, with the reason');
  t.same(issues({ geoip: '' })[0]?.message, 'expected the path of a MaxMind .mmdb Country or City database', 'an empty path');

  const corrupt = tempFile('corrupt.mmdb');
  writeFileSync(corrupt, Buffer.from('not a maxmind database at all, just text'));
  t.match(issues({ geoip: corrupt })[0]?.message, new RegExp(`^${corrupt} is not a MaxMind DB \\(\\.mmdb\\) file: `), 'a file that is not a database');

  const good = tempFile('good.mmdb');
  await writeCountryMmdb(good, [['203.0.113.0/24', 'US']]);
  const gzipped = tempFile('country.mmdb.gz');
  writeFileSync(gzipped, gzipSync(readFileSync(good)));
  t.equal(issues({ geoip: gzipped })[0]?.message, `${gzipped} is gzip-compressed (a .tar.gz download?): extract the .mmdb file from it`,
    'a compressed download says what to do');

  const truncated = tempFile('truncated.mmdb');
  writeFileSync(truncated, readFileSync(good).subarray(0, 20));
  t.match(issues({ geoip: truncated })[0]?.message, /is not a MaxMind DB \(\.mmdb\) file/, 'a truncated file (its metadata lost)');

  const lying = tempFile('lying.mmdb');
  const bytes = readFileSync(good);
  writeFileSync(lying, Buffer.concat([bytes.subarray(0, 10), bytes.subarray(bytes.lastIndexOf(Buffer.from('MaxMind.com')) - 3)]));
  t.match(issues({ geoip: lying })[0]?.message, /is not a usable MaxMind DB file: its metadata does not match its size/,
    'a file whose tree is shorter than its metadata says');

  const damagedContent = readFileSync(good);
  damagedContent[new Reader<CountryResponse>(damagedContent).metadata.searchTreeSize + 16] = 0;
  const damaged = tempFile('damaged.mmdb');
  writeFileSync(damaged, damagedContent);
  t.match(issues({ geoip: damaged })[0]?.message, new RegExp(`^${damaged} is corrupt: `), 'a file whose records cannot be read');

  const asn = tempFile('asn.mmdb');
  await writeMmdb(asn, [['203.0.113.0/24', { autonomous_system_number: 64_500 }]], { databaseType: 'GeoLite2-ASN' });
  t.equal(issues({ geoip: asn })[0]?.message,
    `${asn} holds no countries (database type "GeoLite2-ASN"): expected a GeoIP2 or GeoLite2 Country or City database`,
    'a database without countries (ASN) is refused, naming its type');

  const empty = tempFile('empty.mmdb');
  await writeCountryMmdb(empty, []);
  t.equal(issues({ geoip: empty })[0]?.message, `${empty} holds no networks (database type "GeoLite2-Country")`, 'an empty database');

  const city = tempFile('city.mmdb');
  await writeMmdb(city, [['203.0.113.0/24', { city: { names: { en: 'Utrecht' } }, country: { iso_code: 'NL' } }]], { databaseType: 'GeoLite2-City' });
  t.same(issues({ geoip: city }), [], 'a City database is accepted');
});

// ---------------------------------------------------------------------------------------
// The provider, over real HTTP connections

const partial: PartialContext = { identity: undefined, session: undefined, request: { method: 'GET', host: 'epic.example', path: '/' }, time: 0 };

/** A server that answers every request with the provider's network context, as JSON. */
async function serve(t: Test, provider: NetworkProvider, trusted: BlockList | undefined): Promise<(headers?: string[]) => Promise<NetworkContext>> {
  const server = createServer((req, res) => {
    const ex = beginExchange(req, trusted);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(provider.provide(ex, partial) ?? null));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  // One client, one connection: every request rides the same socket.
  const client = new Client(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { pipelining: 1 });
  t.teardown(async () => {
    await client.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return async (headers = []) => {
    const res = await client.request({ path: '/', method: 'GET', headers });
    return (await res.body.json()) as NetworkContext;
  };
}

/** Counts the addresses the provider asks the resolver about. */
function countLookups(provider: NetworkProvider): string[] {
  const asked: string[] = [];
  const original = provider.countries.country.bind(provider.countries);
  provider.countries.country = (ip: string) => {
    asked.push(ip);
    return original(ip);
  };
  return asked;
}

t.test('a direct connection: the socket peer, looked up once per connection', async (t) => {
  const provider = createNetworkProvider(networkSchema(dir).parse({ countries: { '127.0.0.0/8': 'NL' } }), proxies, silent);
  t.teardown(() => provider.close());
  const asked = countLookups(provider);
  const get = await serve(t, provider, proxies);
  t.same(await get(), { ip: '127.0.0.1', country: 'NL' }, 'the peer and its country from the table');
  t.same(await get(['x-forwarded-for', '203.0.113.5']), { ip: '127.0.0.1', country: 'NL' }, 'an untrusted peer\'s X-Forwarded-For is ignored');
  t.same(await get(), { ip: '127.0.0.1', country: 'NL' }, 'a third request on the connection, the same answer');
  t.same(asked, ['127.0.0.1'], 'the country was looked up once for the connection, not per request');
  await provider.countries.reload();
  t.same(await get(), { ip: '127.0.0.1', country: 'NL' }, 'a request after a reload attempt (no database: nothing changes)');
  t.same(asked, ['127.0.0.1'], 'still once: no database was reloaded');
});

t.test('a per-connection answer is recomputed after the database is reloaded', async (t) => {
  const file = tempFile();
  await writeCountryMmdb(file, [['127.0.0.0/8', 'US']]);
  const provider = createNetworkProvider(networkSchema(dir).parse({ geoip: file }), undefined, silent, { watchIntervalMs: 60_000 });
  t.teardown(() => provider.close());
  const get = await serve(t, provider, undefined);
  t.same(await get(), { ip: '127.0.0.1', country: 'US' }, 'the first database\'s answer');
  await writeCountryMmdb(file, [['127.0.0.0/8', 'FR']]);
  t.equal(await provider.countries.reload(), true, 'the database is reloaded');
  t.same(await get(), { ip: '127.0.0.1', country: 'FR' }, 'the same connection gets the new answer');
});

t.test('behind a trusted proxy: X-Forwarded-For per request, repeated headers joined', async (t) => {
  const trusted = new BlockList();
  trusted.addAddress('127.0.0.1');
  trusted.addSubnet('10.0.0.0', 8, 'ipv4');
  const provider = createNetworkProvider(networkSchema(dir).parse({ countries: { '203.0.113.0/24': 'NL', '198.51.100.0/24': 'BE' } }), trusted, silent);
  t.teardown(() => provider.close());
  const asked = countLookups(provider);
  const get = await serve(t, provider, trusted);
  t.same(await get(['x-forwarded-for', '203.0.113.5']), { ip: '203.0.113.5', country: 'NL' }, 'the client the proxy saw');
  t.same(await get(['x-forwarded-for', '198.51.100.9, 10.0.0.2']), { ip: '198.51.100.9', country: 'BE' },
    'the next request on the same connection is another client: computed again');
  t.same(await get(['x-forwarded-for', '6.6.6.6, 198.51.100.9', 'x-forwarded-for', '10.0.0.3']), { ip: '198.51.100.9', country: 'BE' },
    'two X-Forwarded-For headers are read as one list, in order: the second header\'s trusted proxy is skipped');
  t.same(await get(['x-forwarded-for', '10.0.0.3', 'x-forwarded-for', 'garbage']), { ip: '127.0.0.1' },
    'a malformed entry in the last header leaves the peer (no country: absent from the JSON)');
  t.same(await get(), { ip: '127.0.0.1' }, 'without the header, the trusted peer itself');
  t.same(asked, ['203.0.113.5', '198.51.100.9', '198.51.100.9', '127.0.0.1', '127.0.0.1'], 'each request behind a proxy is resolved');
});

t.test('without a network section: the address, and no country', async (t) => {
  const provider = createNetworkProvider(undefined, undefined, silent);
  t.teardown(() => provider.close());
  t.equal(provider.name, 'network', 'the provider fills in the network part of the context');
  const get = await serve(t, provider, undefined);
  t.same(await get(), { ip: '127.0.0.1' }, 'the peer, with country undefined (absent from the JSON)');
  const ex = { req: { headers: {}, socket: {} }, peer: { address: '::ffff:198.51.100.7', trusted: false, proto: 'http' } };
  type Ex = Parameters<NetworkProvider['provide']>[0];
  t.same(provider.provide(ex as unknown as Ex, partial), { ip: '198.51.100.7', country: undefined },
    'a mapped peer address is reported as IPv4');
  const byHand = { req: { headers: { 'x-forwarded-for': ['203.0.113.5', '198.51.100.9'] }, socket: {} }, peer: trustedPeer };
  t.same(provider.provide(byHand as unknown as Ex, partial), { ip: '198.51.100.9', country: undefined },
    'headers built by hand as an array are joined in order, like Node joins repeated headers');
});

t.test('a provider whose database went bad between load and start refuses to start', async (t) => {
  const file = tempFile();
  writeFileSync(file, 'garbage');
  t.throws(() => createNetworkProvider({ geoip: file }, undefined, silent), { message: new RegExp(`^${file} is not a MaxMind DB`) },
    'the error names the file');
  t.throws(() => createNetworkProvider({ geoip: join(dir, 'gone.mmdb') }, undefined, silent),
    { message: `cannot read GeoIP database ${join(dir, 'gone.mmdb')}: ENOENT` }, 'a missing file is named too');
});

import { readFileSync, statSync, type BigIntStats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import { Reader, type CountryResponse } from 'maxmind';
import type { Logger } from '../../proxy/logger.js';
import { formatIp, ipBytes, unmapBytes } from './client-address.js';

/*
 * Which country an address is in. The hospital's own table (config `network.countries`)
 * is asked first, most specific network first: it knows its sites, VPN pools and partner
 * links better than any database. Then the MaxMind database, if one is configured. Then
 * nobody knows, and the answer is undefined (private ranges, unlisted addresses).
 *
 * Answers are cached per address; the cache is bounded and emptied when the database is
 * replaced. The database file is polled (stat, which follows atomic renames and symlink
 * swaps such as geoipupdate's and Kubernetes volume updates, and works on network mounts
 * where inotify does not) and reopened when another version appears and has stopped
 * changing for one interval (so a file being copied in place is not read half-written); a new file that does not open, or holds no countries, is refused with an error
 * in the log and the database already loaded stays in use.
 */

export type NetworkLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

// ---------------------------------------------------------------------------------------
// Networks (CIDR)

export interface Network {
  /** The network address: 4 bytes (IPv4) or 16 (IPv6), host bits zero. */
  bytes: Uint8Array;
  prefix: number;
}

/** Zeroes the bits of `bytes` after `prefix`, in place. */
function mask(bytes: Uint8Array, prefix: number): Uint8Array {
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i]! &= (0xff00 >> keep) & 0xff;
  }
  return bytes;
}

/**
 * A CIDR as a network, or why it is not one. An IPv4-mapped IPv6 network
 * (::ffff:10.0.0.0/104) is the IPv4 network it maps (10.0.0.0/8): client addresses are
 * compared as IPv4.
 */
export function parseNetwork(text: string): Network | string {
  const expected = `expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32, got "${text}"`;
  const slash = text.indexOf('/');
  const bits = slash === -1 ? '' : text.slice(slash + 1);
  const raw = slash === -1 ? undefined : ipBytes(text.slice(0, slash));
  if (raw === undefined || !/^\d{1,3}$/.test(bits) || Number(bits) > raw.length * 8) return expected;
  let bytes = raw;
  let prefix = Number(bits);
  const unmapped = unmapBytes(raw);
  if (unmapped !== raw && prefix >= 96) {
    bytes = unmapped;
    prefix -= 96;
  }
  const network = mask(Uint8Array.from(bytes), prefix);
  if (!network.every((byte, i) => byte === bytes[i])) {
    return `"${text}" has host bits set: expected its network address, ${formatNetwork({ bytes: network, prefix })}`;
  }
  return { bytes: network, prefix };
}

export function formatNetwork(network: Network): string {
  return `${formatIp(network.bytes)}/${network.prefix}`;
}

/** The first `prefix` bits of `bytes`, as a map key. */
function prefixKey(bytes: Uint8Array, prefix: number): string {
  let key = '';
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) key += String.fromCharCode(bytes[i]!);
  const rest = prefix & 7;
  if (rest) key += String.fromCharCode(bytes[whole]! & ((0xff00 >> rest) & 0xff));
  return key;
}

/** Networks to countries, longest prefix first. */
class NetworkTable {
  private readonly v4: Array<{ prefix: number; networks: Map<string, string> }> = [];
  private readonly v6: Array<{ prefix: number; networks: Map<string, string> }> = [];

  constructor(entries: Readonly<Record<string, string>>) {
    for (const [cidr, country] of Object.entries(entries)) {
      const network = parseNetwork(cidr);
      if (typeof network === 'string') throw new Error(network);
      const family = network.bytes.length === 4 ? this.v4 : this.v6;
      let group = family.find((g) => g.prefix === network.prefix);
      if (!group) {
        group = { prefix: network.prefix, networks: new Map() };
        family.push(group);
      }
      group.networks.set(prefixKey(network.bytes, network.prefix), country);
    }
    this.v4.sort((a, b) => b.prefix - a.prefix);
    this.v6.sort((a, b) => b.prefix - a.prefix);
  }

  lookup(bytes: Uint8Array): string | undefined {
    for (const group of bytes.length === 4 ? this.v4 : this.v6) {
      const country = group.networks.get(prefixKey(bytes, group.prefix));
      if (country !== undefined) return country;
    }
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------
// The MaxMind database

export type CountryReader = Reader<CountryResponse>;

const ISO_CODE = /^[A-Z]{2}$/;
const GZIP_MAGIC = [0x1f, 0x8b];
/** Leaves of the search tree looked at when checking that a database holds countries. */
const SAMPLE_LEAVES = 64;
const SAMPLE_NODES = 4096;

function isoCode(value: unknown): string | undefined {
  return typeof value === 'string' && ISO_CODE.test(value) ? value : undefined;
}

/** A record's country: where the address is, else where its network is registered. */
function recordCountry(record: CountryResponse | null): string | undefined {
  return isoCode(record?.country?.iso_code) ?? isoCode(record?.registered_country?.iso_code);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Reads one record of the search tree, as mmdb-lib does. */
function treeRecord(db: Buffer, recordSize: number, node: number, right: boolean): number {
  const offset = node * (recordSize / 4);
  if (recordSize === 24) return db.readUIntBE(offset + (right ? 3 : 0), 3);
  if (recordSize === 32) return db.readUInt32BE(offset + (right ? 4 : 0));
  const middle = db[offset + 3]!;
  return right
    ? ((middle & 0x0f) * 0x1000000) + db.readUIntBE(offset + 4, 3)
    : ((middle & 0xf0) * 0x100000) + db.readUIntBE(offset, 3);
}

/**
 * Addresses of the first few networks that have data, found by walking the search tree
 * from the left: enough to tell a country database from, say, an ASN one.
 */
function sampleAddresses(db: Buffer, reader: CountryReader): string[] {
  const { nodeCount, recordSize, ipVersion } = reader.metadata;
  const length = ipVersion === 4 ? 4 : 16;
  const found: string[] = [];
  const address = new Uint8Array(length);
  let visited = 0;
  // Bits below a leaf's depth may hold leftovers of an earlier branch: any address with
  // the leaf's prefix reaches the leaf, so they do not matter.
  const walk = (node: number, depth: number): void => {
    if (found.length >= SAMPLE_LEAVES || visited++ >= SAMPLE_NODES || depth >= length * 8) return;
    for (const right of [false, true]) {
      const bit = 0x80 >> (depth & 7);
      if (right) address[depth >> 3]! |= bit;
      else address[depth >> 3]! &= ~bit;
      const next = treeRecord(db, recordSize, node, right);
      if (next < nodeCount) walk(next, depth + 1);
      else if (next > nodeCount && found.length < SAMPLE_LEAVES) found.push(formatIp(address));
      if (found.length >= SAMPLE_LEAVES) break;
    }
  };
  walk(0, 0);
  return found;
}

/**
 * Opens a MaxMind DB file's content and checks that it answers with countries (a GeoIP2 or
 * GeoLite2 Country or City database, or one shaped like them). Throws an Error whose
 * message names `file` and what is wrong with it.
 */
export function openCountryDatabase(content: Buffer, file: string): CountryReader {
  if (content[0] === GZIP_MAGIC[0] && content[1] === GZIP_MAGIC[1]) {
    throw new Error(`${file} is gzip-compressed (a .tar.gz download?): extract the .mmdb file from it`);
  }
  let reader: CountryReader;
  try {
    reader = new Reader<CountryResponse>(content);
  } catch (err) {
    throw new Error(`${file} is not a MaxMind DB (.mmdb) file: ${errorText(err)}`);
  }
  const { ipVersion, searchTreeSize, databaseType } = reader.metadata;
  if ((ipVersion !== 4 && ipVersion !== 6) || !Number.isSafeInteger(searchTreeSize) || searchTreeSize + 16 > content.length) {
    throw new Error(`${file} is not a usable MaxMind DB file: its metadata does not match its size (truncated or corrupt)`);
  }
  let addresses: string[];
  let countries = 0;
  try {
    addresses = sampleAddresses(content, reader);
    for (const address of addresses) if (recordCountry(reader.get(address)) !== undefined) countries++;
  } catch (err) {
    throw new Error(`${file} is corrupt: ${errorText(err)}`);
  }
  const kind = `database type "${String(databaseType)}"`;
  if (addresses.length === 0) throw new Error(`${file} holds no networks (${kind})`);
  if (countries === 0) {
    throw new Error(`${file} holds no countries (${kind}): expected a GeoIP2 or GeoLite2 Country or City database`);
  }
  return reader;
}

/** Reads and checks a database file at start: synchronous, so only where no request waits. */
export function openCountryDatabaseFile(file: string): CountryReader {
  let content: Buffer;
  try {
    content = readFileSync(file);
  } catch (err) {
    throw new Error(`cannot read GeoIP database ${file}: ${(err as NodeJS.ErrnoException).code ?? errorText(err)}`);
  }
  return openCountryDatabase(content, file);
}

// ---------------------------------------------------------------------------------------
// The resolver

export interface CountryResolverOptions {
  /** CIDR to ISO 3166-1 alpha-2 code, upper case: the config's `network.countries`. */
  countries?: Readonly<Record<string, string>> | undefined;
  /** Absolute path of a MaxMind DB file (the config's `network.geoip`). */
  geoip?: string | undefined;
  logger: NetworkLogger;
  /** Most addresses whose country is remembered. */
  cacheSize?: number;
  /** How often the database file is checked for changes. */
  watchIntervalMs?: number;
}

const DEFAULT_CACHE_SIZE = 50_000;
const DEFAULT_WATCH_INTERVAL_MS = 5_000;
/** Cached for addresses no one knows the country of (lru-cache holds no undefined). */
const UNKNOWN = '';

/** What tells one version of a file from another: a rename, a rewrite, a changed size or time. */
function statKey(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
}

export class CountryResolver {
  private readonly table: NetworkTable;
  private readonly logger: NetworkLogger;
  private readonly cache: LRUCache<string, string>;
  private readonly file: string | undefined;
  private reader: CountryReader | undefined;
  private readerFailed = false;
  private generationCount = 0;
  /** The version of the file last read (or tried): only another version is read again. */
  private seen: string | undefined;
  /** A new version seen once: read when the next check finds it unchanged. */
  private settling: string | undefined;
  private missing = false;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private closed = false;

  /** Throws, naming the file, when the database cannot be opened: only at start. */
  constructor(options: CountryResolverOptions) {
    this.table = new NetworkTable(options.countries ?? {});
    this.logger = options.logger;
    this.cache = new LRUCache({ max: options.cacheSize ?? DEFAULT_CACHE_SIZE });
    this.file = options.geoip;
    if (this.file !== undefined) {
      // The version is taken before the content: a change in between is seen by the next check.
      try {
        this.seen = statKey(statSync(this.file, { bigint: true }));
      } catch {
        this.seen = undefined;
      }
      this.reader = openCountryDatabaseFile(this.file);
      // Polling stat (not inotify) follows atomic renames, symlink swaps and network mounts.
      this.timer = setInterval(() => this.poll(), options.watchIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS);
      this.timer.unref();
    }
  }

  /** Changes whenever answers may have changed (a database was reloaded). */
  get generation(): number {
    return this.generationCount;
  }

  /** The metadata of the database in use, if any. */
  get database(): CountryReader['metadata'] | undefined {
    return this.reader?.metadata;
  }

  /** The ISO 3166-1 alpha-2 code of the country `ip` is in, or undefined when unknown. */
  country(ip: string): string | undefined {
    const cached = this.cache.get(ip);
    if (cached !== undefined) return cached === UNKNOWN ? undefined : cached;
    const country = this.lookup(ip);
    this.cache.set(ip, country ?? UNKNOWN);
    return country;
  }

  private lookup(ip: string): string | undefined {
    const raw = ipBytes(ip);
    if (raw === undefined) return undefined;
    const bytes = unmapBytes(raw);
    const configured = this.table.lookup(bytes);
    if (configured !== undefined) return configured;
    const reader = this.reader;
    if (reader === undefined || (bytes.length === 16 && reader.metadata.ipVersion === 4)) return undefined;
    try {
      return recordCountry(reader.get(formatIp(bytes)));
    } catch (err) {
      // A database that passed the checks but is damaged further in: unknown, said once.
      if (!this.readerFailed) {
        this.readerFailed = true;
        this.logger.error({ file: this.file, ip, err: errorText(err) }, 'GeoIP database lookup failed: the database is corrupt; countries it cannot read are unknown');
      }
      return undefined;
    }
  }

  private poll(): void {
    if (this.checking !== undefined || this.closed) return;
    this.checking = this.check().finally(() => {
      this.checking = undefined;
    });
  }

  /** Reloads the database when its file is another, settled, version than the one last read. */
  private async check(): Promise<void> {
    const file = this.file!;
    let version: string;
    try {
      version = statKey(await stat(file, { bigint: true }));
    } catch (err) {
      if (!this.missing) {
        this.missing = true;
        this.logger.warn({ file, err: (err as NodeJS.ErrnoException).code ?? errorText(err) }, 'GeoIP database file is gone: keeping the database already loaded');
      }
      return;
    }
    this.missing = false;
    if (version === this.seen) return;
    // A file still being written (copied in place) changes between checks: read it only
    // once it has stayed the same for one interval.
    if (version !== this.settling) {
      this.settling = version;
      return;
    }
    this.settling = undefined;
    await this.reload();
  }

  /**
   * Reopens the database file now. A file that cannot be read or does not hold countries
   * is refused: the error is logged and the database already loaded stays in use.
   */
  async reload(): Promise<boolean> {
    const file = this.file;
    if (file === undefined || this.closed) return false;
    let reader: CountryReader;
    try {
      // The version before the content, as at start; a bad version is not retried until it changes.
      this.seen = statKey(await stat(file, { bigint: true }));
      const content = await readFile(file);
      reader = openCountryDatabase(content, file);
    } catch (err) {
      const text = (err as NodeJS.ErrnoException).code ? `cannot read GeoIP database ${file}: ${(err as NodeJS.ErrnoException).code}` : errorText(err);
      this.logger.error({ file, err: text }, 'GeoIP database not reloaded: keeping the database already loaded');
      return false;
    }
    if (this.closed) return false;
    this.reader = reader;
    this.readerFailed = false;
    this.cache.clear();
    this.generationCount++;
    const { databaseType, buildEpoch } = reader.metadata;
    this.logger.info({ file, databaseType, buildEpoch: buildEpoch.toISOString() }, 'GeoIP database reloaded');
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.checking;
    this.cache.clear();
  }
}

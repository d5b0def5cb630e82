import { writeFile } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';

/*
 * A small writer of MaxMind DB files (https://maxmind.github.io/MaxMind-DB/), so tests can
 * give wardgate real .mmdb databases with known contents instead of shipping GeoLite2.
 *
 * Layout: a binary search tree over the address bits (node_count nodes, two records each
 * of record_size bits), 16 zero bytes, the data section, then "\xAB\xCD\xEFMaxMind.com"
 * and the metadata map. A record below node_count is another node, node_count itself
 * means "no data", and above it points into the data section (value - node_count - 16).
 *
 * An ip_version 6 tree holds IPv4 networks at ::a.b.c.d/(96+n): readers look IPv4
 * addresses up by first following 96 zero bits from the root, as mmdb-lib does.
 *
 * Overlapping networks work as a routing table (most specific wins): a network's data
 * fills every part of its subtree that no more specific network claims.
 *
 * Deliberately independent of wardgate's own address parsing, so the tests do not check
 * the code against itself.
 */

/** An integer with an explicit MMDB type (numbers are otherwise uint32, int32 or double). */
export class MmdbInt {
  constructor(readonly type: 'uint16' | 'uint32' | 'uint64' | 'uint128' | 'int32', readonly value: number | bigint) {}
}
export const uint16 = (value: number): MmdbInt => new MmdbInt('uint16', value);

export type MmdbValue = string | number | bigint | boolean | Buffer | MmdbInt | MmdbValue[] | { [key: string]: MmdbValue };

export interface MmdbOptions {
  recordSize?: 24 | 28 | 32;
  ipVersion?: 4 | 6;
  databaseType?: string;
  languages?: string[];
  description?: string;
  /** Seconds since the epoch. */
  buildEpoch?: number;
}

// ---------------------------------------------------------------------------------------
// Data section encoding

const TYPE = {
  pointer: 1, utf8: 2, double: 3, bytes: 4, uint16: 5, uint32: 6, map: 7,
  int32: 8, uint64: 9, uint128: 10, array: 11, boolean: 14,
} as const;

function control(type: number, size: number): Buffer {
  let sizeBits: number;
  let extra: number[];
  if (size < 29) {
    sizeBits = size;
    extra = [];
  } else if (size < 29 + 256) {
    sizeBits = 29;
    extra = [size - 29];
  } else if (size < 285 + 65_536) {
    sizeBits = 30;
    const rest = size - 285;
    extra = [rest >> 8, rest & 0xff];
  } else {
    sizeBits = 31;
    const rest = size - 65_821;
    extra = [(rest >> 16) & 0xff, (rest >> 8) & 0xff, rest & 0xff];
  }
  // Types above 7 are "extended": type bits 0, and the next byte holds type - 7.
  return type <= 7 ? Buffer.from([(type << 5) | sizeBits, ...extra]) : Buffer.from([sizeBits, type - 7, ...extra]);
}

/** Big-endian bytes of a non-negative integer, without leading zero bytes (0 is no bytes). */
function unsignedBytes(value: bigint): Buffer {
  const bytes: number[] = [];
  for (let rest = value; rest > 0n; rest >>= 8n) bytes.unshift(Number(rest & 0xffn));
  return Buffer.from(bytes);
}

function encodeInt(int: MmdbInt): Buffer {
  const value = BigInt(int.value);
  if (int.type === 'int32') {
    const payload = Buffer.alloc(4);
    payload.writeInt32BE(Number(value));
    return Buffer.concat([control(TYPE.int32, 4), payload]);
  }
  const limit = { uint16: 16n, uint32: 32n, uint64: 64n, uint128: 128n }[int.type];
  if (value < 0n || value >= 1n << limit) throw new RangeError(`${value} does not fit ${int.type}`);
  const payload = unsignedBytes(value);
  return Buffer.concat([control(TYPE[int.type], payload.length), payload]);
}

export function encodeValue(value: MmdbValue): Buffer {
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8');
    return Buffer.concat([control(TYPE.utf8, bytes.length), bytes]);
  }
  if (typeof value === 'boolean') return control(TYPE.boolean, value ? 1 : 0);
  if (typeof value === 'bigint') return encodeInt(new MmdbInt(value < 1n << 64n ? 'uint64' : 'uint128', value));
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 0 && value < 2 ** 32) return encodeInt(new MmdbInt('uint32', value));
    if (Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31) return encodeInt(new MmdbInt('int32', value));
    const payload = Buffer.alloc(8);
    payload.writeDoubleBE(value);
    return Buffer.concat([control(TYPE.double, 8), payload]);
  }
  if (value instanceof MmdbInt) return encodeInt(value);
  if (Buffer.isBuffer(value)) return Buffer.concat([control(TYPE.bytes, value.length), value]);
  if (Array.isArray(value)) return Buffer.concat([control(TYPE.array, value.length), ...value.map(encodeValue)]);
  const keys = Object.keys(value);
  return Buffer.concat([control(TYPE.map, keys.length), ...keys.flatMap((key) => [encodeValue(key), encodeValue(value[key]!)])]);
}

// ---------------------------------------------------------------------------------------
// Networks and the search tree

/** The address bits of a CIDR as an array of 0/1, of length prefix, for a tree of `ipVersion`. */
function networkBits(cidr: string, ipVersion: 4 | 6): number[] {
  const [address = '', prefixText, extra] = cidr.split('/');
  const prefix = Number(prefixText);
  if (extra !== undefined || prefixText === undefined || !/^\d+$/.test(prefixText)) throw new Error(`not a CIDR: ${cidr}`);
  let bytes: number[];
  let offset = 0;
  if (isIPv4(address)) {
    if (prefix > 32) throw new Error(`not a CIDR: ${cidr}`);
    bytes = address.split('.').map(Number);
    // IPv4 in an IPv6 tree lives at ::/96.
    if (ipVersion === 6) {
      bytes = [...new Array<number>(12).fill(0), ...bytes];
      offset = 96;
    }
  } else if (isIPv6(address) && !address.includes('.') && !address.includes('%')) {
    if (ipVersion === 4) throw new Error(`an IPv6 network cannot go in an IPv4 database: ${cidr}`);
    if (prefix > 128) throw new Error(`not a CIDR: ${cidr}`);
    const [head = '', tail] = address.split('::');
    const headGroups = head === '' ? [] : head.split(':');
    const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
    const groups = tail === undefined
      ? headGroups
      : [...headGroups, ...new Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
    bytes = groups.flatMap((group) => {
      const word = parseInt(group, 16);
      return [word >> 8, word & 0xff];
    });
  } else {
    throw new Error(`not a CIDR: ${cidr}`);
  }
  const bits: number[] = [];
  for (let i = 0; i < offset + prefix; i++) bits.push((bytes[i >> 3]! >> (7 - (i & 7))) & 1);
  return bits;
}

interface TrieNode {
  children: [TrieNode | undefined, TrieNode | undefined];
  /** Index of this network's value in the data section, when a network ends here. */
  data: number | undefined;
}

const newNode = (): TrieNode => ({ children: [undefined, undefined], data: undefined });

type TreeRecord = { node: TrieNode } | { data: number | undefined };

/** The bytes of an MMDB file holding `entries` (CIDR and value; the same value object is stored once). */
export function buildMmdb(entries: ReadonlyArray<readonly [string, MmdbValue]>, options: MmdbOptions = {}): Buffer {
  const recordSize = options.recordSize ?? 28;
  const ipVersion = options.ipVersion ?? 6;

  // The data section: each distinct value object once.
  const values: MmdbValue[] = [];
  const indexOf = new Map<MmdbValue, number>();
  const root = newNode();
  for (const [cidr, value] of entries) {
    let index = indexOf.get(value);
    if (index === undefined) {
      index = values.length;
      values.push(value);
      indexOf.set(value, index);
    }
    let node = root;
    for (const bit of networkBits(cidr, ipVersion)) node = node.children[bit] ??= newNode();
    node.data = index;
  }
  const encoded = values.map(encodeValue);
  const offsets: number[] = [];
  let dataLength = 0;
  for (const bytes of encoded) {
    offsets.push(dataLength);
    dataLength += bytes.length;
  }

  // Number the nodes breadth first (the root is node 0); a trie node without children is
  // a leaf and becomes a data record in its parent. A network's data is inherited by the
  // parts of its subtree that no deeper network claims.
  const nodes: Array<{ node: TrieNode; inherited: number | undefined; records: [TreeRecord, TreeRecord] | undefined }> = [];
  const numbers = new Map<TrieNode, number>();
  const enqueue = (node: TrieNode, inherited: number | undefined): void => {
    numbers.set(node, nodes.length);
    nodes.push({ node, inherited, records: undefined });
  };
  enqueue(root, undefined);
  for (let i = 0; i < nodes.length; i++) {
    const entry = nodes[i]!;
    const here = entry.node.data ?? entry.inherited;
    const record = (child: TrieNode | undefined): TreeRecord => {
      if (child === undefined) return { data: here };
      if (child.children[0] === undefined && child.children[1] === undefined) return { data: child.data ?? here };
      enqueue(child, here);
      return { node: child };
    };
    entry.records = [record(entry.node.children[0]), record(entry.node.children[1])];
  }

  const nodeCount = nodes.length;
  const value = (record: TreeRecord): number => {
    if ('node' in record) return numbers.get(record.node)!;
    return record.data === undefined ? nodeCount : nodeCount + 16 + offsets[record.data]!;
  };
  const maxRecord = 2 ** recordSize - 1;
  const nodeBytes = recordSize / 4;
  const tree = Buffer.alloc(nodeCount * nodeBytes);
  nodes.forEach((entry, n) => {
    const [left, right] = entry.records!.map(value) as [number, number];
    if (left > maxRecord || right > maxRecord) throw new RangeError(`a record does not fit ${recordSize} bits`);
    const at = n * nodeBytes;
    if (recordSize === 24) {
      tree.writeUIntBE(left, at, 3);
      tree.writeUIntBE(right, at + 3, 3);
    } else if (recordSize === 28) {
      tree.writeUIntBE(left & 0xffffff, at, 3);
      tree[at + 3] = (Math.floor(left / 0x1000000) << 4) | Math.floor(right / 0x1000000);
      tree.writeUIntBE(right & 0xffffff, at + 4, 3);
    } else {
      tree.writeUInt32BE(left, at);
      tree.writeUInt32BE(right, at + 4);
    }
  });

  const metadata = encodeValue({
    node_count: new MmdbInt('uint32', nodeCount),
    record_size: uint16(recordSize),
    ip_version: uint16(ipVersion),
    database_type: options.databaseType ?? 'GeoLite2-Country',
    languages: options.languages ?? ['en'],
    binary_format_major_version: uint16(2),
    binary_format_minor_version: uint16(0),
    build_epoch: new MmdbInt('uint64', BigInt(options.buildEpoch ?? Math.floor(Date.now() / 1000))),
    description: { en: options.description ?? 'wardgate test database' },
  });
  return Buffer.concat([
    tree,
    Buffer.alloc(16),
    ...encoded,
    Buffer.from('ABCDEF', 'hex'),
    Buffer.from('MaxMind.com', 'latin1'),
    metadata,
  ]);
}

export async function writeMmdb(file: string, entries: ReadonlyArray<readonly [string, MmdbValue]>, options?: MmdbOptions): Promise<void> {
  await writeFile(file, buildMmdb(entries, options));
}

const regionNames = new Intl.DisplayNames(['en'], { type: 'region' });

/** A record shaped like GeoLite2-Country's for `isoCode`. */
export function countryRecord(isoCode: string): MmdbValue {
  return { country: { iso_code: isoCode, names: { en: regionNames.of(isoCode) ?? isoCode } } };
}

/** Writes a GeoLite2-Country shaped database: each CIDR to its country. */
export async function writeCountryMmdb(
  file: string,
  entries: ReadonlyArray<readonly [string, string]>,
  options?: MmdbOptions,
): Promise<void> {
  const records = new Map<string, MmdbValue>();
  const rows = entries.map(([cidr, code]): [string, MmdbValue] => {
    let record = records.get(code);
    if (record === undefined) {
      record = countryRecord(code);
      records.set(code, record);
    }
    return [cidr, record];
  });
  await writeMmdb(file, rows, options);
}

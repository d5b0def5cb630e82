import { BlockList, isIP } from 'node:net';
import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { expected, listOf, shown } from './values.js';

export interface Subnet {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

const subnet = z.string({ error: expected('a CIDR such as 10.0.0.0/8 or fd00::/8') }).transform((input, ctx): Subnet => {
  const [address = '', bits, extra] = input.split('/');
  // A zone index (fe80::1%eth0) names an interface, not a range: refused.
  const family = address.includes('%') ? 0 : isIP(address);
  const prefix = bits !== undefined && /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
  if (family === 0 || extra !== undefined || !(prefix <= (family === 4 ? 32 : 128))) {
    ctx.addIssue({ code: 'custom', message: `expected a CIDR such as 10.0.0.0/8 or fd00::/8 (an address, a slash and a prefix length), got ${shown(input)}` });
    return z.NEVER;
  }
  return { address, prefix, family: family === 4 ? 'ipv4' : 'ipv6' };
});

// Distinct client addresses remembered per compiled criterion; emptied when full, so a
// flood of addresses (IPv6 gives anyone plenty) costs time, never memory.
const CACHE_LIMIT = 4096;

/**
 * `cidr: [10.0.0.0/8, fd00::/8]`: the client's address is inside one of these.
 *
 * node:net's BlockList does the matching: it handles IPv6 in every notation and matches an
 * IPv4-mapped client address (`::ffff:10.1.2.3`, as a dual-stack socket reports IPv4
 * peers) against IPv4 ranges. A check costs some microseconds, though (it crosses into
 * C++ and builds an address object), so answers are remembered per client address: a
 * client's later requests cost one Map lookup and no allocation.
 */
export const cidr = defineCriterion({
  name: 'cidr',
  schema: listOf(subnet, 'CIDRs such as [10.0.0.0/8]'),
  category: 'network',
  passReason: 'cidr-ok',
  failReason: 'network-unauthorized',
  needsIdentity: false,
  compile(subnets) {
    const list = new BlockList();
    for (const { address, prefix, family } of subnets) list.addSubnet(address, prefix, family);
    const seen = new Map<string, boolean>();
    return (ctx) => {
      const ip = ctx.network.ip;
      const known = seen.get(ip);
      if (known !== undefined) return known;
      const family = isIP(ip);
      let inside = false;
      if (family !== 0) {
        try {
          inside = list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
        } catch {
          inside = false;
        }
      }
      if (seen.size >= CACHE_LIMIT) seen.clear();
      seen.set(ip, inside);
      return inside;
    };
  },
});

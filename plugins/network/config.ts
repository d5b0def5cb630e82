import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { formatNetwork, openCountryDatabase, parseNetwork } from './countries.js';

/*
 * The config's `network:` section:
 *
 *   network:
 *     geoip: /var/lib/GeoIP/GeoLite2-Country.mmdb   # or a City database
 *     countries:                                    # the hospital's own knowledge wins
 *       10.0.0.0/8: NL
 *       2001:db8:100::/48: BE
 *
 * The database is opened and looked into at load, so a missing, compressed, corrupt or
 * non-country file (an ASN database, say) stops wardgate from starting with a message
 * naming it, instead of every request quietly having no country.
 */

const COUNTRY_CODE = /^[A-Za-z]{2}$/;

export const networkSchema = (baseDir: string) => z.strictObject({
  /** A MaxMind (GeoIP2/GeoLite2) Country or City .mmdb file, relative to the config file. */
  geoip: z.string({ error: 'expected the path of a MaxMind .mmdb Country or City database' })
    .min(1, { error: 'expected the path of a MaxMind .mmdb Country or City database' })
    .transform((text, ctx) => {
      const file = resolve(baseDir, text);
      let content: Buffer;
      try {
        content = readFileSync(file);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: `cannot read GeoIP database ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` });
        return z.NEVER;
      }
      try {
        openCountryDatabase(content, file);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
      return file;
    })
    .optional(),
  /**
   * Networks to ISO 3166-1 alpha-2 country codes; the longest matching prefix wins, and
   * any match beats the database. Codes are upper-cased.
   */
  countries: z.record(z.string(), z.unknown(), { error: 'expected a mapping of CIDRs to country codes, such as 10.0.0.0/8: NL' })
    .transform((table, ctx) => {
      const out: Record<string, string> = {};
      const seen = new Map<string, string>();
      for (const [cidr, code] of Object.entries(table)) {
        const network = parseNetwork(cidr);
        if (typeof network === 'string') {
          ctx.addIssue({ code: 'custom', path: [cidr], message: `${network} (as a key of countries)` });
          continue;
        }
        if (typeof code !== 'string' || !COUNTRY_CODE.test(code)) {
          const shown = typeof code === 'string' ? `"${code}"` : (JSON.stringify(code) ?? String(code));
          ctx.addIssue({ code: 'custom', path: [cidr], message: `expected a two-letter ISO 3166-1 country code such as NL for ${cidr}, got ${shown}` });
          continue;
        }
        const canonical = formatNetwork(network);
        const earlier = seen.get(canonical);
        if (earlier !== undefined) {
          ctx.addIssue({ code: 'custom', path: [cidr], message: `${cidr} is the same network as ${earlier}: list it once` });
          continue;
        }
        seen.set(canonical, cidr);
        out[canonical] = code.toUpperCase();
      }
      return out;
    })
    .optional(),
});

export type NetworkConfig = z.output<ReturnType<typeof networkSchema>>;

import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { expected, listOf, shown } from './values.js';

/*
 * The 249 officially assigned ISO 3166-1 alpha-2 codes. Embedded rather than asked of ICU:
 * Intl.DisplayNames with fallback 'none' names user-assigned and reserved codes too (XK,
 * ZZ, QO, XA, EU, UK) and old codes as their successors (AN, CS, DD), so it cannot tell
 * an assigned code from a typo. Note XK: GeoIP databases use it for Kosovo, but it is
 * user-assigned, not assigned, and so refused here.
 */
const ASSIGNED = new Set((
  'AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ '
  + 'CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR '
  + 'GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP '
  + 'KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT '
  + 'MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW '
  + 'SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ '
  + 'UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW'
).split(' '));

/** The assigned codes (the unit tests hold the list to ISO's 249). */
export const ASSIGNED_COUNTRY_CODES: ReadonlySet<string> = ASSIGNED;

const code = z.string({ error: expected('a two-letter country code such as GB') }).transform((input, ctx) => {
  const upper = input.toUpperCase();
  if (!/^[A-Z]{2}$/.test(upper)) {
    ctx.addIssue({ code: 'custom', message: `expected a two-letter ISO 3166-1 country code such as GB, got ${shown(input)}` });
    return z.NEVER;
  }
  if (!ASSIGNED.has(upper)) {
    const hint = upper === 'UK' ? ' (the United Kingdom is GB)' : '';
    ctx.addIssue({ code: 'custom', message: `expected an assigned ISO 3166-1 country code such as GB, got ${shown(input)}, which is not assigned to a country${hint}` });
    return z.NEVER;
  }
  return upper;
});

/**
 * `country: [GB, IE]`: the client's address is placed in one of these countries. An
 * unknown country (private addresses, no GeoIP database) fails.
 */
export const country = defineCriterion({
  name: 'country',
  schema: listOf(code, 'country codes such as [GB]'),
  category: 'network',
  passReason: 'country-ok',
  failReason: 'country-unauthorized',
  needsIdentity: false,
  compile(codes) {
    const allowed = new Set<string | undefined>(codes);
    return (ctx) => ctx.network.country !== undefined && allowed.has(ctx.network.country);
  },
});

import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { emailTest, expected, listOf, shown } from './values.js';

const DOMAIN = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;

const domainName = z.string({ error: expected('an email domain such as hospital.example') })
  .transform((input) => input.toLowerCase())
  .refine((input) => DOMAIN.test(input), {
    error: (issue) => `expected an email domain such as hospital.example (no @, no wildcard), got ${shown(issue.input)}`,
  });

/*
 * `domain: [hospital.example, ...]`: the part of the identity's email after its last '@'
 * equals one of these, ignoring case.
 *
 * Exact match only, never a suffix: `hospital.example` does not admit
 * `lab.hospital.example`. Subdomains are often run by someone else (a vendor's tenant, a
 * patient portal that lets people register addresses), and a suffix rule would hand all of
 * them access; a suffix written without its dot would even admit `evilhospital.example`.
 * List every domain the hospital vouches for.
 */
export const domain = defineCriterion({
  name: 'domain',
  schema: listOf(domainName, 'email domains such as [hospital.example]'),
  category: 'identity',
  passReason: 'domain-ok',
  failReason: 'domain-unauthorized',
  needsIdentity: true,
  compile(domains) {
    const allowed = new Set(domains);
    const test = emailTest((email) => {
      const at = email.lastIndexOf('@');
      return at >= 0 && allowed.has(email.slice(at + 1).toLowerCase());
    });
    return (ctx) => test(ctx.identity?.email);
  },
});

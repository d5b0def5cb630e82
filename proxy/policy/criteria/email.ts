import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { emailTest, expected, listOf, shown } from './values.js';

const EMAIL = /^[^\s@]+@[^\s@]+$/;

const address = z.string({ error: expected('an email address such as alice@hospital.example') })
  .refine((input) => EMAIL.test(input), { error: (issue) => `expected an email address such as alice@hospital.example, got ${shown(issue.input)}` })
  .transform((input) => input.toLowerCase());

/** `email: [alice@hospital.example, ...]`: the identity's email is one of these, ignoring case. */
export const email = defineCriterion({
  name: 'email',
  schema: listOf(address, 'email addresses such as [alice@hospital.example]'),
  category: 'identity',
  passReason: 'email-ok',
  failReason: 'email-unauthorized',
  needsIdentity: true,
  compile(addresses) {
    const allowed = new Set(addresses);
    const test = emailTest((email) => allowed.has(email) || allowed.has(email.toLowerCase()));
    return (ctx) => test(ctx.identity?.email);
  },
});

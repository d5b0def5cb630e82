import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { expected } from './values.js';

/** `authenticated: true`: someone is signed in (a session or a verified bearer token). */
export const authenticated = defineCriterion({
  name: 'authenticated',
  schema: z.literal(true, { error: expected('true (authenticated: true)') }),
  category: 'sign-in',
  passReason: 'authenticated-ok',
  failReason: 'login-required',
  needsIdentity: true,
  compile: () => (ctx) => ctx.identity !== undefined,
});

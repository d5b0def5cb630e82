import { z } from 'zod';
import { pathPrefixSchema } from '../../config/path-prefix.js';
import { methodName } from '../policy/criteria/method.js';
import type { GrantRoute, GrantSubject } from './grant.js';

/*
 * A grant request as it arrives from outside (the admin API's JSON, the access page's
 * form): checked for shape here, so the service only has to judge it (routes, window,
 * who asks). Free text is bounded and stripped of control characters: it is shown to
 * approvers on pages and sent to chat webhooks.
 */

export interface GrantRequestInput {
  /** Absent: the requester asks for themselves. */
  subject?: GrantSubject;
  routes: GrantRoute[];
  notBefore: number;
  notAfter: number;
  justification: string;
  ticket?: string;
}

// Newlines and tabs are fine in a justification; other control characters (and the bidi
// overrides that make text read differently from what it says) are not.
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

export function freeText(what: string, min: number, max: number) {
  return z.string({ error: `expected ${what} as text` })
    .transform((text) => text.trim())
    .refine((text) => text.length >= min, { error: `expected ${what} of at least ${min} characters` })
    .refine((text) => text.length <= max, { error: `expected ${what} of at most ${max} characters` })
    .refine((text) => !UNSAFE.test(text), { error: `${what} holds control characters` });
}

const time = z.union([
  z.number().int().min(0),
  z.string().refine((text) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:\d{2})$/.test(text) && !Number.isNaN(Date.parse(text)), {
    error: 'expected an RFC 3339 time with its offset, such as 2026-11-24T09:00:00Z',
  }).transform((text) => Date.parse(text)),
], { error: 'expected an RFC 3339 time such as 2026-11-24T09:00:00Z' });

const route = z.strictObject({
  id: z.string({ error: 'expected a route id' }).regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, { error: 'expected a route id such as vendor' }),
  paths: z.array(pathPrefixSchema).min(1).max(20).optional(),
  methods: z.array(methodName).min(1).max(10).optional(),
});

const subject = z.union([
  z.strictObject({ user: z.string().min(1).max(255) }),
  z.strictObject({ email: z.email({ error: 'expected an email address' }).max(254).transform((e) => e.toLowerCase()) }),
], { error: 'expected a subject such as { "user": "vendor.dave" } or { "email": "dave@devicevendor.example" }' });

export const grantRequestSchema = z.strictObject({
  subject: subject.optional(),
  routes: z.array(route, { error: 'expected routes such as [{ "id": "vendor" }]' }).min(1, { error: 'expected at least one route' }).max(10),
  notBefore: time,
  notAfter: time,
  justification: freeText('a justification', 10, 2000),
  ticket: freeText('a ticket reference', 1, 100).optional(),
});

/** A closing reason (deny, revoke, end): optional, bounded. */
export const reasonSchema = freeText('a reason', 0, 500);

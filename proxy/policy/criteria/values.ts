import { z } from 'zod';
import { expected } from '../../../config/messages.js';

export { expected, shown } from '../../../config/messages.js';

/*
 * Schema pieces several criteria share, so their config errors read alike: each says what
 * was expected and what was found instead, the way config/schema.ts does.
 */

/**
 * The error function for a mapping's own issues: an unknown key is named along with the
 * keys the mapping takes; anything else is a value that is not a mapping at all.
 */
export function mappingOf(keys: string, what: string): (issue: { code?: string; keys?: string[]; input?: unknown }) => string {
  return (issue) => (issue.code === 'unrecognized_keys' && issue.keys
    ? `unknown key ${issue.keys.map((key) => `"${key}"`).join(', ')}: expected ${keys}`
    : expected(what)(issue));
}

// Emptiness is checked with refine, not .min(1): zod runs its length checks on anything
// with a length even after the type was refused, so a list given where a name belongs
// would also be called "an empty string".

/** A non-empty list; `what` names the items in the plural with an example. */
export function listOf<T>(item: z.ZodType<T, unknown>, what: string) {
  return z.array(item, { error: expected(`a list of ${what}`) })
    .refine((list) => list.length > 0, { error: `expected a non-empty list of ${what}, got an empty list` });
}

/** A non-empty string; `what` names it with an article and an example. */
export function text(what: string) {
  return z.string({ error: expected(what) }).refine((input) => input.length > 0, { error: `expected ${what}, got an empty string` });
}

/**
 * One of two schemas, chosen by the value's shape (a list or a mapping, say). A zod union
 * would try both and, when both fail, say only "Invalid input"; choosing first lets the
 * chosen schema's own messages, at their own paths, reach the user.
 */
export function byShape<A, B>(
  isFirst: (input: unknown) => boolean,
  first: z.ZodType<A, unknown>,
  second: z.ZodType<B, unknown>,
): z.ZodType<A | B, unknown> {
  return z.unknown().transform((input, ctx): A | B => {
    const schema: z.ZodType<A | B, unknown> = isFirst(input) ? first : second;
    const result = schema.safeParse(input);
    if (result.success) return result.data;
    for (const issue of result.error.issues) {
      ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
    }
    return z.NEVER;
  });
}

/** True for a mapping (a YAML object), false for lists, scalars and null. */
export function isMapping(input: unknown): boolean {
  return typeof input === 'object' && input !== null && !Array.isArray(input);
}

/**
 * A test of the identity's email that remembers its last answer: a user's requests carry
 * the same email string, so the work inside (lower-casing, slicing: both allocate) runs
 * once per user rather than once per request.
 */
export function emailTest(test: (email: string) => boolean): (email: string | undefined) => boolean {
  let last: string | undefined;
  let lastResult = false;
  return (email) => {
    if (email === undefined) return false;
    if (email !== last) {
      lastResult = test(email);
      last = email;
    }
    return lastResult;
  };
}

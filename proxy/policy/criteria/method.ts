import { z } from 'zod';
import { HTTP_TOKEN } from '../../../config/http-token.js';
import { defineCriterion } from '../criterion.js';
import { expected, listOf, shown } from './values.js';

/** One HTTP method, upper-cased: shared with grants narrowed to methods. */
export const methodName = z.string({ error: expected('an HTTP method such as GET') }).transform((input, ctx) => {
  if (!HTTP_TOKEN.test(input)) {
    ctx.addIssue({ code: 'custom', message: `expected an HTTP method such as GET, got ${shown(input)}` });
    return z.NEVER;
  }
  return input.toUpperCase();
});

/**
 * `method: [GET, HEAD]`: the request's method is one of these. Written in any case, they
 * are compared upper-cased; the request's method is compared as sent (methods are
 * case-sensitive, and Node's parser takes only upper-case ones).
 */
export const method = defineCriterion({
  name: 'method',
  schema: listOf(methodName, 'HTTP methods such as [GET, HEAD]'),
  category: 'request',
  passReason: 'method-ok',
  failReason: 'method-unauthorized',
  needsIdentity: false,
  compile(methods) {
    const allowed = new Set(methods);
    return (ctx) => allowed.has(ctx.request.method);
  },
});

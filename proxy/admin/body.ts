import type { IncomingMessage } from 'node:http';
import type { z } from 'zod';
import { BodyTooLargeError, readBody } from '../identity/http.js';
import { AdminApiError } from './errors.js';

/*
 * Request bodies of the admin API: JSON only, small, and checked against a strict schema
 * (unknown fields are refused, not ignored: a misspelt `notAfter` must not become a
 * default). A fault names its place in the body, as config errors name theirs.
 */

export const BODY_LIMIT_BYTES = 64 * 1024;

// The rest of an oversized body is not read: the connection cannot be used again.
const CLOSE = { headers: { connection: 'close' } };

/** The body parsed as JSON; undefined when there is none. */
export async function readJson(req: IncomingMessage, limit = BODY_LIMIT_BYTES): Promise<unknown> {
  const tooLarge = (): AdminApiError => new AdminApiError('body-too-large', `the body is over ${limit} bytes`, CLOSE);
  if (Number(req.headers['content-length'] ?? NaN) > limit) throw tooLarge();
  let body: Buffer;
  try {
    body = await readBody(req, limit);
  } catch (err) {
    throw err instanceof BodyTooLargeError ? tooLarge() : err;
  }
  if (body.length === 0) return undefined;
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new AdminApiError('unsupported-media-type', `expected a body of type application/json, got ${type === '' ? 'none' : type}`);
  }
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new AdminApiError('body-invalid', `the body is not JSON: ${(err as Error).message}`);
  }
}

/** `routes[0].id`: the place in the body. */
function placeOf(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const segment of path) out += typeof segment === 'number' ? `[${segment}]` : out === '' ? String(segment) : `.${String(segment)}`;
  return out;
}

/** `value` checked against `schema`, or a body-invalid error naming every fault. */
export function parseBody<T>(schema: z.ZodType<T, unknown>, value: unknown): T {
  const parsed = schema.safeParse(value === undefined ? {} : value);
  if (parsed.success) return parsed.data;
  const faults = parsed.error.issues.flatMap((issue) => (issue.code === 'unrecognized_keys'
    ? issue.keys.map((key) => ({ path: placeOf([...issue.path, key]), message: `unknown field "${key}"` }))
    : [{ path: placeOf(issue.path), message: issue.message }]));
  const message = faults.map((fault) => (fault.path ? `${fault.path}: ${fault.message}` : fault.message)).join('; ');
  const path = faults[0]?.path;
  throw new AdminApiError('body-invalid', message, path ? { path } : {});
}

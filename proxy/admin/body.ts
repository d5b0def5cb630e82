import type { IncomingMessage } from 'node:http';
import type { z } from 'zod';
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
export function readJson(req: IncomingMessage, limit = BODY_LIMIT_BYTES): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > limit) {
      reject(new AdminApiError('body-too-large', `the body is over ${limit} bytes`, CLOSE));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        reject(new AdminApiError('body-too-large', `the body is over ${limit} bytes`, CLOSE));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (failed) return;
      if (size === 0) {
        resolve(undefined);
        return;
      }
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/json') {
        reject(new AdminApiError('unsupported-media-type', `expected a body of type application/json, got ${type === '' ? 'none' : type}`));
        return;
      }
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (err) {
        reject(new AdminApiError('body-invalid', `the body is not JSON: ${(err as Error).message}`));
      }
    });
    req.on('error', reject);
  });
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

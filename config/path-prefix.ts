import { z } from 'zod';
import { canonicalPath } from '../proxy/normalize.js';
import { expected } from './messages.js';

/** A path prefix as routes and path rules write it: leading slash, no trailing slash, canonical. */
export const pathPrefixSchema = z.string({ error: expected('a path prefix such as /api') }).refine(
  (text) => text.startsWith('/') && (text === '/' || !text.endsWith('/')) && canonicalPath(text) === text,
  { error: (issue) => `expected a canonical path prefix such as /api (leading slash, no trailing slash, no dot segments or encoded characters), got "${String(issue.input)}"` },
);

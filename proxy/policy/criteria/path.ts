import { pathPrefixSchema } from '../../../config/path-prefix.js';
import { defineCriterion } from '../criterion.js';
import { listOf } from './values.js';

/** `path` is one of `prefixes` or lies below one, on segment boundaries. */
export function underAny(path: string, prefixes: readonly string[]): boolean {
  for (let i = 0; i < prefixes.length; i++) {
    const prefix = prefixes[i]!;
    if (prefix === '/') return true;
    if (path.startsWith(prefix) && (path.length === prefix.length || path.charCodeAt(prefix.length) === 47)) return true;
  }
  return false;
}

/**
 * `path: [/api/reports, /static]`: the request's path is one of these prefixes or lies
 * below one, on segment boundaries (`/api` holds `/api/x`, not `/apix`); `/` holds every
 * path. Matched, like routes, on the path without `;params`, so `/admin;x/users` is read as
 * `/admin/users`, which is what a servlet upstream will serve.
 */
export const path = defineCriterion({
  name: 'path',
  schema: listOf(pathPrefixSchema, 'path prefixes such as [/api]'),
  category: 'request',
  passReason: 'path-ok',
  failReason: 'path-unauthorized',
  needsIdentity: false,
  compile(prefixes) {
    if (prefixes.includes('/')) return () => true;
    const list = [...new Set(prefixes)];
    return (ctx) => underAny(ctx.request.path, list);
  },
});

import { pathPrefixSchema } from '../../../config/path-prefix.js';
import { defineCriterion } from '../criterion.js';
import { listOf } from './values.js';

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
    return (ctx) => {
      const requested = ctx.request.path;
      for (let i = 0; i < list.length; i++) {
        const prefix = list[i]!;
        if (requested.startsWith(prefix) && (requested.length === prefix.length || requested.charCodeAt(prefix.length) === 47)) return true;
      }
      return false;
    };
  },
});

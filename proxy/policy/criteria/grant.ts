import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { underAny } from './path.js';

/**
 * `grant: true`: the person holds an approved access grant for this route whose window is
 * open at the request's time, and whose path and method narrowing (if any) covers the
 * request (proxy/grants/); a grant narrowed to methods opens no WebSocket. Windows are
 * compared here, with the request's clock, so a grant stops working the moment it ends,
 * mid-session, with nothing having to run.
 */
export const grant = defineCriterion({
  name: 'grant',
  schema: z.literal(true, { error: 'expected grant: true (a grant approved for this route, in force now)' }),
  category: 'grant',
  passReason: 'grant-ok',
  failReason: 'grant-missing',
  needsIdentity: true,
  compile() {
    return (ctx) => {
      if (ctx.identity === undefined) return false;
      const { grants, time, request } = ctx;
      for (let i = 0; i < grants.length; i++) {
        const held = grants[i]!;
        if (time < held.notBefore || time >= held.notAfter) continue;
        // Narrowed to methods: those requests only, never a WebSocket (a read-only grant
        // must not open the vendor's terminal).
        if (held.methods && (request.websocket === true || !held.methods.includes(request.method))) continue;
        if (held.paths && !underAny(request.path, held.paths)) continue;
        return true;
      }
      return false;
    };
  },
});

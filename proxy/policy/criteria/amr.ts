import { defineCriterion } from '../criterion.js';
import { listOf, text } from './values.js';

/** `amr: [hwk, ...]`: the sign-in used every one of these methods (RFC 8176 values). */
export const amr = defineCriterion({
  name: 'amr',
  schema: listOf(text('an authentication method such as hwk'), 'authentication methods such as [hwk]'),
  category: 'authentication',
  passReason: 'amr-ok',
  failReason: 'amr-insufficient',
  needsIdentity: true,
  compile(methods) {
    const wanted = [...new Set(methods)];
    return (ctx) => {
      if (ctx.identity === undefined) return false;
      const held = ctx.identity.amr;
      for (let i = 0; i < wanted.length; i++) if (!held.includes(wanted[i]!)) return false;
      return true;
    };
  },
  stepUp: (methods) => ({ amr: methods }),
});

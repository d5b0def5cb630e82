import { defineCriterion } from '../criterion.js';
import { listOf, text } from './values.js';

/** `acr: [phr, ...]`: the sign-in's authentication context class is one of these. */
export const acr = defineCriterion({
  name: 'acr',
  schema: listOf(text('an authentication context class such as phr'), 'authentication context classes such as [phr]'),
  category: 'authentication',
  passReason: 'acr-ok',
  failReason: 'acr-insufficient',
  needsIdentity: true,
  compile(classes) {
    const allowed = new Set<string | undefined>(classes);
    return (ctx) => ctx.identity !== undefined && ctx.identity.acr !== undefined && allowed.has(ctx.identity.acr);
  },
  stepUp: (classes) => ({ acr: classes }),
});

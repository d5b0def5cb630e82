import { defineCriterion } from '../criterion.js';
import { listOf, text } from './values.js';

/** `user: [dr.alice, ...]`: the IdP's subject id is one of these (exact, case-sensitive). */
export const user = defineCriterion({
  name: 'user',
  schema: listOf(text('a subject id such as dr.alice'), 'subject ids such as [dr.alice]'),
  category: 'identity',
  passReason: 'user-ok',
  failReason: 'user-unauthorized',
  needsIdentity: true,
  compile(subjects) {
    const allowed = new Set(subjects);
    return (ctx) => ctx.identity !== undefined && allowed.has(ctx.identity.sub);
  },
});

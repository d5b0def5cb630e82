import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { byShape, expected, isMapping, listOf, mappingOf, text } from './values.js';

export interface GroupsValue {
  /** any: member of at least one group; all: member of every group. */
  mode: 'any' | 'all';
  groups: string[];
}

const groupList = listOf(text('a group name such as radiology'), 'group names such as [radiology]');

const form = z.strictObject({ any: groupList.optional(), all: groupList.optional() }, {
  error: mappingOf('any or all', '{ any: [...] } or { all: [...] }'),
}).refine((input) => (input.any === undefined) !== (input.all === undefined), {
  error: 'expected exactly one of any or all, such as { any: [radiology, cardiology] }',
  // After an unknown key, which says enough, say nothing more.
  when: (payload) => payload.issues.length === 0,
}).transform((input): GroupsValue => (input.any !== undefined ? { mode: 'any', groups: input.any } : { mode: 'all', groups: input.all! }));

const listForm = z.array(z.unknown(), { error: expected('a list of groups, or { any: [...] } or { all: [...] }') })
  .pipe(groupList)
  .transform((groups): GroupsValue => ({ mode: 'any', groups }));

/** `groups: [a, b]` or `{ any: [a, b] }`: a member of any; `{ all: [a, b] }`: of every one. */
export const groups = defineCriterion({
  name: 'groups',
  schema: byShape(isMapping, form, listForm),
  category: 'identity',
  passReason: 'groups-ok',
  failReason: 'groups-unauthorized',
  needsIdentity: true,
  compile(value) {
    if (value.mode === 'any') {
      const wanted = new Set(value.groups);
      return (ctx) => {
        if (ctx.identity === undefined) return false;
        const held = ctx.identity.groups;
        for (let i = 0; i < held.length; i++) if (wanted.has(held[i]!)) return true;
        return false;
      };
    }
    const wanted = [...new Set(value.groups)];
    return (ctx) => {
      if (ctx.identity === undefined) return false;
      const held = ctx.identity.groups;
      for (let i = 0; i < wanted.length; i++) if (!held.includes(wanted[i]!)) return false;
      return true;
    };
  },
});

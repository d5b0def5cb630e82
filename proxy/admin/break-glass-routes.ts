import { z } from 'zod';
import type { BreakGlass } from '../grants/break-glass.js';
import { freeText } from '../grants/input.js';
import type { Actor } from '../grants/service.js';
import { parseBody } from './body.js';
import { AdminApiError } from './errors.js';
import type { ApiRoute, RouteDeps } from './route.js';
import { breakGlassView } from './views.js';

/*
 * The security team's review of break-glass uses. Ending someone's emergency access early
 * and signing off a use are approvers' acts, as grant decisions are: with a grants section
 * the caller must be one of its approvers (groups or principals); the person who broke the
 * glass may end their own access, never review it. Without a grants section there is no
 * approver list to consult, and the admin credential itself is the security team's: it
 * suffices then, rather than leave every use unreviewable.
 */

const emptyBody = z.strictObject({});
const reviewBody = z.strictObject({ note: freeText('a review note', 1, 2000) });

export function breakGlassRoutes({ access, now }: RouteDeps): ApiRoute[] {
  const { breakGlass, grants } = access;
  const mustBeApprover = (actor: Actor, act: string): void => {
    if (grants && !grants.isApprover(actor)) throw new AdminApiError('admin-not-approver', `${actor.principal.id} is not an approver (grants.approvers): only approvers ${act}`);
  };
  const isOwn = (record: BreakGlass, actor: Actor): boolean => record.user.id === actor.principal.id;
  return [
    {
      method: 'GET',
      path: '/break-glass',
      action: 'break-glass.list',
      async handle() {
        const at = now();
        return { status: 200, body: { breakGlass: (await breakGlass.list()).map((record) => breakGlassView(record, at)) } };
      },
    },
    {
      method: 'GET',
      path: '/break-glass/{id}',
      action: 'break-glass.get',
      async handle({ params }) {
        return { status: 200, body: breakGlassView(await breakGlass.get(params['id']!), now()) };
      },
    },
    {
      method: 'POST',
      path: '/break-glass/{id}/end',
      action: 'break-glass.end',
      async handle({ params, actor, body }) {
        parseBody(emptyBody, await body());
        const record = await breakGlass.get(params['id']!);
        if (!isOwn(record, actor)) mustBeApprover(actor, 'end someone else\'s emergency access');
        return { status: 200, body: breakGlassView(await breakGlass.end(record.id, actor.principal), now()) };
      },
    },
    {
      method: 'POST',
      path: '/break-glass/{id}/review',
      action: 'break-glass.review',
      async handle({ params, actor, body }) {
        const { note } = parseBody(reviewBody, await body());
        const record = await breakGlass.get(params['id']!);
        mustBeApprover(actor, 'review emergency access');
        return { status: 200, body: breakGlassView(await breakGlass.review(record.id, actor.principal, note), now()) };
      },
    },
  ];
}

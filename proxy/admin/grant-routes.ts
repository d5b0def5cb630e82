import { z } from 'zod';
import { GRANT_STATES, describeSubject, type GrantState, type GrantSubject } from '../grants/grant.js';
import { freeText, grantRequestSchema } from '../grants/input.js';
import type { GrantFilter, GrantService } from '../grants/service.js';
import { parseBody } from './body.js';
import { AdminApiError } from './errors.js';
import type { ApiRoute, RouteDeps } from './route.js';
import { grantView } from './views.js';

/*
 * Grants over the admin API. Every rule (who may approve, self-approval, windows, known
 * subjects) is the grant service's, the same the approver pages follow; this file only
 * reads requests and shows records. An API caller always names the subject: asking for
 * oneself is what the access page is for, and naming someone else is an approver's act,
 * so creating a grant here needs an approver (the service checks it).
 */

// Automation can always say why; the record, the log and the webhook carry the reason.
const closingBody = z.strictObject({ reason: freeText('a reason', 1, 500) });
const emptyBody = z.strictObject({});
const createBody = grantRequestSchema.refine((input) => input.subject !== undefined, {
  error: 'expected a subject: an API caller names whom the grant lets in', path: ['subject'],
});

function stateFilter(text: string | null): GrantState[] | undefined {
  if (text === null) return undefined;
  const states = text.split(',').map((state) => state.trim());
  const unknown = states.find((state) => !GRANT_STATES.includes(state as GrantState));
  if (unknown !== undefined) {
    throw new AdminApiError('query-invalid', `unknown grant state "${unknown}": expected ${GRANT_STATES.join(', ')}`, { path: 'state' });
  }
  return states as GrantState[];
}

/** `user:<sub>` or `email:<address>`: the subject keys grants are filed under. */
function subjectFilter(text: string | null): GrantSubject | undefined {
  if (text === null) return undefined;
  if (text.startsWith('user:') && text.length > 5) return { user: text.slice(5) };
  if (text.startsWith('email:') && text.includes('@')) return { email: text.slice(6).toLowerCase() };
  throw new AdminApiError('query-invalid', `expected subject=user:<sub> or subject=email:<address>, got "${text}"`, { path: 'subject' });
}

export function grantRoutes({ access, now }: RouteDeps): ApiRoute[] {
  const service = (): GrantService => {
    if (!access.grants) throw new AdminApiError('grants-not-configured', 'there is no grants: section in the config: nobody asks for or approves grants');
    return access.grants;
  };
  return [
    {
      method: 'GET',
      path: '/grants',
      action: 'grant.list',
      query: ['state', 'subject'],
      async handle({ query }) {
        const filter: GrantFilter = {};
        const states = stateFilter(query.get('state'));
        const subject = subjectFilter(query.get('subject'));
        if (states) filter.states = states;
        if (subject) filter.subject = subject;
        const at = now();
        return { status: 200, body: { grants: (await service().list(filter)).map((grant) => grantView(grant, at)) } };
      },
    },
    {
      method: 'POST',
      path: '/grants',
      action: 'grant.create',
      async handle(call) {
        const grants = service();
        const input = parseBody(createBody, await call.body());
        if (input.subject) call.target = describeSubject(input.subject);
        const grant = await grants.request(input, call.actor);
        call.target = grant.id;
        return { status: 201, body: grantView(grant, now()) };
      },
    },
    {
      method: 'GET',
      path: '/grants/{id}',
      action: 'grant.get',
      async handle({ params }) {
        return { status: 200, body: grantView(await service().get(params['id']!), now()) };
      },
    },
    {
      method: 'POST',
      path: '/grants/{id}/approve',
      action: 'grant.approve',
      async handle({ params, actor, body }) {
        const grants = service();
        parseBody(emptyBody, await body());
        return { status: 200, body: grantView(await grants.approve(params['id']!, actor), now()) };
      },
    },
    {
      method: 'POST',
      path: '/grants/{id}/deny',
      action: 'grant.deny',
      async handle({ params, actor, body }) {
        const grants = service();
        const { reason } = parseBody(closingBody, await body());
        return { status: 200, body: grantView(await grants.deny(params['id']!, actor, reason), now()) };
      },
    },
    {
      method: 'POST',
      path: '/grants/{id}/revoke',
      action: 'grant.revoke',
      async handle({ params, actor, body }) {
        const grants = service();
        const { reason } = parseBody(closingBody, await body());
        return { status: 200, body: grantView(await grants.revoke(params['id']!, actor, reason), now()) };
      },
    },
  ];
}

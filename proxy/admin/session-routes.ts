import { endSession, endSessionsOf, listSessions } from '../identity/session-admin.js';
import { AdminApiError } from './errors.js';
import type { ApiRoute, RouteDeps } from './route.js';
import { sessionView } from './views.js';

/*
 * Browser sessions: who is signed in, and ending a session (a shared workstation left
 * signed in) or all of a person's (a stolen badge, a leaver). Sessions are named by their
 * ref, never their id, which is the secret sealed in the cookie. An ending holds in every
 * process, WebSockets included, before the answer is sent.
 */

function subjectOf(query: URLSearchParams): string | undefined {
  const sub = query.get('sub');
  if (sub === '') throw new AdminApiError('query-invalid', 'expected sub=<subject>, got an empty one', { path: 'sub' });
  return sub ?? undefined;
}

export function sessionRoutes({ store, now }: RouteDeps): ApiRoute[] {
  return [
    {
      method: 'GET',
      path: '/sessions',
      action: 'session.list',
      query: ['sub'],
      async handle({ query }) {
        const sub = subjectOf(query);
        const sessions = await listSessions(store, { now: now(), ...(sub !== undefined ? { sub } : {}) });
        return { status: 200, body: { sessions: sessions.map(sessionView) } };
      },
    },
    {
      method: 'DELETE',
      path: '/sessions',
      action: 'session.end-all',
      query: ['sub'],
      async handle(call) {
        const sub = subjectOf(call.query);
        // Everyone's sessions at once would sign out the whole hospital: not an admin action.
        if (sub === undefined) throw new AdminApiError('query-invalid', 'expected sub=<subject>: whose sessions to end', { path: 'sub' });
        call.target = sub;
        return { status: 200, body: { ended: await endSessionsOf(store, sub, 'admin') } };
      },
    },
    {
      method: 'DELETE',
      path: '/sessions/{ref}',
      action: 'session.end',
      async handle({ params }) {
        return { status: 200, body: { ended: await endSession(store, params['ref']!, 'admin') } };
      },
    },
  ];
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import { DeviceOverrideInvalidError } from '../../plugins/device/overrides.js';
import { GrantError } from '../grants/errors.js';
import { sendJson } from '../identity/http.js';
import { SessionNotFoundError } from '../identity/session-admin.js';
import { StoreUnavailableError } from '../store/store.js';
import { AdminAuthenticator } from './authenticate.js';
import { breakGlassRoutes } from './break-glass-routes.js';
import { readJson } from './body.js';
import type { AdminApiConfig } from './config.js';
import { deviceRoutes } from './device-routes.js';
import { AdminApiError } from './errors.js';
import { explainRoute } from './explain-route.js';
import { grantRoutes } from './grant-routes.js';
import { loadOpenApi } from './openapi.js';
import type { AdminApiDeps, ApiRoute, Method, RouteCall } from './route.js';
import { sessionRoutes } from './session-routes.js';

/*
 * The admin API: JSON over HTTP under /api/v1/ on the admin listener. Each call is
 * matched to a route (404, or 405 naming the methods the path takes), its caller
 * authenticated (authenticate.ts), its query checked, and then the route runs. Every
 * call a caller makes, read or change, allowed or refused, is written to the log as one
 * `admin-action` line with who made it: in a hospital, who looked at the list of signed-in
 * clinicians matters as much as who ended a session. Tokens and bodies are never logged.
 *
 * Errors answer `{ error: <code>, message, path? }`, the code stable (the same in the log).
 */

export const API_PREFIX = '/api/v1';
const OPENAPI_PATH = '/openapi.json';

export interface AdminApi {
  /** Every method and path the API answers (below /api/v1); the OpenAPI document describes exactly these. */
  readonly routes: ReadonlyArray<{ method: Method; path: string }>;
  handle(req: IncomingMessage, res: ServerResponse): void;
}

interface Match {
  route: ApiRoute;
  params: Record<string, string>;
}

/** The route for `path`, the methods the path takes otherwise, or nothing. */
function find(routes: readonly ApiRoute[], method: string, path: string): Match | Method[] | undefined {
  const segments = path.split('/');
  const allowed: Method[] = [];
  for (const route of routes) {
    const pattern = route.path.split('/');
    if (pattern.length !== segments.length) continue;
    const params: Record<string, string> = {};
    let matches = true;
    for (let i = 0; i < pattern.length && matches; i++) {
      const want = pattern[i]!;
      const got = segments[i]!;
      if (want.startsWith('{')) {
        let value: string | undefined;
        try {
          value = decodeURIComponent(got);
        } catch {
          value = undefined;
        }
        if (value === undefined || value === '') matches = false;
        else params[want.slice(1, -1)] = value;
      } else if (want !== got) {
        matches = false;
      }
    }
    if (!matches) continue;
    if (route.method === method) return { route, params };
    allowed.push(route.method);
  }
  return allowed.length > 0 ? allowed : undefined;
}

function answerFor(err: unknown): { status: number; body: { error: string; message: string; path?: string }; headers: Record<string, string> } | undefined {
  if (err instanceof AdminApiError) {
    return { status: err.status, body: { error: err.code, message: err.message, ...(err.path ? { path: err.path } : {}) }, headers: err.headers };
  }
  if (err instanceof GrantError) return { status: err.status, body: { error: err.code, message: err.message }, headers: {} };
  if (err instanceof SessionNotFoundError) return { status: 404, body: { error: err.code, message: err.message }, headers: {} };
  if (err instanceof DeviceOverrideInvalidError) return { status: 400, body: { error: err.code, message: err.message }, headers: {} };
  if (err instanceof StoreUnavailableError) return { status: 503, body: { error: err.code, message: 'the store is unavailable; try again' }, headers: {} };
  return undefined;
}

export function createAdminApi(deps: AdminApiDeps & { api: AdminApiConfig }): AdminApi {
  const now = deps.now ?? Date.now;
  const routeDeps = { config: deps.config, store: deps.store, access: deps.access, inventory: deps.inventory, now };
  const routes: ApiRoute[] = [
    ...grantRoutes(routeDeps),
    ...breakGlassRoutes(routeDeps),
    ...sessionRoutes(routeDeps),
    ...deviceRoutes(routeDeps),
    explainRoute(routeDeps),
  ];
  const openapi = loadOpenApi();
  const authenticator = new AdminAuthenticator({ api: deps.api, identity: deps.config.identity, ...(deps.now ? { now: deps.now } : {}) });
  const audit = deps.logger.child({ kind: 'admin-action' });

  const record = (actor: string | undefined, action: string, target: string | undefined, status: number, code: string | undefined): void => {
    const outcome = status < 400 ? 'ok' : status < 500 ? 'refused' : 'failed';
    const line = { actor: actor ?? null, action, target: target ?? null, outcome, status, ...(code ? { error: code } : {}) };
    const summary = `admin ${action}${target ? ` ${target}` : ''} by ${actor ?? 'an unknown caller'}: ${code ?? outcome}`;
    if (outcome === 'ok') audit.info(line, summary);
    else audit.warn(line, summary);
  };

  const fail = (res: ServerResponse, err: unknown): number => {
    const answer = answerFor(err);
    if (!answer) {
      deps.logger.error({ err }, 'admin API call failed');
      sendJson(res, 500, { error: 'internal-error', message: 'the admin API failed; the log says why' });
      return 500;
    }
    sendJson(res, answer.status, answer.body, answer.headers);
    return answer.status;
  };

  const dispatch = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '';
    const cut = url.indexOf('?');
    const path = (cut < 0 ? url : url.slice(0, cut)).slice(API_PREFIX.length);
    const query = new URLSearchParams(cut < 0 ? '' : url.slice(cut + 1));
    const method = req.method ?? '';
    if (path === OPENAPI_PATH) {
      // The description holds no data, and API tooling fetches it before it has credentials.
      if (method !== 'GET') {
        fail(res, new AdminApiError('method-not-allowed', `${OPENAPI_PATH} takes GET`, { headers: { allow: 'GET' } }));
        return;
      }
      sendJson(res, 200, openapi);
      return;
    }
    const found = find(routes, method, path);
    if (found === undefined) {
      fail(res, new AdminApiError('not-found', `no admin API at ${API_PREFIX}${path}`));
      return;
    }
    if (Array.isArray(found)) {
      fail(res, new AdminApiError('method-not-allowed', `${API_PREFIX}${path} takes ${found.join(', ')}`, { headers: { allow: found.join(', ') } }));
      return;
    }
    const { route, params } = found;
    const target = params['id'] ?? params['ref'] ?? query.get('sub') ?? undefined;
    const auth = await authenticator.authenticate(req);
    if (!auth.ok) {
      record(auth.principal, route.action, target, fail(res, auth.error), auth.error.code);
      return;
    }
    const actor = auth.actor;
    let body: Promise<unknown> | undefined;
    const call: RouteCall = { actor, params, query, target, body: () => (body ??= readJson(req)) };
    try {
      const unknown = [...query.keys()].find((name) => !(route.query ?? []).includes(name));
      if (unknown !== undefined) throw new AdminApiError('query-invalid', `unknown query parameter "${unknown}"${route.query ? `: expected ${route.query.join(', ')}` : ''}`, { path: unknown });
      const answer = await route.handle(call);
      sendJson(res, answer.status, answer.body);
      record(actor.principal.id, route.action, call.target, answer.status, undefined);
    } catch (err) {
      const status = fail(res, err);
      record(actor.principal.id, route.action, call.target, status, answerFor(err)?.body.error ?? 'internal-error');
    }
  };

  return {
    routes: [...routes.map(({ method, path }) => ({ method, path })), { method: 'GET', path: OPENAPI_PATH }],
    handle(req, res) {
      dispatch(req, res).catch((err: unknown) => {
        deps.logger.error({ err }, 'admin API call failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'internal-error', message: 'the admin API failed; the log says why' });
        else res.destroy();
      });
    },
  };
}

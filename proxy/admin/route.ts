import type { WardgateConfig } from '../../config/schema.js';
import type { Inventory } from '../../plugins/device/inventory.js';
import type { Actor } from '../grants/service.js';
import type { AccessServices } from '../grants/services.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/store.js';

/*
 * The shape every admin API route has, and what routes are given to work with. Routes
 * need nothing but the store and the services built on it, so the same routes run in a
 * single wardgate and in a cluster's primary, which has no pipeline.
 */

export interface AdminApiDeps {
  config: WardgateConfig;
  store: Store;
  access: AccessServices;
  /** The device inventory in force, when devices are configured with one. */
  inventory(): Inventory | undefined;
  logger: Logger;
  now?: () => number;
}

export type RouteDeps = Omit<AdminApiDeps, 'logger' | 'now'> & { now: () => number };

export interface RouteCall {
  readonly actor: Actor;
  /** The path's `{name}` segments, percent-decoded. */
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** The JSON body; undefined when there is none. */
  body(): Promise<unknown>;
  /** What the call acts on, for the log: the path's id until the route knows better. */
  target: string | undefined;
}

export interface Answer {
  status: number;
  body: unknown;
}

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface ApiRoute {
  method: Method;
  /** Below /api/v1, with `{name}` standing for one path segment. */
  path: string;
  /** The action's name in the admin-action log, such as grant.approve. */
  action: string;
  /** Query parameters the route reads; any other is refused. */
  query?: readonly string[];
  handle(call: RouteCall): Promise<Answer>;
}

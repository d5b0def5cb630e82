import type { Exchange } from '../exchange.js';
import type { Authentication } from '../identity/authenticate.js';
import type { GrantBook } from '../grants/book.js';
import { UNKNOWN_DEVICE, type ContextProvider, type DeviceContext, type GrantFacts, type NetworkContext, type PartialContext, type RequestContext } from './context.js';

/*
 * The context stage: one plain object per request, from the authenticated identity and
 * the providers (network, device, risk, grants). Providers answer synchronously from their caches
 * on the hot path; a promise is awaited only when one has work to do (a posture assertion
 * seen for the first time, say).
 */

export interface ContextProviders {
  /** Synchronous: the client's address and country are known from the socket and a table. */
  network: { readonly name: 'network'; provide(ex: Exchange, partial: PartialContext): NetworkContext };
  device: ContextProvider<'device'> | undefined;
  risk: ContextProvider<'risk'> | undefined;
  /** Grants and break-glass records in force (proxy/grants/book.ts); none when not configured. */
  grants: Pick<GrantBook, 'grantsFor' | 'breakGlassFor'> | undefined;
  now: () => number;
}

const NO_GRANTS: readonly GrantFacts[] = Object.freeze([]);

function finish(ex: Exchange, partial: PartialContext, device: DeviceContext, risk: number, providers: ContextProviders): RequestContext {
  const { grants } = providers;
  const route = ex.route!.id;
  return {
    identity: partial.identity,
    session: partial.session,
    device,
    network: partial.network!,
    time: partial.time,
    request: partial.request,
    risk,
    grants: grants ? grants.grantsFor(partial.identity, route) : NO_GRANTS,
    breakGlass: grants?.breakGlassFor(partial.identity, route),
  };
}

function withRisk(ex: Exchange, partial: PartialContext, device: DeviceContext, providers: ContextProviders): RequestContext | Promise<RequestContext> {
  partial.device = device;
  if (!providers.risk) return finish(ex, partial, device, 0, providers);
  const risk = providers.risk.provide(ex, partial);
  return typeof risk === 'number' ? finish(ex, partial, device, risk, providers) : risk.then((score) => finish(ex, partial, device, score, providers));
}

export function buildContext(ex: Exchange, auth: Authentication, providers: ContextProviders): RequestContext | Promise<RequestContext> {
  const canonical = ex.canonical!;
  const identified = auth.kind === 'identified';
  const partial: PartialContext = {
    identity: identified ? auth.identity : undefined,
    session: identified && auth.session ? { createdAt: auth.session.createdAt, lastSeenAt: auth.session.lastSeenAt } : undefined,
    request: ex.req.headers.upgrade === undefined
      ? { method: canonical.method, host: canonical.host, path: canonical.routingPath }
      : { method: canonical.method, host: canonical.host, path: canonical.routingPath, websocket: true },
    time: providers.now(),
  };
  partial.network = providers.network.provide(ex, partial);
  if (!providers.device) return withRisk(ex, partial, UNKNOWN_DEVICE, providers);
  const device = providers.device.provide(ex, partial);
  return 'then' in device ? device.then((found) => withRisk(ex, partial, found, providers)) : withRisk(ex, partial, device, providers);
}

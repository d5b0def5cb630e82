import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerOptions } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { BlockList, type Socket } from 'node:net';
import type { WardgateConfig } from '../config/schema.js';
import { AccessLog } from './access-log.js';
import { startAdminServer } from './admin/server.js';
import { UpstreamSet } from './forward/upstream.js';
import { WebSocketTunnels } from './forward/websocket.js';
import { createIdentity, type IdentityService } from './identity/service.js';
import { closeNow, listen } from './listen.js';
import type { Logger } from './logger.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createPipeline, markIdleTimeout, type PipelineState } from './pipeline.js';
import { createDecider } from './policy/decide.js';
import { DeviceOverrides } from '../plugins/device/overrides.js';
import { createDeviceProvider } from '../plugins/device/provider.js';
import { createNetworkProvider } from '../plugins/network/provider.js';
import { configuredSignals, createRiskProvider } from '../plugins/risk/provider.js';
import { GrantBook } from './grants/book.js';
import { startGrantAuthority, type GrantAuthority } from './grants/authority.js';
import { createAccessServices, type AccessServices } from './grants/services.js';
import { createWebhookNotifier } from './notify/webhook.js';
import { createRouter } from './router.js';
import { compileRoute } from './routes.js';
import { openStore } from './store/open.js';
import type { Store } from './store/store.js';

/*
 * One wardgate process: its main listeners, the pipeline behind them, and (when it is not
 * a cluster worker) the admin listener. Owns the graceful shutdown of all of it.
 */

export interface GatewayOptions {
  config: WardgateConfig;
  logger: Logger;
  /** Serve the admin listener from this process (single-process mode). */
  admin: boolean;
  /** The shared store (a cluster worker's IPC store); a memory store of its own when absent. */
  store?: Store;
  /** The clock identity and policy use (tests set it). */
  now?: () => number;
}

export interface Gateway {
  readonly metrics: Metrics;
  /** Bound ports, useful when the config asked for port 0. */
  readonly ports: { http?: number; https?: number; admin?: number };
  ready(): boolean;
  readonly identity: IdentityService;
  readonly store: Store;
  /** Rereads the device inventory and the GeoIP database now (SIGHUP). */
  reload(): void;
  /** Grants and break-glass, as the pages and the admin API change them. */
  readonly access: AccessServices;
  /** The grant authority, in the process that serves the admin listener. */
  readonly authority: GrantAuthority | undefined;
  /** Closes a route's open WebSockets with `code`; returns how many were open. */
  closeWebSockets(routeId: string, code: number, reason: string): number;
  /** Stops accepting, drains in-flight requests up to the configured deadline, closes. */
  shutdown(): Promise<void>;
}

const SERVER_OPTIONS: ServerOptions = {
  // Whole-request deadlines would cut off large uploads; per-route idle timeouts bound
  // slow clients instead, and headersTimeout bounds slow header senders (slowloris).
  requestTimeout: 0,
  headersTimeout: 20_000,
  keepAliveTimeout: 5_000,
  requireHostHeader: true,
  joinDuplicateHeaders: false,
  insecureHTTPParser: false,
};

function trustedProxyList(cidrs: readonly string[]): BlockList | undefined {
  if (cidrs.length === 0) return undefined;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address, bits] = cidr.split('/') as [string, string];
    list.addSubnet(address, Number(bits), address.includes(':') ? 'ipv6' : 'ipv4');
  }
  return list;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function startGateway({ config, logger, admin, store: sharedStore, now }: GatewayOptions): Promise<Gateway> {
  const state: PipelineState = { inFlight: 0, draining: false };
  let tunnels: WebSocketTunnels | undefined;
  let identity: IdentityService | undefined;
  const metrics = createMetrics({
    inFlight: () => state.inFlight,
    websocketsByRoute: () => tunnels?.counts() ?? new Map(),
    sessionsActive: async () => identity?.sessions.countActive() ?? 0,
  });
  tunnels = new WebSocketTunnels(metrics);
  const store = sharedStore ?? await openStore(config.store, logger, {
    onHandlerError: (err, channel) => logger.error({ channel, err }, 'store subscriber failed'),
  });
  const upstreams = new UpstreamSet();
  const routeOptions = {
    devicesConfigured: config.devices !== undefined,
    credentialHeaders: config.devices?.posture ? [config.devices.posture.header] : [],
  };
  const router = createRouter(config.routes.map((route) => compileRoute(route, upstreams, metrics, routeOptions)));
  const trustedProxies = trustedProxyList(config.trustedProxies);
  const network = createNetworkProvider(config.network, trustedProxies, logger);
  // Admins' compliance overrides (admin API), applied on top of what the MDM reports.
  const overrides = config.devices ? new DeviceOverrides({ store, logger }) : undefined;
  const devices = config.devices ? createDeviceProvider({ config: config.devices, store, logger, overrides, ...(now ? { now } : {}) }) : undefined;
  const openTunnels = tunnels;
  // Open WebSockets are decided again every second: none outlives its window or its device's trust.
  const rechecks = setInterval(() => openTunnels.recheck(), 1_000);
  rechecks.unref();
  const access = createAccessServices(config, store, now);
  // A revoked grant or ended break-glass closes its WebSockets at once, not at the next tick.
  const book = new GrantBook({ store, logger, ...(now ? { now } : {}), onChange: () => openTunnels.recheck() });
  identity = createIdentity(config, {
    store,
    router,
    metrics,
    logger,
    access,
    // A revoked session loses its open WebSockets too, in every process (1008: policy violation).
    onSessionsEnded: (ids) => openTunnels.closeSessions(ids, 1008, 'session ended'),
    ...(now ? { now } : {}),
  });
  const pipeline = createPipeline({
    router,
    identity,
    providers: {
      network,
      device: devices,
      risk: createRiskProvider(configuredSignals(config.risk)),
      grants: book,
      now: now ?? Date.now,
    },
    decide: createDecider(metrics, logger),
    logger,
    tunnels,
    metrics,
    // The access log is its own switch: a quiet `log.level` must not silence it.
    accessLog: config.log.access ? new AccessLog(logger.child({ kind: 'access' })) : undefined,
    trustedProxies,
    state,
  });

  const servers: Server[] = [];
  const ports: { http?: number; https?: number; admin?: number } = {};
  const wire = (server: Server): Server => {
    server.on('request', pipeline.handleRequest);
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => pipeline.handleUpgrade(req, socket, head));
    // CONNECT takes the same way so that it is refused and recorded like any other request.
    server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => pipeline.handleUpgrade(req, socket, head));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => pipeline.handleClientError(err, socket));
    server.on('timeout', (socket: Socket) => {
      markIdleTimeout(socket);
      socket.destroy();
    });
    servers.push(server);
    return server;
  };

  const portOf = (server: Server): number => {
    const address = server.address();
    return typeof address === 'object' && address ? address.port : 0;
  };

  let adminServer: Server | undefined;
  let authority: GrantAuthority | undefined;
  try {
    await Promise.all([book.load(), overrides?.load()]);
    if (config.listen.http) {
      const server = wire(createHttpServer(SERVER_OPTIONS));
      await listen(server, config.listen.http, 'http');
      ports.http = portOf(server);
    }
    if (config.listen.https) {
      const { address, cert, key, clientCa } = config.listen.https;
      const server = wire(createHttpsServer({
        ...SERVER_OPTIONS,
        cert,
        key,
        minVersion: 'TLSv1.2',
        // Devices may present a certificate; policy decides what a missing one means.
        ...(clientCa ? { ca: clientCa, requestCert: true, rejectUnauthorized: false } : {}),
      }));
      await listen(server, address, 'https');
      ports.https = portOf(server);
    }
    if (admin) {
      authority = startGrantAuthority({
        store,
        ...access,
        registry: metrics.registry,
        notifier: config.notifications ? createWebhookNotifier({ webhooks: config.notifications.webhooks, logger, registry: metrics.registry }) : undefined,
        logger,
        ...(now ? { now } : {}),
      });
      adminServer = await startAdminServer(config, {
        metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
        healthy: () => true,
        ready: () => !state.draining,
      }, { store, access, inventory: () => devices?.inventory, logger, ...(now ? { now } : {}) });
      ports.admin = portOf(adminServer);
    }
  } catch (err) {
    // A listener that could not start: release what did start, so nothing is left bound.
    await Promise.all(servers.map(closeNow));
    clearInterval(rechecks);
    book.close();
    await authority?.close();
    await upstreams.close(true);
    await network.close();
    await devices?.close();
    overrides?.close();
    identity.close();
    if (!sharedStore) await store.close();
    throw err;
  }

  let shutdown: Promise<void> | undefined;
  const drain = async (): Promise<void> => {
    state.draining = true;
    clearInterval(rechecks);
    const closedSockets = tunnels.closeAll(1001, 'wardgate is shutting down');
    logger.info({ inFlight: state.inFlight, websockets: closedSockets }, 'draining');
    const closed = Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    const deadline = Date.now() + config.shutdown.drainTimeout;
    while (state.inFlight > 0 && Date.now() < deadline) {
      for (const server of servers) server.closeIdleConnections();
      await sleep(25);
    }
    const abandoned = state.inFlight;
    for (const server of servers) server.closeAllConnections();
    await Promise.all([closed, upstreams.close(abandoned > 0), network.close(), devices?.close(), authority?.close()]);
    book.close();
    overrides?.close();
    identity.close();
    if (!sharedStore) await store.close();
    if (adminServer) await closeNow(adminServer);
    logger.info({ abandoned }, 'stopped');
  };

  return {
    metrics,
    identity,
    store,
    access,
    authority,
    ports,
    ready: () => !state.draining,
    reload() {
      devices?.reload();
      network.countries.reload();
    },
    closeWebSockets: (routeId, code, reason) => tunnels.closeRoute(routeId, code, reason),
    shutdown() {
      shutdown ??= drain();
      return shutdown;
    },
  };
}

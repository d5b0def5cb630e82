import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Registry } from 'prom-client';
import type { WardgateConfig } from '../config/schema.js';
import { Inventory } from '../plugins/device/inventory.js';
import { startAdminServer } from './admin/server.js';
import { StartupError } from './errors.js';
import { startGateway, type Gateway } from './gateway.js';
import { startGrantAuthority } from './grants/authority.js';
import { createAccessServices } from './grants/services.js';
import { createWebhookNotifier } from './notify/webhook.js';
import { onReloadSignal } from './reload-signal.js';
import { closeNow } from './listen.js';
import { IpcPeerSet, IpcStore, serveStore } from './store/ipc.js';
import { openStore } from './store/open.js';
import { stopSignal } from './stop-signal.js';
import type { Logger } from './logger.js';

/*
 * Worker mode: the primary forks `workers` processes that share the main listeners, and
 * serves the admin listener itself, aggregating every worker's metrics on each scrape.
 * The primary also holds the memory store that the workers share over IPC, so a session
 * made in one worker is known to all, and a revocation reaches all before it returns.
 * Workers that die are replaced; SIGTERM drains every worker before the primary exits.
 *
 * As the store's owner the primary is also the grant authority (its subscribers see every
 * worker's changes: counted, logged and sent to webhooks once) and serves the admin API,
 * which needs nothing but the store. Its own metrics (grants, webhooks) follow the
 * workers' aggregated ones on each scrape; no worker registers those names.
 */

type WorkerMessage = { type: 'ready' } | { type: 'failed'; message: string };
type PrimaryMessage = { type: 'shutdown' };

/** Exposition texts as one scrape: each must end its last line before the next begins. */
function concatExpositions(...texts: string[]): string {
  return texts.map((text) => (text === '' || text.endsWith('\n') ? text : `${text}\n`)).join('');
}

/** Runs in the primary. Resolves when the cluster has stopped. */
export async function runPrimary(configFile: string, config: WardgateConfig, logger: Logger, workerArgs: string[]): Promise<void> {
  // Workers accept connections themselves: the primary's round-robin costs a handle
  // pass per connection and would make it the bottleneck.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ args: [...workerArgs, configFile], silent: false });

  const aggregator = new AggregatorRegistry();
  const store = await openStore(config.store, logger, {
    onHandlerError: (err, channel) => logger.error({ channel, err }, 'store subscriber failed'),
  });
  const peers = new IpcPeerSet();
  const storeServer = serveStore(store, peers, {
    onUndelivered: ({ peer, channel, reason, error }) => logger.warn({ workerPid: (peer as Worker).process?.pid, channel, reason, err: error }, 'a worker did not confirm a revocation'),
  });
  const ready = new Set<Worker>();
  let draining = false;
  let started = false;

  let failStart: (err: Error) => void = () => {};
  let allReady: () => void = () => {};
  const startup = new Promise<void>((resolve, reject) => {
    allReady = resolve;
    failStart = reject;
  });

  const fork = (): void => {
    const worker = cluster.fork();
    peers.add(worker);
    worker.on('message', (message: WorkerMessage) => {
      if (message.type === 'ready') {
        ready.add(worker);
        if (ready.size === config.workers && !started) {
          started = true;
          allReady();
        }
      } else if (message.type === 'failed') {
        failStart(new StartupError(message.message));
      }
    });
    worker.on('exit', (code, signal) => {
      ready.delete(worker);
      peers.delete(worker);
      if (draining) return;
      if (!started) {
        failStart(new StartupError(`worker ${worker.process.pid} exited during start (code ${code}, signal ${signal})`));
        return;
      }
      logger.error({ workerPid: worker.process.pid, code, signal }, 'worker died; starting a replacement');
      setTimeout(fork, 500).unref();
    });
  };

  const registry = new Registry();
  const access = createAccessServices(config, store);
  const authority = startGrantAuthority({
    store,
    ...access,
    registry,
    notifier: config.notifications ? createWebhookNotifier({ webhooks: config.notifications.webhooks, logger, registry }) : undefined,
    logger,
  });
  // The workers' device providers hold inventories of their own; the API lists from this one.
  const inventory = config.devices?.inventory
    ? new Inventory({ file: config.devices.inventory.file, initial: config.devices.inventory.initial, logger: logger.child({ component: 'device-inventory' }) })
    : undefined;
  const releaseOwn = async (): Promise<void> => {
    inventory?.close();
    await authority.close();
    storeServer.close();
    await store.close();
  };

  const admin = await startAdminServer(config, {
    metrics: async () => ({ contentType: aggregator.contentType, body: concatExpositions(await aggregator.clusterMetrics(), await registry.metrics()) }),
    healthy: () => true,
    ready: () => !draining && ready.size === config.workers,
  }, { store, access, inventory: () => inventory, logger }).catch(async (err: unknown) => {
    await releaseOwn();
    throw err;
  });

  const stopWorkers = async (): Promise<void> => {
    draining = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    const exited = Promise.all(workers.map((w) => new Promise<void>((resolve) => {
      if (w.isDead()) resolve();
      else w.once('exit', () => resolve());
    })));
    for (const w of workers) {
      if (w.isConnected()) w.send({ type: 'shutdown' } satisfies PrimaryMessage);
    }
    // Workers enforce the drain deadline themselves; this only catches one that hangs.
    const killer = setTimeout(() => workers.forEach((w) => w.process.kill('SIGKILL')), config.shutdown.drainTimeout + 5_000);
    await exited;
    clearTimeout(killer);
    await releaseOwn();
    await closeNow(admin);
  };

  for (let i = 0; i < config.workers; i++) fork();
  try {
    await startup;
  } catch (err) {
    await stopWorkers();
    throw err;
  }
  logger.info({ workers: config.workers, admin: `${config.admin.listen.host}:${config.admin.listen.port}` }, 'wardgate started');

  // Workers hold the providers: each rereads its own files, as the primary does its inventory.
  const stopReloads = onReloadSignal(logger, () => {
    void inventory?.reload();
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGHUP');
  });
  await stopSignal(logger);
  stopReloads();
  await stopWorkers();
}

/** Runs in a worker: serves the main listeners until the primary says stop. */
export async function runWorker(config: WardgateConfig, logger: Logger, onStop: () => void): Promise<void> {
  let gateway: Gateway;
  try {
    const store = new IpcStore(process, {
      onHandlerError: (err, channel) => logger.error({ channel, err }, 'store subscriber failed'),
    });
    gateway = await startGateway({ config, logger, admin: false, store });
  } catch (err) {
    process.send?.({ type: 'failed', message: (err as Error).message } satisfies WorkerMessage);
    throw err;
  }
  AggregatorRegistry.setRegistries([gateway.metrics.registry]);
  // prom-client installs the worker's side of the metrics exchange (answering the
  // primary's requests over IPC) only when an AggregatorRegistry is constructed.
  new AggregatorRegistry();
  const stop = (): void => {
    gateway.shutdown().then(() => gateway.store.close()).then(onStop, onStop);
  };
  process.on('message', (message: PrimaryMessage) => {
    if (message.type === 'shutdown') stop();
  });
  // A terminal's Ctrl-C reaches every process in the group; drain rather than die.
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  process.on('SIGHUP', () => gateway.reload());
  process.send?.({ type: 'ready' } satisfies WorkerMessage);
}

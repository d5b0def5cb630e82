import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { RouteConfig, WardgateConfig } from '../../config/schema.js';
import { StartupError } from '../errors.js';
import { PACKAGE_ROOT } from '../version.js';
import { handleEpicPortal } from './epic-portal.js';
import { handleFhirApi } from './fhir-api.js';
import { createDemoMdm, DEMO_MDM_KEY_FILE } from './mdm.js';
import { createPacsViewer } from './pacs-viewer.js';
import { handleVendorConsole } from './vendor-console.js';

/*
 * Starts the demo's sample upstreams where the demo config's routes point, so `wardgate
 * demo` has real apps to protect. Which app runs is chosen by route id; a config with
 * other routes simply gets no stand-in for them.
 */

export interface DemoUpstreams {
  close(): Promise<void>;
}

export interface DemoUpstreamsOptions {
  /** The demo MDM's private key (PEM); default config/demo-mdm.key of this checkout. */
  mdmKeyFile?: string;
}

/** What an app may need to be built: the config, and the demo MDM's key. */
interface AppContext {
  config: WardgateConfig;
  mdmKeyFile: string;
}

/** What one app plugs into its http server. */
interface DemoApp {
  handleRequest(req: IncomingMessage, res: ServerResponse): void;
  handleUpgrade?(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Ends what closing the http server does not: upgraded sockets and their timers. */
  close?(): void;
}

// A Map, not an object literal: route ids such as "constructor" must not find a prototype member.
const APPS = new Map<string, (context: AppContext) => DemoApp>([
  ['epic', () => ({ handleRequest: handleEpicPortal })],
  ['pacs', () => createPacsViewer()],
  ['fhir', () => ({ handleRequest: handleFhirApi })],
  ['vendor', () => ({ handleRequest: handleVendorConsole })],
  ['mdm', ({ config, mdmKeyFile }) => createDemoMdm({ config, keyFile: mdmKeyFile })],
]);

interface Running {
  server: Server;
  app: DemoApp;
}

function createAppServer(app: DemoApp): Server {
  const server = createServer((req, res) => {
    // The apps answer bad input themselves; this is the backstop that keeps a bug from
    // taking the whole demo down with an uncaught exception.
    try {
      app.handleRequest(req, res);
    } catch {
      if (res.headersSent) res.destroy();
      else res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('internal error\n');
    }
  });
  if (app.handleUpgrade) {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      try {
        app.handleUpgrade?.(req, socket, head);
      } catch {
        socket.destroy();
      }
    });
  }
  return server;
}

function listenAddress(route: RouteConfig): { host: string; port: number; display: string } {
  const { url } = route.upstream;
  if (url.protocol !== 'http:') {
    throw new StartupError(`demo upstream "${route.id}" speaks plain http, but its route points at ${url.origin}`);
  }
  const port = url.port === '' ? 80 : Number(url.port);
  // WHATWG keeps IPv6 hosts bracketed; listen() wants the bare address.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return { host, port, display: `${url.hostname}:${port}` };
}

function listen(server: Server, route: RouteConfig): Promise<void> {
  return new Promise((resolve, reject) => {
    let address: ReturnType<typeof listenAddress>;
    try {
      address = listenAddress(route);
    } catch (err) {
      reject(err);
      return;
    }
    const onError = (err: NodeJS.ErrnoException): void => {
      const reason = err.code === 'EADDRINUSE' ? 'the address is already in use' : err.message;
      reject(new StartupError(`demo upstream "${route.id}" cannot listen on ${address.display}: ${reason}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(address.port, address.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function closeOne({ server, app }: Running): Promise<void> {
  app.close?.();
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    // close() only stops accepting; open keep-alive connections would hold it open.
    server.closeAllConnections();
  });
}

export async function startDemoUpstreams(config: WardgateConfig, options: DemoUpstreamsOptions = {}): Promise<DemoUpstreams> {
  const context: AppContext = { config, mdmKeyFile: options.mdmKeyFile ?? join(PACKAGE_ROOT, 'config', DEMO_MDM_KEY_FILE) };
  // Every app is built before any listens: an app that cannot be built (the MDM without
  // its key) fails the start with nothing left listening.
  const apps: Array<{ route: RouteConfig; app: DemoApp }> = [];
  try {
    for (const route of config.routes) {
      const createApp = APPS.get(route.id);
      if (createApp !== undefined) apps.push({ route, app: createApp(context) });
    }
  } catch (err) {
    for (const { app } of apps) app.close?.();
    throw err;
  }
  const running: Running[] = [];
  const starts: Promise<void>[] = [];
  for (const { route, app } of apps) {
    const server = createAppServer(app);
    running.push({ server, app });
    starts.push(listen(server, route));
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= Promise.all(running.map(closeOne)).then(() => undefined);
    return closing;
  };

  const results = await Promise.allSettled(starts);
  // listen() rejects only with Errors it made itself.
  const failures = results.flatMap((result) => (result.status === 'rejected' ? [result.reason as Error] : []));
  if (failures.length > 0) {
    // Leave nothing half-started behind: the caller gets an error, not stray listeners.
    await close();
    throw failures.length === 1 ? failures[0]! : new StartupError(failures.map((f) => f.message).join('; '), { cause: failures });
  }
  return { close };
}

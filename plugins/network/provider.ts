import type { BlockList, Socket } from 'node:net';
import type { Exchange } from '../../proxy/exchange.js';
import type { ContextProvider, NetworkContext, PartialContext } from '../../proxy/policy/context.js';
import { clientAddress } from './client-address.js';
import type { NetworkConfig } from './config.js';
import { CountryResolver, type NetworkLogger } from './countries.js';

/*
 * The `network` part of the context: the client's address and its country. Synchronous:
 * the address comes from the socket and headers, the country from memory (the config's
 * table, the MaxMind database read at start, a per-address cache).
 *
 * A connection from anyone but a trusted proxy has one client for all its requests, so
 * the answer is kept on the socket (until the database is reloaded). Behind a trusted
 * proxy each request may carry another client, so its X-Forwarded-For is read each time.
 */

export interface NetworkProviderOptions {
  /** Most addresses whose country is remembered (default 50 000). */
  cacheSize?: number;
  /** How often the GeoIP database file is checked for changes (default 5 s). */
  watchIntervalMs?: number;
}

export interface NetworkProvider extends ContextProvider<'network'> {
  /** Always synchronous: no promise to await on the hot path. */
  provide(ex: Exchange, partial?: PartialContext): NetworkContext;
  close(): Promise<void>;
  /** The resolver behind the provider: its reload() reopens the database now (e.g. on SIGHUP). */
  readonly countries: CountryResolver;
}

interface SocketAnswer {
  generation: number;
  ip: string;
  country: string | undefined;
}

/** Throws, naming the file, when the GeoIP database cannot be opened. */
export function createNetworkProvider(
  config: NetworkConfig | undefined,
  trustedProxies: BlockList | undefined,
  logger: NetworkLogger,
  options: NetworkProviderOptions = {},
): NetworkProvider {
  const countries = new CountryResolver({
    countries: config?.countries,
    geoip: config?.geoip,
    logger,
    ...options,
  });
  // One symbol per provider: a provider built for a new config never reads an old one's answers.
  const ANSWER = Symbol('wardgate.network');
  type SocketWithAnswer = Socket & { [ANSWER]?: SocketAnswer };

  return {
    name: 'network',
    countries,
    provide(ex: Exchange): NetworkContext {
      if (!ex.peer.trusted) {
        const socket = ex.req.socket as SocketWithAnswer;
        let answer = socket[ANSWER];
        if (answer === undefined || answer.generation !== countries.generation) {
          const ip = clientAddress(ex.peer, undefined, trustedProxies);
          answer = { generation: countries.generation, ip, country: countries.country(ip) };
          socket[ANSWER] = answer;
        }
        // A fresh object per request: the context is the request's own.
        return { ip: answer.ip, country: answer.country };
      }
      const header = ex.req.headers['x-forwarded-for'];
      // Node joins repeated X-Forwarded-For headers with ', '; an array only if someone
      // built the headers by hand.
      const forwardedFor = Array.isArray(header) ? header.join(', ') : header;
      const ip = clientAddress(ex.peer, forwardedFor, trustedProxies);
      return { ip, country: countries.country(ip) };
    },
    close: () => countries.close(),
  };
}

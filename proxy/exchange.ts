import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BlockList, Socket } from 'node:net';
import type { Identity } from './identity/identity.js';
import type { CanonicalRequest } from './normalize.js';
import type { Decision } from './policy/decision.js';
import type { UpstreamErrorKind } from './metrics.js';
import type { CompiledRoute } from './routes.js';

/*
 * The state of one request on its way through the pipeline. Built fresh per request;
 * facts about the connection (peer address, trust, TLS) are computed once per socket.
 */

export interface Peer {
  address: string;
  trusted: boolean;
  proto: 'http' | 'https';
}

export interface Exchange {
  readonly req: IncomingMessage;
  readonly started: number;
  readonly peer: Peer;
  readonly id: string;
  canonical: CanonicalRequest | undefined;
  route: CompiledRoute | undefined;
  /** Who is behind the request, once authenticated (also when the policy then refuses). */
  identity: Identity | undefined;
  /** The policy's decision, once made. */
  decision: Decision | undefined;
  /** The client's address as policy saw it (through trusted proxies), once the context is built. */
  client: string | undefined;
  /** The refusal reason or upstream failure, for the access log. */
  reason: string | undefined;
  upstreamError: UpstreamErrorKind | undefined;
  /** Set when the client went away before its response was complete. */
  clientGone: boolean;
}

const PEER = Symbol('wardgate.peer');
type SocketWithPeer = Socket & { [PEER]?: Peer; encrypted?: boolean };

function peerOf(socket: SocketWithPeer, trustedProxies: BlockList | undefined): Peer {
  let peer = socket[PEER];
  if (!peer) {
    const raw = socket.remoteAddress ?? '';
    const address = raw.startsWith('::ffff:') && raw.includes('.') ? raw.slice(7) : raw;
    const family = address.includes(':') ? 'ipv6' : 'ipv4';
    peer = {
      address,
      trusted: trustedProxies !== undefined && address !== '' && trustedProxies.check(address, family),
      proto: socket.encrypted ? 'https' : 'http',
    };
    socket[PEER] = peer;
  }
  return peer;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/;

export function beginExchange(req: IncomingMessage, trustedProxies: BlockList | undefined): Exchange {
  const peer = peerOf(req.socket, trustedProxies);
  // A request id from a trusted proxy keeps one id across the whole chain of hops.
  const offered = peer.trusted ? req.headers['x-request-id'] : undefined;
  return {
    req,
    started: performance.now(),
    peer,
    id: typeof offered === 'string' && REQUEST_ID.test(offered) ? offered : randomUUID(),
    canonical: undefined,
    route: undefined,
    identity: undefined,
    decision: undefined,
    client: undefined,
    reason: undefined,
    upstreamError: undefined,
    clientGone: false,
  };
}

export type Response = ServerResponse<IncomingMessage>;

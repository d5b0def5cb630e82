import type { Exchange } from '../exchange.js';
import type { Identity } from '../identity/identity.js';

/*
 * What the decide stage knows about one request: a plain object built fresh for it by the
 * context providers. Policies read only this, so a decision can be replayed from a saved
 * context (`wardgate policy explain`) and gives the same answer as it did in the pipeline.
 */

/** Why a device is not trusted, when it presented something that was refused or is lacking. */
export type DeviceProblem =
  | 'device-unknown'
  | 'device-unmanaged'
  | 'device-noncompliant'
  | 'device-mismatch'
  | 'posture-stale'
  | 'posture-invalid'
  | 'posture-signature-invalid'
  | 'posture-expired'
  | 'posture-replayed'
  | 'certificate-unknown';

export interface DeviceContext {
  /** Where the device's identity came from. */
  source: 'certificate' | 'posture' | 'none';
  /** The inventory's (or the MDM's) device id. */
  id: string | undefined;
  /** Listed in the inventory, or vouched for by a valid posture assertion. */
  known: boolean;
  managed: boolean;
  compliant: boolean;
  /** When the device's posture was last observed by the MDM/EDR, epoch ms. */
  observedAt: number | undefined;
  /** A client certificate from the device CA was presented on this connection. */
  certificate: boolean;
  os: string | undefined;
  diskEncrypted: boolean | undefined;
  /** known, managed, compliant and fresh: what routes with `devices: trusted` demand. */
  trusted: boolean;
  /** Why the device is not trusted; undefined when it is. */
  problem: DeviceProblem | undefined;
}

export interface NetworkContext {
  /** The client's address: the socket peer, or from X-Forwarded-For behind a trusted proxy. */
  ip: string;
  /** ISO 3166-1 alpha-2, upper case; undefined when unknown (private ranges, no database). */
  country: string | undefined;
}

export interface SessionFacts {
  /** When wardgate's session began, epoch ms. */
  createdAt: number;
  /** The session's activity before this request, epoch ms. */
  lastSeenAt: number;
}

export interface RequestFacts {
  method: string;
  host: string;
  /**
   * The canonical path as the router matched it: no query, and no `;params`, which a
   * servlet upstream ignores too (`/admin;x/users` is `/admin/users` to it, so rules must
   * read it so, or a deny rule on /admin could be walked round).
   */
  path: string;
  /**
   * A WebSocket handshake: a GET that opens a channel both ways. A grant narrowed to methods
   * (read only, say) must not open one, since what flows over it is no longer a GET.
   */
  websocket?: boolean;
}

/** An approved grant the person holds on this route (proxy/grants/); in force between its times. */
export interface GrantFacts {
  id: string;
  notBefore: number;
  notAfter: number;
  /** Path prefixes and methods the grant is narrowed to; undefined: the whole route. */
  paths: readonly string[] | undefined;
  methods: readonly string[] | undefined;
}

/** Emergency access the person opened on this route. */
export interface BreakGlassFacts {
  id: string;
  endsAt: number;
}

export interface RequestContext {
  identity: Identity | undefined;
  /** Browser sessions only; undefined for bearer tokens and anonymous requests. */
  session: SessionFacts | undefined;
  device: DeviceContext;
  network: NetworkContext;
  /** Now, epoch ms: from the gateway's clock, which tests can set. */
  time: number;
  request: RequestFacts;
  /** 0 (no concern) to 100; raised by risk providers. */
  risk: number;
  /** Grants the person holds on this route, approved and not yet over (`grant` checks the window). */
  grants: readonly GrantFacts[];
  /** Break-glass access the person opened on this route, if any. */
  breakGlass: BreakGlassFacts | undefined;
}

/** The parts a provider may rely on being filled in before it runs. */
export interface PartialContext {
  identity: Identity | undefined;
  session: SessionFacts | undefined;
  request: RequestFacts;
  time: number;
  network?: NetworkContext;
  device?: DeviceContext;
}

/**
 * A source of one part of the context. `provide` may return a promise; a provider that
 * does I/O caches, so the hot path stays in microseconds.
 */
export interface ContextProvider<K extends 'network' | 'device' | 'risk'> {
  readonly name: K;
  provide(ex: Exchange, partial: PartialContext): RequestContext[K] | Promise<RequestContext[K]>;
  close?(): void | Promise<void>;
}

/** The context of a device nothing is known about. */
export const UNKNOWN_DEVICE: Readonly<DeviceContext> = Object.freeze({
  source: 'none',
  id: undefined,
  known: false,
  managed: false,
  compliant: false,
  observedAt: undefined,
  certificate: false,
  os: undefined,
  diskEncrypted: undefined,
  trusted: false,
  problem: 'device-unknown',
});

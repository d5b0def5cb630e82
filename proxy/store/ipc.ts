import { WardgateError } from '../errors.js';
import { MemoryStore, StoreClosedError, StoreWrongTypeError } from './memory.js';
import { StoreUnavailableError, type Json, type Store } from './store.js';
import { Subscribers } from './subscribers.js';

/*
 * One MemoryStore shared by cluster workers. The primary owns it and serves it
 * (`serveStore`); each worker holds an `IpcStore` that sends every call to the primary
 * and awaits the answer. The primary handles one message at a time and MemoryStore does
 * each operation before its first await, so `add` and `take` stay atomic across workers.
 *
 * Messages travel as JSON (Node's default IPC serialization) and carry a `wardgateStore`
 * tag, because the same channel carries cluster.ts's own messages and prom-client's
 * metrics exchange; untagged messages are left alone.
 *
 * Publishing fans out from the primary: it runs its own subscribers, sends the message to
 * every worker (the publishing one too) and waits until each has run its handlers and
 * said so, or has been given up on. So when `publish` resolves in any process, every live
 * process has applied the revocation.
 */

/** How long a worker waits for the primary's answer to a call. */
export const DEFAULT_CALL_TIMEOUT_MS = 2_000;
/**
 * How long the primary waits for one worker to confirm a published message. Below the
 * call timeout, so that a dead worker shows up as undelivered in the primary instead of
 * making the publishing worker's call fail.
 */
export const DEFAULT_DELIVERY_TIMEOUT_MS = 1_000;

const TAG = 'wardgateStore';
const VERSION = 1;

type Op = 'get' | 'set' | 'add' | 'take' | 'delete' | 'addMember' | 'removeMember' | 'members' | 'publish';
const OPS: ReadonlySet<string> = new Set<Op>(['get', 'set', 'add', 'take', 'delete', 'addMember', 'removeMember', 'members', 'publish']);

interface Tagged {
  [TAG]: typeof VERSION;
}
/** Worker to primary: run `op`. */
interface CallMessage extends Tagged {
  kind: 'call';
  /** Which IpcStore in the worker sent it: ids are only unique per IpcStore. */
  from: number;
  id: number;
  op: Op;
  args: Json[];
}
/** Primary to worker: the outcome of call `id`. */
type ReplyMessage = Tagged & { kind: 'reply'; from: number; id: number } & ({ ok: true; value?: Json } | { ok: false; code?: string; name: string; message: string });
/** Primary to worker: run your subscribers of `channel`, then confirm with `delivered`. */
interface DeliverMessage extends Tagged {
  kind: 'deliver';
  id: number;
  channel: string;
  text: string;
}
/** Worker to primary: delivery `id` has run. */
interface DeliveredMessage extends Tagged {
  kind: 'delivered';
  id: number;
}

/** Everything the store sends over IPC. */
export type StoreMessage = CallMessage | ReplyMessage | DeliverMessage | DeliveredMessage;

/**
 * The worker's end: `process` in a cluster worker or a fork()ed child. `send` is optional
 * only because `process.send` is; an IpcStore refuses a channel without it.
 */
export interface IpcChannel {
  send?(message: StoreMessage, callback: (error: Error | null) => void): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
}

/** The primary's end of one worker: a node:cluster `Worker` or a fork()ed `ChildProcess`. */
export interface IpcPeer extends IpcChannel {
  send(message: StoreMessage, callback: (error: Error | null) => void): boolean;
}

interface PeerWatcher {
  added(peer: IpcPeer): void;
  deleted(peer: IpcPeer): void;
}

/**
 * The workers a served store talks to. Add each worker as it is forked and delete it
 * when it exits: a deleted worker's outstanding deliveries are given up at once instead
 * of at their timeout.
 */
export class IpcPeerSet implements Iterable<IpcPeer> {
  readonly #peers = new Set<IpcPeer>();
  readonly #watchers = new Set<PeerWatcher>();

  constructor(peers: Iterable<IpcPeer> = []) {
    for (const peer of peers) this.#peers.add(peer);
  }

  add(peer: IpcPeer): void {
    if (this.#peers.has(peer)) return;
    this.#peers.add(peer);
    for (const watcher of this.#watchers) watcher.added(peer);
  }

  delete(peer: IpcPeer): boolean {
    if (!this.#peers.delete(peer)) return false;
    for (const watcher of this.#watchers) watcher.deleted(peer);
    return true;
  }

  has(peer: IpcPeer): boolean {
    return this.#peers.has(peer);
  }

  get size(): number {
    return this.#peers.size;
  }

  [Symbol.iterator](): Iterator<IpcPeer> {
    return this.#peers[Symbol.iterator]();
  }

  /** For `serveStore`: hears about peers added or deleted from now on. Returns the stop function. */
  watch(watcher: PeerWatcher): () => void {
    this.#watchers.add(watcher);
    return () => {
      this.#watchers.delete(watcher);
    };
  }
}

/** A published message that a worker did not confirm: that worker may not have applied it. */
export interface UndeliveredEvent {
  peer: IpcPeer;
  channel: string;
  /** `timeout`: no confirmation in time; `send-failed`: the channel refused it; `gone`: the worker was deleted from the set, or the server closed. */
  reason: 'timeout' | 'send-failed' | 'gone';
  error?: Error;
}

export interface ServeStoreOptions {
  /** Default DEFAULT_DELIVERY_TIMEOUT_MS; keep it below the workers' call timeout. */
  deliveryTimeoutMs?: number;
  /** A worker did not confirm a published message. Log it: publish resolved regardless. */
  onUndelivered?: (event: UndeliveredEvent) => void;
}

export interface StoreServer {
  /** Deliveries sent and not yet confirmed or given up. */
  readonly pendingDeliveries: number;
  /** Stops answering workers and publishing to them; gives up outstanding deliveries. The store stays open. */
  close(): void;
}

interface PendingDelivery {
  peer: IpcPeer;
  channel: string;
  timer: NodeJS.Timeout;
  done(reason?: UndeliveredEvent['reason'], error?: Error): void;
}

/** In the primary: answers the workers in `peers` from `store` and relays its publishes to them. */
export function serveStore(store: MemoryStore, peers: IpcPeerSet, options: ServeStoreOptions = {}): StoreServer {
  const deliveryTimeoutMs = positive(options.deliveryTimeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS, 'deliveryTimeoutMs');
  const onUndelivered = options.onUndelivered ?? (() => {});
  const listeners = new Map<IpcPeer, (message: unknown) => void>();
  const deliveries = new Map<number, PendingDelivery>();
  let nextId = 0;
  let closed = false;

  const answer = (peer: IpcPeer, call: CallMessage): void => {
    const { from, id } = call;
    dispatch(store, call.op, call.args).then(
      (value) => reply(peer, { [TAG]: VERSION, kind: 'reply', from, id, ok: true, value: value as Json }),
      (err: unknown) => reply(peer, { [TAG]: VERSION, kind: 'reply', from, id, ok: false, ...describe(err) }),
    );
  };

  const reply = (peer: IpcPeer, message: ReplyMessage): void => {
    if (closed) return;
    // A worker that died meanwhile has nobody left waiting for the answer.
    sendQuietly(peer, message, () => {});
  };

  const attach = (peer: IpcPeer): void => {
    const listener = (message: unknown): void => {
      if (!isStoreMessage(message)) return;
      if (message.kind === 'call') {
        if (OPS.has(message.op) && Array.isArray(message.args)) answer(peer, message);
      } else if (message.kind === 'delivered') {
        const pending = deliveries.get(message.id);
        if (pending?.peer === peer) pending.done();
      }
    };
    listeners.set(peer, listener);
    peer.on('message', listener);
  };

  const detach = (peer: IpcPeer): void => {
    const listener = listeners.get(peer);
    if (listener === undefined) return;
    listeners.delete(peer);
    peer.off('message', listener);
    for (const pending of [...deliveries.values()]) {
      if (pending.peer === peer) pending.done('gone');
    }
  };

  const deliverTo = (peer: IpcPeer, channel: string, text: string): Promise<void> => new Promise((resolve) => {
    const id = ++nextId;
    const pending: PendingDelivery = {
      peer,
      channel,
      timer: setTimeout(() => pending.done('timeout'), deliveryTimeoutMs),
      done: (reason, error) => {
        if (deliveries.get(id) !== pending) return;
        deliveries.delete(id);
        clearTimeout(pending.timer);
        if (reason !== undefined) {
          try {
            onUndelivered(error === undefined ? { peer, channel, reason } : { peer, channel, reason, error });
          } catch {
            // A failing reporter must not keep publish from resolving.
          }
        }
        resolve();
      },
    };
    deliveries.set(id, pending);
    sendQuietly(peer, { [TAG]: VERSION, kind: 'deliver', id, channel, text }, (err) => pending.done('send-failed', err));
  });

  // First, as it throws for a store that is served already, before anything is attached.
  const detachRelay = store.attachRelay(async (channel, text) => {
    await Promise.all([...listeners.keys()].map((peer) => deliverTo(peer, channel, text)));
  });
  for (const peer of peers) attach(peer);
  const stopWatching = peers.watch({ added: attach, deleted: detach });

  return {
    get pendingDeliveries() {
      return deliveries.size;
    },
    close() {
      if (closed) return;
      closed = true;
      stopWatching();
      detachRelay();
      for (const peer of [...listeners.keys()]) detach(peer);
    },
  };
}

export interface IpcStoreOptions {
  /** How long a call waits for the primary. Default DEFAULT_CALL_TIMEOUT_MS. */
  timeoutMs?: number;
  /**
   * How long `publish` waits; it includes the primary waiting for every worker, so it must
   * exceed the primary's deliveryTimeoutMs. Default: `timeoutMs`.
   */
  publishTimeoutMs?: number;
  /** A local subscriber threw. Default: `process.emitWarning`. */
  onHandlerError?: (error: unknown, channel: string) => void;
}

let ipcStores = 0;

interface PendingCall {
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/** In a worker: the Store, kept by the primary and reached over `channel` (usually `process`). */
export class IpcStore implements Store {
  readonly #channel: IpcChannel;
  readonly #send: (message: StoreMessage, callback: (error: Error | null) => void) => boolean;
  readonly #timeoutMs: number;
  readonly #publishTimeoutMs: number;
  readonly #pending = new Map<number, PendingCall>();
  readonly #subscribers: Subscribers;
  readonly #listener: (message: unknown) => void;
  readonly #instance = ++ipcStores;
  #nextId = 0;
  #closed = false;

  constructor(channel: IpcChannel, options: IpcStoreOptions = {}) {
    const send = channel.send;
    if (send === undefined) throw new StoreUnavailableError('this process has no IPC channel to a primary that serves the store');
    this.#channel = channel;
    this.#send = send.bind(channel);
    this.#timeoutMs = positive(options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS, 'timeoutMs');
    this.#publishTimeoutMs = positive(options.publishTimeoutMs ?? this.#timeoutMs, 'publishTimeoutMs');
    this.#subscribers = new Subscribers(options.onHandlerError);
    this.#listener = (message) => this.#receive(message);
    channel.on('message', this.#listener);
  }

  // Each method sends its call before its first await, so calls reach the primary in
  // the order they were made.

  async get<T extends Json>(key: string): Promise<T | undefined> {
    return (await this.#call('get', [key])) as T | undefined;
  }

  async set(key: string, value: Json, ttlMs: number): Promise<void> {
    await this.#call('set', [key, jsonValue(value), ttlMs]);
  }

  async add(key: string, value: Json, ttlMs: number): Promise<boolean> {
    return (await this.#call('add', [key, jsonValue(value), ttlMs])) as boolean;
  }

  async take<T extends Json>(key: string): Promise<T | undefined> {
    return (await this.#call('take', [key])) as T | undefined;
  }

  async delete(key: string): Promise<boolean> {
    return (await this.#call('delete', [key])) as boolean;
  }

  async addMember(key: string, member: string, ttlMs: number): Promise<void> {
    await this.#call('addMember', [key, member, ttlMs]);
  }

  async removeMember(key: string, member: string): Promise<void> {
    await this.#call('removeMember', [key, member]);
  }

  async members(key: string): Promise<string[]> {
    return (await this.#call('members', [key])) as string[];
  }

  /** Resolves once the primary has delivered `message` to every process, this one included. */
  async publish(channel: string, message: Json): Promise<void> {
    await this.#call('publish', [channel, jsonValue(message)], this.#publishTimeoutMs);
  }

  subscribe(channel: string, handler: (message: Json) => void): () => void {
    if (this.#closed) throw new StoreClosedError();
    return this.#subscribers.add(channel, handler);
  }

  /** Closes this worker's end only: the primary's store and the other workers carry on. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#channel.off('message', this.#listener);
    this.#subscribers.clear();
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new StoreClosedError());
    }
  }

  /** Calls waiting for the primary's answer. */
  get pending(): number {
    return this.#pending.size;
  }

  #call(op: Op, args: Json[], timeoutMs = this.#timeoutMs): Promise<unknown> {
    if (this.#closed) return Promise.reject(new StoreClosedError());
    const id = ++this.#nextId;
    return new Promise<unknown>((resolve, reject) => {
      const settle = (error: Error): void => {
        if (this.#pending.get(id) !== pending) return;
        this.#pending.delete(id);
        clearTimeout(pending.timer);
        reject(error);
      };
      const pending: PendingCall = {
        resolve,
        reject,
        timer: setTimeout(() => settle(new StoreUnavailableError(`the primary did not answer store ${op} within ${timeoutMs} ms`)), timeoutMs),
      };
      this.#pending.set(id, pending);
      try {
        this.#send({ [TAG]: VERSION, kind: 'call', from: this.#instance, id, op, args }, (err) => {
          if (err) settle(new StoreUnavailableError(`cannot send store ${op} to the primary: ${err.message}`, { cause: err }));
        });
      } catch (err) {
        // Node serializes synchronously, so a throw here is a value JSON cannot carry
        // (a BigInt, a cycle): the caller's mistake, not an unreachable primary.
        settle(err as Error);
      }
    });
  }

  #receive(message: unknown): void {
    if (!isStoreMessage(message)) return;
    if (message.kind === 'reply') {
      if (message.from !== this.#instance) return;
      const pending = this.#pending.get(message.id);
      // The call has timed out already.
      if (pending === undefined) return;
      this.#pending.delete(message.id);
      clearTimeout(pending.timer);
      if (message.ok) pending.resolve(message.value);
      else pending.reject(revive(message));
    } else if (message.kind === 'deliver') {
      this.#subscribers.deliver(message.channel, message.text);
      // Confirmed only after the handlers ran: the primary holds the publisher until then.
      sendQuietly({ send: this.#send }, { [TAG]: VERSION, kind: 'delivered', id: message.id }, () => {});
    }
  }
}

function dispatch(store: MemoryStore, op: Op, args: readonly Json[]): Promise<unknown> {
  // Types are not trusted here: MemoryStore checks keys, TTLs and members itself.
  const [a, b, c] = args as [string, Json, number];
  switch (op) {
    case 'get': return store.get(a);
    case 'set': return store.set(a, b, c);
    case 'add': return store.add(a, b, c);
    case 'take': return store.take(a);
    case 'delete': return store.delete(a);
    case 'addMember': return store.addMember(a, b as string, c);
    case 'removeMember': return store.removeMember(a, b as string);
    case 'members': return store.members(a);
    case 'publish': return store.publish(a, b);
  }
}

function isStoreMessage(message: unknown): message is StoreMessage {
  return typeof message === 'object' && message !== null && (message as Partial<Tagged>)[TAG] === VERSION;
}

/** Sends without ever throwing or emitting 'error'; `onError` hears about any failure. */
function sendQuietly(peer: Pick<IpcPeer, 'send'>, message: StoreMessage, onError: (error: Error) => void): void {
  try {
    // With a callback, Node reports a closed channel there instead of emitting 'error'
    // on the process, which would crash a worker that has no 'error' listener.
    peer.send(message, (err) => {
      if (err) onError(err);
    });
  } catch (err) {
    onError(err instanceof Error ? err : new Error(String(err)));
  }
}

function describe(err: unknown): { code?: string; name: string; message: string } {
  // MemoryStore only ever throws Errors.
  const { name, message } = err as Error;
  return err instanceof WardgateError ? { code: err.code, name, message } : { name, message };
}

/** The primary's error as the same class in the worker, so `instanceof` and `code` keep working. */
function revive(reply: { code?: string; name: string; message: string }): Error {
  switch (reply.code) {
    case 'store-closed': return new StoreClosedError(reply.message);
    case 'store-wrong-type': return new StoreWrongTypeError(reply.message);
    // The primary's file store could not write: the worker answers 503, as the primary would.
    case 'store-unavailable': return new StoreUnavailableError(reply.message);
    case undefined: return reply.name === 'TypeError' ? new TypeError(reply.message) : new Error(reply.message);
    default: return new WardgateError(reply.code, reply.message);
  }
}

/**
 * A top-level value JSON would turn into null inside the args array (undefined, a
 * function): refused here as MemoryStore refuses it, so both stores behave alike.
 */
function jsonValue(value: Json): Json {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') throw new TypeError('store values must be JSON values');
  return value;
}

function positive(ms: number, name: string): number {
  if (!Number.isFinite(ms) || ms <= 0) throw new TypeError(`${name} must be a positive number of milliseconds, not ${String(ms)}`);
  return ms;
}

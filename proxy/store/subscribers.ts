import { inspect } from 'node:util';
import type { Json } from './store.js';

/*
 * Subscribers by channel, for every Store implementation: each subscription is its own
 * (the same function subscribed twice runs twice), delivery runs on a snapshot so a
 * handler may unsubscribe, and one throwing handler never stops the others.
 */

export type Handler = (message: Json) => void;
export type HandlerErrorReporter = (error: unknown, channel: string) => void;

/** Where a throwing subscriber goes when nobody passed onHandlerError. */
export function defaultHandlerError(error: unknown, channel: string): void {
  process.emitWarning(`store subscriber on ${JSON.stringify(channel)} threw: ${inspect(error)}`);
}

export class Subscribers {
  readonly #byChannel = new Map<string, Set<Handler>>();

  constructor(private readonly onError: HandlerErrorReporter = defaultHandlerError) {}

  /** Returns the unsubscribe function. */
  add(channel: string, handler: Handler): () => void {
    let handlers = this.#byChannel.get(channel);
    if (handlers === undefined) {
      handlers = new Set();
      this.#byChannel.set(channel, handlers);
    }
    const subscription: Handler = (message) => handler(message);
    handlers.add(subscription);
    return () => {
      const current = this.#byChannel.get(channel);
      if (current === undefined) return;
      current.delete(subscription);
      if (current.size === 0) this.#byChannel.delete(channel);
    };
  }

  /** Runs every handler of `channel` with its own copy of the message (JSON `text`). */
  deliver(channel: string, text: string): void {
    const handlers = this.#byChannel.get(channel);
    if (handlers === undefined) return;
    for (const handler of [...handlers]) {
      try {
        handler(JSON.parse(text) as Json);
      } catch (err) {
        try {
          this.onError(err, channel);
        } catch {
          // The error reporter itself failed; the remaining subscribers still have to run.
        }
      }
    }
  }

  clear(): void {
    this.#byChannel.clear();
  }
}

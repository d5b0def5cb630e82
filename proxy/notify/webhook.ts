import { Counter, type Registry } from 'prom-client';
import { Agent, request, type Dispatcher } from 'undici';
import type { Logger } from '../logger.js';
import { VERSION } from '../version.js';
import type { WebhookConfig } from './config.js';
import { SEVERITIES, type Notice, type NoticeEvent, type Notifier, type Severity } from './notice.js';

/*
 * Posts notices to webhooks: Slack incoming webhooks, Teams, chat bridges and SIEM
 * collectors. `notify` only queues, so a slow or broken receiver never holds up a grant
 * or a break-glass. Each webhook has its own queue, sent one notice at a time so the
 * channel reads in the order things happened, and bounded: a receiver that is down for
 * long costs the oldest notices, never the process's memory.
 *
 * Failed attempts are retried with exponential backoff and jitter (network errors,
 * timeouts, 408, 429, 5xx; Retry-After is honoured up to the backoff cap). Any other
 * answer means the request itself is wrong and sending it again cannot help.
 *
 * The webhook's URL is a credential (anyone holding a Slack URL can post to the channel):
 * logs name a webhook by its place in the config and its origin only.
 */

/** The JSON body every webhook receives. */
export interface WebhookPayload {
  /** What chat receivers show: severity marker and the summary, escaped for Slack mrkdwn. */
  text: string;
  event: NoticeEvent;
  severity: Severity;
  /** ISO 8601. */
  at: string;
  details: Notice['details'];
}

export interface WebhookNotifierOptions {
  webhooks: readonly WebhookConfig[];
  logger: Logger;
  /** Where wardgate_webhook_deliveries_total is registered; once per registry. */
  registry: Registry;
  /** Retry delays: baseMs doubles per retry up to capMs, which also bounds Retry-After. */
  backoff?: { baseMs: number; capMs: number };
  /** Notices waiting per webhook; when full the oldest is dropped. */
  queueLimit?: number;
  /** How long close() waits for attempts in flight. */
  closeTimeoutMs?: number;
}

type Outcome = 'delivered' | 'retried' | 'failed' | 'dropped';

const DEFAULT_BACKOFF = { baseMs: 1_000, capMs: 60_000 };
const DEFAULT_QUEUE_LIMIT = 1_000;
const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;
// Enough of a refusal to say why (Slack answers "no_service", "channel_is_archived"...).
const RESPONSE_SNIPPET_CHARS = 200;

// Unicode rather than Slack's :shortcodes:, which Teams would print as written.
const MARKERS: Record<Severity, string> = { info: 'ℹ️ [INFO]', warning: '⚠️ [WARNING]', high: '🚨 [HIGH]' };

/**
 * Slack reads `<...>` as mentions and links (`<!channel>`, `<https://x|click>`) and `&` as
 * the start of an entity: a justification a user typed must not ping a channel or
 * disguise a link. Line breaks would let it fake a second notice.
 */
function chatText(notice: Notice): string {
  const line = notice.summary.replace(/[\0-\x1f\x7f\u2028\u2029]+/g, ' ')
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return `${MARKERS[notice.severity]} ${line}`;
}

function payload(notice: Notice): WebhookPayload {
  return {
    text: chatText(notice),
    event: notice.event,
    severity: notice.severity,
    at: new Date(notice.at).toISOString(),
    details: notice.details,
  };
}

/** Retry-After as delta-seconds or an HTTP date, in ms from now; undefined when absent or unreadable. */
function retryAfterMs(header: string | string[] | undefined): number | undefined {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1_000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** An error's code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT...) or name: messages may quote too much. */
function errorKind(err: unknown): string {
  // DOMException (a timed-out signal) has a numeric legacy code: only string codes name a cause.
  const code: unknown = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && code) return code;
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  if (cause instanceof Error) return errorKind(cause);
  return err instanceof Error ? err.name : 'unknown';
}

async function snippet(body: Dispatcher.ResponseData['body']): Promise<string> {
  let text = '';
  for await (const chunk of body as AsyncIterable<Buffer>) {
    text += chunk.toString('utf8');
    if (text.length >= RESPONSE_SNIPPET_CHARS) break;
  }
  return text.slice(0, RESPONSE_SNIPPET_CHARS).replace(/[\0-\x1f\x7f]+/g, ' ').trim();
}

type Attempt =
  | { kind: 'delivered' }
  | { kind: 'retry'; reason: string; retryAfterMs?: number }
  | { kind: 'refused'; status: number; response: string };

interface Queued {
  event: NoticeEvent;
  body: string;
}

interface Shared {
  agent: Agent;
  count(outcome: Outcome, n?: number): void;
  backoff: { baseMs: number; capMs: number };
  queueLimit: number;
}

/** One webhook: its filter, its queue and the single delivery working through it. */
class WebhookTarget {
  readonly #config: WebhookConfig;
  readonly #events: ReadonlySet<NoticeEvent> | undefined;
  readonly #minSeverity: number;
  readonly #log: Logger;
  readonly #shared: Shared;
  readonly #queue: Queued[] = [];
  #running: Promise<void> | undefined;
  #stopping = false;
  /** Ends the attempt in flight (close() past its deadline). */
  #inFlight: AbortController | undefined;
  /** Ends a backoff wait early (close()). */
  #wake: (() => void) | undefined;
  /** Notices given up because of close(), never sent or never confirmed. */
  abandoned = 0;

  constructor(config: WebhookConfig, index: number, logger: Logger, shared: Shared) {
    this.#config = config;
    this.#events = config.events ? new Set(config.events) : undefined;
    this.#minSeverity = SEVERITIES.indexOf(config.minSeverity);
    this.#log = logger.child({ webhook: index, origin: config.url.origin });
    this.#shared = shared;
  }

  wants(notice: Notice): boolean {
    return (this.#events === undefined || this.#events.has(notice.event)) && SEVERITIES.indexOf(notice.severity) >= this.#minSeverity;
  }

  enqueue(item: Queued): void {
    if (this.#queue.length >= this.#shared.queueLimit) {
      const oldest = this.#queue.shift()!;
      this.#shared.count('dropped');
      this.#log.error({ event: oldest.event, queued: this.#shared.queueLimit }, 'webhook queue full: oldest notice dropped unsent');
    }
    this.#queue.push(item);
    this.#running ??= this.#run().finally(() => {
      this.#running = undefined;
    });
  }

  /** No further attempts: what waits in the queue is abandoned, a backoff wait ends now. */
  stop(): void {
    this.#stopping = true;
    this.abandoned += this.#queue.length;
    this.#queue.length = 0;
    this.#wake?.();
  }

  /** Ends the attempt in flight now. */
  abort(): void {
    this.#inFlight?.abort();
  }

  /** Settles when the delivery in progress, if any, has ended. */
  idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  async #run(): Promise<void> {
    for (let item = this.#queue.shift(); item !== undefined && !this.#stopping; item = this.#queue.shift()) {
      await this.#deliver(item);
    }
  }

  async #deliver(item: Queued): Promise<void> {
    const { retries } = this.#config;
    for (let attempt = 1; ; attempt++) {
      const result = await this.#attempt(item.body);
      if (result.kind === 'delivered') {
        this.#shared.count('delivered');
        this.#log.debug({ event: item.event, attempt }, 'webhook notice delivered');
        return;
      }
      if (this.#stopping) {
        this.abandoned += 1;
        return;
      }
      if (result.kind === 'refused') {
        this.#shared.count('failed');
        this.#log.error({ event: item.event, status: result.status, response: result.response }, 'webhook refused the notice; not retried');
        return;
      }
      if (attempt > retries) {
        this.#shared.count('failed');
        this.#log.error({ event: item.event, attempts: attempt, reason: result.reason }, `webhook notice not delivered after ${attempt} attempts; given up`);
        return;
      }
      const delayMs = this.#delay(attempt, result.retryAfterMs);
      this.#shared.count('retried');
      this.#log.warn({ event: item.event, attempt, reason: result.reason, retryInMs: delayMs }, 'webhook attempt failed; retrying');
      await this.#sleep(delayMs);
      if (this.#stopping) {
        this.abandoned += 1;
        return;
      }
    }
  }

  async #attempt(body: string): Promise<Attempt> {
    const { timeout, headers, url } = this.#config;
    const controller = new AbortController();
    this.#inFlight = controller;
    try {
      const res = await request(url, {
        method: 'POST',
        dispatcher: this.#shared.agent,
        headers: { 'user-agent': `wardgate/${VERSION}`, ...headers, 'content-type': 'application/json' },
        body,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        // The phase timeouts restart on every byte; this bounds a receiver that trickles.
        signal: AbortSignal.any([controller.signal, AbortSignal.timeout(timeout)]),
      });
      const status = res.statusCode;
      if (status >= 200 && status < 300) {
        await res.body.dump();
        return { kind: 'delivered' };
      }
      if (status === 408 || status === 429 || status >= 500) {
        await res.body.dump();
        const after = retryAfterMs(res.headers['retry-after']);
        return after === undefined ? { kind: 'retry', reason: `status ${status}` } : { kind: 'retry', reason: `status ${status}`, retryAfterMs: after };
      }
      return { kind: 'refused', status, response: await snippet(res.body) };
    } catch (err) {
      return { kind: 'retry', reason: errorKind(err) };
    } finally {
      this.#inFlight = undefined;
    }
  }

  /** Delay before retry number `retry` (1-based): half fixed, half random, so replicas spread out. */
  #delay(retry: number, retryAfter: number | undefined): number {
    const { baseMs, capMs } = this.#shared.backoff;
    if (retryAfter !== undefined) return Math.min(retryAfter, capMs);
    const ceiling = Math.min(capMs, baseMs * 2 ** (retry - 1));
    return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.#wake = done;
    });
  }
}

/**
 * A Notifier posting to every configured webhook whose filter the notice passes. Counts
 * `wardgate_webhook_deliveries_total{outcome}` in `registry`: delivered, retried (an
 * attempt failed and another follows), failed (given up), dropped (queue full, or unsent
 * at shutdown).
 */
export function createWebhookNotifier(options: WebhookNotifierOptions): Notifier {
  const { logger } = options;
  const deliveries = new Counter({
    name: 'wardgate_webhook_deliveries_total',
    help: 'Webhook notices by outcome: delivered; retried (an attempt failed, another follows); failed (given up); dropped (queue full or shutdown).',
    labelNames: ['outcome'] as const,
    registers: [options.registry],
  });
  const agent = new Agent();
  const shared: Shared = {
    agent,
    count: (outcome, n = 1) => deliveries.inc({ outcome }, n),
    backoff: options.backoff ?? DEFAULT_BACKOFF,
    queueLimit: options.queueLimit ?? DEFAULT_QUEUE_LIMIT,
  };
  const targets = options.webhooks.map((config, index) => new WebhookTarget(config, index, logger, shared));
  const closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
  let closing: Promise<void> | undefined;

  async function shutDown(): Promise<void> {
    for (const target of targets) target.stop();
    const settled = Promise.all(targets.map((target) => target.idle()));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, closeTimeoutMs);
      timer.unref();
    });
    await Promise.race([settled, deadline]);
    clearTimeout(timer);
    for (const target of targets) target.abort();
    await Promise.all([settled, agent.destroy()]);
    const abandoned = targets.reduce((sum, target) => sum + target.abandoned, 0);
    if (abandoned > 0) {
      shared.count('dropped', abandoned);
      logger.error({ abandoned }, 'webhook notices abandoned at shutdown: not delivered');
    }
  }

  return {
    notify(notice) {
      const chosen = targets.filter((target) => target.wants(notice));
      if (chosen.length === 0) return;
      if (closing) {
        shared.count('dropped', chosen.length);
        logger.warn({ event: notice.event }, 'notice after shutdown began: not sent to webhooks');
        return;
      }
      const item = { event: notice.event, body: JSON.stringify(payload(notice)) };
      for (const target of chosen) target.enqueue(item);
    },
    close() {
      closing ??= shutDown();
      return closing;
    },
  };
}

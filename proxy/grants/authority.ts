import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../logger.js';
import type { Notifier } from '../notify/notice.js';
import type { Json, Store } from '../store/store.js';
import type { BreakGlassService } from './break-glass.js';
import { GRANT_STATES, grantState, type GrantState } from './grant.js';
import { noticeFor } from './notices.js';
import { GRANTS_CHANNEL, type ChangeMessage } from './records.js';
import type { GrantService } from './service.js';

/*
 * The one place that watches every grant and break-glass change, whichever process made
 * it: the process that owns the store (a single wardgate, or the primary of a cluster),
 * whose subscribers see every publish. It counts the changes, tells people (webhooks),
 * writes each one to the log (break-glass as a high-severity event), and records what the
 * clock did to grants (windows opening and closing, requests lapsing). Counting here, once,
 * keeps the metrics right however many workers there are.
 */

export interface GrantAuthorityOptions {
  store: Store;
  grants: GrantService | undefined;
  breakGlass: BreakGlassService;
  registry: Registry;
  notifier: Notifier | undefined;
  logger: Logger;
  now?: () => number;
  /** How often time is checked for windows that opened or closed. Default 2 s. */
  sweepEveryMs?: number;
}

export interface GrantAuthority {
  /** Records what the clock did now (tests call it after moving the clock). */
  sweep(): Promise<void>;
  close(): Promise<void>;
}

export function startGrantAuthority(options: GrantAuthorityOptions): GrantAuthority {
  const { store, grants, registry, notifier, logger } = options;
  const now = options.now ?? Date.now;
  const events = new Counter({
    name: 'wardgate_grant_events_total',
    help: 'Changes to access grants and break-glass records, by event',
    labelNames: ['event'],
    registers: [registry],
  });
  const breakGlassUses = new Counter({
    name: 'wardgate_break_glass_total',
    help: 'Emergency (break-glass) accesses opened, by route',
    labelNames: ['route'],
    registers: [registry],
  });
  new Gauge({
    name: 'wardgate_grants',
    help: 'Access grants kept, by state now',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const counts = new Map<GrantState, number>(GRANT_STATES.map((state) => [state, 0]));
      const at = now();
      for (const grant of grants ? await grants.list() : []) {
        const state = grantState(grant, at);
        counts.set(state, counts.get(state)! + 1);
      }
      for (const [state, count] of counts) this.set({ state }, count);
    },
  });

  const audit = logger.child({ kind: 'access-change' });
  const unsubscribe = store.subscribe(GRANTS_CHANNEL, (raw: Json) => {
    const message = raw as unknown as ChangeMessage;
    if (typeof message?.event !== 'string' || typeof message.record !== 'object' || message.record === null) return;
    events.inc({ event: message.event });
    const notice = noticeFor(message);
    if (message.event === 'break-glass-started') {
      breakGlassUses.inc({ route: (message.record as { route?: string }).route ?? 'unknown' });
      audit.warn({ event: message.event, severity: 'high', id: message.id, by: message.by, ...notice.details }, notice.summary);
    } else {
      audit.info({ event: message.event, severity: notice.severity, id: message.id, by: message.by, ...notice.details }, notice.summary);
    }
    notifier?.notify(notice);
  });

  let sweeping: Promise<void> | undefined;
  const sweep = (): Promise<void> => {
    sweeping ??= (async () => {
      try {
        await grants?.sweep();
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'grant sweep failed; trying again shortly');
      } finally {
        sweeping = undefined;
      }
    })();
    return sweeping;
  };
  const timer = setInterval(() => void sweep(), options.sweepEveryMs ?? 2_000);
  timer.unref();

  return {
    sweep,
    async close() {
      clearInterval(timer);
      unsubscribe();
      await sweeping;
      await notifier?.close();
    },
  };
}

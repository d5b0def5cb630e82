import type { Logger } from '../logger.js';
import { verifiedEmail, type Identity } from '../identity/identity.js';
import type { BreakGlassFacts, GrantFacts } from '../policy/context.js';
import type { Json, Store } from '../store/store.js';
import { breakGlassState, type BreakGlass } from './break-glass.js';
import { grantState, subjectKey, type Grant } from './grant.js';
import { BREAK_GLASS_RECORDS, GRANT_RECORDS, GRANTS_CHANNEL, Records, type ChangeMessage } from './records.js';

/*
 * Each process's copy of the grants and break-glass records that can still let someone
 * in, so the context stage answers "what grants does this person hold on this route" from
 * memory, in a map lookup. Every change arrives with its record over the store's
 * publish/subscribe and is applied before the change's publish resolves, in every process:
 * a revocation holds from the very next request. Windows close by the clock alone (the
 * `grant` criterion compares them with the request's time), so nothing has to arrive for a
 * grant to expire. A full reread every so often repairs anything a lost message missed.
 */

const RESYNC_EVERY_MS = 30_000;
const NONE: readonly GrantFacts[] = Object.freeze([]);

export interface GrantBookOptions {
  store: Store;
  logger: Logger;
  now?: () => number;
  /** Called after a change was applied (open WebSockets are rechecked at once). */
  onChange?: (message: ChangeMessage) => void;
  resyncEveryMs?: number;
}

export class GrantBook {
  /** Grants that are approved and not yet over, by subject key, then id. */
  private grants = new Map<string, Map<string, Grant>>();
  /** Break-glass records still open, by `<sub> <route>`. */
  private breakGlass = new Map<string, BreakGlass>();
  /** Ids a message touched while a reread was under way: the reread must not undo them. */
  private touched: Set<string> | undefined;
  /** The reread under way: two at once could let the older one's snapshot win. */
  private loading: Promise<void> | undefined;
  private readonly grantRecords: Records<Grant>;
  private readonly breakGlassRecords: Records<BreakGlass>;
  private readonly now: () => number;
  private readonly unsubscribe: () => void;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly options: GrantBookOptions) {
    this.now = options.now ?? Date.now;
    this.grantRecords = new Records<Grant>(options.store, GRANT_RECORDS);
    this.breakGlassRecords = new Records<BreakGlass>(options.store, BREAK_GLASS_RECORDS);
    this.unsubscribe = options.store.subscribe(GRANTS_CHANNEL, (message) => this.apply(message));
    this.timer = setInterval(() => {
      this.load().catch((err: unknown) => options.logger.warn({ err: (err as Error).message }, 'grant reread failed; keeping the copy in memory'));
    }, options.resyncEveryMs ?? RESYNC_EVERY_MS);
    this.timer.unref();
  }

  /** Reads every record from the store; at start, and then now and again. One at a time. */
  load(): Promise<void> {
    this.loading ??= this.reread().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private async reread(): Promise<void> {
    const touched = new Set<string>();
    this.touched = touched;
    try {
      const [grants, breakGlass] = await Promise.all([this.grantRecords.all(), this.breakGlassRecords.all()]);
      const now = this.now();
      const nextGrants = new Map<string, Map<string, Grant>>();
      const nextBreakGlass = new Map<string, BreakGlass>();
      for (const grant of grants) {
        const current = touched.has(grant.id) ? this.findGrant(grant.id) : grant;
        if (current && holds(current, now)) addGrant(nextGrants, current);
      }
      for (const record of breakGlass) {
        const current = touched.has(record.id) ? this.findBreakGlass(record.id) : record;
        if (current && breakGlassState(current, now) === 'active') nextBreakGlass.set(breakGlassKey(current.user.id, current.route), current);
      }
      // Records a message brought in that the reread did not see yet.
      for (const id of touched) {
        const grant = this.findGrant(id);
        if (grant && holds(grant, now)) addGrant(nextGrants, grant);
        const record = this.findBreakGlass(id);
        if (record && breakGlassState(record, now) === 'active') nextBreakGlass.set(breakGlassKey(record.user.id, record.route), record);
      }
      this.grants = nextGrants;
      this.breakGlass = nextBreakGlass;
    } finally {
      if (this.touched === touched) this.touched = undefined;
    }
  }

  /** The grants `identity` holds on `routeId` that are approved and not yet over. */
  grantsFor(identity: Identity | undefined, routeId: string): readonly GrantFacts[] {
    if (!identity || this.grants.size === 0) return NONE;
    let facts: GrantFacts[] | undefined;
    const email = verifiedEmail(identity);
    const keys = email ? [`user:${identity.sub}`, `email:${email.toLowerCase()}`] : [`user:${identity.sub}`];
    for (const key of keys) {
      const held = this.grants.get(key);
      if (!held) continue;
      for (const grant of held.values()) {
        for (const route of grant.routes) {
          if (route.id !== routeId) continue;
          (facts ??= []).push({ id: grant.id, notBefore: grant.notBefore, notAfter: grant.notAfter, paths: route.paths, methods: route.methods });
        }
      }
    }
    return facts ?? NONE;
  }

  /** Open emergency access for this person on this route. */
  breakGlassFor(identity: Identity | undefined, routeId: string): BreakGlassFacts | undefined {
    if (!identity || this.breakGlass.size === 0) return undefined;
    const record = this.breakGlass.get(breakGlassKey(identity.sub, routeId));
    return record && record.ended === undefined ? { id: record.id, endsAt: record.endsAt } : undefined;
  }

  close(): void {
    clearInterval(this.timer);
    this.unsubscribe();
  }

  private apply(raw: Json): void {
    const message = raw as unknown as ChangeMessage;
    if (typeof message?.id !== 'string' || typeof message.record !== 'object' || message.record === null) return;
    this.touched?.add(message.id);
    const now = this.now();
    if (message.kind === 'grant') {
      const grant = message.record as unknown as Grant;
      for (const held of this.grants.values()) held.delete(grant.id);
      if (holds(grant, now)) addGrant(this.grants, grant);
    } else if (message.kind === 'break-glass') {
      const record = message.record as unknown as BreakGlass;
      const key = breakGlassKey(record.user.id, record.route);
      if (breakGlassState(record, now) === 'active') this.breakGlass.set(key, record);
      else if (this.breakGlass.get(key)?.id === record.id) this.breakGlass.delete(key);
    }
    this.options.onChange?.(message);
  }

  private findGrant(id: string): Grant | undefined {
    for (const held of this.grants.values()) {
      const grant = held.get(id);
      if (grant) return grant;
    }
    return undefined;
  }

  private findBreakGlass(id: string): BreakGlass | undefined {
    for (const record of this.breakGlass.values()) if (record.id === id) return record;
    return undefined;
  }
}

/** Approved and not yet over: the grants worth keeping at hand. */
function holds(grant: Grant, now: number): boolean {
  const state = grantState(grant, now);
  return state === 'approved' || state === 'active';
}

function addGrant(into: Map<string, Map<string, Grant>>, grant: Grant): void {
  const key = subjectKey(grant.subject);
  let held = into.get(key);
  if (!held) into.set(key, (held = new Map()));
  held.set(grant.id, grant);
}

const breakGlassKey = (sub: string, route: string): string => `${sub}\n${route}`;

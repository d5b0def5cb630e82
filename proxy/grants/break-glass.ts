import type { Store } from '../store/store.js';
import type { BreakGlassConfig } from './config.js';
import { GrantError } from './errors.js';
import type { Principal } from './grant.js';
import { BREAK_GLASS_RECORDS, newId, Records } from './records.js';
import type { Actor } from './service.js';

/*
 * Break-glass: in an emergency, a member of a route's break-glass groups lets themselves
 * in without the route's usual conditions, for a short time, by giving a reason. Nobody
 * approves it beforehand; instead it is loud (a high-severity event and webhook alert at
 * once, a header on every response) and it is reviewed afterwards: every use stays on the
 * security team's review list until someone marks it reviewed.
 */

export interface BreakGlass {
  id: string;
  route: string;
  /** Who broke the glass: a signed-in person, with the groups that let them. */
  user: Principal & { groups: string[] };
  reason: string;
  startedAt: number;
  endsAt: number;
  /** Ended before `endsAt`, by the user or an approver. */
  ended: { by: Principal; at: number } | undefined;
  reviewed: { by: Principal; at: number; note: string } | undefined;
}

export type BreakGlassState = 'active' | 'ended';

export function breakGlassState(record: BreakGlass, now: number): BreakGlassState {
  return record.ended === undefined && now < record.endsAt ? 'active' : 'ended';
}

export interface BreakGlassServiceOptions {
  store: Store;
  /** Each route's break-glass terms; routes without any are absent. */
  routes: ReadonlyMap<string, BreakGlassConfig>;
  /** How long records are kept after they end (grants.retention or the default). */
  retentionMs: number;
  now?: () => number;
}

export class BreakGlassService {
  private readonly records: Records<BreakGlass>;
  private readonly now: () => number;

  constructor(private readonly options: BreakGlassServiceOptions) {
    this.records = new Records<BreakGlass>(options.store, BREAK_GLASS_RECORDS);
    this.now = options.now ?? Date.now;
  }

  /** The route's terms, when `groups` lets its holder break the glass there. */
  termsFor(routeId: string, groups: readonly string[]): BreakGlassConfig | undefined {
    const terms = this.options.routes.get(routeId);
    return terms && groups.some((group) => terms.groups.includes(group)) ? terms : undefined;
  }

  async get(id: string): Promise<BreakGlass> {
    const record = await this.records.get(id);
    if (!record) throw new GrantError('break-glass-not-found', `no break-glass record ${id}`);
    return record;
  }

  /** Every use, newest first: the security team's review list. */
  async list(): Promise<BreakGlass[]> {
    return (await this.records.all()).sort((a, b) => b.startedAt - a.startedAt);
  }

  async start(routeId: string, actor: Actor, reason: string): Promise<BreakGlass> {
    const now = this.now();
    if (actor.principal.kind !== 'user') throw new GrantError('break-glass-not-allowed', 'only a signed-in person can break the glass');
    if (!this.options.routes.has(routeId)) throw new GrantError('break-glass-not-configured', `route "${routeId}" has no break-glass access`);
    const terms = this.termsFor(routeId, actor.groups);
    if (!terms) throw new GrantError('break-glass-not-allowed', `${actor.principal.id} is not in a group that may break the glass on "${routeId}"`);
    if (reason.length < 10) throw new GrantError('break-glass-not-allowed', 'say why, in at least 10 characters: the security team reviews every use');
    // One start at a time per person and route: a form sent twice must not open two
    // records, of which ending one would leave the other in force.
    return this.records.exclusive(`${actor.principal.id} ${routeId}`, async () => {
      const active = (await this.records.all()).find((r) => r.route === routeId && r.user.id === actor.principal.id && breakGlassState(r, now) === 'active');
      if (active) throw new GrantError('break-glass-already-active', `emergency access to "${routeId}" is already open until ${new Date(active.endsAt).toISOString()} (${active.id})`);
      return this.open(routeId, actor, reason, terms.duration, now);
    });
  }

  private async open(routeId: string, actor: Actor, reason: string, duration: number, now: number): Promise<BreakGlass> {
    const record: BreakGlass = {
      id: newId('bg'),
      route: routeId,
      user: { ...actor.principal, groups: [...actor.groups] },
      reason,
      startedAt: now,
      endsAt: now + duration,
      ended: undefined,
      reviewed: undefined,
    };
    await this.records.put(record, this.keepFor(record, now));
    await this.records.publish(record, 'break-glass-started', now, actor.principal.id);
    return record;
  }

  /** Ends emergency access early: its user, or an approver. */
  async end(id: string, by: Principal): Promise<BreakGlass> {
    const now = this.now();
    const record = await this.records.update(id, () => new GrantError('break-glass-not-found', `no break-glass record ${id}`), (current) => {
      if (breakGlassState(current, now) === 'ended') throw new GrantError('break-glass-already-ended', `${id} has already ended`);
      const ended: BreakGlass = { ...current, ended: { by, at: now } };
      return { record: ended, ttlMs: this.keepFor(ended, now) };
    });
    await this.records.publish(record, 'break-glass-ended', now, by.id);
    return record;
  }

  /** Marks a use reviewed by the security team, with what they found. */
  async review(id: string, by: Principal, note: string): Promise<BreakGlass> {
    const now = this.now();
    const record = await this.records.update(id, () => new GrantError('break-glass-not-found', `no break-glass record ${id}`), (current) => {
      if (current.user.id === by.id) throw new GrantError('break-glass-not-allowed', 'nobody reviews their own emergency access');
      if (current.reviewed) throw new GrantError('break-glass-already-reviewed', `${id} was reviewed by ${current.reviewed.by.id}`);
      const reviewed: BreakGlass = { ...current, reviewed: { by, at: now, note } };
      return { record: reviewed, ttlMs: this.keepFor(reviewed, now) };
    });
    await this.records.publish(record, 'break-glass-reviewed', now, by.id);
    return record;
  }

  private keepFor(record: BreakGlass, now: number): number {
    return Math.max(record.endsAt - now, 0) + this.options.retentionMs;
  }
}

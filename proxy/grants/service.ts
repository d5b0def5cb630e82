import type { Store } from '../store/store.js';
import type { GrantsConfig } from './config.js';
import { isKnownSubject } from '../identity/directory.js';
import { GrantError } from './errors.js';
import { grantState, isOver, subjectKey, type Grant, type GrantState, type GrantSubject, type Principal } from './grant.js';
import type { GrantRequestInput } from './input.js';
import { GRANT_RECORDS, newId, Records, type ChangeEvent } from './records.js';

/*
 * What can be done to grants, by whom, and when; every rule of the issue is judged here,
 * once, for the access page and the admin API alike. Each change is stored first, then
 * published, so by the time the caller hears "done" every process applies it.
 */

/** Who acts, with the groups they hold (a person's from their sign-in; none for service callers). */
export interface Actor {
  principal: Principal;
  groups: readonly string[];
}

export interface GrantServiceOptions {
  store: Store;
  config: GrantsConfig;
  /** Route ids, each with whether its policy has a `grant` rule. */
  routes: ReadonlyMap<string, { grantable: boolean }>;
  now?: () => number;
}

/** Clock skew and the time a form takes to fill in: a window may start this much ago. */
const START_GRACE_MS = 5 * 60_000;

export interface GrantFilter {
  states?: readonly GrantState[];
  subject?: GrantSubject;
}

export class GrantService {
  private readonly records: Records<Grant>;
  private readonly now: () => number;

  constructor(private readonly options: GrantServiceOptions) {
    this.records = new Records<Grant>(options.store, GRANT_RECORDS);
    this.now = options.now ?? Date.now;
  }

  /** True when the actor approves, denies and revokes grants. */
  isApprover(actor: Actor): boolean {
    const { groups, principals } = this.options.config.approvers;
    // Listed principals are service callers: a person whose subject happens to read
    // `client:servicenow` is not the ticketing system.
    return actor.groups.some((group) => groups.includes(group))
      || (actor.principal.kind !== 'user' && principals.includes(actor.principal.id));
  }

  /** True when the actor may ask for access for themselves on the access page. */
  mayRequest(actor: Actor): boolean {
    const requesters = this.options.config.requesters;
    return !requesters || actor.groups.some((group) => requesters.groups.includes(group));
  }

  /** Route ids a grant can open. */
  grantableRoutes(): string[] {
    return [...this.options.routes].filter(([, route]) => route.grantable).map(([id]) => id);
  }

  async get(id: string): Promise<Grant> {
    const grant = await this.records.get(id);
    if (!grant) throw new GrantError('grant-not-found', `no grant ${id}`);
    return grant;
  }

  async list(filter: GrantFilter = {}): Promise<Grant[]> {
    const now = this.now();
    const key = filter.subject ? subjectKey(filter.subject) : undefined;
    return (await this.records.all())
      .filter((grant) => (!filter.states || filter.states.includes(grantState(grant, now))) && (!key || subjectKey(grant.subject) === key))
      .sort((a, b) => b.createdAt - a.createdAt);
  }

  /**
   * A new request. Without `input.subject` the requester asks for themselves, which the
   * access page does and which `requesters` limits; naming someone else is for approvers.
   */
  async request(input: GrantRequestInput, actor: Actor): Promise<Grant> {
    const { config } = this.options;
    const now = this.now();
    const self = input.subject === undefined;
    if (self && actor.principal.kind !== 'user') throw new GrantError('grant-subject-unknown', 'an API client asks for someone: name the subject');
    if (self ? !this.mayRequest(actor) : !this.isApprover(actor)) {
      throw new GrantError('grant-requester-not-allowed', self
        ? `${actor.principal.id} is not in a group that may ask for access (${config.requesters?.groups.join(', ')})`
        : `${actor.principal.id} may not ask for access on someone else's behalf: only approvers may`);
    }
    // Emails compare without case everywhere (the book, self-approval): store them so.
    const subject: GrantSubject = !input.subject ? { user: actor.principal.id }
      : 'email' in input.subject ? { email: input.subject.email.toLowerCase() } : input.subject;
    if (!self && !(await isKnownSubject(this.options.store, subject, config.subjectDomains))) {
      throw new GrantError('grant-subject-unknown', `${'user' in subject ? subject.user : subject.email} has never signed in through wardgate${'email' in subject ? ' and is not in grants.subjectDomains' : ''}`);
    }
    for (const wanted of input.routes) {
      const route = this.options.routes.get(wanted.id);
      if (!route) throw new GrantError('grant-route-unknown', `no route "${wanted.id}"`);
      if (!route.grantable) throw new GrantError('grant-route-not-grantable', `route "${wanted.id}" has no grant rule in its policy: a grant would open nothing there`);
    }
    const { notBefore: asked, notAfter } = input;
    if (notAfter <= asked) throw new GrantError('grant-window-invalid', 'the window ends before it starts');
    if (notAfter <= now) throw new GrantError('grant-window-past', 'the window lies in the past');
    if (asked < now - START_GRACE_MS) throw new GrantError('grant-window-past', 'the window starts in the past; start it now or later');
    if (asked > now + config.maxLeadTime) throw new GrantError('grant-window-invalid', `the window starts more than ${hours(config.maxLeadTime)} ahead`);
    const notBefore = Math.max(asked, now);
    if (notAfter - notBefore > config.maxDuration) throw new GrantError('grant-window-too-long', `the window is longer than the ${hours(config.maxDuration)} a grant may last`);
    const grant: Grant = {
      id: newId('g'),
      subject,
      routes: input.routes,
      notBefore,
      notAfter,
      justification: input.justification,
      ticket: input.ticket,
      requester: actor.principal,
      approvalsRequired: config.approvals,
      approvals: [],
      status: 'requested',
      createdAt: now,
      requestExpiresAt: Math.min(now + config.requestTtl, notAfter),
      denial: undefined,
      revocation: undefined,
      timestamps: { requested: now },
    };
    await this.records.put(grant, this.keepFor(grant, now));
    await this.records.publish(grant, 'grant-requested', now, actor.principal.id);
    return grant;
  }

  async approve(id: string, actor: Actor): Promise<Grant> {
    this.mustApprove(actor);
    let event: ChangeEvent = 'grant-approval';
    const now = this.now();
    const grant = await this.change(id, (current) => {
      this.mustBePending(current, now, 'approve');
      if (isOwn(current, actor.principal)) throw new GrantError('grant-self-approval', 'nobody approves access for themselves or their own request');
      if (current.approvals.some((approval) => approval.by.id === actor.principal.id)) {
        throw new GrantError('grant-already-approved', `${actor.principal.id} has already approved ${id}; it needs another approver`);
      }
      const approvals = [...current.approvals, { by: actor.principal, at: now }];
      const complete = approvals.length >= current.approvalsRequired;
      if (complete) event = 'grant-approved';
      return {
        ...current,
        approvals,
        status: complete ? 'approved' : 'requested',
        timestamps: complete ? { ...current.timestamps, approved: now } : current.timestamps,
      };
    });
    await this.records.publish(grant, event, now, actor.principal.id);
    return grant;
  }

  async deny(id: string, actor: Actor, reason: string): Promise<Grant> {
    this.mustApprove(actor);
    const now = this.now();
    const grant = await this.change(id, (current) => {
      this.mustBePending(current, now, 'deny');
      return { ...current, status: 'denied', denial: { by: actor.principal, at: now, reason }, timestamps: { ...current.timestamps, denied: now } };
    });
    await this.records.publish(grant, 'grant-denied', now, actor.principal.id);
    return grant;
  }

  /** Ends an approved grant now, whether or not its window has opened. */
  async revoke(id: string, actor: Actor, reason: string): Promise<Grant> {
    this.mustApprove(actor);
    const now = this.now();
    const grant = await this.change(id, (current) => {
      const state = grantState(current, now);
      if (isOver(state)) throw new GrantError('grant-already-over', `${id} is already ${state}: there is nothing to revoke`);
      if (state === 'requested') throw new GrantError('grant-not-pending', `${id} is still a request: deny it instead`);
      return { ...current, status: 'revoked', revocation: { by: actor.principal, at: now, reason }, timestamps: { ...current.timestamps, revoked: now } };
    });
    await this.records.publish(grant, 'grant-revoked', now, actor.principal.id);
    return grant;
  }

  /**
   * Writes down what time did (windows that opened or closed, requests that lapsed) and
   * announces it. Idempotent: each moment is recorded once; run it from one process.
   */
  async sweep(): Promise<number> {
    const now = this.now();
    let changed = 0;
    for (const grant of await this.records.all()) {
      const event = timeEvent(grant, grantState(grant, now));
      if (!event) continue;
      const stamp: GrantState = event === 'grant-activated' ? 'active' : 'expired';
      let recorded = false;
      let updated: Grant;
      try {
        updated = await this.change(grant.id, (current) => {
          // Judged again under the lock: another process may have recorded it meanwhile.
          recorded = timeEvent(current, grantState(current, now)) === event;
          return recorded ? { ...current, timestamps: { ...current.timestamps, [stamp]: now } } : current;
        });
      } catch (err) {
        if (err instanceof GrantError && (err.code === 'grant-busy' || err.code === 'grant-not-found')) continue;
        throw err;
      }
      if (!recorded) continue;
      await this.records.publish(updated, event, now, undefined);
      changed++;
    }
    return changed;
  }

  private async change(id: string, change: (grant: Grant) => Grant): Promise<Grant> {
    const now = this.now();
    return this.records.update(id, () => new GrantError('grant-not-found', `no grant ${id}`), (current) => {
      const record = change(current);
      return { record, ttlMs: this.keepFor(record, now) };
    });
  }

  private mustApprove(actor: Actor): void {
    if (!this.isApprover(actor)) throw new GrantError('grant-approver-not-allowed', `${actor.principal.id} is not an approver`);
  }

  private mustBePending(grant: Grant, now: number, act: string): void {
    const state = grantState(grant, now);
    if (state === 'requested') return;
    if (isOver(state)) throw new GrantError('grant-already-over', `${grant.id} is ${state}: there is nothing to ${act}`);
    throw new GrantError('grant-not-pending', `${grant.id} is already approved`);
  }

  /** Kept until it is over, then for the retention period. */
  private keepFor(grant: Grant, now: number): number {
    return Math.max(grant.notAfter, grant.requestExpiresAt) - now + this.options.config.retention;
  }
}

/** The event time owes a grant in `state`, if it has not been recorded yet. */
function timeEvent(grant: Grant, state: GrantState): ChangeEvent | undefined {
  if (state === 'active' && grant.timestamps.active === undefined) return 'grant-activated';
  if (state === 'expired' && grant.timestamps.expired === undefined) return grant.status === 'approved' ? 'grant-expired' : 'grant-request-expired';
  return undefined;
}

/** The principal asked for it, or would be let in by it. */
function isOwn(grant: Grant, principal: Principal): boolean {
  if (grant.requester.id === principal.id) return true;
  const { subject } = grant;
  if ('user' in subject) return subject.user === principal.id;
  return principal.email !== undefined && principal.email.toLowerCase() === subject.email;
}

function hours(ms: number): string {
  return ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : `${Math.round(ms / 60_000)}m`;
}

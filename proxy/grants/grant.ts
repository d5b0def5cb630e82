/*
 * Access grants: a time-boxed, approved permission for one person to reach named routes
 * (a vendor's support engineer into the device console, say). The record keeps what was
 * asked, who asked, who approved, and when each step happened; the state a grant is in is
 * derived from that record and the clock, so a grant expires by itself, without anything
 * having to run at the moment its window closes.
 */

/** What is stored: time turns `approved` into active and then expired. */
export type GrantStatus = 'requested' | 'approved' | 'denied' | 'revoked';

/** What a grant is at a given moment. */
export type GrantState = 'requested' | 'approved' | 'denied' | 'active' | 'expired' | 'revoked';

export const GRANT_STATES: readonly GrantState[] = ['requested', 'approved', 'denied', 'active', 'expired', 'revoked'];

/** Who did something: a signed-in person, an API client (bearer token) or a certificate holder (mTLS). */
export interface Principal {
  kind: 'user' | 'client' | 'certificate';
  /** The user's `sub`, `client:<client_id>` or `cert:<subject>`. */
  id: string;
  email?: string;
  name?: string;
}

/** Whom a grant lets in: a user by their IdP subject, or anyone signed in with this email. */
export type GrantSubject = { user: string } | { email: string };

/** One route a grant opens, optionally narrowed to path prefixes and methods. */
export interface GrantRoute {
  /** The route's id. */
  id: string;
  paths?: string[];
  methods?: string[];
}

export interface Approval {
  by: Principal;
  at: number;
}

/** A closing act (denial or revocation): who, when, and why. */
export interface Closing {
  by: Principal;
  at: number;
  reason: string;
}

export interface Grant {
  id: string;
  subject: GrantSubject;
  routes: GrantRoute[];
  /** The window, epoch ms: open from notBefore until (not including) notAfter. */
  notBefore: number;
  notAfter: number;
  justification: string;
  /** The change or incident ticket it belongs to. */
  ticket: string | undefined;
  requester: Principal;
  approvalsRequired: number;
  approvals: Approval[];
  status: GrantStatus;
  createdAt: number;
  /** A request nobody decided on lapses at this time. */
  requestExpiresAt: number;
  denial: Closing | undefined;
  revocation: Closing | undefined;
  /**
   * When each state was reached, epoch ms. `activated` and `expired` are written when the
   * sweep observes them (for events and the record); the state itself never waits for that.
   */
  timestamps: Partial<Record<GrantState, number>>;
}

/** The grant's state at `now`. */
export function grantState(grant: Grant, now: number): GrantState {
  switch (grant.status) {
    case 'denied':
    case 'revoked':
      return grant.status;
    case 'requested':
      return now >= grant.requestExpiresAt || now >= grant.notAfter ? 'expired' : 'requested';
    case 'approved':
      return now >= grant.notAfter ? 'expired' : now >= grant.notBefore ? 'active' : 'approved';
  }
}

/** Over: nothing can happen to it any more (denied, revoked, expired). */
export function isOver(state: GrantState): boolean {
  return state === 'denied' || state === 'revoked' || state === 'expired';
}

/** The key a subject is looked up by: the same for a grant's subject and a signed-in identity. */
export function subjectKey(subject: GrantSubject): string {
  return 'user' in subject ? `user:${subject.user}` : `email:${subject.email.toLowerCase()}`;
}

export function describeSubject(subject: GrantSubject): string {
  return 'user' in subject ? subject.user : subject.email;
}

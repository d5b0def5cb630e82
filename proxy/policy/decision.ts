import type { Category, StepUpHint } from './criterion.js';

/*
 * What the decide stage answers, and why. The same reason codes reach the deny page, the
 * audit event, the access log and the metrics, so one code can be followed everywhere.
 */

export type Outcome = 'allow' | 'deny' | 'login' | 'step-up';

export interface Decision {
  readonly outcome: Outcome;
  /** Reason codes; the first is the main one (the metrics label). */
  readonly reasons: readonly string[];
  /** The rule that decided, e.g. "deny[0] embargoed-countries", "allow[1]", "devices: trusted". */
  readonly rule: string | undefined;
  /** When no allow rule matched: the one that came closest, whose failures are the reasons. */
  readonly closest: string | undefined;
  /** What was missing, in categories the deny page puts into plain words. */
  readonly missing: readonly Category[];
  /** For step-up: what the fresh sign-in must bring. */
  readonly stepUp: StepUpHint | undefined;
}

export const LOGIN_REQUIRED: Decision = Object.freeze({
  outcome: 'login',
  reasons: Object.freeze(['login-required']),
  rule: undefined,
  closest: undefined,
  missing: Object.freeze(['sign-in'] as Category[]),
  stepUp: undefined,
});

/** A policy that threw: refused, never allowed (deny by default). */
export const POLICY_ERROR: Decision = Object.freeze({
  outcome: 'deny',
  reasons: Object.freeze(['policy-error']),
  rule: undefined,
  closest: undefined,
  missing: Object.freeze([] as Category[]),
  stepUp: undefined,
});

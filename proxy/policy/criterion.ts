import type { z } from 'zod';
import type { AuthRequirement } from '../identity/strength.js';
import type { RequestContext } from './context.js';

/*
 * The contract every policy criterion module keeps (one file each under criteria/):
 * the schema of its config value, a compile step that turns the value into a closure
 * once at load, and the reason codes users see in deny pages, audit events and metrics.
 */

export type Predicate = (ctx: RequestContext) => boolean;

/** What a refusal tells the user was missing, in plain words (see pages/decision.ts). */
export type Category = 'sign-in' | 'identity' | 'authentication' | 'scope' | 'device' | 'network' | 'time' | 'request' | 'risk' | 'grant';

/** What a fresh sign-in at the IdP must bring for a failed criterion to pass (acr, amr, max age). */
export type StepUpHint = AuthRequirement;

export interface Criterion<V = unknown> {
  readonly name: string;
  /** Validates (and may transform) the value written in the config. */
  readonly schema: z.ZodType<V, unknown>;
  readonly category: Category;
  /** Reason code when this criterion let a request through. */
  readonly passReason: string;
  /** Reason code when this criterion stands between a request and access. */
  readonly failReason: string;
  /** Reads the signed-in identity: without one it fails, and the outcome is login. */
  readonly needsIdentity: boolean;
  compile(value: V): Predicate;
  /** For acr, amr and authAge: what a step-up would have to bring. */
  stepUp?(value: V): StepUpHint;
  /** A finer reason drawn from the context, e.g. why a posture assertion was refused. */
  detail?(ctx: RequestContext): string | undefined;
}

/** Lets each module declare its criterion with the value type inferred from its schema. */
export function defineCriterion<V>(criterion: Criterion<V>): Criterion<V> {
  return criterion;
}

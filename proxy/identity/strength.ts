import type { AuthStrength } from './identity.js';

/*
 * Whether a user authenticated strongly enough, and recently enough, for a route, and if
 * not, what to ask the IdP for. Pure: the caller decides between step-up and deny.
 */

export interface AuthRequirement {
  /** acr must be one of these. */
  acr?: readonly string[] | undefined;
  /** amr must include all of these. */
  amr?: readonly string[] | undefined;
  /** auth_time no older than this. */
  maxAgeMs?: number | undefined;
}

export type StrengthCheck =
  | { ok: true }
  | {
    ok: false;
    /** What is missing, for logs and the deny page: acr, amr, auth-age. */
    missing: Array<'acr' | 'amr' | 'auth-age'>;
    /** acr_values to send to the IdP. */
    acrValues: string[] | undefined;
    /** max_age to send to the IdP (0 forces a fresh authentication). */
    maxAgeSeconds: number | undefined;
  };

export function checkStrength(strength: AuthStrength, requirement: AuthRequirement, nowMs: number): StrengthCheck {
  const missing: Array<'acr' | 'amr' | 'auth-age'> = [];
  if (requirement.acr && (strength.acr === undefined || !requirement.acr.includes(strength.acr))) missing.push('acr');
  if (requirement.amr && !requirement.amr.every((method) => strength.amr.includes(method))) missing.push('amr');
  if (requirement.maxAgeMs !== undefined && (strength.authTime === undefined || nowMs - strength.authTime * 1000 > requirement.maxAgeMs)) {
    missing.push('auth-age');
  }
  if (missing.length === 0) return { ok: true };
  const maxAgeSeconds = requirement.maxAgeMs !== undefined ? Math.floor(requirement.maxAgeMs / 1000)
    // There is no standard way to ask for an amr; a fresh authentication lets the user
    // pick the stronger method, and the result is checked again on return.
    : missing.includes('amr') && !requirement.acr ? 0 : undefined;
  return { ok: false, missing, acrValues: requirement.acr ? [...requirement.acr] : undefined, maxAgeSeconds };
}

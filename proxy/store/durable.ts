/*
 * Which store keys must survive a restart. Losing one of these changes who may do what:
 * a grant or break-glass record that vanishes withdraws access nobody revoked, a lost
 * revocation (a deleted grant, an index set without it) brings access back, and the
 * directory of subjects is what an admin searches to revoke. Everything else in the
 * store (sessions, sign-in transactions, replay guards, refresh locks) is short-lived and
 * safe to lose: its owner signs in again, or the guard was only needed for seconds.
 */

/** Grants, their index sets, break-glass records, admin device overrides, subjects who signed in. */
export const DURABLE_PREFIXES: readonly string[] = ['grant:', 'grants:', 'break-glass:', 'device-override:', 'subject:'];

/** The default `durable` predicate of the file store. */
export function isDurableKey(key: string): boolean {
  return DURABLE_PREFIXES.some((prefix) => key.startsWith(prefix));
}

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

/**
 * Prefixes whose values GRANT access: an approved grant, an active break-glass use (their
 * index sets, such as `break-glass:all`, are repaired instead: DURABLE_INDEXES). When
 * the file store finds a damaged line in its journal it cannot tell which record that line
 * changed (its key may be the damaged part), so every value under these prefixes last
 * written before that line is removed: if the lost line was a revocation, serving the
 * record as it was before would restore access. Removing fails closed: a vendor asks
 * again, a break-glass use stops working and is started afresh.
 *
 * Other durable records are kept as last validly written, as removing them would not fail
 * closed: a device override is mostly a quarantine (removing it lets the device in), and a
 * subject is what an admin searches to revoke.
 */
export const ACCESS_PREFIXES: readonly string[] = ['grant:', 'break-glass:'];

/** Whether a value at `key` grants access (see ACCESS_PREFIXES). */
export function isAccessKey(key: string): boolean {
  return ACCESS_PREFIXES.some((prefix) => key.startsWith(prefix));
}

/** An index set and the values it lists: member `<id>` stands for the value at `<prefix><id>`. */
export interface DurableIndex {
  readonly key: string;
  readonly prefix: string;
}

/**
 * The index sets kept beside durable values (grants/records.ts, plugins/device/overrides.ts).
 * After a damaged journal line, the file store makes each list exactly the values that
 * survived: an unlisted grant or break-glass use escapes review and revocation, and an
 * unlisted quarantine drops out of the admin's list. `device-override:` is both the index
 * and the prefix: no device id is empty, so no device's value has the index's key.
 */
export const DURABLE_INDEXES: readonly DurableIndex[] = [
  { key: 'grants:all', prefix: 'grant:' },
  { key: 'break-glass:all', prefix: 'break-glass:' },
  { key: 'device-override:', prefix: 'device-override:' },
];

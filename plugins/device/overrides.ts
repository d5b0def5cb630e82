import { z } from 'zod';
import { WardgateError } from '../../proxy/errors.js';
import type { Logger } from '../../proxy/logger.js';
import type { Json, Store } from '../../proxy/store/store.js';

/*
 * Compliance overrides: an administrator's word on one device, in force until cleared,
 * without waiting for the MDM's next sync. The security team quarantines a laptop reported
 * stolen (compliant false: untrusted whatever the MDM still says), or clears one after
 * remediation (compliant true: see `compliantWith` for how long that holds).
 *
 * Keys in the store, all under `device-override:`, the prefix the file store keeps across
 * restarts (a quarantine that a restart lifted would be no quarantine):
 *   device-override:<device id>   the override (TTL: OVERRIDE_RETENTION_MS)
 *   device-override:              index set of the device ids; no device id is empty, so
 *                                 this key can be no device's own
 *
 * Writers publish every change on OVERRIDES, and every process's DeviceOverrides applies
 * it before the write resolves: the next request anywhere sees it. Each cache also rereads
 * the store now and then, so a message lost on the way cannot leave a stale allow behind.
 */

/** How long an override is kept after it was last set: long enough for any investigation. */
export const OVERRIDE_RETENTION_MS = 400 * 24 * 3_600_000;

/** The channel every change goes out on: `{ deviceId, override (null: cleared), by }`. */
export const OVERRIDES = 'wardgate:device-overrides';

const PREFIX = 'device-override:';
const INDEX = PREFIX;
const DEFAULT_RESYNC_EVERY_MS = 30_000;

/** An override as set: the administrator's word and who gave it, when and why. */
export interface OverrideRecord {
  readonly compliant: boolean;
  /** The administrator, as the admin API knows them. */
  readonly by: string;
  readonly reason: string;
  /** When it was set, epoch ms. */
  readonly at: number;
}

export interface DeviceOverride extends OverrideRecord {
  readonly deviceId: string;
}

/** An override that cannot be stored as given. */
export class DeviceOverrideInvalidError extends WardgateError {
  constructor(message: string) {
    super('device-override-invalid', message);
  }
}

const text = (what: string, max: number) => z.string({ error: `expected ${what}` })
  .max(max, { error: `expected ${what} of at most ${max} characters` })
  .refine((value) => value.trim() !== '', { error: `expected ${what}, got an empty string` });

const deviceIdSchema = text('a device id', 1_024);

const recordSchema = z.strictObject({
  compliant: z.boolean({ error: 'expected compliant: true or false' }),
  by: text('who sets the override', 256),
  reason: text('a reason', 2_000),
  at: z.number({ error: 'expected at: epoch milliseconds' }).int().nonnegative(),
});

const messageSchema = z.object({ deviceId: deviceIdSchema, override: recordSchema.nullable() });

function checked<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new DeviceOverrideInvalidError(`${what}: ${parsed.error.issues.map((issue) => issue.message).join('; ')}`);
  return parsed.data;
}

const keyOf = (deviceId: string): string => `${PREFIX}${deviceId}`;

/**
 * Sets (or replaces) the override of `deviceId`; in force in every process when this
 * resolves. Every change is published with `by`, who made it, for whoever listens.
 */
export async function setOverride(store: Store, deviceId: string, override: OverrideRecord): Promise<DeviceOverride> {
  const id = checked(deviceIdSchema, deviceId, 'device id');
  const record = checked(recordSchema, override, `override of ${id}`);
  await store.set(keyOf(id), record, OVERRIDE_RETENTION_MS);
  await store.addMember(INDEX, id, OVERRIDE_RETENTION_MS);
  await store.publish(OVERRIDES, { deviceId: id, override: record, by: record.by });
  return { deviceId: id, ...record };
}

/** Removes the override of `deviceId`: the MDM's word stands again everywhere when this resolves. True when there was one. */
export async function clearOverride(store: Store, deviceId: string, by: string): Promise<boolean> {
  const id = checked(deviceIdSchema, deviceId, 'device id');
  const existed = await store.delete(keyOf(id));
  await store.removeMember(INDEX, id);
  await store.publish(OVERRIDES, { deviceId: id, override: null, by });
  return existed;
}

/**
 * Every override in the store, by device id. An entry that does not read as an override
 * is left out, and reported to `onInvalid` when given.
 */
export async function listOverrides(store: Store, onInvalid?: (deviceId: string, error: Error) => void): Promise<DeviceOverride[]> {
  const ids = (await store.members(INDEX)).sort();
  const values = await Promise.all(ids.map((id) => store.get<Json>(keyOf(id))));
  const overrides: DeviceOverride[] = [];
  ids.forEach((deviceId, i) => {
    const value = values[i];
    // Expired: its index entry outlives it until the index itself expires or is written.
    if (value === undefined) return;
    const parsed = recordSchema.safeParse(value);
    if (parsed.success) overrides.push({ deviceId, ...parsed.data });
    else onInvalid?.(deviceId, new DeviceOverrideInvalidError(`stored override of ${deviceId} is not an override: ${parsed.error.issues[0]?.message ?? 'unreadable'}`));
  });
  return overrides;
}

/**
 * Whether a device counts as compliant, given what its MDM (inventory or posture assertion)
 * reported and observed when, and its override. A quarantine holds whatever the MDM says,
 * until cleared. A clearance stands in for the MDM only until the MDM has observed the
 * device again: a newer observation is the newer word, so a device that falls out of
 * compliance after it was cleared is not kept trusted by a stale override.
 */
export function compliantWith(reported: boolean, observedAt: number | undefined, override: OverrideRecord | undefined): boolean {
  if (!override) return reported;
  if (!override.compliant) return false;
  return observedAt === undefined || observedAt <= override.at ? true : reported;
}

export interface DeviceOverridesOptions {
  store: Store;
  logger: Logger;
  /** How often the whole set is read again from the store; default 30 s. */
  resyncEveryMs?: number;
}

/**
 * The overrides in force, for the request path: a map lookup. Load once at start
 * (`await load()`); from then on published changes apply as they come, and the store is
 * read again every `resyncEveryMs`.
 */
export class DeviceOverrides {
  #byId = new Map<string, DeviceOverride>();
  /** Changes heard while a load was reading the store; applied over what it read. */
  #heard: Map<string, DeviceOverride | null> | undefined;
  #loading: Promise<void> | undefined;
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #unsubscribe: () => void;
  readonly #timer: NodeJS.Timeout;

  constructor(options: DeviceOverridesOptions) {
    this.#store = options.store;
    this.#logger = options.logger;
    // Subscribed before the first load, so no change can fall between the read and the subscription.
    this.#unsubscribe = options.store.subscribe(OVERRIDES, (message) => this.#apply(message));
    this.#timer = setInterval(() => {
      this.load().catch((err: unknown) => this.#logger.warn({ err: (err as Error).message }, 'device overrides not reread; keeping the ones in force'));
    }, options.resyncEveryMs ?? DEFAULT_RESYNC_EVERY_MS);
    this.#timer.unref();
  }

  /** The override of `deviceId`, if any. */
  get(deviceId: string): DeviceOverride | undefined {
    return this.#byId.get(deviceId);
  }

  /** Reads every override from the store and puts them in force. Rejects when the store fails. */
  load(): Promise<void> {
    this.#loading ??= this.#loadOnce().finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  async #loadOnce(): Promise<void> {
    const heard = new Map<string, DeviceOverride | null>();
    this.#heard = heard;
    try {
      const loaded = await listOverrides(this.#store, (deviceId, err) => this.#logger.error({ deviceId, err: err.message }, 'device override ignored'));
      const byId = new Map(loaded.map((override) => [override.deviceId, override]));
      // A change published during the read may or may not be in it; the message is the newer word.
      for (const [deviceId, override] of heard) {
        if (override) byId.set(deviceId, override);
        else byId.delete(deviceId);
      }
      this.#byId = byId;
    } finally {
      this.#heard = undefined;
    }
  }

  #apply(message: Json): void {
    const parsed = messageSchema.safeParse(message);
    if (!parsed.success) {
      this.#logger.error({ issues: parsed.error.issues.map((issue) => issue.message) }, 'device override change ignored: not a change');
      return;
    }
    const { deviceId, override } = parsed.data;
    const change = override ? { deviceId, ...override } : null;
    if (change) this.#byId.set(deviceId, change);
    else this.#byId.delete(deviceId);
    this.#heard?.set(deviceId, change);
  }

  /** Stops listening and rereading; lookups keep answering from the overrides last in force. */
  close(): void {
    clearInterval(this.#timer);
    this.#unsubscribe();
  }
}

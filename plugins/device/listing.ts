import type { DeviceRecord, Inventory } from './inventory.js';
import { compliantWith, type DeviceOverride, type OverrideRecord } from './overrides.js';

/*
 * The devices an administrator can act on: the inventory's, each with its override, and
 * the devices known only from posture assertions that have an override (the MDM vouches
 * for those per request, so wardgate has no list of them). Needs no device provider, so
 * the admin API can list in the cluster primary with an inventory of its own.
 */

/** One device as the admin API shows it. Times are epoch milliseconds. */
export interface DeviceListing {
  id: string;
  /** Listed in the inventory; false for a device known only from posture assertions. */
  inInventory: boolean;
  /** The inventory's fields; undefined for a device not in it. */
  spki: string | undefined;
  san: string | undefined;
  managed: boolean | undefined;
  os: string | undefined;
  diskEncrypted: boolean | undefined;
  observedAt: number | undefined;
  /** What the inventory says of its compliance. */
  reportedCompliant: boolean | undefined;
  /**
   * Compliance in force, the override applied (overrides.ts: compliantWith). For a device
   * not in the inventory, the override's word; its posture assertions may still say otherwise
   * of a device cleared before the MDM last saw it.
   */
  compliant: boolean | undefined;
  override: OverrideRecord | undefined;
}

export interface ListDevicesOptions {
  inventory?: Inventory | undefined;
  overrides: readonly DeviceOverride[];
}

/** Inventory devices first, in file order, then the other overridden devices by id. */
export function listDevices({ inventory, overrides }: ListDevicesOptions): DeviceListing[] {
  const byId = new Map(overrides.map(({ deviceId, ...override }) => [deviceId, override]));
  const devices = inventory?.list() ?? [];
  const listed = new Set(devices.map((device) => device.id));
  const others = [...byId].filter(([id]) => !listed.has(id)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return [
    ...devices.map((device) => fromInventory(device, byId.get(device.id))),
    ...others.map(([id, override]) => overrideOnly(id, override)),
  ];
}

function fromInventory(device: DeviceRecord, override: OverrideRecord | undefined): DeviceListing {
  return {
    id: device.id,
    inInventory: true,
    spki: device.spki,
    san: device.san,
    managed: device.managed,
    os: device.os,
    diskEncrypted: device.diskEncrypted,
    observedAt: device.observedAt,
    reportedCompliant: device.compliant,
    compliant: compliantWith(device.compliant, device.observedAt, override),
    override,
  };
}

function overrideOnly(id: string, override: OverrideRecord): DeviceListing {
  return {
    id,
    inInventory: false,
    spki: undefined,
    san: undefined,
    managed: undefined,
    os: undefined,
    diskEncrypted: undefined,
    observedAt: undefined,
    reportedCompliant: undefined,
    compliant: override.compliant,
    override,
  };
}

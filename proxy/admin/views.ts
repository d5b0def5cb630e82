import type { DeviceListing } from '../../plugins/device/listing.js';
import type { DeviceOverride, OverrideRecord } from '../../plugins/device/overrides.js';
import { breakGlassState, type BreakGlass } from '../grants/break-glass.js';
import { grantState, type Closing, type Grant } from '../grants/grant.js';
import type { SessionSummary } from '../identity/session-admin.js';

/*
 * Records as the admin API shows them: every time in RFC 3339 (the stores keep epoch ms),
 * absent values as null so each field is always there, and grants and break-glass records
 * with the state they are in now, which is derived from the record and the clock and so
 * is not stored in them.
 */

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | undefined): string | null => (ms === undefined ? null : iso(ms));

function closing(value: Closing | undefined): object | null {
  return value ? { by: value.by, at: iso(value.at), reason: value.reason } : null;
}

export function grantView(grant: Grant, now: number): object {
  return {
    id: grant.id,
    state: grantState(grant, now),
    subject: grant.subject,
    routes: grant.routes,
    notBefore: iso(grant.notBefore),
    notAfter: iso(grant.notAfter),
    justification: grant.justification,
    ticket: grant.ticket ?? null,
    requester: grant.requester,
    approvalsRequired: grant.approvalsRequired,
    approvals: grant.approvals.map((approval) => ({ by: approval.by, at: iso(approval.at) })),
    status: grant.status,
    createdAt: iso(grant.createdAt),
    requestExpiresAt: iso(grant.requestExpiresAt),
    denial: closing(grant.denial),
    revocation: closing(grant.revocation),
    timestamps: Object.fromEntries(Object.entries(grant.timestamps).map(([state, at]) => [state, iso(at)])),
  };
}

export function breakGlassView(record: BreakGlass, now: number): object {
  return {
    id: record.id,
    state: breakGlassState(record, now),
    route: record.route,
    user: record.user,
    reason: record.reason,
    startedAt: iso(record.startedAt),
    endsAt: iso(record.endsAt),
    ended: record.ended ? { by: record.ended.by, at: iso(record.ended.at) } : null,
    reviewed: record.reviewed ? { by: record.reviewed.by, at: iso(record.reviewed.at), note: record.reviewed.note } : null,
  };
}

export function sessionView(session: SessionSummary): object {
  return {
    ref: session.ref,
    sub: session.sub,
    email: session.email ?? null,
    name: session.name ?? null,
    groups: session.groups,
    amr: session.amr,
    acr: session.acr ?? null,
    createdAt: iso(session.createdAt),
    expiresAt: iso(session.expiresAt),
    lastSeenAt: iso(session.lastSeenAt),
  };
}

function overrideView(override: OverrideRecord | undefined): object | null {
  return override ? { compliant: override.compliant, by: override.by, reason: override.reason, at: iso(override.at) } : null;
}

export function deviceOverrideView(override: DeviceOverride): object {
  return { deviceId: override.deviceId, ...overrideView(override) };
}

export function deviceView(device: DeviceListing): object {
  return {
    id: device.id,
    inInventory: device.inInventory,
    spki: device.spki ?? null,
    san: device.san ?? null,
    managed: device.managed ?? null,
    os: device.os ?? null,
    diskEncrypted: device.diskEncrypted ?? null,
    observedAt: isoOrNull(device.observedAt),
    reportedCompliant: device.reportedCompliant ?? null,
    compliant: device.compliant ?? null,
    override: overrideView(device.override),
  };
}

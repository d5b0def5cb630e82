import type { Exchange } from '../../proxy/exchange.js';
import type { Logger } from '../../proxy/logger.js';
import { UNKNOWN_DEVICE, type ContextProvider, type DeviceContext, type DeviceProblem, type PartialContext } from '../../proxy/policy/context.js';
import type { Store } from '../../proxy/store/store.js';
import { deviceCertificate, type DeviceCertificate } from './certificate.js';
import type { DevicesConfig } from './config.js';
import { Inventory, type DeviceRecord } from './inventory.js';
import { compliantWith, type DeviceOverrides } from './overrides.js';
import { PostureVerifier, type PostureClaims, type PostureOutcome } from './posture.js';

/*
 * The device context: which device is behind a request and whether it is trusted. Two
 * sources, either or both:
 *
 * - the TLS client certificate, when it chains to the device CA (listen.https.clientCa),
 *   looked up in the inventory by its SPKI pin or subjectAltName;
 * - a posture assertion in a request header, signed by the MDM/EDR (posture.ts).
 *
 * How they combine:
 * - Certificate only: the inventory entry supplies everything; its observedAt must be within
 *   maxObservedAge (see config.ts for entries without one).
 * - Assertion only: the assertion supplies everything (source posture).
 * - Both, same device id: source certificate (proof of key possession on this connection),
 *   state (managed, compliant, os, disk, observedAt) from the assertion, the newer word.
 * - Both, different ids: device-mismatch. Two SANs naming different inventory devices too.
 * - A certificate from the device CA that the inventory does not list: certificate-unknown
 *   (a revoked or foreign device), whatever an assertion says.
 * - An assertion that fails (forged, expired, replayed, malformed): the device is untrusted
 *   and the failure is the problem, even when the certificate alone would have been fine:
 *   the request carried a credential that did not hold up.
 * - A certificate with no inventory configured (posture only) marks `certificate` but
 *   identifies nothing.
 *
 * - An administrator's override (overrides.ts) then changes `compliant`: a quarantine makes
 *   the device non-compliant whatever its source says; a clearance makes it compliant
 *   until its source observes it again. Known, managed and fresh are still required.
 *
 * trusted = no refusal above && known && managed && compliant && fresh. problem, first that
 * applies: the assertion's failure, certificate-unknown, device-mismatch, device-unknown,
 * device-unmanaged, device-noncompliant, posture-stale.
 *
 * The answer is synchronous whenever nothing must be verified (no assertion, or one whose
 * verification and binding to this user are cached); a promise only for a signature check
 * or the replay guard's store round trip. A failing store rejects the promise
 * (StoreUnavailableError: the pipeline answers 503), it never reads as a bad device.
 */

export interface DeviceProviderOptions {
  config: DevicesConfig;
  store: Store;
  logger: Logger;
  /** Epoch ms; default Date.now. */
  now?: () => number;
  /** Reload the inventory when its file changes; default true. */
  watchInventory?: boolean;
  /** Default 200 ms. */
  inventoryDebounceMs?: number;
  /** Administrators' compliance overrides, loaded; whoever made them closes them. */
  overrides?: DeviceOverrides;
}

export type DeviceProvider = ContextProvider<'device'> & {
  /** Re-reads the inventory (SIGHUP); a bad file keeps the old one and is logged. */
  reload(): void;
  close(): Promise<void>;
  /** The inventory in force, when one is configured. */
  readonly inventory: Inventory | undefined;
};

/** What the certificate says: the listed device, or why it identifies none. */
interface CertificateFinding {
  record: DeviceRecord | undefined;
  refusal: 'certificate-unknown' | 'device-mismatch' | undefined;
}

export function createDeviceProvider(options: DeviceProviderOptions): DeviceProvider {
  const { config, store, logger, overrides } = options;
  const now = options.now ?? Date.now;
  const inventory = config.inventory
    ? new Inventory({
      file: config.inventory.file,
      initial: config.inventory.initial,
      logger: logger.child({ component: 'device-inventory' }),
      watch: options.watchInventory ?? true,
      ...(options.inventoryDebounceMs !== undefined ? { debounceMs: options.inventoryDebounceMs } : {}),
    })
    : undefined;
  const posture = config.posture;
  const verifier = posture
    ? new PostureVerifier({
      issuer: posture.issuer,
      audience: posture.audience,
      typ: posture.typ,
      keys: posture.keys.map((key) => key.jwk),
      algorithms: posture.algorithms,
      maxAgeMs: posture.maxAge,
      clockToleranceMs: posture.clockTolerance,
      store,
      logger,
      now,
    })
    : undefined;
  const matchBySan = config.certificates.match === 'san';

  const identify = (certificate: DeviceCertificate): CertificateFinding | undefined => {
    if (!inventory) return undefined;
    if (!matchBySan) {
      const record = inventory.bySpki(certificate.spki);
      return { record, refusal: record ? undefined : 'certificate-unknown' };
    }
    let found: DeviceRecord | undefined;
    for (const san of certificate.sans) {
      const record = inventory.bySan(san);
      if (!record) continue;
      if (found && found.id !== record.id) return { record: undefined, refusal: 'device-mismatch' };
      found = record;
    }
    return { record: found, refusal: found ? undefined : 'certificate-unknown' };
  };

  const recordFresh = (record: DeviceRecord, at: number): boolean => (record.observedAt === undefined
    ? !config.undatedStale
    : at - record.observedAt <= config.maxObservedAge);

  const postureFresh = (claims: PostureClaims, at: number): boolean => posture !== undefined
    && at - claims.observedAt <= posture.maxAge + posture.clockTolerance;

  const build = (certificate: DeviceCertificate | undefined, finding: CertificateFinding | undefined, outcome: PostureOutcome | undefined): DeviceContext => {
    const at = now();
    const device: DeviceContext = { ...UNKNOWN_DEVICE, certificate: certificate !== undefined, problem: undefined };
    let fresh = false;
    let refusal: DeviceProblem | undefined;
    const record = finding?.record;
    const take = (source: DeviceContext['source'], state: DeviceRecord | PostureClaims, id: string, isFresh: boolean): void => {
      device.source = source;
      device.id = id;
      device.known = true;
      device.managed = state.managed;
      device.compliant = state.compliant;
      device.observedAt = state.observedAt;
      device.os = state.os;
      device.diskEncrypted = state.diskEncrypted;
      fresh = isFresh;
    };
    if (record) take('certificate', record, record.id, recordFresh(record, at));
    if (outcome && !outcome.ok) {
      refusal = outcome.problem;
    } else if (outcome?.ok) {
      const claims = outcome.posture;
      if (record && record.id !== claims.deviceId) {
        refusal = 'device-mismatch';
      } else {
        take(record ? 'certificate' : 'posture', claims, claims.deviceId, postureFresh(claims, at));
      }
    }
    refusal ??= finding?.refusal;
    if (overrides && device.id !== undefined) device.compliant = compliantWith(device.compliant, device.observedAt, overrides.get(device.id));
    const problem: DeviceProblem | undefined = refusal
      ?? (!device.known ? 'device-unknown'
        : !device.managed ? 'device-unmanaged'
          : !device.compliant ? 'device-noncompliant'
            : !fresh ? 'posture-stale'
              : undefined);
    device.problem = problem;
    device.trusted = problem === undefined;
    return device;
  };

  return {
    name: 'device',
    inventory,
    provide(ex: Exchange, partial: PartialContext): DeviceContext | Promise<DeviceContext> {
      const certificate = deviceCertificate(ex.req.socket);
      const finding = certificate ? identify(certificate) : undefined;
      const header = posture && verifier ? ex.req.headers[posture.header] : undefined;
      if (header === undefined || !verifier) return build(certificate, finding, undefined);
      const token = Array.isArray(header) ? header.join(', ') : header;
      const outcome = verifier.check(token, partial.identity?.sub);
      if (outcome instanceof Promise) return outcome.then((settled) => build(certificate, finding, settled));
      return build(certificate, finding, outcome);
    },
    reload(): void {
      void inventory?.reload();
    },
    close(): Promise<void> {
      inventory?.close();
      return Promise.resolve();
    },
  };
}

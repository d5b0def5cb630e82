import t from 'tap';
import { X509Certificate, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import pino from 'pino';
import { spkiPin } from '../../plugins/device/certificate.js';
import { devicesSchema, type DevicesConfig } from '../../plugins/device/config.js';
import { Inventory } from '../../plugins/device/inventory.js';
import { listDevices } from '../../plugins/device/listing.js';
import {
  clearOverride,
  DeviceOverrideInvalidError,
  DeviceOverrides,
  listOverrides,
  OVERRIDE_RETENTION_MS,
  OVERRIDES,
  setOverride,
  type OverrideRecord,
} from '../../plugins/device/overrides.js';
import { createDeviceProvider, type DeviceProvider } from '../../plugins/device/provider.js';
import { beginExchange } from '../../proxy/exchange.js';
import type { DeviceContext, PartialContext } from '../../proxy/policy/context.js';
import { MemoryStore } from '../../proxy/store/memory.js';
import type { Json } from '../../proxy/store/store.js';
import { makePki } from '../helpers/pki.js';
import { until } from '../helpers/wait.js';

/*
 * Administrators' compliance overrides, against a real MemoryStore: how they are kept
 * (durably named, for 400 days), how every process's cache follows them (at once on
 * publish, and by rereading when a message was missed), and what they do to a device's
 * trust in the real device provider: a quarantine untrusts a device its MDM vouches for,
 * a clearance trusts one the MDM last saw non-compliant, until the MDM sees it again.
 */

const silent = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'wardgate-overrides-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const HOUR = 3_600_000;
let clock = Date.now();
const now = (): number => clock;

const QUARANTINE: OverrideRecord = { compliant: false, by: 'soc.frank', reason: 'reported stolen, ticket SEC-4411', at: clock };

/** A cache in its own "process": another DeviceOverrides on the same store, closed at the end. */
async function cacheOn(store: MemoryStore, resyncEveryMs?: number): Promise<DeviceOverrides> {
  const cache = new DeviceOverrides({ store, logger: silent, ...(resyncEveryMs !== undefined ? { resyncEveryMs } : {}) });
  t.teardown(() => cache.close());
  await cache.load();
  return cache;
}

function newStore(options: ConstructorParameters<typeof MemoryStore>[0] = {}): MemoryStore {
  const store = new MemoryStore(options);
  t.teardown(() => store.close());
  return store;
}

t.test('set, list and clear; every key under the durable prefix, kept for the retention period', async (t) => {
  let monotonic = 1;
  const written: string[] = [];
  // Records the keys the overrides write, to prove the file store's prefix covers them all.
  class WatchedStore extends MemoryStore {
    override set(key: string, value: Json, ttlMs: number): Promise<void> {
      written.push(key);
      return super.set(key, value, ttlMs);
    }
    override addMember(key: string, member: string, ttlMs: number): Promise<void> {
      written.push(key);
      return super.addMember(key, member, ttlMs);
    }
  }
  const store = new WatchedStore({ now: () => monotonic });
  t.teardown(() => store.close());

  t.same(await setOverride(store, 'LT-0017', QUARANTINE), { deviceId: 'LT-0017', ...QUARANTINE }, 'set answers with what is now in force');
  await setOverride(store, 'CART-3', { compliant: true, by: 'soc.frank', reason: 'remediated, reimaged', at: clock });
  t.same((await listOverrides(store)).map((override) => [override.deviceId, override.compliant]), [['CART-3', true], ['LT-0017', false]],
    'listed by device id');
  t.ok(written.length > 0 && written.every((key) => key.startsWith('device-override:')), `every key written is under device-override: (${[...new Set(written)].join(', ')})`);

  t.ok(await clearOverride(store, 'CART-3', 'soc.frank'), 'clearing an override that exists: true');
  t.notOk(await clearOverride(store, 'CART-3', 'soc.frank'), 'clearing it again: false');
  t.same((await listOverrides(store)).map((override) => override.deviceId), ['LT-0017'], 'only the quarantine is left');

  monotonic += OVERRIDE_RETENTION_MS - HOUR;
  t.equal((await listOverrides(store)).length, 1, 'an hour before the retention period ends it is still there');
  monotonic += 2 * HOUR;
  t.same(await listOverrides(store), [], 'after it, it is gone');
  t.equal(OVERRIDE_RETENTION_MS, 400 * 24 * HOUR, 'the retention period is 400 days');
});

t.test('an override that cannot be stored is refused with a stable code, and nothing is written', async (t) => {
  const store = newStore();
  const published: Json[] = [];
  t.teardown(store.subscribe(OVERRIDES, (message) => published.push(message)));
  const refuse = (deviceId: string, override: unknown, why: string): Promise<unknown> => t.rejects(
    setOverride(store, deviceId, override as OverrideRecord), { name: 'DeviceOverrideInvalidError', code: 'device-override-invalid' }, why);
  await refuse('', QUARANTINE, 'an empty device id (the index key is device-override: itself)');
  await refuse('LT-1', { ...QUARANTINE, reason: '  ' }, 'a blank reason');
  await refuse('LT-1', { ...QUARANTINE, by: '' }, 'nobody named');
  await refuse('LT-1', { ...QUARANTINE, compliant: 'no' }, 'compliant not a boolean');
  await refuse('LT-1', { ...QUARANTINE, at: '2025-03-01' }, 'at not epoch ms');
  await refuse('LT-1', { ...QUARANTINE, extra: 1 }, 'an unknown field');
  await t.rejects(clearOverride(store, '', 'soc.frank'), DeviceOverrideInvalidError, 'clearing the empty device id');
  t.same(await listOverrides(store), [], 'nothing stored');
  t.same(published, [], 'nothing published');
});

t.test('another process\'s cache has the change when setOverride resolves, and loses it when clearOverride does', async (t) => {
  const store = newStore();
  const here = await cacheOn(store);
  const there = await cacheOn(store);
  await setOverride(store, 'LT-0017', QUARANTINE);
  t.same(there.get('LT-0017'), { deviceId: 'LT-0017', ...QUARANTINE }, 'the other process has it, synchronously, once set resolves');
  t.same(here.get('LT-0017'), there.get('LT-0017'), 'this one too');
  const late = await cacheOn(store);
  t.same(late.get('LT-0017'), there.get('LT-0017'), 'a process that starts later loads it from the store');
  await clearOverride(store, 'LT-0017', 'soc.frank');
  t.equal(there.get('LT-0017'), undefined, 'cleared everywhere once clear resolves');
  t.equal(late.get('LT-0017'), undefined, 'in the later one too');
  there.close();
  await setOverride(store, 'LT-0017', QUARANTINE);
  t.equal(there.get('LT-0017'), undefined, 'a closed cache listens no more');
});

t.test('a change heard while a load reads the store is not undone by what the load read', async (t) => {
  let hold: Promise<void> | undefined;
  // Holds the load's read of a record until the test lets it go.
  class SlowStore extends MemoryStore {
    override async get<T extends Json>(key: string): Promise<T | undefined> {
      const value = await super.get<T>(key);
      if (hold && key.startsWith('device-override:')) await hold;
      return value;
    }
  }
  const store = new SlowStore();
  t.teardown(() => store.close());
  await setOverride(store, 'LT-0017', QUARANTINE);
  const cache = await cacheOn(store);
  let release: () => void = () => {};
  hold = new Promise<void>((resolve) => {
    release = resolve;
  });
  const loading = cache.load();
  // Let the load read the record (the quarantine) and stop at the hold.
  await new Promise((resolve) => setImmediate(resolve));
  await clearOverride(store, 'LT-0017', 'soc.frank');
  t.equal(cache.get('LT-0017'), undefined, 'the clearance applies at once');
  release();
  await loading;
  t.equal(cache.get('LT-0017'), undefined, 'and the load, which read the record before it was cleared, does not bring it back');
});

t.test('the cache rereads the store, so a change whose message was missed still takes effect', async (t) => {
  const store = newStore();
  const cache = await cacheOn(store, 20);
  // Written as a process would that wrote and then died before publishing.
  await store.set('device-override:LT-0017', { ...QUARANTINE }, OVERRIDE_RETENTION_MS);
  await store.addMember('device-override:', 'LT-0017', OVERRIDE_RETENTION_MS);
  t.equal(cache.get('LT-0017'), undefined, 'no message: not known yet');
  await until(() => cache.get('LT-0017') !== undefined, 2_000, 'the reread to find the quarantine');
  t.match(cache.get('LT-0017'), { compliant: false, by: 'soc.frank' }, 'the next reread put the unannounced quarantine in force');
  await store.delete('device-override:LT-0017');
  await until(() => cache.get('LT-0017') === undefined, 2_000, 'the reread to drop it');
  t.pass('and dropped one removed without a message');
});

t.test('what does not read as an override is left out and reported, and changes nothing in force', async (t) => {
  const store = newStore();
  await setOverride(store, 'LT-0017', QUARANTINE);
  await store.set('device-override:CART-3', { compliant: 'maybe' }, OVERRIDE_RETENTION_MS);
  await store.addMember('device-override:', 'CART-3', OVERRIDE_RETENTION_MS);
  const reported: string[] = [];
  const listed = await listOverrides(store, (deviceId, err) => reported.push(`${deviceId}: ${(err as DeviceOverrideInvalidError).code}`));
  t.same(listed.map((override) => override.deviceId), ['LT-0017'], 'the damaged record is left out, the good one kept');
  t.same(reported, ['CART-3: device-override-invalid'], 'and the damaged one reported');
  const cache = await cacheOn(store);
  await store.publish(OVERRIDES, { deviceId: 'LT-0017', override: { compliant: true } });
  await store.publish(OVERRIDES, 'not a change');
  t.match(cache.get('LT-0017'), { compliant: false }, 'malformed messages leave the quarantine in force');
});

// --- the provider ---

const pki = makePki('wardgate device CA');
const laptop = new X509Certificate(readFileSync(pki.issue('laptop-17.devices.hospital.example').cert));
const mdm = await generateKeyPair('ES256', { extractable: true });
writeFileSync(join(dir, 'mdm.pub.pem'), await exportSPKI(mdm.publicKey));
const ISSUER = 'https://mdm.hospital.example';

let inventories = 0;
function configWith(devices: object[] | undefined, posture: boolean): DevicesConfig {
  const input: Record<string, unknown> = posture ? { posture: { issuer: ISSUER, keys: ['mdm.pub.pem'] } } : {};
  if (devices) {
    const name = `inventory-${++inventories}.json`;
    writeFileSync(join(dir, name), JSON.stringify({ devices }));
    input.inventory = name;
  }
  return devicesSchema(dir).parse(input);
}

function providerWith(config: DevicesConfig, store: MemoryStore, overrides: DeviceOverrides): DeviceProvider {
  const provider = createDeviceProvider({ config, store, logger: silent, now, watchInventory: false, overrides });
  t.teardown(() => provider.close());
  return provider;
}

const partial: PartialContext = { identity: undefined, session: undefined, request: { method: 'GET', host: 'epic.example', path: '/' }, time: clock };

/** The device context of a request over a connection that presented `certificate` (as an authorized TLS socket does). */
function withCertificate(provider: DeviceProvider, certificate: X509Certificate): Promise<DeviceContext> {
  const socket = Object.assign(new Socket(), { encrypted: true, authorized: true, getPeerX509Certificate: () => certificate });
  return Promise.resolve(provider.provide(beginExchange({ headers: {}, socket } as unknown as IncomingMessage, undefined), partial));
}

/** The device context of a request carrying a posture assertion the MDM signed, observed `observedAgoMs` ago. */
async function withPosture(provider: DeviceProvider, claims: { compliant: boolean; observedAgoMs?: number }): Promise<DeviceContext> {
  const seconds = Math.floor(clock / 1000);
  const token = await new SignJWT({
    iss: ISSUER, aud: 'wardgate', sub: 'TAB-0042', jti: randomUUID(), iat: seconds, exp: seconds + 300,
    observed_at: Math.floor((clock - (claims.observedAgoMs ?? 60_000)) / 1000), managed: true, compliant: claims.compliant,
  }).setProtectedHeader({ alg: 'ES256', typ: 'device-posture+jwt' }).sign(mdm.privateKey);
  const exchange = beginExchange({ headers: { 'x-device-posture': token }, socket: new Socket() } as unknown as IncomingMessage, undefined);
  return provider.provide(exchange, partial);
}

const LAPTOP = { id: 'LT-0017', spki: spkiPin(laptop), managed: true, os: 'Windows 11 23H2' };

t.test('a quarantine untrusts a device its MDM vouches for, from inventory or posture, until it is cleared', async (t) => {
  const store = newStore();
  const overrides = await cacheOn(store);
  const provider = providerWith(configWith([{ ...LAPTOP, compliant: true }], true), store, overrides);
  t.match(await withCertificate(provider, laptop), { id: 'LT-0017', compliant: true, trusted: true }, 'the inventory laptop is trusted');
  t.match(await withPosture(provider, { compliant: true }), { id: 'TAB-0042', source: 'posture', trusted: true }, 'the posture tablet too');

  await setOverride(store, 'LT-0017', QUARANTINE);
  await setOverride(store, 'TAB-0042', { ...QUARANTINE, at: clock - HOUR });
  t.match(await withCertificate(provider, laptop), { id: 'LT-0017', known: true, compliant: false, trusted: false, problem: 'device-noncompliant' },
    'the laptop is non-compliant on its very next request');
  t.match(await withPosture(provider, { compliant: true }), { id: 'TAB-0042', compliant: false, trusted: false, problem: 'device-noncompliant' },
    'the tablet too, though its fresh assertion (newer than the quarantine) says compliant');

  await clearOverride(store, 'LT-0017', 'soc.frank');
  t.match(await withCertificate(provider, laptop), { trusted: true }, 'cleared: the inventory\'s word stands again');
});

t.test('a clearance trusts a device the MDM last saw non-compliant, until the MDM sees it again; it trusts nothing else', async (t) => {
  const store = newStore();
  const overrides = await cacheOn(store);
  const observed = new Date(clock - 2 * HOUR).toISOString();
  const provider = providerWith(configWith([
    { ...LAPTOP, compliant: false, observedAt: observed },
  ], true), store, overrides);
  t.match(await withCertificate(provider, laptop), { trusted: false, problem: 'device-noncompliant' }, 'the MDM\'s last sync says non-compliant');

  const clearance: OverrideRecord = { compliant: true, by: 'soc.frank', reason: 'remediated on site, MDM sync pending', at: clock - HOUR };
  await setOverride(store, 'LT-0017', clearance);
  t.match(await withCertificate(provider, laptop), { id: 'LT-0017', compliant: true, trusted: true, problem: undefined },
    'cleared an hour after the MDM last saw it: trusted');

  await setOverride(store, 'TAB-0042', { ...clearance, at: clock - 5 * 60_000 });
  t.match(await withPosture(provider, { compliant: false, observedAgoMs: 10 * 60_000 }), { source: 'posture', compliant: true, trusted: true },
    'a posture assertion observed before the clearance is overruled by it');
  t.match(await withPosture(provider, { compliant: false }), { compliant: false, problem: 'device-noncompliant' },
    'one observed after it is the newer word: a device that fell out of compliance again is not kept trusted');

  const unmanaged = providerWith(configWith([{ ...LAPTOP, managed: false, compliant: false, observedAt: observed }], false), store, overrides);
  t.match(await withCertificate(unmanaged, laptop), { compliant: true, trusted: false, problem: 'device-unmanaged' },
    'an unmanaged device is still untrusted: the override speaks to compliance only');
  const stale = providerWith(configWith([{ ...LAPTOP, compliant: false, observedAt: new Date(clock - 48 * HOUR).toISOString() }], false), store, overrides);
  t.match(await withCertificate(stale, laptop), { compliant: true, trusted: false, problem: 'posture-stale' }, 'and a stale one stays stale');
});

t.test('the admin list: inventory devices with their override, then devices known only from overrides', async (t) => {
  const store = newStore();
  const config = configWith([
    { ...LAPTOP, compliant: true, observedAt: new Date(clock - 2 * HOUR).toISOString() },
    { id: 'CART-3', san: 'cart-3.devices.hospital.example', managed: true, compliant: false },
  ], false);
  // As the admin API builds its own in the cluster primary: from config.devices.inventory alone.
  const inventory = new Inventory({ ...config.inventory!, logger: silent, watch: false });
  t.teardown(() => inventory.close());
  await setOverride(store, 'LT-0017', QUARANTINE);
  await setOverride(store, 'TAB-0042', { ...QUARANTINE, compliant: true });
  await setOverride(store, 'PH-0001', QUARANTINE);

  const list = listDevices({ inventory, overrides: await listOverrides(store) });
  t.same(list.map((device) => device.id), ['LT-0017', 'CART-3', 'PH-0001', 'TAB-0042'], 'inventory order, then the others by id');
  t.same(list[0], {
    id: 'LT-0017', inInventory: true, spki: LAPTOP.spki, san: undefined, managed: true, os: 'Windows 11 23H2', diskEncrypted: undefined,
    observedAt: clock - 2 * HOUR, reportedCompliant: true, compliant: false, override: QUARANTINE,
  }, 'the laptop: what the inventory says, the compliance in force, and the override apart');
  t.match(list[1], { id: 'CART-3', san: 'DNS:cart-3.devices.hospital.example', reportedCompliant: false, compliant: false, override: undefined },
    'a device without an override');
  t.match(list[3], { id: 'TAB-0042', inInventory: false, managed: undefined, reportedCompliant: undefined, compliant: true, override: { by: 'soc.frank' } },
    'a device known only from posture assertions, listed for its override');
  t.same(listDevices({ overrides: [] }), [], 'no inventory and no overrides: nothing');
  t.equal(listDevices({ overrides: await listOverrides(store) }).length, 3, 'no inventory (posture only): the overridden devices');
});

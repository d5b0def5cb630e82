import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { LineCounter, isMap, isNode, isScalar, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import type { Logger } from '../../proxy/logger.js';

/*
 * The device inventory: the hospital's list of its devices (an export from the MDM, or a
 * hand-kept list of kiosks and carts), YAML or JSON:
 *
 *   devices:
 *     - id: LT-0017
 *       spki: sha256/<base64 of the SHA-256 of the DER SubjectPublicKeyInfo>
 *       san: laptop-17.devices.hospital.example      # or URI:urn:uuid:..., spiffe://...
 *       managed: true
 *       compliant: true
 *       os: Windows 11 23H2
 *       diskEncrypted: true
 *       observedAt: 2025-03-01T08:00:00Z
 *
 * One parser serves the config load (a bad file refuses the config, naming the place inside
 * the inventory) and every reload (a bad file keeps the inventory in force and is logged).
 */

/** One device as the inventory lists it. */
export interface DeviceRecord {
  readonly id: string;
  /** `sha256/<base64>`: the hash of the certificate's DER SubjectPublicKeyInfo. */
  readonly spki: string | undefined;
  /** `DNS:<lower-case name>` or `URI:<uri>`, as certificate.ts reports a certificate's names. */
  readonly san: string | undefined;
  readonly managed: boolean;
  readonly compliant: boolean;
  readonly os: string | undefined;
  readonly diskEncrypted: boolean | undefined;
  /** When the MDM last saw the device, epoch ms. */
  readonly observedAt: number | undefined;
}

/** A parsed inventory, indexed three ways; never changed once built. */
export interface InventoryData {
  readonly devices: readonly DeviceRecord[];
  readonly byId: ReadonlyMap<string, DeviceRecord>;
  readonly bySpki: ReadonlyMap<string, DeviceRecord>;
  readonly bySan: ReadonlyMap<string, DeviceRecord>;
  /** SHA-256 of the text it was parsed from, so a reload of the same text changes nothing. */
  readonly digest: string;
}

export type InventoryParse = { ok: true; data: InventoryData } | { ok: false; errors: string[] };

/** The SPKI pin format (as in HPKP and `curl --pinnedpubkey`): 32 bytes are 44 base64 characters. */
export const SPKI_PIN = /^sha256\/[A-Za-z0-9+/]{43}=$/;

const SPKI_HINT = 'expected "sha256/" and the base64 SHA-256 of the certificate\'s DER SubjectPublicKeyInfo (openssl x509 -in device.crt -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)';

const DNS_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const URI_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * A SAN in the one form both sides compare: `DNS:` + the lower-cased name, or `URI:` + the
 * URI exactly as written. Accepts `DNS:x` / `URI:x` as openssl prints them, or a bare value:
 * with a scheme it is a URI, otherwise a DNS name. Undefined when it is neither.
 */
export function normalizeSan(text: string): string | undefined {
  let kind: 'DNS' | 'URI';
  let value: string;
  if (/^dns:/i.test(text)) {
    kind = 'DNS';
    value = text.slice(4);
  } else if (/^uri:/i.test(text) && URI_SCHEME.test(text.slice(4))) {
    kind = 'URI';
    value = text.slice(4);
  } else {
    kind = URI_SCHEME.test(text) ? 'URI' : 'DNS';
    value = text;
  }
  if (value === '' || value.length > 2048 || CONTROL.test(value) || /\s/.test(value)) return undefined;
  if (kind === 'DNS') {
    value = value.toLowerCase();
    return DNS_NAME.test(value) ? `DNS:${value}` : undefined;
  }
  return URI_SCHEME.test(value) && URL.canParse(value) ? `URI:${value}` : undefined;
}

const text = (what: string, max: number) => z.string({ error: `expected ${what}` })
  .min(1, { error: `expected ${what}, got an empty string` })
  .max(max, { error: `expected ${what} of at most ${max} characters` })
  .refine((value) => !CONTROL.test(value), { error: `expected ${what} without control characters` });

const flag = (name: string) => z.boolean({ error: `expected ${name}: true or false` });

const entrySchema = z.strictObject({
  id: text('a device id', 256),
  spki: z.string({ error: SPKI_HINT }).refine((value) => SPKI_PIN.test(value), {
    error: (issue) => `${SPKI_HINT}, got "${String(issue.input).slice(0, 80)}"`,
  }).optional(),
  san: z.string({ error: 'expected a DNS name or URI from the certificate\'s subjectAltName' }).transform((value, ctx) => {
    const san = normalizeSan(value);
    if (san === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a DNS name (laptop-17.devices.hospital.example) or a URI (urn:uuid:..., spiffe://...), optionally prefixed DNS: or URI:, got "${value.slice(0, 80)}"` });
      return z.NEVER;
    }
    return san;
  }).optional(),
  managed: flag('managed'),
  compliant: flag('compliant'),
  os: text('the operating system', 200).optional(),
  diskEncrypted: flag('diskEncrypted').optional(),
  observedAt: z.iso.datetime({
    offset: true,
    error: (issue) => `expected an ISO 8601 date-time with a time zone, such as 2025-03-01T08:00:00Z, got ${JSON.stringify(issue.input)?.slice(0, 80)}`,
  }).transform((value) => Date.parse(value)).optional(),
}).refine((entry) => entry.spki !== undefined || entry.san !== undefined, {
  error: 'expected spki or san (how the device\'s certificate is recognised)',
});

const inventorySchema = z.strictObject({
  devices: z.array(entrySchema, { error: 'expected a list of devices' }),
}, { error: (issue) => (issue.code === 'invalid_type' ? 'expected a mapping with a devices list' : undefined) }).superRefine((inventory, ctx) => {
  for (const field of ['id', 'spki', 'san'] as const) {
    const seen = new Map<string, number>();
    inventory.devices.forEach((device, index) => {
      const value = device[field];
      if (value === undefined) return;
      const earlier = seen.get(value);
      if (earlier !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['devices', index, field], message: `duplicate ${field} "${value}" (also devices[${earlier}])` });
      } else {
        seen.set(value, index);
      }
    });
  }
});

type Segment = string | number;

function formatPath(path: readonly Segment[]): string {
  let out = '';
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out ? `.${key}` : key;
  return out;
}

function locate(file: string, doc: Document, lines: LineCounter, path: readonly Segment[], atKey: boolean): string {
  if (atKey && path.length > 0) {
    const parent = doc.getIn(path.slice(0, -1), true);
    const pair = isMap(parent) ? parent.items.find((item) => isScalar(item.key) && item.key.value === path[path.length - 1]) : undefined;
    if (pair && isNode(pair.key) && pair.key.range) {
      const { line, col } = lines.linePos(pair.key.range[0]);
      return `${file}:${line}:${col}`;
    }
  }
  for (let depth = path.length; depth >= 0; depth--) {
    const node = doc.getIn(path.slice(0, depth), true);
    if (isNode(node) && node.range) {
      const { line, col } = lines.linePos(node.range[0]);
      return `${file}:${line}:${col}`;
    }
  }
  return file;
}

/** At most this many faults are listed; the rest are counted. */
const MAX_FAULTS = 20;

function capped(messages: string[]): string[] {
  if (messages.length <= MAX_FAULTS) return messages;
  return [...messages.slice(0, MAX_FAULTS), `... and ${messages.length - MAX_FAULTS} more faults`];
}

function index(devices: readonly DeviceRecord[], digest: string): InventoryData {
  const byId = new Map<string, DeviceRecord>();
  const bySpki = new Map<string, DeviceRecord>();
  const bySan = new Map<string, DeviceRecord>();
  for (const device of devices) {
    byId.set(device.id, device);
    if (device.spki !== undefined) bySpki.set(device.spki, device);
    if (device.san !== undefined) bySan.set(device.san, device);
  }
  return Object.freeze({ devices, byId, bySpki, bySan, digest });
}

function digestOf(source: string): string {
  return createHash('sha256').update(source).digest('base64');
}

/**
 * Parses inventory text (YAML, of which JSON is a subset). `file` names the inventory in
 * each fault: `file:line:col: devices[3].spki: expected ...`.
 */
export function parseInventory(source: string, file: string): InventoryParse {
  const lines = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: capped(doc.errors.map((e) => {
        const { line, col } = lines.linePos(e.pos[0]);
        return `${file}:${line}:${col}: ${e.message.split('\n')[0]}`;
      })),
    };
  }
  const parsed = inventorySchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const messages = parsed.error.issues.flatMap((issue) => {
      const path = issue.path as Segment[];
      if (issue.code === 'unrecognized_keys') {
        return issue.keys.map((key) => `${locate(file, doc, lines, [...path, key], true)}: ${formatPath([...path, key])}: unknown key "${key}"`);
      }
      return [`${locate(file, doc, lines, path, false)}: ${path.length > 0 ? `${formatPath(path)}: ` : ''}${issue.message}`];
    });
    return { ok: false, errors: capped(messages) };
  }
  const devices = parsed.data.devices.map((d): DeviceRecord => Object.freeze({
    id: d.id,
    spki: d.spki,
    san: d.san,
    managed: d.managed,
    compliant: d.compliant,
    os: d.os,
    diskEncrypted: d.diskEncrypted,
    observedAt: d.observedAt,
  }));
  return { ok: true, data: index(Object.freeze(devices), digestOf(source)) };
}

/** Reads and parses an inventory file synchronously: for the config load only. */
export function readInventorySync(file: string): InventoryParse {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, errors: [`cannot read device inventory ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`] };
  }
  return parseInventory(source, file);
}

export interface InventoryOptions {
  /** The inventory file, an absolute path. */
  file: string;
  /** The inventory as parsed at config load. */
  initial: InventoryData;
  logger: Logger;
  /** Reload when the file changes; default true. */
  watch?: boolean;
  /** Changes within this many ms are taken together (editors write in several steps); default 200. */
  debounceMs?: number;
}

/**
 * The inventory in force. Lookups are map reads; `reload()` (SIGHUP, or a change seen by
 * the watcher) reads the file without blocking and swaps in the new inventory in one
 * assignment, or keeps the old one and logs why the new one was refused.
 */
export class Inventory {
  readonly file: string;
  #data: InventoryData;
  readonly #logger: Logger;
  readonly #debounceMs: number;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<boolean> | undefined;
  #again = false;
  #closed = false;

  constructor(options: InventoryOptions) {
    this.file = options.file;
    this.#data = options.initial;
    this.#logger = options.logger;
    this.#debounceMs = options.debounceMs ?? 200;
    if (options.watch ?? true) this.#watch();
  }

  get size(): number {
    return this.#data.devices.length;
  }

  /** Every device in the inventory in force, in file order. */
  list(): readonly DeviceRecord[] {
    return this.#data.devices;
  }

  byId(id: string): DeviceRecord | undefined {
    return this.#data.byId.get(id);
  }

  bySpki(spki: string): DeviceRecord | undefined {
    return this.#data.bySpki.get(spki);
  }

  bySan(san: string): DeviceRecord | undefined {
    return this.#data.bySan.get(san);
  }

  /**
   * Reads the file again. Resolves true when the inventory in force is the file's content
   * (replaced, or unchanged), false when the file was refused and the old one kept. Never
   * rejects. Calls during a reload are folded into one more reload after it.
   */
  reload(): Promise<boolean> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    const run = (async (): Promise<boolean> => {
      let ok = await this.#reloadOnce();
      while (this.#again && !this.#closed) {
        this.#again = false;
        ok = await this.#reloadOnce();
      }
      return ok;
    })().finally(() => {
      this.#running = undefined;
    });
    this.#running = run;
    return run;
  }

  async #reloadOnce(): Promise<boolean> {
    let source: string;
    try {
      source = await readFile(this.file, 'utf8');
    } catch (err) {
      this.#refuse([`cannot read device inventory ${this.file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`]);
      return false;
    }
    // Events that change nothing (a touch, a sibling file, an unchanged rewrite) are no-ops.
    if (digestOf(source) === this.#data.digest) return true;
    const parsed = parseInventory(source, this.file);
    if (!parsed.ok) {
      this.#refuse(parsed.errors);
      return false;
    }
    this.#data = parsed.data;
    this.#logger.info({ file: this.file, devices: parsed.data.devices.length }, 'device inventory reloaded');
    return true;
  }

  #refuse(errors: string[]): void {
    this.#logger.error({ file: this.file, errors, devices: this.#data.devices.length },
      `device inventory not reloaded, keeping the previous one: ${errors[0] ?? 'unreadable'}`);
  }

  /**
   * Watches the directory rather than the file: editors and config management replace the
   * file (a new inode a file watch would lose), and Kubernetes swaps a symlinked directory.
   * Any event there schedules a reload; unchanged content is then a no-op.
   */
  #watch(): void {
    const name = basename(this.file);
    try {
      this.#watcher = watch(dirname(this.file), { persistent: false }, (_event, changed) => {
        if (changed !== null && changed !== name && !changed.startsWith('..')) return;
        this.#schedule();
      });
      this.#watcher.on('error', (err) => {
        this.#logger.error({ file: this.file, err }, 'device inventory watch failed; reload with SIGHUP');
        this.#watcher?.close();
        this.#watcher = undefined;
      });
    } catch (err) {
      this.#logger.error({ file: this.file, err }, 'cannot watch the device inventory; reload with SIGHUP');
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.reload();
    }, this.#debounceMs);
    this.#timer.unref();
  }

  /** Stops watching; lookups keep answering from the last inventory. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}

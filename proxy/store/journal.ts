import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, open, readFile, rename, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { WardgateError } from '../errors.js';
import { DURABLE_INDEXES, isAccessKey } from './durable.js';
import type { Json } from './store.js';

/*
 * The file store's journal: the format of its lines, how a file is read back and
 * recovered when damaged, and how it is rewritten whole. FileStore (file.ts) owns the
 * appends; this holds everything that only concerns the file.
 *
 * Each line is `{"v":1,<fields>,"sum":"<hex>"}`, where the sum is the first 16 hex digits
 * of the SHA-256 of the same line without it (`{"v":1,<fields>}`): it catches a line
 * that still parses after a bit flip, such as a changed expiry or grant id.
 *
 * Recovery (replay) applies every complete, valid line in order, then:
 *  - A last line without its newline is a write a crash cut short. It was never
 *    acknowledged, so it is dropped and the state before it stands.
 *  - A complete line that is damaged (or intact but does not fit the lines before it) was
 *    acknowledged and is lost. Nothing on it can be trusted, its key included: a flipped
 *    bit can make the revocation of grant:g_a read as one of grant:g_b, or make the key
 *    unreadable. So every value that grants access (ACCESS_PREFIXES in durable.ts: grants
 *    and break-glass records) last written before the last such line is removed, as the
 *    lost line may have revoked it (fail closed; RecoveryReport.removed). Values written
 *    validly after it stand. Other values (device overrides, subjects) keep their last
 *    valid value: removing a quarantine would fail open. Sets keep the members their
 *    valid lines give, and the index sets (DURABLE_INDEXES) are then made to list exactly
 *    the values that survived (RecoveryReport.repaired), so that no surviving grant,
 *    break-glass use or quarantine drops out of its list, and no removed one stays in it.
 *  - A file with content but not one valid line is refused: it is not a store file, or
 *    not one that can be trusted, and starting empty would discard it.
 * The file as found is copied aside before it is rewritten (keepDamaged), and the log line
 * lists every line dropped and everything removed or repaired: the evidence is kept.
 */

const VERSION = 1;
/** How every journal line begins: recognises a very first write that a crash cut short. */
const RECORD_START = `{"v":${VERSION},"op":"`;

export type FileStoreErrorCode =
  /** The file cannot be read, is not a regular file, or holds no store records at all. */
  | 'store-file-invalid'
  /** Another live process owns the file. */
  | 'store-file-locked'
  /** The directory, the file, the lock or the copy of a damaged file cannot be written. */
  | 'store-file-unwritable';

/** The store file cannot be used; the process must not start on it. */
export class FileStoreError extends WardgateError {
  readonly file: string;
  constructor(code: FileStoreErrorCode, file: string, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.file = file;
  }
}

export interface DroppedLine {
  /** 1-based line number in the file as it was found (and as kept in `damagedCopy`). */
  line: number;
  reason: string;
  /**
   * The key the line names, as far as it can still be read: evidence only. On a damaged
   * line the key may itself be what was damaged.
   */
  key?: string;
}

/** Members an index set gained or lost in recovery; ids, sorted. */
export interface IndexRepair {
  /** The index set, e.g. `grants:all`. */
  key: string;
  /** Values that survived but were not listed. */
  added: string[];
  /** Listed, but their value is gone (removed, deleted or expired). */
  removed: string[];
}

/** What open() found in the file. */
export interface RecoveryReport {
  /** Complete, valid records applied (expired ones included). */
  recovered: number;
  /** Lines that were not applied. */
  dropped: DroppedLine[];
  /**
   * Access records (ACCESS_PREFIXES: grants, break-glass records) removed, sorted, because
   * they were last written before a damaged line, which may have changed them: serving
   * them as they were could restore a revoked grant. Removing fails closed; the damaged
   * copy still holds what was there.
   */
  removed: string[];
  /** Index sets made to list exactly the surviving records after a damaged line. */
  repaired: IndexRepair[];
  /** Where the file was copied before it was rewritten; set when something was dropped. */
  damagedCopy?: string;
}

/**
 * A durable entry. `deadline` is on the store's monotonic clock; while the journal is
 * replayed it holds the wall-clock `exp` instead, and is rebased once replay is done.
 */
export type Entry = { kind: 'value'; text: string; deadline: number } | { kind: 'set'; members: Set<string>; deadline: number };

type JournalRecord =
  | { op: 'set'; key: string; value: Json; exp: number }
  | { op: 'del'; key: string }
  /** `new`: this member started the set (it was absent or expired), replacing whatever the key held. */
  | { op: 'sadd'; key: string; member: string; exp: number; new: boolean }
  | { op: 'srem'; key: string; member: string };

export function setLine(key: string, text: string, exp: number): string {
  return seal(`"op":"set","key":${JSON.stringify(key)},"value":${text},"exp":${exp}`);
}

export function delLine(key: string): string {
  return seal(`"op":"del","key":${JSON.stringify(key)}`);
}

export function saddLine(key: string, member: string, exp: number, fresh: boolean): string {
  return seal(`"op":"sadd","key":${JSON.stringify(key)},"member":${JSON.stringify(member)},"exp":${exp},"new":${fresh}`);
}

export function sremLine(key: string, member: string): string {
  return seal(`"op":"srem","key":${JSON.stringify(key)},"member":${JSON.stringify(member)}`);
}

function seal(fields: string): string {
  return `{"v":${VERSION},${fields},"sum":"${checksum(`{"v":${VERSION},${fields}}`)}"}\n`;
}

function checksum(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/**
 * `table` as journal lines, with expiry times as of `wall`; drops what has expired from
 * it. Synchronous, so it is one moment's state.
 */
export function snapshot(table: Map<string, Entry>, now: number, wall: number): { text: string; lines: number } {
  const parts: string[] = [];
  for (const [key, entry] of table) {
    if (now > entry.deadline) {
      table.delete(key);
      continue;
    }
    const exp = Math.round(wall + (entry.deadline - now));
    if (entry.kind === 'value') {
      parts.push(setLine(key, entry.text, exp));
    } else {
      let first = true;
      for (const member of entry.members) {
        parts.push(saddLine(key, member, exp, first));
        first = false;
      }
    }
  }
  return { text: parts.join(''), lines: parts.length };
}

// `s`: JSON text may hold U+2028/U+2029 unescaped, which `.` does not match otherwise.
const SEALED = /^(\{.*),"sum":"([0-9a-f]{16})"\}$/s;
const KEY_FIELD = /"key":("(?:[^"\\]|\\.)*")/;

/** A journal line (without its newline) as a record, or why it is not one. */
function decode(line: string): { record: JournalRecord } | { reason: string } {
  const sealed = SEALED.exec(line);
  if (sealed === null) return { reason: 'not a store record (no checksum)' };
  const body = `${sealed[1]}}`;
  if (checksum(body) !== sealed[2]) return { reason: 'checksum mismatch: the line changed after it was written' };
  // The body is `{...}`: if it parses, it is an object.
  let fields: Partial<Record<string, Json>>;
  try {
    fields = JSON.parse(body) as Partial<Record<string, Json>>;
  } catch {
    return { reason: 'not JSON, though its checksum matches' };
  }
  if (fields.v !== VERSION) return { reason: `journal version ${JSON.stringify(fields.v)}, expected ${VERSION}` };
  const { op, key, value, exp, member } = fields;
  if (typeof key !== 'string' || key === '') return { reason: 'no key' };
  const timed = typeof exp === 'number' && Number.isFinite(exp);
  switch (op) {
    case 'set':
      return value !== undefined && timed ? { record: { op, key, value, exp } } : { reason: 'set without a value or an expiry' };
    case 'del':
      return { record: { op, key } };
    case 'sadd':
      return typeof member === 'string' && timed && typeof fields.new === 'boolean' ? { record: { op, key, member, exp, new: fields.new } } : { reason: 'sadd without a member, an expiry or new' };
    case 'srem':
      return typeof member === 'string' ? { record: { op, key, member } } : { reason: 'srem without a member' };
    default:
      return { reason: `unknown op ${JSON.stringify(op)}` };
  }
}

/** The key a damaged line seems to name, for the report; never trusted. */
function keyOf(line: string): string | undefined {
  const match = KEY_FIELD.exec(line);
  if (match === null) return undefined;
  try {
    const key = JSON.parse(match[1]!) as unknown;
    return typeof key === 'string' && key !== '' ? key : undefined;
  } catch {
    return undefined;
  }
}

/** Applies `record`; returns why it does not fit the records before it (and changes nothing), if it does not. */
function apply(entries: Map<string, Entry>, record: JournalRecord): string | undefined {
  switch (record.op) {
    case 'set':
      entries.set(record.key, { kind: 'value', text: JSON.stringify(record.value), deadline: record.exp });
      return undefined;
    case 'del':
      entries.delete(record.key);
      return undefined;
    case 'sadd': {
      const entry = entries.get(record.key);
      if (record.new || entry === undefined) {
        entries.set(record.key, { kind: 'set', members: new Set([record.member]), deadline: record.exp });
        return undefined;
      }
      if (entry.kind !== 'set') return 'adds to a set, but the key holds a value';
      entry.members.add(record.member);
      entry.deadline = record.exp;
      return undefined;
    }
    case 'srem': {
      const entry = entries.get(record.key);
      if (entry === undefined) return undefined;
      if (entry.kind !== 'set') return 'removes from a set, but the key holds a value';
      entry.members.delete(record.member);
      if (entry.members.size === 0) entries.delete(record.key);
      return undefined;
    }
  }
}

export interface Replayed {
  /** Live as of `wall`; deadlines are wall-clock `exp` here. */
  entries: Map<string, Entry>;
  recovered: number;
  dropped: DroppedLine[];
  removed: string[];
  repaired: IndexRepair[];
  /** Why the file is refused, when it is. */
  refusal?: string;
}

/** Reads the journal `text` back as of the wall-clock time `wall`, recovering what it can (see the top of this file). */
export function replay(text: string, wall: number): Replayed {
  const entries = new Map<string, Entry>();
  const dropped: DroppedLine[] = [];
  /** The index of the line that last set or deleted each key. */
  const written = new Map<string, number>();
  /** The index of the last complete line that was not applied; -1: none. */
  let lastDamaged = -1;
  let recovered = 0;
  const lines = text.split('\n');
  // split() gives at least one piece: the text after the last newline, '' when it ends in one.
  const tail = lines.pop()!;
  lines.forEach((line, index) => {
    const drop = (reason: string, key: string | undefined): void => {
      dropped.push(key === undefined ? { line: index + 1, reason } : { line: index + 1, reason, key });
      lastDamaged = index;
    };
    const decoded = decode(line);
    if ('reason' in decoded) {
      drop(decoded.reason, keyOf(line));
      return;
    }
    const { record } = decoded;
    const conflict = apply(entries, record);
    if (conflict !== undefined) {
      drop(conflict, record.key);
      return;
    }
    recovered++;
    if (record.op === 'set' || record.op === 'del') written.set(record.key, index);
  });
  if (tail !== '') dropped.push({ line: lines.length + 1, reason: 'incomplete: the file ends inside this line (a write cut short, never acknowledged)' });

  for (const [key, entry] of entries) if (entry.deadline < wall) entries.delete(key);
  const removed: string[] = [];
  let repaired: IndexRepair[] = [];
  if (lastDamaged >= 0) {
    for (const [key, entry] of entries) {
      // Every value was set by a line, so `written` has it.
      if (entry.kind === 'value' && isAccessKey(key) && written.get(key)! < lastDamaged) {
        entries.delete(key);
        removed.push(key);
      }
    }
    removed.sort();
    repaired = repairIndexes(entries);
  }
  const replayed: Replayed = { entries, recovered, dropped, removed, repaired };
  // A store file always has whole records, except for a very first write cut short.
  const firstWriteCut = lines.length === 0 && (tail.startsWith(RECORD_START) || RECORD_START.startsWith(tail));
  if (recovered === 0 && dropped.length > 0 && !firstWriteCut) replayed.refusal = `line 1: ${dropped[0]!.reason}`;
  return replayed;
}

/**
 * Makes each index set in DURABLE_INDEXES list exactly the values under its prefix: a
 * damaged line may have been an addition or a removal of any member. An index key that
 * holds a value is no index and is left alone. Returns what changed.
 */
function repairIndexes(entries: Map<string, Entry>): IndexRepair[] {
  const repairs: IndexRepair[] = [];
  for (const { key, prefix } of DURABLE_INDEXES) {
    const index = entries.get(key);
    if (index !== undefined && index.kind !== 'set') continue;
    /** Deadlines of the values, by id. */
    const values = new Map<string, number>();
    for (const [valueKey, entry] of entries) {
      if (entry.kind === 'value' && valueKey !== key && valueKey.length > prefix.length && valueKey.startsWith(prefix)) values.set(valueKey.slice(prefix.length), entry.deadline);
    }
    const members = index?.members ?? new Set<string>();
    const added = [...values.keys()].filter((id) => !members.has(id)).sort();
    const removed = [...members].filter((id) => !values.has(id)).sort();
    if (added.length === 0 && removed.length === 0) continue;
    for (const id of removed) members.delete(id);
    // As in the store, an index set lives as long as the longest-lived of what it lists.
    let deadline = index?.deadline ?? -Infinity;
    for (const id of added) {
      members.add(id);
      deadline = Math.max(deadline, values.get(id)!);
    }
    if (members.size === 0) entries.delete(key);
    else entries.set(key, { kind: 'set', members, deadline });
    repairs.push({ key, added, removed });
  }
  return repairs;
}

/** The error log line's message for a file that needed recovery. */
export function damageMessage(path: string, recovery: RecoveryReport): string {
  const list = (keys: string[]): string => keys.map((key) => JSON.stringify(key)).join(', ');
  const lines = recovery.dropped.map((d) => `line ${d.line}${d.key === undefined ? '' : ` (key as read: ${JSON.stringify(d.key)})`}: ${d.reason}`).join('; ');
  const removed = recovery.removed.length === 0 ? '' : ` Removed ${list(recovery.removed)}: access records last written before a damaged line, which may have changed them (a lost revocation would make a revoked grant active again).`;
  const repairs = recovery.repaired.map(({ key, added, removed }) => {
    const changes = [added.length === 0 ? [] : [`listed ${list(added)}`], removed.length === 0 ? [] : [`unlisted ${list(removed)}`]].flat();
    return `${JSON.stringify(key)} ${changes.join(', ')}`;
  }).join('; ');
  const repaired = repairs === '' ? '' : ` Index sets made to list exactly the surviving records: ${repairs}.`;
  return `the store file ${path} was damaged: recovered ${recovery.recovered} records, dropped ${recovery.dropped.length} lines (${lines}).${removed}${repaired} The file as found is kept at ${recovery.damagedCopy}.`;
}

/** The journal's text; '' when there is none yet. */
export async function readJournal(path: string): Promise<string> {
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new FileStoreError('store-file-invalid', path, `${path} is not a regular file; store.path must name the store's journal file`);
    return await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof FileStoreError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw new FileStoreError('store-file-invalid', path, `cannot read the store file ${path}: ${describe(err)}`, { cause: err });
  }
}

/**
 * Replaces the journal at `path` with `text`: written to `<path>.tmp`, synced, renamed
 * over it, and the directory synced, so a crash leaves the old file or the new one, whole.
 * Returns the new file's handle, positioned at its end, for the appends that follow.
 */
export async function writeJournal(path: string, text: string): Promise<FileHandle> {
  const tmp = `${path}.tmp`;
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
    await rename(tmp, path);
    await syncDirectory(dirname(path));
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
  return handle;
}

/** Copies the damaged file aside before compaction rewrites it, so nothing is destroyed. */
export async function keepDamaged(path: string, wallClock: () => number): Promise<string> {
  const copy = `${path}.damaged-${new Date(wallClock()).toISOString()}`;
  try {
    await copyFile(path, copy, constants.COPYFILE_EXCL);
    const handle = await open(copy, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw new FileStoreError('store-file-unwritable', path, `the store file ${path} is damaged and cannot be copied to ${copy} before it is repaired: ${describe(err)}`, { cause: err });
  }
  return copy;
}

async function syncDirectory(dir: string): Promise<void> {
  // A rename is durable only once the directory that holds it is.
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

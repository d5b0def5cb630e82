import { randomBytes } from 'node:crypto';
import { link, readFile, rm, writeFile } from 'node:fs/promises';
import type { Logger } from '../logger.js';
import { describe, FileStoreError } from './journal.js';

/*
 * The lock on a store file: `<path>.lock`, holding `<pid> <identity>\n` of the process
 * that owns the file. The identity tells that process apart from a later one with the
 * same pid: on Linux `<boot id>@<start time>` from /proc, else a random id drawn once per
 * process. A lock is taken over (with a warning) when it is stale:
 *  - its pid is this process's own, and its identity is not: we do not hold it yet, and no
 *    other process has our pid, so an earlier process left it. This is the usual restart
 *    after a crash in a container, where node is PID 1 every time;
 *  - its process is gone (a crash, a SIGKILL);
 *  - its pid belongs to a process whose identity is not the lock's: the pid was reused.
 * Otherwise it refuses: a live owner, this same process (the file is open already), or a
 * live pid whose identity cannot be read (no /proc, or a lock written before identities,
 * `<pid>\n`): the message says how to check and clear it.
 *
 * This guards against a second wardgate on the same file and lets a restart after a crash
 * through. It does not guard against two starts racing (both may take over the same stale
 * lock), nor against processes in other pid namespaces sharing the file (two containers on
 * one volume): their pids mean nothing here, and the one with our pid looks like an
 * earlier life of ours. Give each wardgate a store file of its own.
 */

/** `<pid>` or `<pid> <identity>`, one line. */
const LOCK_CONTENT = /^([1-9]\d*)(?: (\S+))?\n$/;
const IDENTITY = Symbol.for('wardgate.store.file-lock.identity');

interface Holder {
  pid: number;
  identity: string | undefined;
}

/**
 * A process as the kernel knows it, `<boot id>@<start time>`: the boot and the clock tick
 * at which it started, which no later process with the same pid shares. undefined where
 * /proc does not tell (not Linux, /proc hidden, the process gone).
 */
export async function processIdentity(pid: number | 'self'): Promise<string | undefined> {
  try {
    const [boot, stat] = await Promise.all([readFile('/proc/sys/kernel/random/boot_id', 'utf8'), readFile(`/proc/${pid}/stat`, 'utf8')]);
    // Field 22 is the start time. Field 2, the command in parentheses, may hold spaces and
    // parentheses: count from the last ')', after which field 3 comes.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    const id = boot.trim();
    return /^[\w-]+$/.test(id) && start !== undefined && /^\d+$/.test(start) ? `${id}@${start}` : undefined;
  } catch {
    return undefined;
  }
}

/** This process's identity; on globalThis, so that every copy of this module agrees. */
function ownIdentity(): Promise<string> {
  const global = globalThis as { [IDENTITY]?: Promise<string> };
  global[IDENTITY] ??= processIdentity('self').then((id) => id ?? `random-${randomBytes(8).toString('hex')}`);
  return global[IDENTITY];
}

/** Takes `<path>.lock` for this process; returns its release. */
export async function takeLock(path: string, logger: Logger): Promise<() => Promise<void>> {
  const lock = `${path}.lock`;
  const identity = await ownIdentity();
  const mine = `${process.pid} ${identity}\n`;
  const draft = `${lock}.${process.pid}`;
  const unwritable = (err: unknown): FileStoreError => new FileStoreError('store-file-unwritable', path, `cannot create the lock ${lock}: ${describe(err)}`, { cause: err });
  try {
    await writeFile(draft, mine, { mode: 0o600 });
  } catch (err) {
    throw unwritable(err);
  }
  try {
    // link() creates the lock with its content in one step, or fails if it exists: no
    // other process can ever see the lock without its owner's pid.
    for (let attempt = 1; ; attempt++) {
      try {
        await link(draft, lock);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw unwritable(err);
        if (attempt === 3) throw new FileStoreError('store-file-locked', path, `${path} is locked by ${lock}, which keeps being taken by other processes`);
      }
      const holder = await lockHolder(path, lock);
      if (holder === undefined) continue;
      const stale = await staleness(path, lock, holder, identity);
      logger.warn({ file: path, lock, pid: holder.pid, identity: holder.identity }, `taking over the store lock: ${stale}`);
      await rm(lock, { force: true });
    }
  } finally {
    await rm(draft, { force: true });
  }
  return async () => {
    try {
      if ((await readFile(lock, 'utf8')) === mine) await rm(lock, { force: true });
    } catch (err) {
      logger.warn({ file: path, lock, err }, 'could not release the store lock');
    }
  };
}

/** Why the lock of `holder` is stale; throws store-file-locked when it is not. */
async function staleness(path: string, lock: string, holder: Holder, identity: string): Promise<string> {
  const { pid } = holder;
  if (pid === process.pid) {
    if (holder.identity === identity) throw new FileStoreError('store-file-locked', path, `${path} is in use by process ${pid}, this one (lock ${lock}): it is open already`);
    return `it holds this process's own pid ${pid}, so an earlier process left it (in a container, node is PID 1 at every start)`;
  }
  if (!isAlive(pid)) return `process ${pid} is gone`;
  // Only a kernel identity can be checked against what /proc says now.
  if (holder.identity?.includes('@')) {
    const current = await processIdentity(pid);
    if (current !== undefined && current !== holder.identity) return `process ${pid} is another process now (${current}, not the lock's ${holder.identity}): the pid was reused`;
  }
  throw new FileStoreError('store-file-locked', path, `${path} is in use by process ${pid} (lock ${lock}): only one wardgate may own a store file. If no wardgate runs as process ${pid}, remove ${lock}.`);
}

/** The holder named in the lock; undefined when the lock has just gone. */
async function lockHolder(path: string, lock: string): Promise<Holder | undefined> {
  let content: string;
  try {
    content = await readFile(lock, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FileStoreError('store-file-locked', path, `${path} is locked by ${lock}, which cannot be read: ${describe(err)}`, { cause: err });
  }
  const match = LOCK_CONTENT.exec(content);
  if (match === null) throw new FileStoreError('store-file-locked', path, `${path} is locked by ${lock}, which holds no process id; if no wardgate runs, remove it`);
  return { pid: Number(match[1]), identity: match[2] };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { FileStore } from '../../proxy/store/file.js';
import type { WriterOptions, WrittenGrant } from '../fixtures/file-store-writer.js';
import { within } from '../helpers/wait.js';

/*
 * No acknowledged write is lost when the process is killed mid-write. A child process
 * (test/fixtures/file-store-writer.ts, loaded through tap's TypeScript loader as in
 * store-ipc.test.ts) writes grants and revocations to a FileStore as fast as it can, with
 * compactions in between, printing each one once the store has acknowledged it. This
 * test SIGKILLs it at a random moment, reopens the file and checks that every printed
 * grant is there with its exact value and every printed revocation holds. Each round
 * reuses the file, so it also proves the earlier rounds' records survive the later kills
 * and the recoveries, and that the dead child's lock is taken over.
 *
 * SIGKILL leaves the kernel's page cache intact, so this proves the store acknowledges
 * only what it has written, and reads back whatever a kill leaves; the fdatasync before
 * the acknowledgement is what extends that to a power cut, which a test cannot stage.
 */

t.setTimeout(60_000);

const FIXTURE = resolve(import.meta.dirname, '../fixtures/file-store-writer.ts');
const ROUNDS = 3;

interface Killed {
  acked: Map<string, WrittenGrant>;
  /** Revocations started; those not in `deleted` were cut short by the kill. */
  revoking: Set<string>;
  deleted: Set<string>;
}

/** Runs the writer on `path` until it has acknowledged `killAfter` grants, then a few ms more; SIGKILLs it. */
async function writeUntilKilled(path: string, options: WriterOptions, killAfter: number): Promise<Killed> {
  const child = fork(FIXTURE, [path, JSON.stringify(options)], { execArgv: process.execArgv, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const acked = new Map<string, WrittenGrant>();
  const revoking = new Set<string>();
  const deleted = new Set<string>();
  let pending = '';
  let killing = false;
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    pending += chunk;
    // Only whole lines count: a line the kill cut short was not seen whole.
    for (let end = pending.indexOf('\n'); end >= 0; end = pending.indexOf('\n')) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      if (line.startsWith('ack ')) {
        const grant = JSON.parse(line.slice(4)) as WrittenGrant;
        acked.set(grant.id, grant);
      } else if (line.startsWith('revoking ')) {
        revoking.add(line.slice(9));
      } else if (line.startsWith('del ')) {
        deleted.add(line.slice(4));
      }
    }
    if (!killing && acked.size >= killAfter) {
      killing = true;
      setTimeout(() => child.kill('SIGKILL'), Math.random() * 5);
    }
  });
  // 'close', not 'exit': the lines still in the pipe have been read by then.
  const [code, signal] = await within(new Promise<[number | null, NodeJS.Signals | null]>((done) => child.once('close', (c, s) => done([c, s]))), 45_000, `the writer of ${options.run} to be killed`);
  if (signal !== 'SIGKILL') throw new Error(`the writer of ${options.run} exited by itself (code ${code}, signal ${signal})`);
  return { acked, revoking, deleted };
}

t.test('every acknowledged write survives SIGKILL, round after round', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wardgate-kill-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'store.jsonl');
  /** Every acknowledged grant of every round, less the acknowledged revocations. */
  const live = new Map<string, WrittenGrant>();
  const revoked = new Set<string>();

  for (let round = 1; round <= ROUNDS; round++) {
    const run = `r${round}`;
    const killAfter = 200 + Math.floor(Math.random() * 300);
    const { acked, revoking, deleted } = await writeUntilKilled(path, { run, concurrency: 8, compactEvery: 97 }, killAfter);
    for (const [id, grant] of acked) live.set(id, grant);
    for (const id of deleted) {
      live.delete(id);
      revoked.add(id);
    }
    // A revocation the kill interrupted may or may not have happened, wholly or in part:
    // either is right, so those grants are only checked for their value, if still there.
    const interrupted = [...revoking].filter((id) => !deleted.has(id));
    const undecided = new Map(interrupted.map((id) => [id, live.get(id)!]));
    for (const id of interrupted) live.delete(id);

    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push((JSON.parse(line) as { msg: string }).msg) });
    const store = await FileStore.open({ path, logger });
    const listed = new Set(await store.members('grants:all'));
    const lost: string[] = [];
    const wrong: string[] = [];
    for (const [id, grant] of live) {
      const found = await store.get(`grant:${id}`);
      if (found === undefined || !listed.has(id)) lost.push(id);
      else if (JSON.stringify(found) !== JSON.stringify(grant)) wrong.push(id);
    }
    for (const [id, grant] of undecided) {
      const found = await store.get(`grant:${id}`);
      if (found !== undefined && JSON.stringify(found) !== JSON.stringify(grant)) wrong.push(id);
    }
    let resurrected = 0;
    for (const id of revoked) if ((await store.get(`grant:${id}`)) !== undefined || listed.has(id)) resurrected++;
    const unacked = [...listed].filter((id) => id.startsWith(`${run}-`) && !acked.has(id)).length;
    const { dropped, removed, repaired } = store.recovery;
    await store.close();

    t.same(lost, [], `${run}: all ${live.size} acknowledged grants so far are there`);
    t.same(wrong, [], `${run}: each with its exact value`);
    t.equal(resurrected, 0, `${run}: all ${revoked.size} acknowledged revocations hold`);
    t.ok(dropped.length <= 1 && dropped.every((d) => /incomplete/.test(d.reason)), `${run}: at most a write cut short was dropped: ${JSON.stringify(dropped)}`);
    t.same(removed, [], `${run}: nothing had to be removed`);
    t.same(repaired, [], `${run}: nor any index repaired`);
    t.ok(warnings.some((msg) => /taking over the store lock/.test(msg)), `${run}: the dead writer's lock was taken over`);
    t.comment(`${run}: killed after ${acked.size} acks (${deleted.size} revocations, ${interrupted.length} cut short); ${unacked} unacknowledged grants had made it too; dropped ${dropped.length} line(s)`);
  }
});

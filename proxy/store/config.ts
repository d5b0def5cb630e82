import { resolve } from 'node:path';
import { z } from 'zod';
import { expected } from '../../config/messages.js';
import { DEFAULT_MAX_ENTRIES } from './memory.js';

/*
 * The `store:` section of the config.
 *
 *   store:
 *     type: file                          # or memory
 *     path: /var/lib/wardgate/store.jsonl # the file store's journal, relative to the config file
 *     maxEntries: 1000000                 # entries kept in memory; durable keys are not counted against it
 *
 * `type` is left undefined when the config does not say: which store fits depends on
 * other sections (grants and break-glass need one that survives a restart), so the
 * config schema settles it and hands openStore a StoreConfig.
 */

export const STORE_TYPES = ['memory', 'file'] as const;
export type StoreType = (typeof STORE_TYPES)[number];

/** Where the file store keeps its journal when the config does not say. */
export const DEFAULT_STORE_PATH = '/var/lib/wardgate/store.jsonl';

export function storeSchema(baseDir: string) {
  return z.strictObject({
    /** memory: in the process (shared by its workers over IPC), lost on restart. file: memory plus a journal of the durable keys. */
    type: z.enum(STORE_TYPES, { error: expected('memory or file') }).optional(),
    path: z.string({ error: expected('the path of the store file') }).min(1, { error: 'expected the path of the store file, got an empty string' }).optional(),
    maxEntries: z.number({ error: expected('a number of entries') }).int({ error: 'expected a whole number of entries' }).min(1_000, { error: 'expected at least 1000 entries' }).default(DEFAULT_MAX_ENTRIES),
  }, { error: (issue) => (issue.code === 'invalid_type' ? 'expected a mapping with type, path and/or maxEntries' : undefined) }).superRefine((store, ctx) => {
    // Someone who names a file expects records to be kept in it.
    if (store.type === 'memory' && store.path !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['path'], message: 'the memory store keeps nothing in a file: set type: file, or remove path' });
    }
  }).transform(({ path, ...rest }) => ({ ...rest, path: resolve(baseDir, path ?? DEFAULT_STORE_PATH) }));
}

/** The section as parsed: `type` is undefined where the config left it out. */
export type StoreSection = z.output<ReturnType<typeof storeSchema>>;

/** The section once the config schema has settled `type`: what openStore takes. */
export type StoreConfig = Omit<StoreSection, 'type'> & { type: StoreType };

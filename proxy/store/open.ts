import type { Logger } from '../logger.js';
import type { StoreConfig } from './config.js';
import { FileStore } from './file.js';
import { MemoryStore, type MemoryStoreOptions } from './memory.js';

/*
 * The store a process (or a cluster's primary) owns, as the config says. Both kinds are
 * MemoryStores, so either can be served to workers over IPC (serveStore).
 */

export async function openStore(config: StoreConfig, logger: Logger, options: Pick<MemoryStoreOptions, 'onHandlerError'> = {}): Promise<MemoryStore> {
  const memory: MemoryStoreOptions = { max: config.maxEntries, ...options };
  if (config.type === 'memory') return new MemoryStore(memory);
  const store = await FileStore.open({ ...memory, path: config.path, logger });
  const { recovered, dropped, removed, repaired, damagedCopy } = store.recovery;
  logger.info({ file: store.path, recovered, dropped: dropped.length, removed: removed.length, repaired: repaired.length, damagedCopy, entries: store.size }, 'store file opened');
  return store;
}

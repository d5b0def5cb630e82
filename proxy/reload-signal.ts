import type { Logger } from './logger.js';

/**
 * SIGHUP rereads the files wardgate watches anyway (the device inventory, the GeoIP
 * database), for operators who replace them and want them in force at once. The config
 * itself is not reloaded: a changed config means a restart, which refuses a bad one.
 */
export function onReloadSignal(logger: Logger, reload: () => void): () => void {
  const handler = (): void => {
    logger.info({ signal: 'SIGHUP' }, 'rereading the device inventory and GeoIP database');
    reload();
  };
  process.on('SIGHUP', handler);
  return () => process.off('SIGHUP', handler);
}

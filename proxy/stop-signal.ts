import type { Logger } from './logger.js';

/** Resolves on SIGTERM or SIGINT (logged), the cue to drain and stop. */
export function stopSignal(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      logger.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

import pino, { type Logger } from 'pino';

/*
 * One JSON logger per process. Writes are asynchronous (sonic-boom) so the hot path never
 * blocks on stdout; `flush` is called on shutdown so the last lines are not lost.
 */

export type { Logger };

export function createLogger(level: string): { logger: Logger; flush(): void } {
  const destination = pino.destination({ dest: 1, sync: false });
  const logger = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
  return {
    logger,
    flush() {
      try {
        destination.flushSync();
      } catch {
        // Nothing buffered, or stdout already closed: nothing left to save.
      }
    },
  };
}

import pino, { type Logger } from 'pino';

/*
 * One JSON logger per process. Writes are asynchronous and batched: sonic-boom holds lines
 * until 16 kB are buffered, and a timer flushes at least every 250 ms, so a busy proxy
 * issues one write per ~60 access lines instead of one per line (each write is a trip
 * through libuv's thread pool on the same cores that serve requests). `flush` is called
 * on shutdown so the last lines are not lost.
 */

export type { Logger };

// sonic-boom requires minLength below its 16 KiB maximum write.
const BUFFER_BYTES = 16_000;
const FLUSH_EVERY_MS = 250;

export function createLogger(level: string): { logger: Logger; flush(): void } {
  const destination = pino.destination({ dest: 1, sync: false, minLength: BUFFER_BYTES });
  const timer = setInterval(() => destination.flush(), FLUSH_EVERY_MS);
  timer.unref();
  // Epoch-millisecond `time` (pino's default): an ISO string cost as much as the rest of an
  // access line's serialization, and log shippers read both.
  const logger = pino({ level, base: { pid: process.pid } }, destination);
  return {
    logger,
    flush() {
      clearInterval(timer);
      try {
        destination.flushSync();
      } catch {
        // Nothing buffered, or stdout already closed: nothing left to save.
      }
    },
  };
}

import type { Server } from 'node:net';
import type { ListenAddress } from '../config/schema.js';
import { StartupError } from './errors.js';

/** Listens, or fails with an error that names the listener and address. */
export function listen(server: Server, address: ListenAddress, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new StartupError(`cannot listen on ${address.host}:${address.port} (${name} listener): ${err.code ?? err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(address.port, address.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Closes a server and every connection it still has, keep-alive ones included. */
export function closeNow(server: Server & { closeAllConnections?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
}

import { connect } from 'node:net';

/*
 * Raw HTTP/1.1 over TCP, for requests no well-behaved client library will send:
 * conflicting framing, absolute-form targets, encoded separators, CONNECT.
 */

export interface RawResponse {
  status: number;
  head: string;
  body: string;
  /** Everything received, in case a test needs more than the first response. */
  text: string;
}

/** Sends `request` verbatim; resolves when the server closes or `waitMs` passes. */
export function rawRequest(port: number, request: string | Buffer, waitMs = 2000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const head = split === -1 ? text : text.slice(0, split);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      resolve({ status, head, body: split === -1 ? '' : text.slice(split + 4), text });
    };
    const timer = setTimeout(done, waitMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', done);
    socket.on('close', done);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') done();
      else reject(err);
    });
    socket.write(request);
  });
}

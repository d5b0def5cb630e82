import { createHash, type X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/*
 * The device certificate of a TLS connection. The https listener asks for a client
 * certificate without requiring one (requestCert, rejectUnauthorized false), so a
 * certificate counts only when the TLS stack says it chains to the configured device CA
 * (`socket.authorized`); anything else a client sends is ignored. Worked out once per
 * connection and kept on the socket: every request on a kept-alive connection reuses it.
 */

export interface DeviceCertificate {
  /** `sha256/` + base64 of the SHA-256 of the DER SubjectPublicKeyInfo (the SPKI pin). */
  readonly spki: string;
  /** The DNS and URI subjectAltNames, as `DNS:<lower-case name>` and `URI:<uri>`. */
  readonly sans: readonly string[];
}

const DEVICE_CERTIFICATE = Symbol('wardgate.deviceCertificate');
type SocketWithDevice = Socket & { [DEVICE_CERTIFICATE]?: DeviceCertificate | null };

function isTlsSocket(socket: Socket): socket is TLSSocket {
  return (socket as Partial<TLSSocket>).encrypted === true && typeof (socket as Partial<TLSSocket>).getPeerX509Certificate === 'function';
}

/** The SPKI pin of a certificate: what the inventory's `spki` holds. */
export function spkiPin(certificate: X509Certificate): string {
  const der = certificate.publicKey.export({ type: 'spki', format: 'der' });
  return `sha256/${createHash('sha256').update(der).digest('base64')}`;
}

/**
 * The DNS and URI names of Node's `subjectAltName` text (`DNS:a, URI:b, IP Address:c`).
 * Node writes a value holding a comma, quote or other special character as a JSON string
 * (`URI:"urn:x,y"`), so a crafted name cannot smuggle in a second entry.
 */
export function parseSubjectAltName(text: string | undefined): string[] {
  const names: string[] = [];
  if (!text) return names;
  let at = 0;
  while (at < text.length) {
    const colon = text.indexOf(':', at);
    if (colon < 0) break;
    const type = text.slice(at, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      let end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      } catch {
        break;
      }
      next = end + 1;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      next = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, next);
    }
    if (type === 'DNS') names.push(`DNS:${value.toLowerCase()}`);
    else if (type === 'URI') names.push(`URI:${value}`);
    if (next < text.length && !text.startsWith(', ', next)) break;
    at = next + 2;
  }
  return names;
}

function compute(socket: Socket): DeviceCertificate | null {
  if (!isTlsSocket(socket) || !socket.authorized) return null;
  const certificate = socket.getPeerX509Certificate();
  if (!certificate) return null;
  return Object.freeze({ spki: spkiPin(certificate), sans: Object.freeze(parseSubjectAltName(certificate.subjectAltName)) });
}

/**
 * The authorized client certificate of `socket`, or undefined (plain HTTP, no certificate,
 * or one that does not chain to the device CA). Computed on the first request of a
 * connection; later requests get the same object.
 */
export function deviceCertificate(socket: Socket): DeviceCertificate | undefined {
  const held = socket as SocketWithDevice;
  let found = held[DEVICE_CERTIFICATE];
  if (found === undefined) {
    // Requests arrive only after the handshake, so `authorized` is final by now.
    found = compute(socket);
    held[DEVICE_CERTIFICATE] = found;
  }
  return found ?? undefined;
}

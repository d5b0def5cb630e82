import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/*
 * Throwaway certificates made with the real openssl, so TLS tests exercise real chains:
 * a CA, a server leaf with a DNS name, and a client leaf for mutual TLS. P-256 keeps
 * generation fast.
 */

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  /** Issues a leaf for `name` (DNS SAN and CN); returns the cert and key paths. */
  issue(name: string): { cert: string; key: string };
  read(path: string): Buffer;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export function makePki(caName = 'wardgate test CA'): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'wardgate-pki-'));
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.crt');
  openssl(['req', '-x509', ...EC, '-keyout', caKey, '-out', caCert, '-days', '1', '-subj', `/CN=${caName}`]);
  return {
    dir,
    caCert,
    caKey,
    issue(name) {
      const key = join(dir, `${name}.key`);
      const csr = join(dir, `${name}.csr`);
      const cert = join(dir, `${name}.crt`);
      const ext = join(dir, `${name}.ext`);
      writeFileSync(ext, `subjectAltName=DNS:${name}\n`);
      openssl(['req', '-new', ...EC, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
      openssl(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-days', '1', '-extfile', ext, '-out', cert]);
      return { cert, key };
    },
    read: (path) => readFileSync(path),
  };
}

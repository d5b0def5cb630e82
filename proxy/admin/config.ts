import { z } from 'zod';
import { isLoopbackHost, type ListenAddress } from '../../config/schema.js';
import { ASYMMETRIC_ALGORITHMS } from '../identity/bearer.js';
import { canonicalSubject } from './subject.js';

/*
 * The `admin:` section: where the admin listener is, whether it speaks TLS, and who may
 * call the admin API on it.
 *
 *   admin:
 *     listen: 127.0.0.1:9090
 *     tls: { cert: admin.crt, key: admin.key, clientCa: admin-clients-ca.crt }
 *     api:
 *       bearer: { audience: https://wardgate-admin.hospital.example, scope: wardgate:admin }
 *       certificates: { subjects: ["CN=soc-automation,O=Hospital"] }
 *
 * Without `api` the API answers 404 and the listener serves /metrics, /healthz and /readyz
 * only. Bearer tokens come from identity.issuer, for an audience of the admin API's own, so
 * a token minted for an upstream (a SMART app's) is never taken here. Client certificates
 * need tls.clientCa: the CA is what makes a subject mean anything.
 *
 * An API on plain HTTP is allowed on a loopback address only (as identity URLs are): bearer
 * tokens that cross a network in the clear can be replayed by anyone on the way, and an
 * admin token ends sessions and approves access to patient systems.
 */

export interface AdminSchemaPieces {
  address: z.ZodType<ListenAddress, string>;
  certificate: z.ZodType<Buffer, string>;
  privateKey: z.ZodType<Buffer, string>;
}

// RFC 6749 scope token.
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

const subject = z.string({ error: 'expected a certificate subject such as CN=soc-automation,O=Hospital' }).transform((text, ctx) => {
  const canonical = canonicalSubject(text);
  if (canonical === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected a certificate subject such as CN=soc-automation,O=Hospital (openssl x509 -noout -subject -nameopt RFC2253), got "${text}"` });
    return z.NEVER;
  }
  return canonical;
});

const bearer = z.strictObject({
  /** The audience (aud) admin tokens are issued for: the admin API's own, not an upstream's. */
  audience: z.string({ error: 'expected the audience admin tokens are issued for, such as https://wardgate-admin.hospital.example' }).min(1),
  /** The scope a token must carry to call the API at all. */
  scope: z.string({ error: 'expected an OAuth scope such as wardgate:admin' }).regex(SCOPE_TOKEN, { error: 'expected an OAuth scope token such as wardgate:admin' }).default('wardgate:admin'),
  algorithms: z.array(z.string().refine((alg) => ASYMMETRIC_ALGORITHMS.has(alg), {
    error: (issue) => `expected a public-key JWS algorithm (${[...ASYMMETRIC_ALGORITHMS].join(', ')}), got ${JSON.stringify(issue.input)}`,
  })).min(1).default(['RS256', 'PS256', 'ES256']),
});

const certificates = z.strictObject({
  /** Subjects of the client certificates (issued by tls.clientCa) that may call the API. */
  subjects: z.array(subject).min(1, { error: 'expected at least one certificate subject' }),
});

const api = z.strictObject({
  bearer: bearer.optional(),
  certificates: certificates.optional(),
}).refine((value) => value.bearer !== undefined || value.certificates !== undefined, {
  error: 'expected bearer, certificates or both: how else would a caller prove who they are?',
});

export function adminSchema({ address, certificate, privateKey }: AdminSchemaPieces) {
  const tls = z.strictObject({
    cert: certificate,
    key: privateKey,
    /** CA of the admin API's client certificates; they are asked for, never required (scrapes need none). */
    clientCa: certificate.optional(),
  });
  return z.strictObject({
    listen: address,
    tls: tls.optional(),
    api: api.optional(),
  }).superRefine((admin, ctx) => {
    if (admin.api?.certificates && !admin.tls?.clientCa) {
      ctx.addIssue({ code: 'custom', path: ['api', 'certificates'], message: 'client certificates need tls.clientCa (the CA that issues them) on the admin listener' });
    }
    const host = admin.listen.host;
    if (admin.api && !admin.tls && host !== '::1' && !isLoopbackHost(host)) {
      ctx.addIssue({ code: 'custom', path: ['api'], message: `an admin API on ${host} needs tls: admin tokens must not cross the network in plain HTTP (plain HTTP is allowed on 127.0.0.1 or ::1 only)` });
    }
  });
}

export type AdminConfig = z.output<ReturnType<typeof adminSchema>>;
export type AdminApiConfig = NonNullable<AdminConfig['api']>;

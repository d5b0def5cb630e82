import type { X509Certificate } from 'node:crypto';

/*
 * Client certificate subjects in one written form, so the subject an operator lists in
 * admin.api.certificates.subjects (and a `cert:` approver principal in grants) compares
 * equal to the subject of the certificate a caller presents. The form is RFC 4514's, as
 * `openssl x509 -noout -subject -nameopt RFC2253` prints it: most specific name first
 * (`CN=soc-automation,O=Hospital`), attribute types upper-cased, no spaces around the
 * separators, the parts of a multi-valued name sorted. Values compare exactly: the whole
 * subject, not the CN alone, names a caller, so a certificate for the same CN in another
 * organisational unit of the same CA is somebody else.
 */

/** Splits on `separator` where it is not escaped with a backslash. */
function splitUnescaped(text: string, separator: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (char === '\\' && i + 1 < text.length) {
      current += char + text[i + 1]!;
      i++;
    } else if (char === separator) {
      parts.push(current);
      current = '';
    } else {
      current += char;
    }
  }
  parts.push(current);
  return parts;
}

const ATTRIBUTE_TYPE = /^[A-Za-z][A-Za-z0-9-]*$/;

function canonicalRdn(rdn: string): string | undefined {
  const avas: string[] = [];
  for (const ava of splitUnescaped(rdn, '+')) {
    const cut = ava.indexOf('=');
    const type = cut > 0 ? ava.slice(0, cut).trim() : '';
    const value = ava.slice(cut + 1).trim();
    if (!ATTRIBUTE_TYPE.test(type) || value === '') return undefined;
    avas.push(`${type.toUpperCase()}=${value}`);
  }
  return avas.sort().join('+');
}

/** `CN=soc-automation, O=Hospital` in the canonical form; undefined when it is not a DN. */
export function canonicalSubject(text: string): string | undefined {
  if (text.trim() === '' || /[\u0000-\u001f\u007f]/.test(text)) return undefined;
  const rdns: string[] = [];
  for (const rdn of splitUnescaped(text, ',')) {
    const canonical = canonicalRdn(rdn);
    if (canonical === undefined) return undefined;
    rdns.push(canonical);
  }
  return rdns.join(',');
}

/**
 * A certificate's subject in the canonical form. Node prints it one name a line, least
 * specific first, values escaped as RFC 4514 escapes them, multi-valued names joined by
 * " + ": reversed and rejoined here.
 */
export function certificateSubject(certificate: X509Certificate): string | undefined {
  const lines = certificate.subject.split('\n').filter((line) => line !== '');
  if (lines.length === 0) return undefined;
  return canonicalSubject(lines.reverse().map((line) => line.split(' + ').join('+')).join(','));
}

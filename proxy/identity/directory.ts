import { verifiedEmail, type Identity } from './identity.js';
import type { Store } from '../store/store.js';
import type { GrantSubject } from '../grants/grant.js';

/*
 * The people wardgate has seen sign in, so that a grant made out to someone (by an
 * approver, through the admin API) names a real person rather than a typo that would
 * silently open nothing, or open the door to whoever later signs in under that name.
 * OIDC offers no way to ask the IdP whether a user exists; a sign-in is the proof.
 */

export interface SubjectEntry {
  sub: string;
  email: string | undefined;
  name: string | undefined;
  lastSignIn: number;
}

// Kept as long as an ended grant is: people who sign in rarely (vendors) stay known.
const KEEP_MS = 400 * 24 * 3_600_000;

/** Records a sign-in. Called when a session is made; bearer clients are not people. */
export async function recordSubject(store: Store, identity: Pick<Identity, 'sub' | 'email' | 'name' | 'claims'>, now: number): Promise<void> {
  const email = verifiedEmail(identity);
  const entry: SubjectEntry = { sub: identity.sub, email, name: identity.name, lastSignIn: now };
  await store.set(`subject:user:${identity.sub}`, { ...entry }, KEEP_MS);
  if (email) await store.set(`subject:email:${email.toLowerCase()}`, identity.sub, KEEP_MS);
}

/** True when the subject has signed in before, or is an email in a domain the config names. */
export async function isKnownSubject(store: Store, subject: GrantSubject, emailDomains: readonly string[]): Promise<boolean> {
  if ('user' in subject) return (await store.get(`subject:user:${subject.user}`)) !== undefined;
  const email = subject.email.toLowerCase();
  if (emailDomains.includes(email.slice(email.lastIndexOf('@') + 1))) return true;
  return (await store.get(`subject:email:${email}`)) !== undefined;
}

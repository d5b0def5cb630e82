import { escapeHtml, pageShell } from './html.js';

/*
 * The sign-out pages. Sign-out is a form POST with a CSRF token, never a plain link: an
 * image tag on another site must not be able to end a clinician's session mid-task.
 */

export function signOutPage(csrfToken: string): string {
  return pageShell('Sign out', '<p>This ends your wardgate session in every application you opened with it.</p>'
    + '<form method="post" action="/.wardgate/logout">'
    + `<input type="hidden" name="csrf" value="${escapeHtml(csrfToken)}">`
    + '<button type="submit">Sign out</button></form>');
}

export function signedOutPage(): string {
  return pageShell('Signed out', '<p>You are signed out. Close this window, or open an application again to sign in.</p>');
}

import { escapeHtml } from './html.js';

/*
 * The sign-out pages. Sign-out is a form POST with a CSRF token, never a plain link: an
 * image tag on another site must not be able to end a clinician's session mid-task.
 */

const STYLE = '<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}'
  + 'button{font:inherit;padding:.4rem 1rem}</style>';

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>`
    + `<meta name="viewport" content="width=device-width, initial-scale=1">${STYLE}</head><body>`
    + `<h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

export function signOutPage(csrfToken: string): string {
  return page('Sign out', '<p>This ends your wardgate session in every application you opened with it.</p>'
    + '<form method="post" action="/.wardgate/logout">'
    + `<input type="hidden" name="csrf" value="${escapeHtml(csrfToken)}">`
    + '<button type="submit">Sign out</button></form>');
}

export function signedOutPage(): string {
  return page('Signed out', '<p>You are signed out. Close this window, or open an application again to sign in.</p>');
}

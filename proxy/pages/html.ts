const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

const STYLE = 'body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}'
  + 'button{font:inherit;padding:.4rem 1rem}';

/**
 * A whole page of wardgate's own: `title` as its heading, then `body`, HTML the caller
 * built with every piece of text escaped. `style` adds rules for pages that need more.
 * No script: the pages work as plain forms, and their CSP forbids scripts anyway.
 */
export function pageShell(title: string, body: string, style = ''): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>`
    + `<meta name="viewport" content="width=device-width, initial-scale=1"><style>${STYLE}${style}</style></head><body>`
    + `<h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

import { STATUS_CODES, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { escapeHtml } from '../pages/html.js';

/*
 * HTML for the demo upstreams. Their pages display headers a client controls, so every
 * value interpolated into markup goes through the `html` tag, which escapes it; only
 * markup the tag itself produced is inserted as is.
 */

/** Markup already made safe by the `html` tag; a private constructor keeps raw strings out. */
export class Html {
  private constructor(readonly text: string) {}

  static tag(strings: TemplateStringsArray, ...values: readonly HtmlValue[]): Html {
    let text = '';
    strings.forEach((literal, i) => {
      text += literal;
      if (i < values.length) text += render(values[i]!);
    });
    return new Html(text);
  }
}

export type HtmlValue = string | number | Html | readonly Html[];

function render(value: HtmlValue): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map((item: Html) => item.text).join('');
  return escapeHtml(String(value));
}

/** Template tag: literal parts are markup, interpolated strings and numbers are escaped. */
export const html = Html.tag;

function layout(title: string, body: Html): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #1d2733; }
  h1 { font-size: 1.4rem; }
  .banner { background: #fff4d6; border: 1px solid #e6c36a; padding: .5rem .75rem; border-radius: 4px; }
  table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
  th, td { border: 1px solid #c9d2dc; padding: .35rem .6rem; text-align: left; vertical-align: top; }
  th { background: #eef2f6; }
  code, td.value { font-family: ui-monospace, monospace; word-break: break-all; }
  pre { white-space: pre-wrap; background: #f4f6f8; padding: .5rem .75rem; border-radius: 4px; }
</style>
</head>
<body>
<h1>${title}</h1>
<p class="banner">Demo stand-in behind wardgate. Every name, device and value here is fictional.</p>
${body}
</body>
</html>
`;
}

/** Sends a full page; HEAD requests get the headers only (node drops the body). */
export function sendPage(res: ServerResponse, status: number, title: string, body: Html, headers: OutgoingHttpHeaders = {}): void {
  const payload = Buffer.from(layout(title, body).text, 'utf8');
  res.writeHead(status, {
    ...headers,
    'content-type': 'text/html; charset=utf-8',
    'content-length': payload.length,
    // The pages show per-request headers; a cached copy would show someone else's.
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(payload);
}

/** A short error page (400, 404, 405, 500) for the HTML apps. */
export function sendStatusPage(res: ServerResponse, status: number, message: string, headers: OutgoingHttpHeaders = {}): void {
  sendPage(res, status, `${status} ${STATUS_CODES[status] ?? 'Error'}`, html`<p>${message}</p>`, headers);
}

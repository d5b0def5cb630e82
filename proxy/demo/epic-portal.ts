import type { IncomingMessage } from 'node:http';
import { html, type Html } from './page.js';
import { onePageApp } from './respond.js';

/*
 * Stand-in for an Epic web portal. Its home page shows the forwarding headers it received,
 * which is how a demo shows that wardgate, not the client, decides what they say.
 */

const SHOWN_HEADERS = ['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id'];

function headerRow(name: string, value: string | string[] | undefined): Html {
  const text = value === undefined ? '(not set)' : [value].flat().join(', ');
  return html`<tr><th>${name}</th><td class="value">${text}</td></tr>`;
}

function renderHome(req: IncomingMessage): Html {
  // Identity assertions wardgate adds are listed too, whatever their exact names.
  const wardgate = Object.keys(req.headers).filter((name) => name.startsWith('x-wardgate-')).sort();
  const rows = [...SHOWN_HEADERS, ...wardgate].map((name) => headerRow(name, req.headers[name]));
  return html`<p>Headers this upstream received with your request:</p>
<table>
<thead><tr><th>Header</th><th>Value</th></tr></thead>
<tbody>${rows}</tbody>
</table>
<p>The full request as received: <a href="/api/echo"><code>/api/echo</code></a></p>`;
}

export const handleEpicPortal = onePageApp('epic', 'Epic portal (demo stand-in)', renderHome);

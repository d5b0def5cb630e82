import { html, type Html } from './page.js';
import { onePageApp } from './respond.js';

/*
 * Stand-in for a medical device vendor's remote support console: the kind of app an
 * outside engineer reaches through wardgate, one app at a time, instead of over a VPN.
 */

interface Pump {
  serial: string;
  ward: string;
  firmware: string;
  battery: number;
  lastSeen: string;
  status: string;
}

// Fictional fleet; the model name and serials match no real product.
const FLEET: readonly Pump[] = [
  { serial: 'DEMO-IP-0001', ward: 'ICU 2', firmware: '4.2.1', battery: 96, lastSeen: '2 min ago', status: 'infusing' },
  { serial: 'DEMO-IP-0002', ward: 'ICU 2', firmware: '4.2.1', battery: 71, lastSeen: '1 min ago', status: 'idle' },
  { serial: 'DEMO-IP-0017', ward: 'Oncology 5', firmware: '4.1.9', battery: 38, lastSeen: '7 min ago', status: 'update pending' },
  { serial: 'DEMO-IP-0042', ward: 'Paediatrics 3', firmware: '4.2.1', battery: 12, lastSeen: '3 min ago', status: 'low battery' },
  { serial: 'DEMO-IP-0108', ward: 'Emergency', firmware: '4.0.3', battery: 0, lastSeen: '2 days ago', status: 'offline' },
];

function pumpRow(pump: Pump): Html {
  return html`<tr>
<td class="value">${pump.serial}</td><td>${pump.ward}</td><td>${pump.firmware}</td>
<td>${pump.battery}%</td><td>${pump.lastSeen}</td><td>${pump.status}</td>
</tr>`;
}

function renderHome(): Html {
  return html`<p>Fleet diagnostics: DemoFlow 3000 infusion pumps (fictional model).</p>
<table>
<thead><tr><th>Serial</th><th>Ward</th><th>Firmware</th><th>Battery</th><th>Last seen</th><th>Status</th></tr></thead>
<tbody>${FLEET.map(pumpRow)}</tbody>
</table>
<p>Request details as received: <a href="/api/echo"><code>/api/echo</code></a></p>`;
}

export const handleVendorConsole = onePageApp('vendor', 'Vendor support console (demo stand-in)', renderHome);

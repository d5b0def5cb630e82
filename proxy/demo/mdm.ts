import { createPrivateKey, createPublicKey, randomUUID, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SignJWT, type JWK } from 'jose';
import type { WardgateConfig } from '../../config/schema.js';
import { StartupError } from '../errors.js';
import { html, sendPage, sendStatusPage, type Html } from './page.js';
import { isReadMethod, requestTarget, sendEcho, type RequestHandler } from './respond.js';

/*
 * Stand-in for the hospital's MDM (device management): the demo's remediation route
 * (`devices: quarantine`), and the source of its device posture assertions.
 *
 * A real MDM agent on a managed laptop asks the MDM for a fresh assertion every few
 * minutes and adds it to each request it makes to wardgate. Browsers cannot add a header
 * by themselves, so this page hands the assertions to the person instead, with the curl
 * line that sends one; a header-adding browser extension does the same for a browser.
 *
 *   GET /                            the two demo devices, each with a fresh assertion
 *   GET /devices/<id>/posture        a fresh assertion alone (application/jwt), for scripts
 *   GET /api/echo                    what wardgate forwarded
 *
 * Assertions follow plugins/device/posture.ts: ES256, typ device-posture+jwt, iss and aud
 * from the config's devices.posture, sub the device id, a jti of their own, 15 minutes of
 * life, observed_at now. They are signed with the demo MDM's private key (config/
 * demo-mdm.key, committed and so no secret: demo only), whose public half the config
 * must list, which is checked at start rather than at the first refused request.
 */

export interface DemoDevice {
  id: string;
  description: string;
  managed: boolean;
  compliant: boolean;
  os: string;
  diskEncryption: boolean;
}

export const DEMO_DEVICES: readonly DemoDevice[] = Object.freeze([
  {
    id: 'ward-laptop-07',
    description: 'Hospital laptop issued to the cardiology ward: enrolled, patched, disk encrypted',
    managed: true,
    compliant: true,
    os: 'Windows 11 Enterprise 23H2',
    diskEncryption: true,
  },
  {
    id: 'home-pc-01',
    description: 'A personal home PC the MDM has seen but does not manage',
    managed: false,
    compliant: false,
    os: 'Windows 11 Home 22H2',
    diskEncryption: false,
  },
]);

/** How long an assertion lasts: the config's posture maxAge in the hospital example. */
export const ASSERTION_LIFETIME_S = 15 * 60;

/** The key file's default place: beside config/demo.yaml. */
export const DEMO_MDM_KEY_FILE = 'demo-mdm.key';

export interface DemoMdmOptions {
  config: WardgateConfig;
  /** The PEM (PKCS#8) private key the assertions are signed with. */
  keyFile: string;
  /** Epoch ms; default Date.now. */
  now?: () => number;
}

export interface DemoMdm {
  handleRequest: RequestHandler;
  /** A fresh assertion for `deviceId`; undefined for a device the MDM does not know. */
  assertion(deviceId: string): Promise<string | undefined>;
}

function readKey(keyFile: string): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(keyFile, 'utf8');
  } catch (err) {
    throw new StartupError(`demo upstream "mdm" cannot read its signing key ${keyFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new StartupError(`demo upstream "mdm": ${keyFile} holds no readable private key: ${(err as Error).message}`, { cause: err });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new StartupError(`demo upstream "mdm": ${keyFile} must hold an EC P-256 key (it signs ES256)`);
  }
  return key;
}

const samePublicKey = (a: JWK, b: JWK): boolean => a.kty === b.kty && a.crv === b.crv && a.x === b.x && a.y === b.y;

type Route = WardgateConfig['routes'][number];

/** The routes that demand a trusted device: the default, since the config has a devices: section. */
function trustedRoutes(config: WardgateConfig): Route[] {
  return config.routes.filter((route) => (route.policy.devices ?? 'trusted') === 'trusted');
}

/** A route's address on wardgate's listener, as a browser or curl reaches it. */
function routeUrl(config: WardgateConfig, route: Route): string {
  const http = config.listen.http;
  const [scheme, port] = http ? ['http', http.port] : ['https', config.listen.https?.address.port ?? 443];
  return `${scheme}://${route.host}:${port}${route.paths[0] ?? '/'}`;
}

const shellQuote = (text: string): string => `'${text.replace(/'/g, `'\\''`)}'`;

export function createDemoMdm(options: DemoMdmOptions): DemoMdm {
  const posture = options.config.devices?.posture;
  if (!posture) {
    throw new StartupError('demo upstream "mdm" needs devices.posture in the config: the issuer and keys its assertions are checked against');
  }
  const key = readKey(options.keyFile);
  const publicJwk = createPublicKey(key).export({ format: 'jwk' }) as JWK;
  if (!posture.keys.some((listed) => samePublicKey(listed.jwk, publicJwk))) {
    throw new StartupError(`demo upstream "mdm": the public half of ${options.keyFile} is not among devices.posture.keys, so wardgate would refuse every assertion it signs`);
  }
  if (!posture.algorithms.includes('ES256')) {
    throw new StartupError('demo upstream "mdm" signs ES256, which devices.posture.algorithms does not list');
  }
  const now = options.now ?? Date.now;
  const { header, issuer, audience, typ } = posture;
  const guarded = trustedRoutes(options.config);
  // The curl line's target: the Epic portal, as in the README, or another guarded route.
  const sample = guarded.find((route) => route.id === 'epic') ?? guarded[0] ?? options.config.routes[0]!;
  const target = routeUrl(options.config, sample);
  const guardedList = guarded.map((route) => html`<li><a href="${routeUrl(options.config, route)}">${route.host}</a></li>`);
  const devices = new Map(DEMO_DEVICES.map((device) => [device.id, device]));

  async function assertion(deviceId: string): Promise<string | undefined> {
    const device = devices.get(deviceId);
    if (!device) return undefined;
    const seconds = Math.floor(now() / 1000);
    return new SignJWT({
      managed: device.managed,
      compliant: device.compliant,
      observed_at: seconds,
      os: device.os,
      disk_encryption: device.diskEncryption,
    })
      .setProtectedHeader({ alg: 'ES256', typ })
      .setIssuer(issuer)
      .setAudience(audience)
      .setSubject(device.id)
      .setJti(randomUUID())
      .setIssuedAt(seconds)
      .setExpirationTime(seconds + ASSERTION_LIFETIME_S)
      .sign(key);
  }

  const curlLine = (token: string): string => `curl -i -H ${shellQuote(`${header}: ${token}`)} ${target}`;

  function deviceSection(device: DemoDevice, token: string): Html {
    const expires = new Date((Math.floor(now() / 1000) + ASSERTION_LIFETIME_S) * 1000).toISOString();
    const yesNo = (value: boolean): string => (value ? 'yes' : 'no');
    return html`<section class="device" id="${device.id}">
<h2>${device.id}</h2>
<p>${device.description}.</p>
<table>
<tbody>
<tr><th>Managed</th><td>${yesNo(device.managed)}</td></tr>
<tr><th>Compliant</th><td>${yesNo(device.compliant)}</td></tr>
<tr><th>Operating system</th><td>${device.os}</td></tr>
<tr><th>Disk encryption</th><td>${yesNo(device.diskEncryption)}</td></tr>
<tr><th>Assertion expires</th><td>${expires}</td></tr>
</tbody>
</table>
<p>Posture assertion (send it in the <code>${header}</code> header):</p>
<pre><code class="assertion">${token}</code></pre>
<p>With curl:</p>
<pre><code class="curl">${curlLine(token)}</code></pre>
</section>`;
  }

  async function home(res: ServerResponse): Promise<void> {
    const sections: Html[] = [];
    for (const device of DEMO_DEVICES) sections.push(deviceSection(device, (await assertion(device.id))!));
    sendPage(res, 200, 'Demo MDM (device management stand-in)', html`<p>These apps want a trusted device: known to the MDM,
managed, compliant, and observed in the last 15 minutes:</p>
<ul>${guardedList}</ul>
<p>The hospital's MDM agent sends a fresh posture assertion with every request. A browser cannot
add a header by itself: in the demo, send the assertion with curl, or with a header-adding
browser extension (header <code>${header}</code>, for *.localhost).</p>
<p>Each assertion lasts 15 minutes and is bound to the first signed-in user who presents it:
reload this page for a fresh one, for each user. Without a session, the curl line shows the
device check alone: a trusted device gets 401 (now sign in), the others 403.</p>
${sections}
<p>A fresh assertion alone, for scripts: <code>/devices/&lt;id&gt;/posture</code>. Request details as received: <a href="/api/echo"><code>/api/echo</code></a></p>`);
  }

  async function posturePath(res: ServerResponse, deviceId: string): Promise<void> {
    const token = await assertion(deviceId);
    if (token === undefined) {
      sendStatusPage(res, 404, `The MDM knows no device ${deviceId}.`);
      return;
    }
    const payload = Buffer.from(`${token}\n`, 'utf8');
    res.writeHead(200, {
      'content-type': 'application/jwt',
      'content-length': payload.length,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    res.end(payload);
  }

  function handleRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = requestTarget(req);
    if (url === undefined) {
      sendStatusPage(res, 400, 'The request target must be a path such as /.');
      return;
    }
    if (url.pathname === '/api/echo') {
      sendEcho(res, 'mdm', req);
      return;
    }
    const match = /^\/devices\/([^/]+)\/posture$/.exec(url.pathname);
    if (url.pathname !== '/' && !match) {
      sendStatusPage(res, 404, `Nothing here at ${url.pathname}.`);
      return;
    }
    if (!isReadMethod(req.method)) {
      sendStatusPage(res, 405, `${req.method ?? 'This method'} is not supported here.`, { allow: 'GET, HEAD' });
      return;
    }
    // Device ids are plain words: the id is compared as sent, never decoded.
    const done = match ? posturePath(res, match[1]!) : home(res);
    done.catch(() => {
      if (res.headersSent) res.destroy();
      else sendStatusPage(res, 500, 'The MDM could not sign an assertion.');
    });
  }

  return { handleRequest, assertion };
}

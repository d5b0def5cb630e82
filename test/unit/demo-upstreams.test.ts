import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request, type Dispatcher } from 'undici';
import { WebSocket } from 'ws';
import { loadConfig, parseConfig } from '../../config/loader.js';
import { PostureVerifier } from '../../plugins/device/posture.js';
import { createDemoMdm } from '../../proxy/demo/mdm.js';
import { startDemoUpstreams } from '../../proxy/demo/upstreams.js';
import { MemoryStore } from '../../proxy/store/memory.js';

const DEMO_CONFIG = fileURLToPath(new URL('../../config/demo.yaml', import.meta.url));
const DEMO_MDM_KEY = fileURLToPath(new URL('../../config/demo-mdm.key', import.meta.url));

/** A port nothing listens on right now: the OS picks it, then we give it back. */
async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function portIsFree(port: number): Promise<boolean> {
  const server = createServer();
  try {
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    return true;
  } catch {
    return false;
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

const ports = { epic: await freePort(), pacs: await freePort(), fhir: await freePort(), vendor: await freePort(), mdm: await freePort() };
process.env['WARDGATE_DEMO_EPIC_PORT'] = String(ports.epic);
process.env['WARDGATE_DEMO_PACS_PORT'] = String(ports.pacs);
process.env['WARDGATE_DEMO_FHIR_PORT'] = String(ports.fhir);
process.env['WARDGATE_DEMO_VENDOR_PORT'] = String(ports.vendor);
process.env['WARDGATE_DEMO_MDM_PORT'] = String(ports.mdm);
const config = loadConfig(DEMO_CONFIG);
const upstreams = await startDemoUpstreams(config);
const agent = new Agent();
t.teardown(async () => {
  await upstreams.close();
  await agent.close();
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

async function call(port: number, path: string, method: Dispatcher.HttpMethod = 'GET', headers: Record<string, string> = {}): Promise<Reply> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { dispatcher: agent, method, headers });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

function json(reply: Reply): Record<string, unknown> {
  const parsed: unknown = JSON.parse(reply.text);
  return parsed as Record<string, unknown>;
}

/** Sends raw bytes, for request targets no HTTP client will produce; returns the status code. */
async function rawStatus(port: number, head: string): Promise<number> {
  const socket = connect(port, '127.0.0.1');
  socket.end(head);
  let text = '';
  socket.setEncoding('utf8');
  for await (const chunk of socket) text += String(chunk);
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
}

t.test('demo.yaml loads, with every upstream port taken from the environment', async (t) => {
  t.same(config.routes.map((r) => [r.id, r.host, r.upstream.url.href]), [
    ['epic', 'epic.localhost', `http://127.0.0.1:${ports.epic}/`],
    ['pacs', 'pacs.localhost', `http://127.0.0.1:${ports.pacs}/`],
    ['fhir', 'fhir.localhost', `http://127.0.0.1:${ports.fhir}/`],
    ['vendor', 'vendor.localhost', `http://127.0.0.1:${ports.vendor}/`],
    ['mdm', 'mdm.localhost', `http://127.0.0.1:${ports.mdm}/`],
  ]);
  t.equal(config.routes.find((r) => r.id === 'pacs')?.websockets, true, 'pacs allows WebSockets');
  t.same(config.routes.find((r) => r.id === 'fhir')?.paths, ['/fhir'], 'fhir routes /fhir only');
  t.equal(config.workers, 1);
});

t.test('demo.yaml mirrors the hospital example: devices, networks and route policies', async (t) => {
  const route = (id: string) => config.routes.find((r) => r.id === id)!;
  t.same(config.routes.map((r) => [r.id, r.policy.devices]), [
    ['epic', undefined], ['pacs', undefined], ['fhir', 'any'], ['vendor', 'any'], ['mdm', 'quarantine'],
  ], 'Epic and PACS demand a trusted device (the default), FHIR and vendor take any, the MDM is the remediation route');
  t.equal(config.devices?.posture?.issuer, 'http://mdm.localhost:8080', 'posture assertions come from the demo MDM');
  t.equal(config.devices?.posture?.keys.length, 1, 'verified with the one demo MDM key');
  t.match(config.devices?.posture?.keys[0]?.file, /config\/demo-mdm\.pub$/, 'demo-mdm.pub, beside the config');
  t.same(config.network?.countries, { '127.0.0.0/8': 'GB', '192.0.2.0/24': 'IE', '198.51.100.0/24': 'GB', '203.0.113.0/24': 'US' });
  t.same(config.trustedProxies, ['127.0.0.1/32'], 'loopback may set X-Forwarded-For, in the demo only');
  for (const id of ['epic', 'pacs', 'fhir', 'mdm']) {
    t.equal(route(id).policy.deny[0]?.name, 'outside-uk-and-ireland', `${id} refuses clients outside the UK and Ireland`);
  }
  t.same(route('fhir').policy.deny.map((rule) => rule.name), ['outside-uk-and-ireland', 'cardiology-app-no-psychiatric-records'], 'fhir: the country rule and the cardiology app\'s psychiatric-records rule');
  t.same(route('fhir').policy.allow.map((rule) => rule.name), ['clinicians-read', 'smart-scopes'], 'fhir: clinicians in a browser, then SMART apps by scope');
  t.match(route('epic').policy.remediation, 'http://mdm.localhost:8080/', 'a device refusal at Epic points to the demo MDM');
  t.match(route('pacs').policy.remediation, 'Images are open to radiology.');
});

t.test('the epic page shows the forwarding headers it received, escaped', async (t) => {
  const reply = await call(ports.epic, '/', 'GET', {
    host: 'epic.localhost',
    'x-forwarded-for': '203.0.113.7',
    'x-forwarded-host': 'epic.localhost:8080',
    'x-request-id': '<script>alert(1)</script>',
    'x-wardgate-assertion': 'eyJ.demo.jwt',
  });
  t.equal(reply.status, 200);
  t.match(reply.headers['content-type'], /^text\/html; charset=utf-8/);
  t.match(reply.text, 'Epic portal (demo stand-in)');
  t.match(reply.text, /<th>x-forwarded-for<\/th><td class="value">203\.0\.113\.7<\/td>/);
  t.match(reply.text, /<th>host<\/th><td class="value">epic\.localhost<\/td>/);
  t.match(reply.text, /<th>x-forwarded-proto<\/th><td class="value">\(not set\)<\/td>/, 'absent headers are named as absent');
  t.match(reply.text, /<th>x-wardgate-assertion<\/th><td class="value">eyJ\.demo\.jwt<\/td>/, 'wardgate identity headers are listed');
  t.match(reply.text, '&lt;script&gt;alert(1)&lt;/script&gt;');
  t.notMatch(reply.text, '<script>alert', 'a header value never becomes markup');
});

t.test('epic /api/echo returns the method, target and headers it received', async (t) => {
  const reply = await call(ports.epic, '/api/echo?q=1', 'GET', { 'x-request-id': 'req-1' });
  t.equal(reply.status, 200);
  t.match(reply.headers['content-type'], /^application\/json/);
  t.match(json(reply), { app: 'epic', method: 'GET', url: '/api/echo?q=1', headers: { 'x-request-id': 'req-1' } });
  const posted = await call(ports.epic, '/api/echo', 'POST');
  t.match(json(posted), { app: 'epic', method: 'POST' }, 'any method is echoed, so a demo can show what was forwarded');
});

t.test('epic answers unknown paths with 404, other methods with 405, HEAD without a body', async (t) => {
  const missing = await call(ports.epic, '/nowhere');
  t.equal(missing.status, 404);
  t.match(missing.text, 'Nothing here at /nowhere.');
  const deleted = await call(ports.epic, '/', 'DELETE');
  t.equal(deleted.status, 405);
  t.equal(deleted.headers['allow'], 'GET, HEAD');
  const head = await call(ports.epic, '/', 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.text, '');
});

t.test('request targets that are not a path get 400, and the apps keep serving', async (t) => {
  t.equal(await rawStatus(ports.epic, 'GET http://other.example/ HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n'), 400);
  t.equal(await rawStatus(ports.vendor, 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), 400);
  t.equal(await rawStatus(ports.fhir, 'GET http://other.example/fhir/Patient HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), 400);
  t.equal(await rawStatus(ports.pacs, 'GET /\x01 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), 400, 'a target node cannot parse');
  t.equal(await rawStatus(ports.epic, 'GET //evil.example/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), 404, '//host is a path, not another origin');
  t.equal((await call(ports.epic, '/')).status, 200);
});

t.test('the vendor console lists its fictional pump fleet and echoes', async (t) => {
  const page = await call(ports.vendor, '/');
  t.equal(page.status, 200);
  t.match(page.text, 'Vendor support console (demo stand-in)');
  t.match(page.text, 'DEMO-IP-0001');
  t.match(page.text, 'infusion pumps');
  t.match(json(await call(ports.vendor, '/api/echo')), { app: 'vendor', method: 'GET' });
});

t.test('the pacs page opens a WebSocket to /ws on its own host', async (t) => {
  const page = await call(ports.pacs, '/');
  t.equal(page.status, 200);
  t.match(page.text, 'PACS viewer (demo stand-in)');
  t.match(page.text, "location.protocol === 'https:' ? 'wss:' : 'ws:'");
  t.match(page.text, "location.host + '/ws'");
  t.match(json(await call(ports.pacs, '/api/echo')), { app: 'pacs' });
});

/** Collects a socket's JSON messages from the moment it is created, so none is missed. */
function inbox(socket: WebSocket) {
  const messages: Record<string, unknown>[] = [];
  socket.on('message', (data: Buffer) => {
    const parsed: unknown = JSON.parse(data.toString());
    messages.push(parsed as Record<string, unknown>);
  });
  return (match: (message: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = messages.find(match);
        if (found === undefined) return;
        cleanup();
        resolve(found);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no matching message; received ${JSON.stringify(messages)}`));
      }, 5_000);
      const cleanup = (): void => {
        clearTimeout(timer);
        socket.off('message', check);
      };
      socket.on('message', check);
      check();
    });
}

t.test('pacs /ws streams study progress and echoes text messages', async (t) => {
  const socket = new WebSocket(`ws://127.0.0.1:${ports.pacs}/ws`);
  const waitFor = inbox(socket);
  t.teardown(() => socket.terminate());
  await once(socket, 'open');
  t.same(await waitFor((m) => m['progress'] === 0), { study: '1.2.840.113619.2.55.3', progress: 0 });
  socket.send('hello <viewer>');
  t.same(await waitFor((m) => 'echo' in m), { echo: 'hello <viewer>' });
  t.same(await waitFor((m) => m['progress'] === 10), { study: '1.2.840.113619.2.55.3', progress: 10 }, 'progress advances by 10 every 500 ms');
});

t.test('pacs closes a WebSocket that sends binary data with 1003', async (t) => {
  const socket = new WebSocket(`ws://127.0.0.1:${ports.pacs}/ws`);
  await once(socket, 'open');
  socket.send(Buffer.from([1, 2, 3]));
  const [code] = (await once(socket, 'close')) as [number, Buffer];
  t.equal(code, 1003);
});

t.test('pacs destroys upgrades to any path but /ws', async (t) => {
  const socket = new WebSocket(`ws://127.0.0.1:${ports.pacs}/other`);
  const [error] = (await once(socket, 'error')) as [Error];
  t.match(error.message, /socket hang up/);
});

const FHIR_JSON = /^application\/fhir\+json; charset=utf-8$/;

t.test('fhir serves a CapabilityStatement at /fhir/metadata', async (t) => {
  const reply = await call(ports.fhir, '/fhir/metadata');
  t.equal(reply.status, 200);
  t.match(reply.headers['content-type'], FHIR_JSON);
  t.match(json(reply), { resourceType: 'CapabilityStatement', fhirVersion: '4.0.1', rest: [{ mode: 'server' }] });
  const head = await call(ports.fhir, '/fhir/metadata', 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.text, '');
});

t.test('fhir searches return searchset Bundles with absolute URLs from X-Forwarded-*', async (t) => {
  const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'fhir.localhost:8443' };
  const patients = json(await call(ports.fhir, '/fhir/Patient', 'GET', forwarded));
  t.match(patients, { resourceType: 'Bundle', type: 'searchset', total: 3, link: [{ relation: 'self', url: 'https://fhir.localhost:8443/fhir/Patient' }] });
  t.match(patients['entry'], [{ fullUrl: 'https://fhir.localhost:8443/fhir/Patient/demo-1001', resource: { resourceType: 'Patient', id: 'demo-1001' } }]);

  const observations = json(await call(ports.fhir, '/fhir/Observation?patient=demo-1001'));
  t.equal(observations['total'], 2);
  t.match(observations['link'], [{ url: `http://127.0.0.1:${ports.fhir}/fhir/Observation?patient=demo-1001` }], 'without X-Forwarded-Host, Host is the origin');
  t.match(observations['entry'], [
    { resource: { resourceType: 'Observation', subject: { reference: 'Patient/demo-1001' } } },
    { resource: { resourceType: 'Observation', subject: { reference: 'Patient/demo-1001' } } },
  ]);
  t.equal(json(await call(ports.fhir, '/fhir/Observation?patient=Patient/demo-1001'))['total'], 2, 'a reference names the patient too');
  t.equal(json(await call(ports.fhir, '/fhir/Observation'))['total'], 4, 'no patient: every observation');

  const meds = json(await call(ports.fhir, '/fhir/MedicationRequest?patient=demo-1002'));
  t.match(meds, { resourceType: 'Bundle', total: 1, entry: [{ resource: { resourceType: 'MedicationRequest', subject: { reference: 'Patient/demo-1002' } } }] });
  t.equal(json(await call(ports.fhir, '/fhir/Patient?patient=demo-1003'))['total'], 1);

  const odd = json(await call(ports.fhir, '/fhir/Patient', 'GET', { 'x-forwarded-host': 'evil"<x>' }));
  t.match(odd['link'], [{ url: 'http://localhost/fhir/Patient' }], 'a malformed host is not copied into URLs');
});

t.test('fhir holds a psychiatric note and a PHQ-9 screening for demo-1001, labelled as such', async (t) => {
  const metadata = json(await call(ports.fhir, '/fhir/metadata'));
  const rest = (metadata['rest'] as Array<{ resource: Array<{ type: string }> }>)[0]!;
  t.same(rest.resource.map((r) => r.type), ['Patient', 'Observation', 'MedicationRequest', 'DocumentReference', 'QuestionnaireResponse'], 'the CapabilityStatement lists every type served');

  const notes = json(await call(ports.fhir, '/fhir/DocumentReference?patient=demo-1001'));
  t.match(notes, { resourceType: 'Bundle', total: 1, entry: [{ resource: { resourceType: 'DocumentReference', id: 'doc-4001', subject: { reference: 'Patient/demo-1001' } } }] });
  const note = json(await call(ports.fhir, '/fhir/DocumentReference/doc-4001'));
  t.match(note, {
    status: 'current',
    type: { coding: [{ system: 'http://loinc.org', code: '11488-4' }] },
    context: { practiceSetting: { coding: [{ system: 'http://snomed.info/sct', code: '394587001', display: 'Psychiatry' }] } },
    meta: { security: [{ code: 'R' }, { code: 'PSY' }] },
  }, 'a psychiatry consult note, labelled restricted and PSY');
  const attachment = (note['content'] as Array<{ attachment: { data: string } }>)[0]!.attachment;
  t.match(Buffer.from(attachment.data, 'base64').toString('utf8'), 'Psychiatry consultation (fictional demo record).', 'its text is base64 as FHIR attachments carry it');

  const screening = json(await call(ports.fhir, '/fhir/QuestionnaireResponse/qr-5001'));
  t.match(screening, { resourceType: 'QuestionnaireResponse', questionnaire: 'http://loinc.org/q/44249-1', status: 'completed', subject: { reference: 'Patient/demo-1001' } });
  const items = screening['item'] as Array<{ linkId: string; answer: Array<{ valueCoding?: { code: string }; valueInteger?: number }> }>;
  t.equal(items.length, 10, 'nine PHQ-9 questions and the total');
  t.same(items.at(-1), { linkId: '44261-6', text: 'Patient Health Questionnaire 9 item (PHQ-9) total score', answer: [{ valueInteger: 14 }] }, 'the total is the sum of the answers');
  t.equal(json(await call(ports.fhir, '/fhir/QuestionnaireResponse?patient=demo-1002'))['total'], 0, 'other patients have none');
});

t.test('fhir reads single resources by id', async (t) => {
  const patient = await call(ports.fhir, '/fhir/Patient/demo-1002');
  t.equal(patient.status, 200);
  t.match(patient.headers['content-type'], FHIR_JSON);
  t.match(json(patient), { resourceType: 'Patient', id: 'demo-1002', name: [{ family: 'Sampleperson' }] });
  t.match(json(await call(ports.fhir, '/fhir/Observation/obs-2001')), { resourceType: 'Observation', id: 'obs-2001', code: { coding: [{ code: '8867-4' }] } });
});

t.test('fhir answers unknown resources, ids and paths with a 404 OperationOutcome', async (t) => {
  for (const path of ['/fhir/Encounter', '/fhir/Patient/nobody', '/fhir/Patient/demo-1001/_history', '/fhir/Patient/%zz', '/fhir', '/other', '/fhir/metadata/x']) {
    const reply = await call(ports.fhir, path);
    t.equal(reply.status, 404, path);
    t.match(reply.headers['content-type'], FHIR_JSON, path);
    t.match(json(reply), { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] }, path);
  }
});

t.test('fhir refuses writes with a 405 OperationOutcome', async (t) => {
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH'] as const) {
    const reply = await call(ports.fhir, '/fhir/Patient/demo-1001', method);
    t.equal(reply.status, 405, method);
    t.equal(reply.headers['allow'], 'GET, HEAD', method);
    t.match(json(reply), { resourceType: 'OperationOutcome', issue: [{ code: 'not-supported' }] }, method);
  }
});

function demoConfig(routes: string): ReturnType<typeof parseConfig> {
  const identity = 'identity: { issuer: "http://localhost:1", clientId: wardgate, clientSecret: s, authUrl: "http://auth.localhost:1" }';
  return parseConfig(`listen: { http: "127.0.0.1:0" }\nadmin: { listen: "127.0.0.1:0" }\nworkers: 1\n${identity}\nroutes:\n${routes}`, 'inline.yaml');
}

t.test('a busy port rejects naming the route and address, and leaves nothing listening', async (t) => {
  const blocker = createServer().listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  t.teardown(() => blocker.close());
  const address = blocker.address();
  const busy = address !== null && typeof address === 'object' ? address.port : 0;
  const vendorPort = await freePort();
  const config = demoConfig([
    `  - { id: epic, host: a.localhost, upstream: { url: "http://127.0.0.1:${busy}" }, policy: { allow: [{ authenticated: true }] } }`,
    `  - { id: vendor, host: b.localhost, upstream: { url: "http://127.0.0.1:${vendorPort}" }, policy: { allow: [{ authenticated: true }] } }`,
  ].join('\n'));
  await t.rejects(startDemoUpstreams(config), new RegExp(`demo upstream "epic" cannot listen on 127\\.0\\.0\\.1:${busy}: the address is already in use`));
  t.ok(await portIsFree(vendorPort), 'the app that did start was closed again');

  const both = demoConfig([
    `  - { id: epic, host: a.localhost, upstream: { url: "http://127.0.0.1:${busy}" }, policy: { allow: [{ authenticated: true }] } }`,
    `  - { id: fhir, host: b.localhost, upstream: { url: "http://127.0.0.1:${busy}" }, policy: { allow: [{ authenticated: true }] } }`,
  ].join('\n'));
  await t.rejects(startDemoUpstreams(both), /"epic" cannot listen.*; demo upstream "fhir" cannot listen/, 'every failure is reported');
});

t.test('an https upstream is refused: the stand-ins speak plain http', async (t) => {
  const config = demoConfig(`  - { id: fhir, host: a.localhost, upstream: { url: "https://127.0.0.1:${await freePort()}" }, policy: { allow: [{ authenticated: true }] } }`);
  await t.rejects(startDemoUpstreams(config), /demo upstream "fhir" speaks plain http/);
});

t.test('routes with other ids get no stand-in', async (t) => {
  const port = await freePort();
  const config = demoConfig([
    `  - { id: lab, host: a.localhost, upstream: { url: "http://127.0.0.1:${port}" }, policy: { allow: [{ authenticated: true }] } }`,
    `  - { id: constructor, host: b.localhost, upstream: { url: "http://127.0.0.1:${port}" }, policy: { allow: [{ authenticated: true }] } }`,
  ].join('\n'));
  const started = await startDemoUpstreams(config);
  t.ok(await portIsFree(port), 'nothing listens where the unknown routes point');
  await started.close();
});

t.test('close() ends open WebSockets and keep-alive connections, and can be called twice', async (t) => {
  const pacsPort = await freePort();
  const epicPort = await freePort();
  const config = demoConfig([
    `  - { id: pacs, host: a.localhost, upstream: { url: "http://127.0.0.1:${pacsPort}" }, policy: { allow: [{ authenticated: true }] } }`,
    `  - { id: epic, host: b.localhost, upstream: { url: "http://127.0.0.1:${epicPort}" }, policy: { allow: [{ authenticated: true }] } }`,
  ].join('\n'));
  const started = await startDemoUpstreams(config);
  const socket = new WebSocket(`ws://127.0.0.1:${pacsPort}/ws`);
  socket.on('error', () => {});
  await once(socket, 'open');
  t.equal((await call(epicPort, '/')).status, 200, 'leaves a keep-alive connection open in the agent');
  const closed = once(socket, 'close');
  await Promise.all([started.close(), started.close()]);
  await closed;
  t.ok(await portIsFree(pacsPort), 'pacs port released');
  t.ok(await portIsFree(epicPort), 'epic port released');
});

t.test('the demo MDM page lists its devices, each with a fresh assertion and the curl line that sends it', async (t) => {
  const page = await call(ports.mdm, '/');
  t.equal(page.status, 200);
  t.match(page.headers['content-type'], /^text\/html; charset=utf-8/);
  t.equal(page.headers['cache-control'], 'no-store', 'assertions are fresh on every load, never cached');
  t.match(page.text, 'Demo MDM (device management stand-in)');
  t.match(page.text, '<h2>ward-laptop-07</h2>');
  t.match(page.text, '<h2>home-pc-01</h2>');
  t.match(page.text, '<li><a href="http://epic.localhost:8080/">epic.localhost</a></li><li><a href="http://pacs.localhost:8080/">pacs.localhost</a></li></ul>', 'it names the apps that want a trusted device');
  const curls = [...page.text.matchAll(/<code class="curl">curl -i -H &#39;x-device-posture: ([\w.-]+)&#39; http:\/\/epic\.localhost:8080\/<\/code>/g)];
  t.equal(curls.length, 2, 'one curl line per device, sending its assertion to the Epic portal');
  const assertions = [...page.text.matchAll(/<code class="assertion">([\w.-]+)<\/code>/g)].map((m) => m[1]);
  t.same(curls.map((m) => m[1]), assertions, 'the curl lines carry the assertions shown');
  t.match(json(await call(ports.mdm, '/api/echo')), { app: 'mdm', method: 'GET' });
});

t.test('the demo MDM signs assertions that wardgate\'s posture verifier accepts, with the config of demo.yaml', async (t) => {
  const posture = config.devices!.posture!;
  const verifier = new PostureVerifier({
    issuer: posture.issuer,
    audience: posture.audience,
    keys: posture.keys.map((key) => key.jwk),
    algorithms: posture.algorithms,
    typ: posture.typ,
    store: new MemoryStore(),
  });
  const laptop = await call(ports.mdm, '/devices/ward-laptop-07/posture');
  t.equal(laptop.status, 200);
  t.equal(laptop.headers['content-type'], 'application/jwt');
  const verified = await verifier.verify(laptop.text.trim());
  t.match(verified, { ok: true, posture: { deviceId: 'ward-laptop-07', managed: true, compliant: true, diskEncrypted: true } }, 'the ward laptop: managed and compliant');
  const home = await verifier.verify((await call(ports.mdm, '/devices/home-pc-01/posture')).text.trim());
  t.match(home, { ok: true, posture: { deviceId: 'home-pc-01', managed: false, compliant: false } }, 'the home PC: a valid assertion saying it is unmanaged');
  const again = await verifier.verify((await call(ports.mdm, '/devices/ward-laptop-07/posture')).text.trim());
  t.ok(verified.ok && again.ok && verified.posture.jti !== again.posture.jti, 'each assertion has its own jti');
  if (verified.ok) t.equal(verified.posture.acceptUntil - verified.posture.observedAt, 15 * 60_000 + 30_000, 'accepted for 15 minutes (and the clock tolerance)');

  t.equal((await call(ports.mdm, '/devices/unknown/posture')).status, 404, 'an unknown device gets none');
  t.equal((await call(ports.mdm, '/devices/ward-laptop-07/posture', 'POST')).status, 405);
  t.equal((await call(ports.mdm, '/elsewhere')).status, 404);
  const head = await call(ports.mdm, '/', 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.text, '');
});

t.test('the demo MDM refuses to start with a key or config its assertions would fail against', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wardgate-mdm-'));
  t.throws(() => createDemoMdm({ config, keyFile: join(dir, 'missing.key') }), /demo upstream "mdm" cannot read its signing key .*missing\.key: ENOENT/);
  const other = join(dir, 'other.key');
  writeFileSync(other, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
  t.throws(() => createDemoMdm({ config, keyFile: other }), /the public half of .*other\.key is not among devices\.posture\.keys/);
  const rsa = join(dir, 'rsa.key');
  writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
  t.throws(() => createDemoMdm({ config, keyFile: rsa }), /must hold an EC P-256 key/);
  const garbage = join(dir, 'garbage.key');
  writeFileSync(garbage, 'not a key');
  t.throws(() => createDemoMdm({ config, keyFile: garbage }), /holds no readable private key/);
  const port = await freePort();
  const noDevices = demoConfig([
    `  - { id: epic, host: a.localhost, upstream: { url: "http://127.0.0.1:${port}" }, policy: { allow: [{ authenticated: true }] } }`,
    `  - { id: mdm, host: b.localhost, upstream: { url: "http://127.0.0.1:${await freePort()}" }, policy: { allow: [{ authenticated: true }] } }`,
  ].join('\n'));
  t.throws(() => createDemoMdm({ config: noDevices, keyFile: DEMO_MDM_KEY }), /needs devices\.posture in the config/);
  await t.rejects(startDemoUpstreams(noDevices), /needs devices\.posture/, 'startDemoUpstreams fails the same way');
  t.ok(await portIsFree(port), 'with nothing left listening, not even the apps built before it');
});

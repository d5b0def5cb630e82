import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t, { type Test } from 'tap';
import { freePort, spawnWardgate, waitFor200, writeTempConfig, type WardgateProcess } from '../helpers/process.js';

/*
 * The CLI as operators meet it: the built `dist/proxy/cli.js` in its own process, its exit
 * codes (0 ok, 1 runtime failure, 2 bad usage or bad config) and what it prints.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const DEMO_CONFIG = resolve(ROOT, 'config/demo.yaml');
const PACKAGE_VERSION = (JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

// About twenty processes start here, each a fresh Node; on a loaded CI machine that is
// more than tap's default 30 s per file.
t.setTimeout(120_000);

/** Every process spawned here, so none outlives a failing test. */
const spawned: WardgateProcess[] = [];
t.teardown(() => {
  for (const p of spawned) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
});

/** At most this many CLI processes at once, so a loaded 2-core machine is not swamped. */
const MAX_RUNNING = 4;
let running = 0;
const queue: Array<() => void> = [];

/** Runs the CLI and waits (bounded, from its start) for it to exit on its own. */
async function run(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<{ code: number | string; stdout: string; stderr: string }> {
  if (running >= MAX_RUNNING) await new Promise<void>((r) => queue.push(r));
  running++;
  try {
    return await runNow(args, env, timeoutMs);
  } finally {
    running--;
    queue.shift()?.();
  }
}

async function runNow(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const p = spawnWardgate(args, env);
  spawned.push(p);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), timeoutMs); });
  const code = await Promise.race([p.exited, timedOut]);
  clearTimeout(timer);
  if (code === 'timeout') {
    p.child.kill('SIGKILL');
    await p.exited;
    throw new Error(`wardgate ${args.join(' ')} did not exit within ${timeoutMs} ms; stderr: ${p.stderr()}`);
  }
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
function isListening(port: number): Promise<boolean> {
  return new Promise((resolveListening) => {
    const socket = connect(port, '127.0.0.1');
    const timer = setTimeout(() => { socket.destroy(); resolveListening(false); }, 2000);
    socket.once('connect', () => { clearTimeout(timer); socket.destroy(); resolveListening(true); });
    socket.once('error', () => { clearTimeout(timer); resolveListening(false); });
  });
}

/*
 * Runs that need nothing but the CLI start together here (each is a fresh Node, slow on
 * a loaded machine); each subtest below awaits and checks its own.
 */
function early(args: string[]): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const result = run(args);
  result.catch(() => {}); // reported by the subtest that awaits it
  return result;
}
const MISSING_CONFIG = resolve(ROOT, 'no-such-dir', 'nope.yaml');
const EARLY = {
  checkDemo: early(['check-config', DEMO_CONFIG]),
  checkDemoFlag: early(['check-config', '--config', DEMO_CONFIG]),
  checkMissing: early(['check-config', MISSING_CONFIG]),
  startNoConfig: early(['start']),
  version: early(['--version']),
  versionShort: early(['-v']),
  help: early(['--help']),
  none: early([]),
  unknownCommand: early(['frobnicate']),
  unknownOption: early(['start', '--frobnicate']),
};

const ROUTES = `routes:
  - id: app
    host: app.test
    upstream:
      url: "http://127.0.0.1:9"
    policy: { allow: [{ authenticated: true }] }
`;

// Shared keys for configs with more than one worker: a cookie key and an EC P-256 key.
const keyDir = mkdtempSync(join(tmpdir(), 'wardgate-cli-keys-'));
t.teardown(() => rmSync(keyDir, { recursive: true, force: true }));
const ASSERTION_KEY = join(keyDir, 'assertion.key');
writeFileSync(ASSERTION_KEY, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
const COOKIE_KEY = randomBytes(32).toString('base64');
const KEYS = `  cookieKeys: ["${COOKIE_KEY}"]\n  assertion:\n    keys: ["${ASSERTION_KEY}"]\n`;

/**
 * The identity block. The issuer is a loopback port nothing listens on (port 9, discard,
 * unless `issuerPort` says otherwise): check-config never contacts the IdP, and start
 * does not need it up, since discovery happens on the first sign-in.
 */
function identityText(keys: string, issuerPort = 9): string {
  return `identity:
  issuer: "http://127.0.0.1:${issuerPort}"
  clientId: wardgate
  clientSecret: cli-test-secret
  authUrl: "http://auth.localhost:8080"
${keys}`;
}
/** What the check-config cases below end with (after their faults, so lines stay put). */
const IDENTITY = `workers: 1\n${identityText('')}`;

function configText(httpPort: number, adminPort: number, extra = '', workers = 1, keys = workers > 1 ? KEYS : ''): string {
  return `listen:
  http: "127.0.0.1:${httpPort}"
admin:
  listen: "127.0.0.1:${adminPort}"
workers: ${workers}
log:
  level: warn
${extra}${ROUTES}${identityText(keys)}`;
}

t.test('check-config accepts the shipped demo config: exit 0 and "ok" on stdout', async (t) => {
  const { code, stdout, stderr } = await EARLY.checkDemo;
  t.equal(code, 0, 'a valid config exits 0');
  t.equal(stdout, `${DEMO_CONFIG}: ok (5 routes)\n`, 'stdout names the file, says ok and counts its routes');
  t.equal(stderr, '', 'nothing is printed on stderr for a valid config');
});

t.test('check-config also takes the file via --config', async (t) => {
  const { code, stdout } = await EARLY.checkDemoFlag;
  t.equal(code, 0, '--config FILE is accepted by check-config');
  t.match(stdout, ': ok (5 routes)', 'and reports ok');
});

interface Broken {
  name: string;
  text: string;
  /** The message after `wardgate: FILE:`, i.e. `line:col: path: what was expected`. */
  expected: string;
}

const BROKEN: Broken[] = [
  {
    name: 'an unknown key inside a route',
    text: `listen:
  http: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
routes:
  - id: app
    host: app.test
    upstreem: 1
    upstream:
      url: "http://127.0.0.1:9"
    policy: { allow: [{ authenticated: true }] }
${IDENTITY}`,
    expected: '8:5: routes[0].upstreem: unknown key "upstreem"',
  },
  {
    name: 'an unknown key whose value is a mapping (timeout: for timeouts:)',
    text: `listen:
  http: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
routes:
  - id: app
    host: app.test
    timeout:
      idle: 5s
    upstream:
      url: "http://127.0.0.1:9"
    policy: { allow: [{ authenticated: true }] }
${IDENTITY}`,
    // The location is the key itself (line 8), not the first line of its nested value.
    expected: '8:5: routes[0].timeout: unknown key "timeout"',
  },
  {
    name: 'a duration that is not one',
    text: `listen:
  http: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
shutdown:
  drainTimeout: 5 seconds
${ROUTES}${IDENTITY}`,
    expected: '6:17: shutdown.drainTimeout: expected a duration such as 500ms, 30s, 5m or 1h, got "5 seconds"',
  },
  {
    name: 'an upstream URL with a scheme other than http(s)',
    text: `listen:
  http: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
routes:
  - id: app
    host: app.test
    upstream:
      url: "ftp://127.0.0.1:9"
    policy: { allow: [{ authenticated: true }] }
${IDENTITY}`,
    expected: '9:12: routes[0].upstream.url: expected an http(s) origin such as https://10.1.2.3:8443 (no path, query or credentials), got "ftp://127.0.0.1:9"',
  },
  {
    name: 'a ${env:...} reference to a variable that is not set',
    text: `listen:
  http: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
routes:
  - id: app
    host: app.test
    upstream:
      url: "http://127.0.0.1:\${env:NOPE_NOT_SET}"
    policy: { allow: [{ authenticated: true }] }
${IDENTITY}`,
    expected: '9:12: routes[0].upstream.url: environment variable NOPE_NOT_SET is not set',
  },
  {
    name: 'a YAML syntax error (unclosed quote)',
    text: `listen:
  http: "127.0.0.1:0
admin:
  listen: "127.0.0.1:0"
`,
    expected: '2:21: Missing closing "quote',
  },
  {
    name: 'two routes with the same id',
    text: `listen:
  http: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
routes:
  - id: app
    host: app.test
    upstream:
      url: "http://127.0.0.1:9"
    policy: { allow: [{ authenticated: true }] }
  - id: app
    host: other.test
    upstream:
      url: "http://127.0.0.1:9"
    policy: { allow: [{ authenticated: true }] }
${IDENTITY}`,
    expected: '11:9: routes[1].id: duplicate route id "app" (also routes[0])',
  },
  {
    name: 'an identity block with a plain-http issuer on a hospital host',
    text: `listen:
  http: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
workers: 1
identity:
  issuer: "http://login.hospital.example"
  clientId: wardgate
  clientSecret: cli-test-secret
  authUrl: "http://auth.localhost:8080"
${ROUTES}`,
    expected: '7:11: identity.issuer: expected https: plain http is allowed only for localhost, got "http://login.hospital.example"',
  },
  {
    name: 'a config without an identity block',
    text: `listen:
  http: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
workers: 1
${ROUTES}`,
    expected: '1:1: identity: Invalid input: expected object, received undefined',
  },
];

// These runs are independent: start them together, then check each in its own subtest.
const brokenRuns = BROKEN.map((broken) => {
  const file = writeTempConfig(broken.text);
  const result = run(['check-config', file], { NOPE_NOT_SET: '' });
  result.catch(() => {}); // reported by its subtest
  return { broken, file, result };
});

for (const { broken, file, result } of brokenRuns) {
  t.test(`check-config refuses ${broken.name}: exit 2, message names file:line:col, path and what was expected`, async (t) => {
    const { code, stdout, stderr } = await result;
    t.equal(code, 2, 'a bad config exits 2');
    t.equal(stdout, '', 'nothing claims the config is ok');
    t.equal(stderr, `wardgate: ${file}:${broken.expected}\n`, 'stderr is exactly "wardgate: FILE:LINE:COL: PATH: expected ..."');
  });
}

t.test('check-config on a file that does not exist exits 2 naming the file', async (t) => {
  const { code, stderr } = await EARLY.checkMissing;
  t.equal(code, 2, 'an unreadable config exits 2');
  t.equal(stderr, `wardgate: ${MISSING_CONFIG}: cannot read config file: ENOENT\n`, 'the message names the file and the reason');
});

t.test('start with a bad config exits 2 and never listens', async (t) => {
  const [httpPort, adminPort] = [await freePort(), await freePort()];
  const file = writeTempConfig(configText(httpPort, adminPort, 'shutdown:\n  drainTimeout: soon\n'));
  const p = spawnWardgate(['start', '--config', file]);
  spawned.push(p);
  // Watch both ports for the whole life of the process: a listener that came up even
  // briefly would be caught here.
  let listened = false;
  let stop = false;
  const watch = (async () => {
    while (!stop) {
      if (await isListening(httpPort) || await isListening(adminPort)) listened = true;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([p.exited, new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), 15_000); })]);
  clearTimeout(timer);
  stop = true;
  await watch;
  t.equal(code, 2, 'start with a bad config exits 2');
  t.equal(p.stderr(), `wardgate: ${file}:9:17: shutdown.drainTimeout: expected a duration such as 500ms, 30s, 5m or 1h, got "soon"\n`,
    'the error names file, line:col, path and what was expected');
  t.notOk(listened, 'neither the main nor the admin port ever accepted a connection');
  t.notOk(await isListening(httpPort), 'the main port is not listening after exit');
  t.notOk(await isListening(adminPort), 'the admin port is not listening after exit');
});

t.test('start with workers: 2 and no cookieKeys exits 2 naming identity.cookieKeys, and never listens', async (t) => {
  const [httpPort, adminPort] = [await freePort(), await freePort()];
  const assertionOnly = `  assertion:\n    keys: ["${ASSERTION_KEY}"]\n`;
  const text = configText(httpPort, adminPort, '', 2, assertionOnly);
  const file = writeTempConfig(text);
  const lines = text.split('\n');
  const identityLine = lines.indexOf('identity:') + 2; // reported at the block's first key
  const { code, stdout, stderr } = await run(['start', '--config', file]);
  t.equal(code, 2, 'a multi-worker config without cookie keys exits 2');
  t.equal(stderr, `wardgate: ${file}:${identityLine}:3: identity.cookieKeys: expected cookieKeys when workers > 1 (openssl rand -base64 32)\n`,
    'the error names file, line:col, path, and how to make a key');
  t.equal(stdout, '', 'nothing was logged: no worker started');
  t.notOk(await isListening(httpPort), 'the main port is not listening');
  t.notOk(await isListening(adminPort), 'the admin port is not listening');

  const check = await run(['check-config', file]);
  t.equal(check.code, 2, 'check-config refuses the same file');
  t.equal(check.stderr, stderr, 'with the same message');
});

t.test('start does not need the IdP: it starts, serves health and stops with the IdP down', async (t) => {
  const [httpPort, adminPort, idpPort] = [await freePort(), await freePort(), await freePort()];
  const file = writeTempConfig(configText(httpPort, adminPort).replace(/issuer: "http:\/\/127\.0\.0\.1:9"/, `issuer: "http://127.0.0.1:${idpPort}"`));
  t.match(readFileSync(file, 'utf8'), `issuer: "http://127.0.0.1:${idpPort}"`, 'the issuer is a loopback port nothing listens on');
  const p = spawnWardgate(['start', '--config', file]);
  spawned.push(p);
  const early = p.exited.then((code) => `exited early with ${code}: ${p.stderr()}`);
  const up = waitFor200(`http://127.0.0.1:${adminPort}/healthz`).then(() => 'up', (err: unknown) => `not up: ${(err as Error).message}; stderr: ${p.stderr()}`);
  t.equal(await Promise.race([up, early]), 'up', 'wardgate starts and answers /healthz although its IdP does not answer');
  t.ok(await isListening(httpPort), 'the main listener is up');
  const status = await new Promise<number | string>((resolveStatus) => {
    const req = get({ host: '127.0.0.1', port: httpPort, path: '/', headers: { host: 'app.test' }, timeout: 10_000 }, (res) => {
      res.resume();
      resolveStatus(res.statusCode ?? 0);
    });
    req.once('timeout', () => req.destroy(new Error('timed out')));
    req.once('error', (err) => resolveStatus(err.message));
  });
  t.equal(status, 401, 'a request without a session is answered (401, sign in) without waiting on the IdP');
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0, 'SIGTERM stops it cleanly (exit 0)');
  t.equal(p.stderr(), '', 'nothing was printed on stderr');
});

t.test('start without --config is a usage error: exit 2 with usage', async (t) => {
  const { code, stderr } = await EARLY.startNoConfig;
  t.equal(code, 2, 'missing --config exits 2');
  t.match(stderr, 'wardgate: missing --config FILE', 'says what is missing');
  t.match(stderr, 'Usage:', 'prints the usage');
});

/** Occupies a loopback port for the duration of a test. */
async function occupy(t: Test): Promise<number> {
  const server: Server = createServer((socket) => socket.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const address = server.address();
  return typeof address === 'object' && address ? address.port : 0;
}

t.test('start on a main port already in use exits 1 naming the address and listener', async (t) => {
  const busy = await occupy(t);
  const adminPort = await freePort();
  const file = writeTempConfig(configText(busy, adminPort));
  const { code, stderr } = await run(['start', '--config', file]);
  t.equal(code, 1, 'a listener that cannot bind is a runtime failure: exit 1');
  t.equal(stderr, `wardgate: cannot listen on 127.0.0.1:${busy} (http listener): EADDRINUSE\n`, 'the message names address, listener and cause');
  t.notOk(await isListening(adminPort), 'the admin listener was not left running');
});

t.test('start on an admin port already in use exits 1 naming the admin address', async (t) => {
  const busy = await occupy(t);
  const httpPort = await freePort();
  const file = writeTempConfig(configText(httpPort, busy));
  const { code, stderr } = await run(['start', '--config', file]);
  t.equal(code, 1, 'an admin listener that cannot bind is a runtime failure: exit 1');
  t.equal(stderr, `wardgate: cannot listen on 127.0.0.1:${busy} (admin listener): EADDRINUSE\n`, 'the message names the admin address');
  t.notOk(await isListening(httpPort), 'the main listener it had opened was closed again');
});

t.test('start in worker mode on a main port already in use exits 1 naming the address', async (t) => {
  const busy = await occupy(t);
  const adminPort = await freePort();
  const file = writeTempConfig(configText(busy, adminPort, '', 2));
  const { code, stderr } = await run(['start', '--config', file]);
  t.equal(code, 1, 'workers that cannot bind make the whole cluster exit 1');
  t.match(stderr, `cannot listen on 127.0.0.1:${busy} (http listener): EADDRINUSE`, 'the message names the address');
  t.notOk(await isListening(adminPort), 'the primary closed its admin listener');
});

t.test('--version prints the package.json version', async (t) => {
  const long = await EARLY.version;
  t.equal(long.code, 0, '--version exits 0');
  t.equal(long.stdout, `${PACKAGE_VERSION}\n`, '--version prints exactly the package.json version');
  const short = await EARLY.versionShort;
  t.equal(short.stdout, `${PACKAGE_VERSION}\n`, '-v is the same');
});

t.test('--help prints usage and exits 0', async (t) => {
  const { code, stdout } = await EARLY.help;
  t.equal(code, 0, '--help exits 0');
  t.match(stdout, `wardgate ${PACKAGE_VERSION}:`, 'usage starts with name and version');
  t.match(stdout, 'wardgate check-config FILE', 'usage lists the commands');
});

t.test('no command prints usage and exits 2', async (t) => {
  const { code, stdout } = await EARLY.none;
  t.equal(code, 2, 'no command is bad usage: exit 2');
  t.match(stdout, 'Usage:', 'usage is printed');
});

t.test('an unknown command exits 2 with a message and usage', async (t) => {
  const { code, stdout, stderr } = await EARLY.unknownCommand;
  t.equal(code, 2, 'unknown command exits 2');
  t.equal(stdout, '', 'nothing on stdout');
  t.match(stderr, /^wardgate: unknown command "frobnicate"\n/, 'stderr names the unknown command first');
  t.match(stderr, 'Usage:\n  wardgate start --config FILE', 'then prints the usage');
});

t.test('an unknown option exits 2 with usage', async (t) => {
  const { code, stderr } = await EARLY.unknownOption;
  t.equal(code, 2, 'unknown option exits 2');
  t.match(stderr, "Unknown option '--frobnicate'", 'names the option');
  t.match(stderr, 'Usage:', 'prints the usage');
});

// ---- policy explain ---------------------------------------------------------------------

/*
 * `policy explain` as a security team runs it: the config loaded by the normal loader, one
 * route's policy, a context file; exit 0 whatever the outcome, 3 when --expect is not met,
 * 2 for bad usage, config or context.
 */
const explainDir = mkdtempSync(join(tmpdir(), 'wardgate-cli-explain-'));
t.teardown(() => rmSync(explainDir, { recursive: true, force: true }));

const EXPLAIN_CONFIG = join(explainDir, 'wardgate.yaml');
writeFileSync(EXPLAIN_CONFIG, `listen:
  http: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
routes:
  - id: epic
    host: epic.test
    upstream:
      url: "http://127.0.0.1:9"
    policy:
      deny:
        - name: embargo
          country: [KP]
      allow:
        - name: clinicians-with-key
          all:
            - groups: [clinicians]
            - acr: [phr]
            - authAge: 15m
      remediation: Call the service desk on 1234.
  - id: lab
    host: lab.test
    upstream:
      url: "http://127.0.0.1:9"
    policy: { allow: [{ groups: [lab] }] }
${IDENTITY}`);

// With a devices: section, routes that say nothing demand trusted devices: the same default as the gateway's.
const DEVICES_CONFIG = join(explainDir, 'devices.yaml');
writeFileSync(join(explainDir, 'inventory.yaml'), 'devices:\n  - id: WS-1\n    san: ws-1.devices.test\n    managed: true\n    compliant: true\n');
writeFileSync(DEVICES_CONFIG, readFileSync(EXPLAIN_CONFIG, 'utf8').replace(/^routes:/m, 'devices:\n  inventory: inventory.yaml\n  certificates: { match: san }\nroutes:'));

const EXPLAIN_TIME = '2026-11-24T10:00:00Z';
const ALICE_IDENTITY = { sub: 'dr.alice', groups: ['clinicians'], acr: 'phr', amr: ['hwk'], authTime: '2026-11-24T09:55:00Z' };

function contextFile(name: string, context: unknown): string {
  const file = join(explainDir, `${name}.json`);
  writeFileSync(file, typeof context === 'string' ? context : JSON.stringify(context));
  return file;
}

const CONTEXTS = {
  allow: contextFile('allow', { identity: ALICE_IDENTITY, network: { ip: '10.1.2.3', country: 'GB' }, time: EXPLAIN_TIME, request: { path: '/chart' } }),
  denyRule: contextFile('deny-rule', { identity: ALICE_IDENTITY, network: { ip: '175.45.176.1', country: 'KP' }, time: EXPLAIN_TIME, request: { path: '/chart' } }),
  denyDefault: contextFile('deny-default', { identity: { sub: 'vendor.dave', groups: ['vendor-support'] }, network: { ip: '10.1.2.3', country: 'GB' }, time: EXPLAIN_TIME, request: { path: '/chart' } }),
  login: contextFile('login', { identity: null, network: { ip: '10.1.2.3', country: 'GB' }, time: EXPLAIN_TIME, request: { path: '/chart' } }),
  stepUp: contextFile('step-up', { identity: { ...ALICE_IDENTITY, acr: 'pwd', amr: ['pwd'] }, network: { ip: '10.1.2.3' }, time: EXPLAIN_TIME, request: { path: '/chart' } }),
  bad: contextFile('bad', { identity: { sub: 'dr.alice', groups: 'clinicians' }, network: { ip: '10.1.2.3' }, request: { path: '/chart' } }),
  notJson: contextFile('not-json', '{ "identity": '),
  trustedDevice: contextFile('trusted-device', { identity: ALICE_IDENTITY, device: { id: 'WS-1', trusted: true }, network: { ip: '10.1.2.3', country: 'GB' }, time: EXPLAIN_TIME, request: { path: '/chart' } }),
};
const MISSING_CONTEXT = join(explainDir, 'nope.json');

const explain = (context: string, ...more: string[]) => early(['policy', 'explain', '--config', EXPLAIN_CONFIG, '--route', 'epic', '--context', context, ...more]);
const EXPLAIN = {
  allow: explain(CONTEXTS.allow),
  denyRule: explain(CONTEXTS.denyRule),
  denyDefault: explain(CONTEXTS.denyDefault),
  login: explain(CONTEXTS.login),
  stepUpJson: explain(CONTEXTS.stepUp, '--json'),
  expectMet: explain(CONTEXTS.login, '--expect', 'login'),
  expectMissed: explain(CONTEXTS.allow, '--expect', 'deny', '--json'),
  expectBad: explain(CONTEXTS.allow, '--expect', 'permit'),
  bad: explain(CONTEXTS.bad),
  notJson: explain(CONTEXTS.notJson),
  missingContext: explain(MISSING_CONTEXT),
  unknownRoute: early(['policy', 'explain', '--config', EXPLAIN_CONFIG, '--route', 'pacs', '--context', CONTEXTS.allow]),
  noRoute: early(['policy', 'explain', '--config', EXPLAIN_CONFIG, '--context', CONTEXTS.allow]),
  noContext: early(['policy', 'explain', '--config', EXPLAIN_CONFIG, '--route', 'epic']),
  noConfig: early(['policy', 'explain', '--route', 'epic', '--context', CONTEXTS.allow]),
  noSubcommand: early(['policy']),
  badConfig: early(['policy', 'explain', '--config', MISSING_CONFIG, '--route', 'epic', '--context', CONTEXTS.allow]),
  devicesUnknown: early(['policy', 'explain', '--config', DEVICES_CONFIG, '--route', 'epic', '--context', CONTEXTS.allow]),
  devicesTrusted: early(['policy', 'explain', '--config', DEVICES_CONFIG, '--route', 'epic', '--context', CONTEXTS.trustedDevice]),
};

t.test('policy explain: an allowed request, exit 0, with the deciding rule and its criteria', async (t) => {
  const { code, stdout, stderr } = await EXPLAIN.allow;
  t.equal(code, 0, 'exit 0');
  t.equal(stdout, `route:    epic (epic.test), devices: any
time:     2026-11-24T10:00:00.000Z
outcome:  allow
rule:     allow[0] clinicians-with-key
reasons:
  groups-ok
  acr-ok
  auth-age-ok
`, 'the outcome, the rule and the pass reasons');
  t.equal(stderr, '', 'nothing on stderr');
});

t.test('policy explain: a deny rule refuses, exit 0: the decision is the answer', async (t) => {
  const { code, stdout } = await EXPLAIN.denyRule;
  t.equal(code, 0, 'a refusal is still a successful explanation');
  t.match(stdout, 'outcome:  deny\nrule:     deny[0] embargo\n', 'the deny rule decided');
  t.match(stdout, 'country-unauthorized  This application cannot be reached from the country you are connecting from.', 'the reason in the deny page\'s words');
  t.match(stdout, 'remediation: Call the service desk on 1234.', 'and what the user is told to do');
});

t.test('policy explain: nothing allows, so deny, naming the closest allow rule', async (t) => {
  const { code, stdout } = await EXPLAIN.denyDefault;
  t.equal(code, 0, 'exit 0');
  t.match(stdout, 'outcome:  deny\nrule:     none matched; closest: allow[0] clinicians-with-key\n', 'deny by default, with the closest rule');
  t.match(stdout, 'groups-unauthorized', 'and what it lacked');
});

t.test('policy explain: no identity is a login', async (t) => {
  const { code, stdout } = await EXPLAIN.login;
  t.equal(code, 0, 'exit 0');
  t.match(stdout, 'outcome:  login\n', 'login');
  t.match(stdout, 'login-required  Sign in to reach this application.', 'explained');
});

t.test('policy explain --json: a step-up, as the Decision with its route', async (t) => {
  const { code, stdout } = await EXPLAIN.stepUpJson;
  t.equal(code, 0, 'exit 0');
  t.same(JSON.parse(stdout), {
    route: 'epic', devices: 'any', time: '2026-11-24T10:00:00.000Z', outcome: 'step-up',
    reasons: ['acr-insufficient'], rule: null, closest: 'allow[0] clinicians-with-key', missing: ['authentication'], stepUp: { acr: ['phr'] },
  }, 'stdout is the decision as JSON, with what the step-up must bring');
});

t.test('policy explain --expect: exit 0 when met, 3 with a message when not', async (t) => {
  const met = await EXPLAIN.expectMet;
  t.equal(met.code, 0, '--expect login on a login exits 0');
  t.equal(met.stderr, '', 'silently');
  const missed = await EXPLAIN.expectMissed;
  t.equal(missed.code, 3, '--expect deny on an allow exits 3');
  t.equal(missed.stderr, 'wardgate: expected deny, got allow\n', 'saying what was expected and what came');
  t.equal((JSON.parse(missed.stdout) as { outcome: string }).outcome, 'allow', 'the explanation is still printed');
  const bad = await EXPLAIN.expectBad;
  t.equal(bad.code, 2, 'an outcome that does not exist is bad usage');
  t.match(bad.stderr, 'wardgate: --expect takes allow, deny, login, step-up, got "permit"', 'naming the outcomes');
});

t.test('policy explain: a bad context file exits 2 naming the file and the JSON path', async (t) => {
  const { code, stdout, stderr } = await EXPLAIN.bad;
  t.equal(code, 2, 'exit 2');
  t.equal(stdout, '', 'no decision is printed');
  t.equal(stderr, `wardgate: ${CONTEXTS.bad}: identity.groups: expected a list of strings, got "clinicians"\n`, 'file, path and what was expected; no usage');
  const notJson = await EXPLAIN.notJson;
  t.equal(notJson.code, 2, 'a file that is not JSON exits 2');
  t.match(notJson.stderr, `wardgate: ${CONTEXTS.notJson}: invalid JSON: `, 'saying so');
  const missing = await EXPLAIN.missingContext;
  t.equal(missing.code, 2, 'a context file that does not exist exits 2');
  t.equal(missing.stderr, `wardgate: ${MISSING_CONTEXT}: cannot read context file: ENOENT\n`, 'naming the file and the reason');
});

t.test('policy explain: an unknown route exits 2 listing the config\'s routes', async (t) => {
  const { code, stdout, stderr } = await EXPLAIN.unknownRoute;
  t.equal(code, 2, 'exit 2');
  t.equal(stdout, '', 'nothing on stdout');
  t.equal(stderr, `wardgate: ${EXPLAIN_CONFIG}: no route "pacs"; its routes are epic, lab\n`, 'the route ids there are');
});

t.test('policy explain: missing options and a missing subcommand are usage errors (exit 2, usage)', async (t) => {
  for (const [run, message] of [
    [EXPLAIN.noRoute, 'wardgate: missing --route ID'],
    [EXPLAIN.noContext, 'wardgate: missing --context FILE.json'],
    [EXPLAIN.noConfig, 'wardgate: missing --config FILE'],
    [EXPLAIN.noSubcommand, 'wardgate: missing policy command: policy explain'],
  ] as const) {
    const { code, stderr } = await run;
    t.equal(code, 2, `${message}: exit 2`);
    t.match(stderr, `${message}\n`, 'says what is missing');
    t.match(stderr, 'wardgate policy explain --config FILE --route ID --context FILE.json', 'and prints the usage, which lists policy explain');
  }
  const { code, stderr } = await EXPLAIN.badConfig;
  t.equal(code, 2, 'a config that cannot be read exits 2');
  t.equal(stderr, `wardgate: ${MISSING_CONFIG}: cannot read config file: ENOENT\n`, 'as check-config says it');
});

t.test('policy explain: with devices: configured, the route demands trusted devices, as the gateway would', async (t) => {
  const unknown = await EXPLAIN.devicesUnknown;
  t.equal(unknown.code, 0, 'exit 0');
  t.match(unknown.stdout, 'route:    epic (epic.test), devices: trusted\n', 'the resolved device mode is shown');
  t.match(unknown.stdout, 'outcome:  deny\nrule:     devices: trusted\n', 'a request without a device is refused before the rules');
  t.match(unknown.stdout, 'device-unknown    wardgate does not know this device.', 'naming the device\'s problem');
  const trusted = await EXPLAIN.devicesTrusted;
  t.match(trusted.stdout, 'outcome:  allow\n', 'a trusted device reaches the rules, which allow');
});

import t, { type Test } from 'tap';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Registry } from 'prom-client';
import { notificationsSchema, type WebhookConfig } from '../../proxy/notify/config.js';
import type { Notice } from '../../proxy/notify/notice.js';
import { createWebhookNotifier, type WebhookNotifierOptions, type WebhookPayload } from '../../proxy/notify/webhook.js';
import { sleep, until } from '../helpers/wait.js';

/*
 * Webhook notifications: the config section, and delivery to real HTTP receivers on
 * loopback (node:http) through the real undici client. Backoff delays are shortened
 * through the notifier's options; timings are checked only from below (a loaded machine
 * is late, never early) except where a test proves a wait was cut short.
 *
 * Every webhook URL carries a secret path and query, and every webhook an Authorization
 * value: the last test checks that no log line of any test holds one of them.
 */

const SECRET_PATH = '/services/T0SECRET/B0SECRET/pathsecret';
const SECRET_QUERY = 'sig=querysecret';
const SECRET_HEADER = 'Bearer headersecret';
const SECRETS = ['pathsecret', 'querysecret', 'headersecret', 'B0SECRET'];

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

const allLogText: string[] = [];

/** A real pino logger at every level, its lines kept for the test (and for the secrets check). */
function capture(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      const text = chunk.toString('utf8');
      allLogText.push(text);
      for (const line of text.split('\n')) if (line) lines.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  return { logger: pino({ level: 'trace' }, sink), lines };
}

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  payload: WebhookPayload;
  at: number;
}

/** How a receiver answers its `n`th request (1-based). */
type Answer = (res: ServerResponse, n: number, payload: WebhookPayload) => void;

const ok: Answer = (res) => res.end('ok');

async function startReceiver(t: Test, answer: Answer = ok): Promise<{ received: Received[]; url: string; origin: string }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const payload = JSON.parse(Buffer.concat(chunks).toString('utf8')) as WebhookPayload;
      received.push({ path: req.url ?? '', headers: req.headers, payload, at: performance.now() });
      answer(res, received.length, payload);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { received, origin, url: `${origin}${SECRET_PATH}?${SECRET_QUERY}` };
}

/** A webhook as the config section produces it. */
function webhook(fields: Record<string, unknown>): WebhookConfig {
  return notificationsSchema.parse({ webhooks: [{ headers: { Authorization: SECRET_HEADER }, ...fields }] }).webhooks[0]!;
}

function start(t: Test, webhooks: WebhookConfig[], options: Partial<WebhookNotifierOptions> = {}) {
  const registry = new Registry();
  const { logger, lines } = capture();
  const notifier = createWebhookNotifier({ webhooks, logger, registry, backoff: { baseMs: 10, capMs: 200 }, closeTimeoutMs: 200, ...options });
  t.teardown(() => notifier.close());
  /** wardgate_webhook_deliveries_total by outcome. */
  const counts = async (): Promise<Record<string, number>> => {
    const { values } = await registry.getSingleMetric('wardgate_webhook_deliveries_total')!.get();
    return Object.fromEntries(values.map((v) => [String(v.labels.outcome), v.value]));
  };
  const countReaches = (outcome: string, n: number): Promise<void> =>
    until(async () => ((await counts())[outcome] ?? 0) >= n, 10_000, `${n} ${outcome}`);
  return { notifier, lines, counts, countReaches };
}

let clock = Date.UTC(2025, 2, 14, 9, 30);
function notice(fields: Partial<Notice> = {}): Notice {
  return { event: 'grant-requested', severity: 'info', summary: 'a notice', at: (clock += 1_000), details: {}, ...fields };
}

const summaries = (received: Received[]): string[] => received.map((r) => r.payload.text.replace(/^\S+ \[[A-Z]+\] /, ''));

t.test('posts JSON that chat receivers display and SIEMs parse, with Slack control characters escaped', async (t) => {
  const receiver = await startReceiver(t);
  const { notifier, countReaches } = start(t, [webhook({ url: receiver.url })]);
  const at = Date.UTC(2025, 2, 14, 3, 7, 9, 250);
  notifier.notify(notice({
    event: 'break-glass-started',
    severity: 'high',
    at,
    summary: 'Dr Ray opened break-glass on epic: <!channel> & <https://evil.example|click>\nbreak-glass-ended',
    details: { grantId: 'g-1', route: 'epic', subject: 'ray@hospital.example', patient: { ids: ['p-1', null] }, left: undefined },
  }));
  notifier.notify(notice({ severity: 'warning', summary: 'w' }));
  notifier.notify(notice({ severity: 'info', summary: 'i' }));
  await countReaches('delivered', 3);

  const [first, second, third] = receiver.received;
  t.equal(first!.path, `${SECRET_PATH}?${SECRET_QUERY}`, 'posted to the configured path and query');
  t.equal(first!.headers['content-type'], 'application/json');
  t.equal(first!.headers.authorization, SECRET_HEADER, 'configured headers are sent');
  t.match(first!.headers['user-agent'], /^wardgate\//);
  t.same(first!.payload, {
    text: '🚨 [HIGH] Dr Ray opened break-glass on epic: &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; break-glass-ended',
    event: 'break-glass-started',
    severity: 'high',
    at: '2025-03-14T03:07:09.250Z',
    details: { grantId: 'g-1', route: 'epic', subject: 'ray@hospital.example', patient: { ids: ['p-1', null] } },
  }, 'text is one escaped line (no mention, link or fake second line); details go as given');
  t.equal(second!.payload.text, '⚠️ [WARNING] w');
  t.equal(third!.payload.text, 'ℹ️ [INFO] i');
});

t.test('a webhook gets only the events it lists at or above its minimum severity', async (t) => {
  const receiver = await startReceiver(t);
  const at = (path: string): string => `${receiver.origin}/${path}`;
  const { notifier, countReaches } = start(t, [
    webhook({ url: at('all') }),
    webhook({ url: at('events'), events: ['grant-requested', 'break-glass-started'] }),
    webhook({ url: at('high'), minSeverity: 'high' }),
    webhook({ url: at('both'), events: ['grant-requested'], minSeverity: 'warning' }),
  ]);
  notifier.notify(notice({ event: 'grant-requested', severity: 'info', summary: 'A' }));
  notifier.notify(notice({ event: 'break-glass-started', severity: 'high', summary: 'B' }));
  notifier.notify(notice({ event: 'grant-approved', severity: 'warning', summary: 'C' }));
  notifier.notify(notice({ event: 'grant-requested', severity: 'warning', summary: 'D' }));
  await countReaches('delivered', 9);
  await sleep(50);
  const got = (path: string): string[] => summaries(receiver.received.filter((r) => r.path === `/${path}`));
  t.same(got('all'), ['A', 'B', 'C', 'D'], 'no filter: everything');
  t.same(got('events'), ['A', 'B', 'D'], 'events: only those listed');
  t.same(got('high'), ['B'], 'minSeverity: only that level and above');
  t.same(got('both'), ['D'], 'both filters must pass');
});

t.test('408 and 5xx are retried with growing delays, then the notice is delivered', async (t) => {
  const receiver = await startReceiver(t, (res, n) => {
    res.statusCode = n === 1 ? 503 : n === 2 ? 408 : 200;
    res.end();
  });
  const { notifier, lines, counts, countReaches } = start(t, [webhook({ url: receiver.url })], { backoff: { baseMs: 100, capMs: 5_000 } });
  notifier.notify(notice());
  await countReaches('delivered', 1);
  const [a, b, c] = receiver.received.map((r) => r.at);
  t.equal(receiver.received.length, 3);
  t.ok(b! - a! >= 45, `first retry waited at least half the base delay (${Math.round(b! - a!)} ms)`);
  t.ok(c! - b! >= 95, `second retry waited at least half of twice the base (${Math.round(c! - b!)} ms)`);
  t.same(await counts(), { retried: 2, delivered: 1 });
  t.same(lines.filter((l) => l.level === 40).map((l) => l.reason), ['status 503', 'status 408'], 'each failed attempt is logged as a warning');
});

t.test('Retry-After is honoured in seconds and as an HTTP date, up to the backoff cap', async (t) => {
  const receiver = await startReceiver(t, (res, n) => {
    const retryAfter = [undefined, '1', new Date(Date.now() + 2_000).toUTCString(), '3600'][n];
    if (retryAfter === undefined) {
      res.end();
      return;
    }
    res.writeHead(n === 1 ? 429 : 503, { 'retry-after': retryAfter });
    res.end();
  });
  const { notifier, countReaches } = start(t, [webhook({ url: receiver.url })], { backoff: { baseMs: 5, capMs: 1_200 } });
  notifier.notify(notice());
  await countReaches('delivered', 1);
  const gaps = receiver.received.slice(1).map((r, i) => r.at - receiver.received[i]!.at);
  t.ok(gaps[0]! >= 950, `Retry-After: 1 waited a second, not the 5 ms base (${Math.round(gaps[0]!)} ms)`);
  t.ok(gaps[1]! >= 500, `an HTTP-date Retry-After waited until about then (${Math.round(gaps[1]!)} ms)`);
  t.ok(gaps[2]! >= 1_150 && gaps[2]! < 3_000, `Retry-After: 3600 was capped at 1.2 s (${Math.round(gaps[2]!)} ms)`);
});

t.test('other answers (400, a redirect) are not retried: the request itself is wrong', async (t) => {
  const refusing = await startReceiver(t, (res) => {
    res.statusCode = 400;
    res.end('invalid_payload');
  });
  const redirecting = await startReceiver(t, (res) => {
    res.writeHead(302, { location: '/elsewhere' });
    res.end();
  });
  const { notifier, lines, counts, countReaches } = start(t, [webhook({ url: refusing.url }), webhook({ url: redirecting.url })]);
  notifier.notify(notice({ event: 'grant-denied' }));
  await countReaches('failed', 2);
  await sleep(100);
  t.equal(refusing.received.length, 1, 'one attempt only');
  t.same(redirecting.received.map((r) => r.path), [`${SECRET_PATH}?${SECRET_QUERY}`], 'the redirect was not followed (headers hold credentials)');
  t.same(await counts(), { failed: 2 });
  const errors = lines.filter((l) => l.level === 50);
  t.match(errors, [
    { webhook: 0, origin: refusing.origin, event: 'grant-denied', status: 400, response: 'invalid_payload', msg: /refused/ },
    { webhook: 1, origin: redirecting.origin, status: 302 },
  ], "the error names the webhook, its origin, the status and the receiver's reason");
});

t.test('connection refused: retried, then given up with an error naming the origin', async (t) => {
  const gone = createServer();
  await new Promise<void>((resolve) => gone.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(gone.address() as AddressInfo).port}`;
  await new Promise<void>((resolve) => gone.close(() => resolve()));
  const { notifier, lines, counts, countReaches } = start(t, [webhook({ url: `${origin}${SECRET_PATH}`, retries: 2 })]);
  notifier.notify(notice({ event: 'break-glass-started', severity: 'high' }));
  await countReaches('failed', 1);
  t.same(await counts(), { retried: 2, failed: 1 }, 'the first attempt and two retries');
  const error = lines.find((l) => l.level === 50);
  t.match(error, { webhook: 0, origin, event: 'break-glass-started', attempts: 3, reason: 'ECONNREFUSED', msg: /after 3 attempts/ });
});

t.test('connection reset (the receiver drops the socket): retried, then given up', async (t) => {
  const receiver = await startReceiver(t, (res) => res.socket?.destroy());
  const { notifier, lines, counts, countReaches } = start(t, [webhook({ url: receiver.url, retries: 1 })]);
  notifier.notify(notice());
  await countReaches('failed', 1);
  t.equal(receiver.received.length, 2, 'the first attempt and one retry');
  t.same(await counts(), { retried: 1, failed: 1 });
  t.match(lines.find((l) => l.level === 50), { attempts: 2, reason: /^(UND_ERR_SOCKET|ECONNRESET)$/ });
});

t.test('a receiver slower than the timeout is abandoned for that attempt and retried', async (t) => {
  const receiver = await startReceiver(t, (res, n) => {
    if (n === 1) setTimeout(() => res.end(), 2_000).unref();
    else res.end();
  });
  const { notifier, lines, counts, countReaches } = start(t, [webhook({ url: receiver.url, timeout: '150ms' })]);
  notifier.notify(notice());
  await countReaches('delivered', 1);
  const gap = receiver.received[1]!.at - receiver.received[0]!.at;
  t.ok(gap >= 140 && gap < 1_500, `retried after the 150 ms timeout, not after the 2 s answer (${Math.round(gap)} ms)`);
  t.same(await counts(), { retried: 1, delivered: 1 });
  t.match(lines.find((l) => l.level === 40), { reason: /TIMEOUT|TimeoutError/i });
});

t.test('a full queue drops its oldest notice, counted and logged', async (t) => {
  const held: ServerResponse[] = [];
  const receiver = await startReceiver(t, (res, n) => {
    if (n === 1) held.push(res);
    else res.end();
  });
  const { notifier, lines, counts, countReaches } = start(t, [webhook({ url: receiver.url })], { queueLimit: 3 });
  notifier.notify(notice({ summary: 'n1' }));
  await until(() => held.length === 1, 5_000, 'n1 in flight');
  for (const n of [2, 3, 4, 5, 6]) notifier.notify(notice({ summary: `n${n}`, event: n === 2 ? 'grant-expired' : 'grant-requested' }));
  held[0]!.end();
  await countReaches('delivered', 4);
  t.same(summaries(receiver.received), ['n1', 'n4', 'n5', 'n6'], 'n2 and n3 made way for n5 and n6');
  t.same(await counts(), { dropped: 2, delivered: 4 });
  t.match(lines.filter((l) => l.level === 50), [{ event: 'grant-expired', queued: 3, msg: /queue full/ }, { event: 'grant-requested' }]);
});

t.test('notices reach a webhook in order, even across retries; other webhooks do not wait', async (t) => {
  const slow = await startReceiver(t, (res, n) => {
    res.statusCode = n === 1 ? 503 : 200;
    res.end();
  });
  const fast = await startReceiver(t);
  const { notifier, countReaches } = start(t, [webhook({ url: slow.url }), webhook({ url: fast.url })], { backoff: { baseMs: 400, capMs: 400 } });
  for (const n of [1, 2, 3, 4, 5]) notifier.notify(notice({ summary: `n${n}` }));
  await countReaches('delivered', 10);
  t.same(summaries(slow.received), ['n1', 'n1', 'n2', 'n3', 'n4', 'n5'], 'n2 waited for n1 to be retried and delivered');
  t.same(summaries(fast.received), ['n1', 'n2', 'n3', 'n4', 'n5']);
  t.ok(fast.received.at(-1)!.at < slow.received[1]!.at, "the other webhook was done before the first one's retry");
});

t.test('close() waits for the attempt in flight, then abandons the queue in one log line', async (t) => {
  const receiver = await startReceiver(t, (res) => {
    setTimeout(() => res.end(), 150).unref();
  });
  const { notifier, lines, counts } = start(t, [webhook({ url: receiver.url })], { closeTimeoutMs: 5_000 });
  for (const n of [1, 2, 3]) notifier.notify(notice({ summary: `n${n}` }));
  await until(() => receiver.received.length === 1, 5_000, 'n1 in flight');
  await notifier.close();
  t.same(await counts(), { delivered: 1, dropped: 2 }, 'n1 finished; n2 and n3 were never started');
  t.same(lines.filter((l) => /abandoned/.test(l.msg)).map((l) => l.abandoned), [2], 'one line, with the count');

  notifier.notify(notice({ summary: 'late' }));
  await sleep(100);
  t.same(summaries(receiver.received), ['n1'], 'nothing is sent after close()');
  t.match(lines.at(-1), { level: 40, msg: /after shutdown/ });
  t.same(await counts(), { delivered: 1, dropped: 3 });
});

t.test('close() ends a hung attempt and a backoff wait at its deadline', async (t) => {
  const hung = await startReceiver(t, () => { /* never answers */ });
  const failing = await startReceiver(t, (res) => {
    res.statusCode = 503;
    res.end();
  });
  const { notifier, lines, counts } = start(t, [webhook({ url: hung.url }), webhook({ url: failing.url })], {
    closeTimeoutMs: 150,
    backoff: { baseMs: 30_000, capMs: 60_000 },
  });
  notifier.notify(notice());
  await until(async () => hung.received.length === 1 && (await counts()).retried === 1, 5_000, 'one attempt hung, one waiting to retry');
  const started = performance.now();
  await notifier.close();
  const took = performance.now() - started;
  t.ok(took >= 140 && took < 2_000, `close() took its 150 ms deadline, not the 5 s timeout or the 15 s backoff (${Math.round(took)} ms)`);
  t.match(lines.filter((l) => /abandoned/.test(l.msg)), [{ level: 50, abandoned: 2 }]);
  t.same(await counts(), { retried: 1, dropped: 2 });
});

t.test('the notifications config section', async (t) => {
  const parse = (webhooks: unknown) => notificationsSchema.safeParse({ webhooks });
  const problems = (webhooks: unknown): string[] => {
    const result = parse(webhooks);
    return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  t.test('defaults: every event, every severity, 5 s, 5 retries', async (t) => {
    const [hook] = notificationsSchema.parse({ webhooks: [{ url: 'https://hooks.slack.com/services/T/B/x' }] }).webhooks;
    t.ok(hook!.url instanceof URL);
    t.same({ ...hook, url: hook!.url.href }, {
      url: 'https://hooks.slack.com/services/T/B/x', minSeverity: 'info', headers: {}, timeout: 5_000, retries: 5,
    });
    t.equal(hook!.events, undefined, 'no events list: every event');
  });

  t.test('accepts a full webhook; header names are lower-cased', async (t) => {
    const result = parse([{
      url: 'https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=xyz',
      events: ['grant-requested', 'break-glass-started'],
      minSeverity: 'high',
      headers: { Authorization: 'Bearer t', 'X-Env': 'prod' },
      timeout: '2s',
      retries: 0,
    }]);
    t.ok(result.success, 'a Teams/Power Automate URL keeps its signature query');
    t.same(result.data?.webhooks[0]?.headers, { authorization: 'Bearer t', 'x-env': 'prod' });
  });

  t.test('http only on loopback', async (t) => {
    for (const url of ['http://localhost:8080/hook', 'http://127.0.0.1:9/x', 'http://[::1]:9/x', 'http://siem.localhost/in']) {
      t.same(problems([{ url }]), [], url);
    }
    const refused = problems([{ url: 'http://hooks.example.com/services/T/B/pathsecret' }]);
    t.same(refused, ['webhooks.0.url: expected https: plain http is allowed only for localhost, got http://hooks.example.com'],
      'the message names the origin only: the path is the credential');
  });

  t.test('bad URLs, without repeating them', async (t) => {
    t.match(problems([{ url: 'not a url pathsecret' }]), [/text that is not a URL$/]);
    t.match(problems([{ url: 'ftp://files.example.com/pathsecret' }]), [/got a ftp: URL$/]);
    t.match(problems([{ url: 'https://user:pathsecret@hooks.example.com/x' }]), [/without credentials \(https:\/\/hooks\.example\.com\); send them in headers/]);
    t.match(problems([{ url: 42 }]), [/expected a webhook URL .*, got 42/]);
    t.notOk(problems([{ url: 'not a url pathsecret' }, { url: 'ftp://x/pathsecret' }, { url: 'https://u:pathsecret@x/' }]).join('\n').includes('pathsecret'));
  });

  t.test('unknown events are refused with the list of valid ones', async (t) => {
    const [message] = problems([{ url: 'https://x.example/h', events: ['grant-aproved'] }]);
    t.match(message, /^webhooks\.0\.events\.0: unknown event "grant-aproved"; expected one of grant-requested, .*break-glass-reviewed$/);
    t.match(problems([{ url: 'https://x.example/h', events: [] }]), [/at least one event/]);
    t.match(problems([{ url: 'https://x.example/h', minSeverity: 'critical' }]), [/expected a severity: info, warning, high, got "critical"/]);
  });

  t.test('headers: valid names, none wardgate sets, no duplicates, values never shown', async (t) => {
    const url = 'https://x.example/h';
    t.same(problems([{ url, headers: { 'Bad Header': 'v' } }]), ['webhooks.0.headers.Bad Header: expected an HTTP header name such as Authorization, got "Bad Header"']);
    t.match(problems([{ url, headers: { 'Content-Type': 'text/plain' } }]), [/Content-Type is set by wardgate itself/]);
    t.match(problems([{ url, headers: { 'Proxy-Authorization': 'x' } }]), [/set by wardgate itself/]);
    t.match(problems([{ url, headers: { 'X-Token': 'a', 'x-token': 'b' } }]), [/x-token is given twice/]);
    const injected = problems([{ url, headers: { Authorization: 'Bearer headersecret\r\nX-Evil: 1' } }]);
    t.match(injected, [/^webhooks\.0\.headers\.Authorization: expected a header value without line breaks/]);
    const numeric = problems([{ url, headers: { 'X-Pin': 123456 } }]);
    t.match(numeric, [/expected the header value as text/]);
    t.notOk([...injected, ...numeric].join('\n').match(/headersecret|123456/), 'header values are secrets: not in messages');
  });

  t.test('timeout, retries, unknown keys, empty list', async (t) => {
    const url = 'https://x.example/h';
    t.match(problems([{ url, timeout: '0s' }]), [/expected a duration/]);
    t.match(problems([{ url, retries: 21 }]), [/webhooks\.0\.retries/]);
    t.match(problems([{ url, retries: 1.5 }]), [/webhooks\.0\.retries/]);
    t.match(problems([{ url, uri: url }]), [/uri/]);
    t.match(problems([]), [/at least one webhook/]);
    t.match(problems(['https://x.example/h']), [/expected a webhook: a mapping with a url/]);
    t.match(notificationsSchema.safeParse(null).error?.issues, [{ message: /expected a mapping with webhooks/ }]);
  });
});

t.test('no log line of any test holds a webhook URL path, query or header value', async (t) => {
  const text = allLogText.join('');
  t.ok(text.length > 1_000, 'the tests above did log');
  for (const secret of SECRETS) t.notOk(text.includes(secret), `${secret} is not in the logs`);
});

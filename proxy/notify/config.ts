import { z } from 'zod';
import { durationSchema } from '../../config/duration.js';
import { HTTP_TOKEN } from '../../config/http-token.js';
import { expected, shown } from '../../config/messages.js';
import { isLoopbackHost } from '../../config/schema.js';
import { NOTICE_EVENTS, SEVERITIES } from './notice.js';

/*
 * The `notifications:` section of the config: where notices about grants and break-glass
 * are posted.
 *
 *   notifications:
 *     webhooks:
 *       - url: https://hooks.slack.com/services/...
 *         events: [grant-requested, break-glass-started]   # default: every event
 *         minSeverity: warning                             # default: info (everything)
 *         headers: { Authorization: "Bearer ${env:HOOK_TOKEN}" }
 *         timeout: 5s                                      # per attempt
 *         retries: 5                                       # attempts after the first
 *
 * A webhook gets a notice when both filters pass. Webhook URLs and header values are
 * credentials (a Slack URL is all it takes to post to the channel), so no message here
 * repeats them: URLs are named by their origin, header values not at all.
 */

const URL_EXAMPLE = 'https://hooks.slack.com/services/...';

const webhookUrl = z.string({ error: expected(`a webhook URL such as ${URL_EXAMPLE}`) }).transform((text, ctx) => {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    ctx.addIssue({ code: 'custom', message: `expected a webhook URL such as ${URL_EXAMPLE}, got ${url ? `a ${url.protocol} URL` : 'text that is not a URL'}` });
    return z.NEVER;
  }
  if (url.username || url.password) {
    ctx.addIssue({ code: 'custom', message: `expected a webhook URL without credentials (${url.origin}); send them in headers, e.g. Authorization` });
    return z.NEVER;
  }
  // Notices name patients' clinicians and their reasons: plain HTTP only where nothing leaves the machine.
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    ctx.addIssue({ code: 'custom', message: `expected https: plain http is allowed only for localhost, got ${url.origin}` });
    return z.NEVER;
  }
  // Queries stay: Teams and Power Automate webhook URLs carry their signature in one.
  return url;
});

// Framing, routing and the body's type are undici's and the notifier's to set.
const RESERVED_HEADERS = new Set([
  'host', 'content-type', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te',
  'trailer', 'expect',
]);
const CONTROL_CHARACTERS = /[\0-\x08\x0a-\x1f\x7f]/;

const headers = z.record(z.string(), z.string({ error: 'expected the header value as text' }), {
  error: expected('a mapping of header names to values'),
}).transform((given, ctx) => {
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(given)) {
    const lower = name.toLowerCase();
    if (!HTTP_TOKEN.test(name)) {
      ctx.addIssue({ code: 'custom', path: [name], message: `expected an HTTP header name such as Authorization, got ${shown(name)}` });
    } else if (RESERVED_HEADERS.has(lower) || lower.startsWith('proxy-')) {
      ctx.addIssue({ code: 'custom', path: [name], message: `${name} is set by wardgate itself; it cannot be configured` });
    } else if (lower in result) {
      ctx.addIssue({ code: 'custom', path: [name], message: `${name} is given twice (header names ignore case)` });
    } else if (CONTROL_CHARACTERS.test(value)) {
      ctx.addIssue({ code: 'custom', path: [name], message: 'expected a header value without line breaks or control characters (the value is not shown: it may be a secret)' });
    } else {
      result[lower] = value;
    }
  }
  return result;
});

const webhook = z.strictObject({
  url: webhookUrl,
  events: z.array(z.enum(NOTICE_EVENTS, {
    error: (issue) => `unknown event ${shown(issue.input)}; expected one of ${NOTICE_EVENTS.join(', ')}`,
  }), { error: expected('a list of events') }).min(1, { error: 'expected at least one event (leave events out for all of them)' }).optional(),
  minSeverity: z.enum(SEVERITIES, { error: expected(`a severity: ${SEVERITIES.join(', ')}`) }).default('info'),
  headers: headers.default({}),
  timeout: durationSchema().default(5_000),
  retries: z.number({ error: expected('a number of retries from 0 to 20') }).int().min(0).max(20).default(5),
}, { error: (issue) => (issue.code === 'invalid_type' ? expected('a webhook: a mapping with a url')(issue) : undefined) });

export const notificationsSchema = z.strictObject({
  webhooks: z.array(webhook, { error: expected('a list of webhooks') })
    .min(1, { error: 'expected at least one webhook (or leave notifications out)' }),
}, { error: (issue) => (issue.code === 'invalid_type' ? expected('a mapping with webhooks')(issue) : undefined) });

export type NotificationsConfig = z.output<typeof notificationsSchema>;
export type WebhookConfig = NotificationsConfig['webhooks'][number];

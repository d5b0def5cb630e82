import type { Json } from '../store/store.js';

/*
 * What wardgate tells people about access changes (grants asked for, approved, ended) and
 * emergencies (break-glass). Producers build a Notice; notifiers (webhooks today) decide
 * where it goes. The event names are a closed list so the config can refuse a misspelt
 * filter at load instead of silently never matching it.
 */

export const NOTICE_EVENTS = [
  'grant-requested',
  'grant-approval',
  'grant-approved',
  'grant-denied',
  'grant-activated',
  'grant-expired',
  'grant-revoked',
  'grant-request-expired',
  'break-glass-started',
  'break-glass-ended',
  'break-glass-reviewed',
] as const;

export type NoticeEvent = (typeof NOTICE_EVENTS)[number];

/** Lowest first: a `minSeverity` filter passes its own level and those after it. */
export const SEVERITIES = ['info', 'warning', 'high'] as const;

export type Severity = (typeof SEVERITIES)[number];

export interface Notice {
  /** Stable event code, e.g. 'grant-requested', 'grant-approved', 'break-glass-started'. */
  event: NoticeEvent;
  severity: Severity;
  /** One line of plain text for people (Slack/Teams show it). */
  summary: string;
  /** When it happened, epoch ms. */
  at: number;
  /** Machine-readable details (ids, route, subject...), JSON only. */
  details: { [key: string]: Json | undefined };
}

export interface Notifier {
  /** Queues the notice and returns at once: delivery never holds up the caller. */
  notify(notice: Notice): void;
  /** Stops taking notices and settles what is in flight (bounded). */
  close(): Promise<void>;
}

import { z } from 'zod';
import { expected } from './messages.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** Parses `250ms`, `30s`, `5m`, `12h`, `90d` into milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const match = PATTERN.exec(text.trim());
  if (!match) return undefined;
  return Math.round(Number(match[1]) * UNITS[match[2]!]!);
}

/**
 * A duration in the config, to milliseconds. Zero only where `allowZero` says it means
 * something (a clock tolerance of none); elsewhere a zero timeout or age is a mistake.
 */
export function durationSchema({ allowZero = false }: { allowZero?: boolean } = {}) {
  return z.string({ error: expected('a duration such as 500ms, 30s, 5m or 1h') }).transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined || ms < 0 || (ms === 0 && !allowZero)) {
      ctx.addIssue({ code: 'custom', message: `expected a duration such as 500ms, 30s, 5m or 1h, got "${text}"` });
      return z.NEVER;
    }
    return ms;
  });
}

import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { expected, mappingOf, shown } from './values.js';

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
const MINUTES_PER_DAY = 24 * 60;
const ALL_DAYS = 0b1111111;

export interface TimeWindowValue {
  /** Bit i set: day i (0 Monday .. 6 Sunday) is listed. */
  days: number;
  /** Minutes after local midnight: start inclusive, end exclusive; end < start spans midnight. */
  start: number;
  end: number;
  /** The zone's canonical IANA name. */
  timeZone: string;
}

const day = z.enum(DAYS, {
  error: (issue) => `expected a day: one of ${DAYS.join(', ')} (lower case), got ${shown(issue.input)}`,
});

const HOURS = /^(\d\d):(\d\d)-(\d\d):(\d\d)$/;

const hours = z.string({ error: expected('hours such as 08:00-18:00') }).transform((input, ctx) => {
  const match = HOURS.exec(input);
  const [h1, m1, h2, m2] = match ? [Number(match[1]), Number(match[2]), Number(match[3]), Number(match[4])] : [NaN, NaN, NaN, NaN];
  const start = h1 * 60 + m1;
  const end = h2 * 60 + m2;
  // 24:00 may end a window (the end of the day); no other time past 23:59 exists.
  if (!match || h1 > 23 || m1 > 59 || m2 > 59 || end > MINUTES_PER_DAY) {
    ctx.addIssue({ code: 'custom', message: `expected hours such as 08:00-18:00 or 22:00-06:00 (HH:MM-HH:MM, 24-hour clock, end up to 24:00), got ${shown(input)}` });
    return z.NEVER;
  }
  if (start === end) {
    ctx.addIssue({ code: 'custom', message: `expected hours with different start and end (00:00-24:00, or no hours, for the whole day), got ${shown(input)}` });
    return z.NEVER;
  }
  return { start, end };
});

const timeZone = z.string({ error: expected('an IANA time zone such as Europe/London') }).transform((input, ctx) => {
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: input }).resolvedOptions().timeZone;
  } catch {
    ctx.addIssue({ code: 'custom', message: `expected an IANA time zone such as Europe/London, got ${shown(input)}, which is not a known zone` });
    return z.NEVER;
  }
});

const value = z.strictObject({
  days: z.array(day, { error: expected(`a list of days such as [mon, tue, wed, thu, fri]`) })
    .refine((list) => list.length > 0, { error: 'expected a non-empty list of days such as [mon, tue, wed, thu, fri] (leave days out for every day), got an empty list' })
    .optional(),
  hours: hours.optional(),
  timeZone,
}, { error: mappingOf('days, hours and timeZone', '{ days: [...], hours: HH:MM-HH:MM, timeZone: <IANA zone> }') }).transform((input): TimeWindowValue => ({
  days: input.days === undefined ? ALL_DAYS : input.days.reduce((bits, name) => bits | (1 << DAYS.indexOf(name)), 0),
  start: input.hours?.start ?? 0,
  end: input.hours?.end ?? MINUTES_PER_DAY,
  timeZone: input.timeZone,
}));

const WEEKDAY: Readonly<Record<string, number>> = { Mon: 0, Tue: 1, Wed: 2, Thu: 3, Fri: 4, Sat: 5, Sun: 6 };
// Beyond this, Date (and Intl) have no time to format.
const MAX_TIME = 8.64e15;

/**
 * `timeWindow: { days: [mon, tue, wed, thu, fri], hours: 08:00-18:00, timeZone: Europe/London }`:
 * the request's time, as a wall clock in that zone reads it, falls inside. Daylight saving
 * is the zone's business: 08:00 is 08:00 local in winter and in summer.
 *
 * A window whose end is before its start spans midnight, and belongs to the day it
 * STARTED on: `days: [fri], hours: 22:00-06:00` holds Friday 22:00 to Saturday 06:00, so
 * Saturday 03:00 is inside, and Friday 03:00 is not (unless thu is listed too).
 */
export const timeWindow = defineCriterion({
  name: 'timeWindow',
  schema: value,
  category: 'time',
  passReason: 'time-window-ok',
  failReason: 'outside-hours',
  needsIdentity: false,
  compile({ days, start, end, timeZone: zone }) {
    const format = new Intl.DateTimeFormat('en-US', { timeZone: zone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    const overnight = end < start;

    function inside(time: number): boolean {
      let weekday = -1;
      let minute = 0;
      for (const part of format.formatToParts(time)) {
        if (part.type === 'weekday') weekday = WEEKDAY[part.value] ?? -1;
        else if (part.type === 'hour') minute += Number(part.value) * 60;
        else if (part.type === 'minute') minute += Number(part.value);
      }
      if (weekday < 0) return false;
      if (!overnight) return (days & (1 << weekday)) !== 0 && minute >= start && minute < end;
      // Before the end: the window began the day before.
      const began = minute >= start ? weekday : minute < end ? (weekday + 6) % 7 : -1;
      return began >= 0 && (days & (1 << began)) !== 0;
    }

    // Formatting in a zone costs microseconds; every request within the same UTC minute
    // gets the same answer (zone offsets in use are whole minutes), so it is worked out
    // once a minute, and otherwise costs one comparison and allocates nothing.
    let lastMinute = NaN;
    let lastInside = false;
    return (ctx) => {
      const time = ctx.time;
      if (!(time >= -MAX_TIME && time <= MAX_TIME)) return false;
      const minute = Math.floor(time / 60_000);
      if (minute !== lastMinute) {
        lastInside = inside(minute * 60_000);
        lastMinute = minute;
      }
      return lastInside;
    };
  },
});

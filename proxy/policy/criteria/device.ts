import { durationSchema } from '../../../config/duration.js';
import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { byShape, expected, isMapping, listOf, mappingOf, text } from './values.js';

export interface DeviceValue {
  trusted?: boolean;
  known?: boolean;
  managed?: boolean;
  compliant?: boolean;
  certificate?: boolean;
  /** Longest time since the MDM/EDR last observed the device's posture, ms. */
  maxPostureAge?: number;
  ids?: string[];
}

const flag = (name: string) => z.boolean({ error: expected(`true or false for ${name}`) }).optional();
const KEYS = 'trusted, known, managed, compliant, certificate, maxPostureAge, ids';

const form = z.strictObject({
  trusted: flag('trusted'),
  known: flag('known'),
  managed: flag('managed'),
  compliant: flag('compliant'),
  certificate: flag('certificate'),
  maxPostureAge: durationSchema().optional(),
  ids: listOf(text('a device id'), 'device ids').optional(),
}, { error: mappingOf(`any of ${KEYS}`, `a mapping of any of ${KEYS}`) }).refine((input) => Object.values(input).some((v) => v !== undefined), {
  error: `expected at least one of ${KEYS}, got an empty mapping`,
  // After an unknown key, which says enough, the mapping is not empty: say nothing more.
  when: (payload) => payload.issues.length === 0,
}).transform((input): DeviceValue => input);

const word = z.literal('trusted', { error: expected(`trusted, or a mapping of any of ${KEYS}`) })
  .transform((): DeviceValue => ({ trusted: true }));

/**
 * `device: trusted`, or `device: { managed: true, maxPostureAge: 1h, ... }`: every given
 * fact about the device must hold. A flag set to false demands it be false, which a deny
 * rule can use (`device: { managed: false }` refuses unmanaged devices).
 */
export const device = defineCriterion({
  name: 'device',
  schema: byShape(isMapping, form, word),
  category: 'device',
  passReason: 'device-ok',
  failReason: 'device-untrusted',
  needsIdentity: false,
  compile(value) {
    const { trusted, known, managed, compliant, certificate, maxPostureAge } = value;
    const ids = value.ids === undefined ? undefined : new Set<string | undefined>(value.ids);
    return (ctx) => {
      const d = ctx.device;
      if (trusted !== undefined && d.trusted !== trusted) return false;
      if (known !== undefined && d.known !== known) return false;
      if (managed !== undefined && d.managed !== managed) return false;
      if (compliant !== undefined && d.compliant !== compliant) return false;
      if (certificate !== undefined && d.certificate !== certificate) return false;
      // A posture never observed is not a fresh one.
      if (maxPostureAge !== undefined && (d.observedAt === undefined || !(ctx.time - d.observedAt <= maxPostureAge))) return false;
      if (ids !== undefined && (d.id === undefined || !ids.has(d.id))) return false;
      return true;
    };
  },
  detail: (ctx) => ctx.device.problem,
});

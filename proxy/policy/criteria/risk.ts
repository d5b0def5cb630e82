import { z } from 'zod';
import { defineCriterion } from '../criterion.js';
import { byShape, expected, isMapping, mappingOf } from './values.js';

const score = z.number({ error: expected('a risk score from 0 to 100') })
  .min(0, { error: (issue) => `expected a risk score from 0 to 100, got ${String(issue.input)}` })
  .max(100, { error: (issue) => `expected a risk score from 0 to 100, got ${String(issue.input)}` });

const form = z.strictObject({ max: score }, { error: mappingOf('max', '{ max: <0 to 100> }') }).transform((input) => input.max);

/** `risk: 40` or `risk: { max: 40 }`: the request's risk score (0 to 100) is at most this. */
export const risk = defineCriterion({
  name: 'risk',
  schema: byShape(isMapping, form, score),
  category: 'risk',
  passReason: 'risk-ok',
  failReason: 'risk-too-high',
  needsIdentity: false,
  // A score that is not a number (NaN) compares false, and so fails.
  compile: (max) => (ctx) => ctx.risk <= max,
});

import { z } from 'zod';
import { breakGlassSchema } from '../grants/config.js';
import { CRITERIA } from './criteria/index.js';

/*
 * The policy language as written in a route's config, checked at load. A rule is one
 * criterion (`{ groups: [radiology] }`), or `all` / `any` of rules, or `not` a rule; any
 * rule may carry a `name`, which deny pages and `policy explain` show as the deciding
 * rule. Each criterion's own schema checks its value, so a bad CIDR or time zone is
 * reported at its exact path (routes[2].policy.allow[0].all[1].cidr[0]).
 */

export type Rule =
  | { kind: 'criterion'; criterion: string; value: unknown; name: string | undefined }
  | { kind: 'all' | 'any'; rules: Rule[]; name: string | undefined }
  | { kind: 'not'; rule: Rule; name: string | undefined };

// Deeper nesting than this is a mistake, and would let a config recurse without bound.
const MAX_DEPTH = 12;
const COMBINATORS = ['all', 'any', 'not'];

type Issues = z.core.$RefinementCtx;
type Path = Array<string | number>;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function criterionNames(): string {
  return [...CRITERIA.keys()].sort().join(', ');
}

function parseRule(value: unknown, issues: Issues, path: Path, depth: number): Rule | undefined {
  if (depth > MAX_DEPTH) {
    issues.addIssue({ code: 'custom', path, message: `rules nest deeper than ${MAX_DEPTH} levels` });
    return undefined;
  }
  if (!isPlainObject(value)) {
    issues.addIssue({ code: 'custom', path, message: 'expected a rule: one criterion such as { groups: [radiology] }, or all / any / not of rules' });
    return undefined;
  }
  let name: string | undefined;
  if ('name' in value) {
    if (typeof value.name !== 'string' || !/^[\w .:/-]{1,80}$/.test(value.name)) {
      issues.addIssue({ code: 'custom', path: [...path, 'name'], message: 'expected a rule name of up to 80 letters, digits, spaces and . : / _ -' });
      return undefined;
    }
    name = value.name;
  }
  const keys = Object.keys(value).filter((key) => key !== 'name');
  if (keys.length !== 1) {
    issues.addIssue({
      code: 'custom',
      path,
      message: keys.length === 0
        ? 'expected a rule: one criterion such as { groups: [radiology] }, or all / any / not of rules'
        : `a rule holds one criterion, got ${keys.join(', ')}; combine several with all: [...] or any: [...]`,
    });
    return undefined;
  }
  const key = keys[0]!;
  const inner = value[key];
  if (key === 'all' || key === 'any') {
    if (!Array.isArray(inner) || inner.length === 0) {
      issues.addIssue({ code: 'custom', path: [...path, key], message: `expected a non-empty list of rules under ${key}` });
      return undefined;
    }
    const rules = inner.map((item, index) => parseRule(item, issues, [...path, key, index], depth + 1));
    return rules.every((rule) => rule !== undefined) ? { kind: key, rules: rules as Rule[], name } : undefined;
  }
  if (key === 'not') {
    const rule = parseRule(inner, issues, [...path, 'not'], depth + 1);
    return rule ? { kind: 'not', rule, name } : undefined;
  }
  const criterion = CRITERIA.get(key);
  if (!criterion) {
    issues.addIssue({ code: 'custom', path: [...path, key], message: `unknown criterion "${key}"; expected one of: ${criterionNames()}, or ${COMBINATORS.join(' / ')}` });
    return undefined;
  }
  const parsed = criterion.schema.safeParse(inner);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      issues.addIssue({ code: 'custom', path: [...path, key, ...(issue.path as Path)], message: issue.message });
    }
    return undefined;
  }
  return { kind: 'criterion', criterion: key, value: parsed.data, name };
}

const ruleList = (what: 'allow' | 'deny') => z.unknown().transform((value, issues): Rule[] => {
  if (!Array.isArray(value)) {
    issues.addIssue({ code: 'custom', message: `expected a list of ${what} rules` });
    return z.NEVER;
  }
  const rules = value.map((item, index) => parseRule(item, issues, [index], 0));
  return rules.every((rule) => rule !== undefined) ? rules as Rule[] : z.NEVER;
});

export const policySchema = z.strictObject({
  /**
   * trusted: only known, managed, compliant devices (the default once `devices:` is
   * configured); any: the rules alone decide; quarantine: a remediation route that
   * untrusted devices may reach, and that device refusals point to.
   */
  devices: z.enum(['trusted', 'any', 'quarantine']).optional(),
  /** A request is allowed when any of these matches, and no deny rule does. */
  allow: ruleList('allow').refine((rules) => rules.length > 0, { error: 'expected at least one allow rule (nothing is allowed by default)' }),
  /** Any match refuses the request, whatever the allow rules say. */
  deny: ruleList('deny').default([]),
  /** What a refused user can do about it, shown on the deny page (e.g. who to call). */
  remediation: z.string().min(1).max(500).optional(),
  /** Show only that access was refused, not which conditions failed. */
  hideDetails: z.boolean().default(false),
  /**
   * Emergency access: members of these groups may let themselves in without the rules
   * above, for a short time, by giving a reason; loudly, and reviewed afterwards.
   */
  breakGlass: breakGlassSchema.optional(),
}, {
  error: (issue) => (issue.input === undefined
    ? 'expected a policy with allow rules: a route without one is refused, since nothing is allowed by default'
    : undefined),
});

export type PolicyConfig = z.output<typeof policySchema>;

/** True when any rule of the policy, at any depth, tests `criterion`. */
export function usesCriterion(policy: PolicyConfig, criterion: string): boolean {
  const uses = (rule: Rule): boolean => (rule.kind === 'criterion' ? rule.criterion === criterion
    : rule.kind === 'not' ? uses(rule.rule) : rule.rules.some(uses));
  return policy.allow.some(uses) || policy.deny.some(uses);
}

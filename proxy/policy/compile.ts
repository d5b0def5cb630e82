import type { RequestContext } from './context.js';
import { CRITERIA } from './criteria/index.js';
import type { Category, Criterion, Predicate, StepUpHint } from './criterion.js';
import { LOGIN_REQUIRED, type Decision } from './decision.js';
import type { PolicyConfig, Rule } from './rules.js';

/*
 * A route's policy, compiled once at load into plain closures. Deciding a request that is
 * allowed costs the deny rules' tests and the first matching allow rule's; only a refusal
 * walks the rules again to say why, so explanations cost nothing on the allowed path.
 *
 *   deny rules (any match: deny) -> device gate -> signed in? (no: login)
 *     -> allow rules (first match: allow) -> step-up if a stronger sign-in would match one,
 *        else deny with what the closest allow rule lacked
 *
 * Break-glass comes last: when the person opened emergency access on the route and is
 * still in one of its groups, whatever the rules refused is allowed, until it ends. It
 * needs a signed-in person, like everything else.
 */

/** The rule a break-glass decision names; the pipeline marks every such response. */
export const BREAK_GLASS_RULE = 'break-glass';

/** A criterion standing between the request and access, as the explanation reports it. */
interface Blocker {
  readonly criterion: Criterion;
  /** true: refused because it matched (a deny rule, or under `not`). */
  readonly matched: boolean;
  /** What a step-up would have to bring, when one can fix this criterion. */
  readonly hint: StepUpHint | undefined;
}

interface Node {
  readonly test: Predicate;
  readonly needsIdentity: boolean;
  /** Why `test(ctx)` is not `want`; only called when it is not. */
  why(ctx: RequestContext, want: boolean): readonly Blocker[];
}

export interface CompiledPolicy {
  decide(ctx: RequestContext): Decision;
  /** Strength every allow rule asks for, requested at the first sign-in to save a step-up. */
  readonly signInHint: StepUpHint | undefined;
}

export interface PolicyOptions {
  /** Untrusted devices are refused before the rules (`devices: trusted`). */
  requireTrustedDevice: boolean;
}

const canStepUp = (blocker: Blocker): boolean => blocker.hint !== undefined;

/** The explanation to report out of several: one a step-up can fix, else the shortest. */
function closest(options: ReadonlyArray<readonly Blocker[]>): readonly Blocker[] {
  let best: readonly Blocker[] = [];
  let bestFixable = false;
  for (let i = 0; i < options.length; i++) {
    const option = options[i]!;
    const fixable = option.every(canStepUp);
    if (i === 0 || (fixable && !bestFixable) || (fixable === bestFixable && option.length < best.length)) {
      best = option;
      bestFixable = fixable;
    }
  }
  return best;
}

function compileRule(rule: Rule): Node {
  if (rule.kind === 'criterion') {
    const criterion = CRITERIA.get(rule.criterion)!;
    const test = criterion.compile(rule.value);
    // Made once: explaining a refusal allocates no blockers, only the lists that hold them.
    const failed: readonly Blocker[] = Object.freeze([Object.freeze({ criterion, matched: false, hint: criterion.stepUp?.(rule.value) })]);
    const matched: readonly Blocker[] = Object.freeze([Object.freeze({ criterion, matched: true, hint: undefined })]);
    return { test, needsIdentity: criterion.needsIdentity, why: (_ctx, want) => (want ? failed : matched) };
  }
  if (rule.kind === 'not') {
    const inner = compileRule(rule.rule);
    const test = inner.test;
    return { test: (ctx) => !test(ctx), needsIdentity: inner.needsIdentity, why: (ctx, want) => inner.why(ctx, !want) };
  }
  const children = rule.rules.map(compileRule);
  const tests = children.map((child) => child.test);
  const needsIdentity = children.some((child) => child.needsIdentity);
  const all = rule.kind === 'all';
  // Unrolled for the common small cases: a closure call per child, no iterator.
  const test: Predicate = tests.length === 1 ? tests[0]!
    : tests.length === 2 ? (all ? ((a, b) => (ctx: RequestContext) => a(ctx) && b(ctx))(tests[0]!, tests[1]!) : ((a, b) => (ctx: RequestContext) => a(ctx) || b(ctx))(tests[0]!, tests[1]!))
      : all ? (ctx) => {
        for (let i = 0; i < tests.length; i++) if (!tests[i]!(ctx)) return false;
        return true;
      } : (ctx) => {
        for (let i = 0; i < tests.length; i++) if (tests[i]!(ctx)) return true;
        return false;
      };
  // Plain loops: Array#flatMap measured some 15 times slower here on Node 20, and a
  // refusal with no matching rule asks every allow rule why.
  const why = (ctx: RequestContext, want: boolean): readonly Blocker[] => {
    if (all || !want) {
      // Why an `all` failed: every child that failed. Why a rule matched (a deny rule, or
      // under `not`): every child that matched, since each is part of what the rule named.
      const blockers: Blocker[] = [];
      for (const child of children) if (child.test(ctx) !== want) blockers.push(...child.why(ctx, want));
      return blockers;
    }
    // Why an `any` failed: turning one child round is enough, so the closest is reported.
    const options: Array<readonly Blocker[]> = [];
    for (const child of children) options.push(child.why(ctx, want));
    return closest(options);
  };
  return { test, needsIdentity, why };
}

const label = (list: 'allow' | 'deny', index: number, rule: Rule): string => `${list}[${index}]${rule.name ? ` ${rule.name}` : ''}`;

/** Adds `item` unless present: these lists hold a handful of codes, where a Set costs more. */
function addOnce<T>(list: T[], item: T): void {
  if (!list.includes(item)) list.push(item);
}

function unique<T>(items: readonly T[]): T[] {
  const out: T[] = [];
  for (const item of items) addOnce(out, item);
  return out;
}

function reasonsOf(blockers: readonly Blocker[], ctx: RequestContext): string[] {
  const reasons: string[] = [];
  for (const { criterion, matched } of blockers) {
    addOnce(reasons, criterion.failReason);
    const detail = matched ? undefined : criterion.detail?.(ctx);
    if (detail) addOnce(reasons, detail);
  }
  return reasons;
}

function categoriesOf(blockers: readonly Blocker[]): Category[] {
  const categories: Category[] = [];
  for (const blocker of blockers) addOnce(categories, blocker.criterion.category);
  return categories;
}

function mergeStepUp(blockers: readonly Blocker[]): StepUpHint {
  let acr: readonly string[] | undefined;
  const amr: string[] = [];
  let maxAgeMs: number | undefined;
  for (const { hint } of blockers) {
    if (!hint) continue;
    acr ??= hint.acr;
    for (const method of hint.amr ?? []) addOnce(amr, method);
    if (hint.maxAgeMs !== undefined) maxAgeMs = Math.min(maxAgeMs ?? Infinity, hint.maxAgeMs);
  }
  const hint: { acr?: readonly string[]; amr?: string[]; maxAgeMs?: number } = {};
  if (acr) hint.acr = acr;
  if (amr.length) hint.amr = amr;
  if (maxAgeMs !== undefined) hint.maxAgeMs = maxAgeMs;
  return hint;
}

/** The strength criteria a rule requires outright (not under any / not). */
function requiredStrength(rule: Rule): StepUpHint {
  const direct = rule.kind === 'criterion' ? [rule] : rule.kind === 'all' ? rule.rules : [];
  const blockers: Blocker[] = [];
  for (const r of direct) {
    if (r.kind !== 'criterion') continue;
    const criterion = CRITERIA.get(r.criterion)!;
    if (criterion.stepUp) blockers.push({ criterion, matched: false, hint: criterion.stepUp(r.value) });
  }
  return mergeStepUp(blockers);
}

/** acr asked at the first sign-in only when every allow rule asks for the same. */
function signInHintOf(rules: Rule[]): StepUpHint | undefined {
  const hints = rules.map(requiredStrength);
  const acr = hints[0]?.acr;
  if (!acr || !hints.every((hint) => hint.acr !== undefined && hint.acr.join(' ') === acr.join(' '))) return undefined;
  return { acr };
}

export function compilePolicy(config: PolicyConfig, options: PolicyOptions): CompiledPolicy {
  const deny = config.deny.map(compileRule);
  const allow = config.allow.map(compileRule);
  const denyTests = deny.map((node) => node.test);
  const allowTests = allow.map((node) => node.test);
  // Without a signed-in user, deny rules that read the identity cannot be judged yet.
  const anonymousDeny = deny.map((node) => !node.needsIdentity);
  const denyLabels = config.deny.map((rule, i) => label('deny', i, rule));
  const allowLabels = config.allow.map((rule, i) => label('allow', i, rule));
  const { requireTrustedDevice } = options;

  // The decision for each allow rule is the same object every time: no allocation.
  const allowed: Decision[] = config.allow.map((rule, i) => Object.freeze({
    outcome: 'allow',
    reasons: Object.freeze(unique(passReasons(rule))),
    rule: allowLabels[i],
    closest: undefined,
    missing: Object.freeze([]),
    stepUp: undefined,
  }));

  function refused(blockers: readonly Blocker[], ctx: RequestContext, rule: string | undefined, closestRule: string | undefined): Decision {
    return {
      outcome: 'deny',
      reasons: reasonsOf(blockers, ctx),
      rule,
      closest: closestRule,
      missing: categoriesOf(blockers),
      stepUp: undefined,
    };
  }

  function explainRefusal(ctx: RequestContext): Decision {
    // The first rule a step-up would satisfy decides; failing that, the closest one explains.
    const explanations: Array<readonly Blocker[]> = [];
    for (let i = 0; i < allow.length; i++) {
      const blockers = allow[i]!.why(ctx, true);
      if (blockers.length > 0 && blockers.every(canStepUp)) {
        return {
          outcome: 'step-up',
          reasons: reasonsOf(blockers, ctx),
          rule: undefined,
          closest: allowLabels[i],
          missing: categoriesOf(blockers),
          stepUp: mergeStepUp(blockers),
        };
      }
      explanations.push(blockers);
    }
    const best = closest(explanations);
    return refused(best, ctx, undefined, allowLabels[explanations.indexOf(best)]);
  }

  const breakGlassGroups = config.breakGlass ? new Set(config.breakGlass.groups) : undefined;
  const brokeGlass: Decision = Object.freeze({
    outcome: 'allow',
    reasons: Object.freeze(['break-glass']),
    rule: BREAK_GLASS_RULE,
    closest: undefined,
    missing: Object.freeze([]),
    stepUp: undefined,
  });

  function decide(ctx: RequestContext): Decision {
    const decision = judge(ctx);
    // A person in a browser session only: an API token with the same subject (a SMART
    // app's, say) keeps its scopes and rules.
    if (decision.outcome === 'allow' || !breakGlassGroups || !ctx.breakGlass || ctx.identity?.kind !== 'session' || ctx.time >= ctx.breakGlass.endsAt) return decision;
    // Still in the group now: leaving it (or being taken out) ends emergency access too.
    return ctx.identity.groups.some((group) => breakGlassGroups.has(group)) ? brokeGlass : decision;
  }

  function judge(ctx: RequestContext): Decision {
    const signedIn = ctx.identity !== undefined;
    for (let i = 0; i < denyTests.length; i++) {
      if ((signedIn || anonymousDeny[i]) && denyTests[i]!(ctx)) return refused(deny[i]!.why(ctx, false), ctx, denyLabels[i], undefined);
    }
    if (requireTrustedDevice && !ctx.device.trusted) {
      const reasons = ctx.device.problem ? ['device-untrusted', ctx.device.problem] : ['device-untrusted'];
      return { outcome: 'deny', reasons, rule: 'devices: trusted', closest: undefined, missing: ['device'], stepUp: undefined };
    }
    if (!signedIn) return LOGIN_REQUIRED;
    for (let i = 0; i < allowTests.length; i++) if (allowTests[i]!(ctx)) return allowed[i]!;
    return explainRefusal(ctx);
  }

  return { decide, signInHint: signInHintOf(config.allow) };
}

/** The criteria a rule is made of, as pass reasons (what an allow decision reports). */
function passReasons(rule: Rule): string[] {
  if (rule.kind === 'criterion') return [CRITERIA.get(rule.criterion)!.passReason];
  if (rule.kind === 'not') return [];
  return rule.rules.flatMap(passReasons);
}

/*
 * How config faults describe what they got, shared by the schema, the plugins' sections and
 * the policy criteria, so every message reads the same: "expected X, got Y".
 */

/** A config value as an error message shows it: strings quoted, structures named. */
export function shown(input: unknown): string {
  if (input === undefined) return 'nothing';
  if (input === null) return 'null (an empty value)';
  if (typeof input === 'string') return JSON.stringify(input.length > 80 ? `${input.slice(0, 77)}...` : input);
  if (typeof input === 'number' || typeof input === 'boolean') return String(input);
  if (Array.isArray(input)) return 'a list';
  if (typeof input === 'object') return 'a mapping';
  return `a ${typeof input}`;
}

/** An error message function for a value of the wrong kind: what was wanted, what came. */
export function expected(what: string): (issue: { input?: unknown }) => string {
  return (issue) => `expected ${what}, got ${shown(issue.input)}`;
}


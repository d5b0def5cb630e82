import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, isMap, isNode, isScalar, type Document } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../proxy/errors.js';
import { buildConfigSchema, type WardgateConfig } from './schema.js';

/*
 * Loads a config file: YAML, then `${env:NAME}` / `${file:PATH}` secrets, then the
 * schema. Whatever is wrong is reported as `file:line:col: path: what was expected`, all
 * faults at once, so an operator fixes a file in one round.
 */

type Segment = string | number;

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}

function locate(file: string, doc: Document, lines: LineCounter, path: readonly PropertyKey[], atKey = false): string {
  if (atKey && path.length > 0) {
    // An unknown key: point at the key itself (its value may start on the next line).
    const parent = doc.getIn(path.slice(0, -1) as Segment[], true);
    const pair = isMap(parent) ? parent.items.find((item) => isScalar(item.key) && item.key.value === path[path.length - 1]) : undefined;
    if (pair && isNode(pair.key) && pair.key.range) {
      const { line, col } = lines.linePos(pair.key.range[0]);
      return `${file}:${line}:${col}`;
    }
  }
  // Walk up until a node exists: a missing key is reported at its parent.
  for (let depth = path.length; depth >= 0; depth--) {
    const node = doc.getIn(path.slice(0, depth) as Segment[], true);
    if (isNode(node) && node.range) {
      const { line, col } = lines.linePos(node.range[0]);
      return `${file}:${line}:${col}`;
    }
  }
  return file;
}

const REFERENCE = /\$(\$?)\{(env|file):([^}]*)\}/g;

/** Replaces secret references inside one string; throws a message naming the fault. */
function substitute(text: string, baseDir: string): string {
  return text.replace(REFERENCE, (whole, escaped: string, kind: string, ref: string) => {
    if (escaped) return whole.slice(1);
    if (kind === 'env') {
      const cut = ref.indexOf(':-');
      const name = cut === -1 ? ref : ref.slice(0, cut);
      const fallback = cut === -1 ? undefined : ref.slice(cut + 2);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`"${name}" is not an environment variable name`);
      const value = process.env[name];
      if (value !== undefined && value !== '') return value;
      if (fallback !== undefined) return fallback;
      throw new Error(`environment variable ${name} is not set`);
    }
    const path = resolve(baseDir, ref);
    try {
      return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new Error(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  });
}

interface Fault {
  path: Segment[];
  message: string;
  /** Locate the key named last in `path` rather than its value. */
  atKey?: boolean;
}

function substituteAll(value: unknown, baseDir: string, path: Segment[], faults: Fault[]): unknown {
  if (typeof value === 'string') {
    try {
      return substitute(value, baseDir);
    } catch (err) {
      faults.push({ path, message: (err as Error).message });
      return value;
    }
  }
  if (Array.isArray(value)) return value.map((item, i) => substituteAll(item, baseDir, [...path, i], faults));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = substituteAll(item, baseDir, [...path, key], faults);
    return out;
  }
  return value;
}

function fail(file: string, doc: Document, lines: LineCounter, faults: readonly Fault[]): never {
  const messages = faults.map((f) => `${locate(file, doc, lines, f.path, f.atKey)}: ${f.path.length ? `${formatPath(f.path)}: ` : ''}${f.message}`);
  const first = faults[0]!;
  const error = new ConfigError(file, formatPath(first.path), first.message, locate(file, doc, lines, first.path, first.atKey));
  error.message = messages.join('\n');
  throw error;
}

function issuesToFaults(issues: readonly z.core.$ZodIssue[]): Fault[] {
  // An unknown key is reported at the key itself, so the location points at the typo.
  return issues.flatMap((issue): Fault[] => issue.code === 'unrecognized_keys'
    ? issue.keys.map((key) => ({ path: [...(issue.path as Segment[]), key], message: `unknown key "${key}"`, atKey: true }))
    : [{ path: issue.path as Segment[], message: issue.message, atKey: issue.code === 'invalid_key' }]);
}

/** Parses and validates config text; `file` names it in errors and anchors relative paths. */
export function parseConfig(text: string, file: string): WardgateConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const messages = doc.errors.map((e) => {
      const { line, col } = lines.linePos(e.pos[0]);
      return `${file}:${line}:${col}: ${e.message.split('\n')[0]}`;
    });
    const error = new ConfigError(file, '', 'invalid YAML');
    error.message = messages.join('\n');
    throw error;
  }
  const raw: unknown = doc.toJS();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(file, '', 'expected a mapping at the top level (listen, admin, routes, ...)');
  }
  const baseDir = dirname(resolve(file));
  const faults: Fault[] = [];
  const substituted = substituteAll(raw, baseDir, [], faults);
  // Validate the rest even when a reference failed, so one round names every fault; what
  // the schema says about an unresolved reference itself (or inside it) is only noise.
  const parsed = buildConfigSchema(baseDir).safeParse(substituted);
  if (!parsed.success) {
    const within = (path: Segment[], prefix: Segment[]): boolean => prefix.every((segment, i) => path[i] === segment);
    faults.push(...issuesToFaults(parsed.error.issues).filter((f) => !faults.some((ref) => within(f.path, ref.path))));
  }
  if (faults.length > 0 || !parsed.success) fail(file, doc, lines, faults);
  return parsed.data;
}

export function loadConfig(file: string): WardgateConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, '', `cannot read config file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return parseConfig(text, file);
}

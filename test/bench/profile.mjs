// Summarizes .cpuprofile files (node --cpu-prof; run.sh writes them with BENCH_CPU_PROF=DIR):
// where the CPU time went, by function (self and total time) and by file/package.
//
//   node test/bench/profile.mjs FILE.cpuprofile... [--top N] [--own] [--skip S] [--until S] [--callers NAME] [--within NAME]
//
// --callers NAME adds the call paths (up to 6 frames) into functions called NAME, by self time.
// --within NAME counts only samples with a function called NAME on the stack (what NAME costs).
// --skip leaves out each profile's first S seconds (start-up, sign-in, warm-up: with run.sh's
// defaults, the measured run starts about 5 s after wardgate does), --until all after S seconds.
// Several files (e.g. a cluster's workers) are summed. --own lists only wardgate's own code
// (dist/proxy/**, dist/config/**) in the function tables, named by their .ts source and line
// (through dist's source maps). Times are milliseconds of samples; "total" counts a function
// once per sample even when it recurses.
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '30' },
    own: { type: 'boolean', default: false },
    skip: { type: 'string', default: '0' },
    until: { type: 'string', default: 'Infinity' },
    callers: { type: 'string' },
    within: { type: 'string' },
  },
});
if (positionals.length === 0) {
  console.error('usage: node profile.mjs FILE.cpuprofile... [--top N] [--own] [--skip S] [--until S] [--callers NAME] [--within NAME]');
  process.exit(2);
}
const TOP = Number(values.top);
const SKIP_US = Number(values.skip) * 1e6;
const UNTIL_US = Number(values.until) * 1e6;

/** Where a frame's code lives: wardgate's own files, a package, Node itself, or V8's buckets. */
function placeOf(url) {
  if (!url) return '(v8/native)';
  const own = /\/dist\/((?:proxy|config)\/.*)\.js$/.exec(url);
  if (own) return `wardgate ${own[1]}.ts`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return `package ${pkg[1]}`;
  if (url.startsWith('node:')) return `node ${url.slice(5)}`;
  return url.replace(/^file:\/\//, '');
}

const maps = new Map();
/** The .ts line of a line (0-based) of compiled wardgate code, or undefined. */
function sourceLine(url, line, column) {
  if (!maps.has(url)) {
    let map;
    try {
      const file = `${fileURLToPath(url)}.map`;
      if (existsSync(file)) map = new SourceMap(JSON.parse(readFileSync(file, 'utf8')));
    } catch {
      map = undefined;
    }
    maps.set(url, map);
  }
  const entry = maps.get(url)?.findEntry(line, column);
  return entry && typeof entry.originalLine === 'number' ? entry.originalLine + 1 : undefined;
}

const self = new Map(); // function key -> ms
const total = new Map();
const byPlace = new Map();
const callerPaths = new Map(); // --callers: call path -> ms
let grand = 0;

for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  // Self time per node from the samples and their time deltas (µs), not hitCount x average.
  const nodeSelf = new Map();
  let at = 0; // µs since the profile started
  profile.samples.forEach((id, i) => {
    at += profile.timeDeltas[i] ?? 0;
    if (at < SKIP_US || at > UNTIL_US) return;
    const dt = (profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0) / 1000;
    nodeSelf.set(id, (nodeSelf.get(id) ?? 0) + dt);
  });
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (n) => {
    const { functionName, url, lineNumber, columnNumber } = n.callFrame;
    const name = functionName || '(anonymous)';
    if (!url) return name;
    const place = placeOf(url);
    const line = place.startsWith('wardgate ') ? sourceLine(url, lineNumber, columnNumber) : undefined;
    return `${name}  ${place}:${line ?? `${lineNumber + 1} (compiled)`}`;
  };
  const under = (id) => {
    for (let up = id; up !== undefined; up = parent.get(up)) if (nodes.get(up).callFrame.functionName === values.within) return true;
    return false;
  };
  for (const [id, ms] of nodeSelf) {
    if (ms <= 0) continue;
    if (values.within !== undefined && !under(id)) continue;
    const node = nodes.get(id);
    grand += ms;
    const key = keyOf(node);
    self.set(key, (self.get(key) ?? 0) + ms);
    const place = node.callFrame.url ? placeOf(node.callFrame.url) : key;
    if (values.callers !== undefined && node.callFrame.functionName === values.callers) {
      const path = [];
      for (let up = parent.get(id); up !== undefined && path.length < 6; up = parent.get(up)) path.push(keyOf(nodes.get(up)));
      const k = path.join('\n      <- ');
      callerPaths.set(k, (callerPaths.get(k) ?? 0) + ms);
    }
    byPlace.set(place, (byPlace.get(place) ?? 0) + ms);
    // Total: every distinct function on this sample's stack.
    const seen = new Set();
    for (let up = id; up !== undefined; up = parent.get(up)) {
      const k = keyOf(nodes.get(up));
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + ms);
    }
  }
}

const pct = (ms) => `${((100 * ms) / grand).toFixed(1).padStart(5)}%`;
const row = (ms, label) => `${ms.toFixed(0).padStart(8)} ms ${pct(ms)}  ${label}`;
const keep = (key) => !values.own || / wardgate /.test(` ${key}`);
const topOf = (map) => [...map].filter(([k]) => keep(k)).sort((a, b) => b[1] - a[1]).slice(0, TOP);

console.log(`${positionals.length} profile(s), ${grand.toFixed(0)} ms of samples${values.within ? ` under ${values.within}` : ''}\n`);
console.log(`By place (self time):`);
for (const [place, ms] of [...byPlace].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(row(ms, place));
console.log(`\nTop functions by self time${values.own ? ' (wardgate only)' : ''}:`);
for (const [key, ms] of topOf(self)) console.log(row(ms, key));
console.log(`\nTop functions by total time (self + callees)${values.own ? ' (wardgate only)' : ''}:`);
for (const [key, ms] of topOf(total)) console.log(row(ms, key));
if (values.callers !== undefined) {
  console.log(`\nCallers of ${values.callers} (self time of ${values.callers} under each path):`);
  for (const [path, ms] of [...callerPaths].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`${row(ms, '')}\n      <- ${path}`);
}

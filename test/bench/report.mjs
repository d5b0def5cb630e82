// Reads wrk --latency outputs and turns them into numbers and the Markdown table.
//   node report.mjs line FILE            one-line summary of one wrk run (progress output)
//   node report.mjs table DIR NAMES...   the table over DIR/<name>.r<round>.wrk.txt, medians of rounds
// A run that could not start leaves DIR/<name>.r<round>.failed (its reason) instead.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** wrk prints times as 1.23ms / 456.00us / 1.02s; everything here is in ms. */
function toMs(text) {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text);
  if (!m) throw new Error(`unexpected wrk time "${text}"`);
  return Number(m[1]) * UNIT_MS[m[2]];
}

export function parseWrk(text) {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  const p50 = /^\s+50%\s+(\S+)/m.exec(text);
  const p99 = /^\s+99%\s+(\S+)/m.exec(text);
  const total = /^\s+(\d+) requests in/m.exec(text);
  if (!rps || !p50 || !p99 || !total) throw new Error('wrk output without Requests/sec or a latency distribution');
  // Errors matter as much as speed: a proxy answering 404 (wrong Host) or dropping
  // connections would otherwise look fast. wrk prints these lines only when non-zero.
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const errors = {};
  if (non2xx) errors['non-2xx/3xx'] = Number(non2xx[1]);
  if (sock) ['connect', 'read', 'write', 'timeout'].forEach((kind, i) => { if (Number(sock[i + 1])) errors[kind] = Number(sock[i + 1]); });
  return { rps: Number(rps[1]), p50: toMs(p50[1]), p99: toMs(p99[1]), requests: Number(total[1]), errors };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const describeErrors = (errors) => Object.entries(errors).map(([kind, n]) => `${kind} ${n}`).join(', ') || 'none';

function table(dir, names) {
  const files = readdirSync(dir);
  const rows = names.map((name) => {
    const runs = [];
    const failed = [];
    const errors = {};
    for (const file of files.filter((f) => f.startsWith(`${name}.r`)).sort()) {
      if (file.endsWith('.failed')) failed.push(`${file.slice(name.length + 1, -'.failed'.length)}: ${readFileSync(join(dir, file), 'utf8').trim()}`);
      if (!file.endsWith('.wrk.txt')) continue;
      try {
        const run = parseWrk(readFileSync(join(dir, file), 'utf8'));
        runs.push(run);
        for (const [kind, n] of Object.entries(run.errors)) errors[kind] = (errors[kind] ?? 0) + n;
        if (run.requests === 0) errors['no requests'] = (errors['no requests'] ?? 0) + 1;
      } catch (err) {
        failed.push(`${file}: ${err.message}`);
      }
    }
    return {
      name,
      rounds: runs.length,
      rps: runs.length ? median(runs.map((r) => r.rps)) : NaN,
      p50: runs.length ? median(runs.map((r) => r.p50)) : NaN,
      p99: runs.length ? median(runs.map((r) => r.p99)) : NaN,
      errors: [describeErrors(errors), ...failed.map((f) => `FAILED: ${f}`)].filter((e) => e !== 'none' || !failed.length).join('; '),
      flagged: Object.keys(errors).length > 0 || failed.length > 0,
    };
  });
  const base = rows.find((r) => r.name === 'undici-bare' && r.rounds > 0);
  const fmt = (n, digits) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
  const lines = [
    '| contender | req/s | p50 ms | p99 ms | ratio to undici-bare | rounds | errors |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const r of rows) {
    const ratio = base && r.rounds ? `${(r.rps / base.rps).toFixed(2)}x` : 'n/a';
    const name = r.flagged ? `**${r.name}** (!)` : r.name;
    lines.push(`| ${name} | ${fmt(r.rps, 0)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${ratio} | ${r.rounds} | ${r.errors} |`);
  }
  if (rows.some((r) => r.flagged)) lines.push('', '(!) errors or failed rounds: these numbers are not comparable.');
  // The target: wardgate with one worker at >= 0.9x the bare undici proxy.
  const one = rows.find((r) => r.name === 'wardgate-1w' && r.rounds > 0);
  if (base && one) {
    const ratio = one.rps / base.rps;
    const verdict = one.flagged ? 'not judged (errors)' : ratio >= 0.9 ? 'met' : 'NOT met';
    lines.push('', `Target wardgate-1w >= 0.90x undici-bare: ${verdict} (${ratio.toFixed(2)}x).`);
  }
  return lines.join('\n');
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'line') {
  const r = parseWrk(readFileSync(args[0], 'utf8'));
  console.log(`${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, errors: ${describeErrors(r.errors)}`);
} else if (mode === 'table') {
  console.log(table(args[0], args.slice(1)));
} else {
  console.error('usage: node report.mjs line FILE | node report.mjs table DIR NAME...');
  process.exit(2);
}

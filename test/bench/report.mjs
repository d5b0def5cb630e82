// Reads wrk --latency outputs and turns them into numbers and the Markdown table.
//   node report.mjs line FILE [CPU]      one-line summary of one wrk run (progress output)
//   node report.mjs table DIR NAMES...   the table over DIR/<name>.r<round>.wrk.txt, medians of rounds
//                                        (with DIR/<name>.r<round>.cpu: "TICKS CLK_TCK", the CPU
//                                        the contender's processes used while measured)
//   node report.mjs accesslog wardgate|apache FILE SINCE_MS USER
//                                        checks a contender's access log from SINCE_MS (epoch ms)
//                                        on: only 200s (and 499s, wrk's last in-flight requests
//                                        when it stops), every 200 for USER; prints a summary,
//                                        exits 1 when the check fails
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

/** CPU microseconds per request from a .cpu file ("TICKS CLK_TCK") and wrk's request count. */
function cpuPerRequest(file, requests) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return NaN;
  }
  const [ticks, hz] = text.trim().split(/\s+/).map(Number);
  return requests > 0 && hz > 0 ? ((ticks / hz) * 1e6) / requests : NaN;
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
        run.cpu = cpuPerRequest(join(dir, file.replace(/\.wrk\.txt$/, '.cpu')), run.requests);
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
      cpu: runs.some((r) => Number.isFinite(r.cpu)) ? median(runs.map((r) => r.cpu).filter(Number.isFinite)) : NaN,
      errors: [describeErrors(errors), ...failed.map((f) => `FAILED: ${f}`)].filter((e) => e !== 'none' || !failed.length).join('; '),
      flagged: Object.keys(errors).length > 0 || failed.length > 0,
    };
  });
  const base = rows.find((r) => r.name === 'undici-bare' && r.rounds > 0);
  const apache = rows.find((r) => r.name === 'apache-openidc' && r.rounds > 0);
  const withApache = rows.some((r) => r.name === 'apache-openidc');
  const fmt = (n, digits) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
  const lines = [
    `| contender | req/s | p50 ms | p99 ms | CPU µs/req | ratio to undici-bare |${withApache ? ' ratio to apache-openidc |' : ''} rounds | errors |`,
    `| --- | ---: | ---: | ---: | ---: | ---: |${withApache ? ' ---: |' : ''} ---: | --- |`,
  ];
  for (const r of rows) {
    const ratio = base && r.rounds ? `${(r.rps / base.rps).toFixed(2)}x` : 'n/a';
    // Only the rows the identity targets are about: wardgate with a session (and the full policy).
    const toApache = r.name.startsWith('wardgate-session-') || r.name.startsWith('wardgate-policy-') ? (apache && r.rounds ? `${(r.rps / apache.rps).toFixed(2)}x` : 'n/a') : '';
    const name = r.flagged ? `**${r.name}** (!)` : r.name;
    lines.push(`| ${name} | ${fmt(r.rps, 0)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${fmt(r.cpu, 0)} | ${ratio} |${withApache ? ` ${toApache} |` : ''} ${r.rounds} | ${r.errors} |`);
  }
  if (rows.some((r) => r.flagged)) lines.push('', '(!) errors or failed rounds: these numbers are not comparable.');
  if (rows.some((r) => Number.isFinite(r.cpu))) {
    lines.push('', 'CPU µs/req: user + system CPU time of all the contender\'s processes while measured, per request (median of rounds); less sensitive to other load than req/s.');
  }

  // The targets, each judged only when both sides were measured in this run without errors.
  const target = (label, name, ref, min, why) => {
    const row = rows.find((r) => r.name === name && r.rounds > 0);
    const other = rows.find((r) => r.name === ref && r.rounds > 0);
    if (!row || !other) return;
    const ratio = row.rps / other.rps;
    const verdict = row.flagged || other.flagged ? 'not judged (errors)' : ratio >= min ? 'met' : 'NOT met';
    lines.push(`- ${label}: ${name} >= ${min.toFixed(2)}x ${ref}: **${verdict}** (${ratio.toFixed(2)}x)${why ? `; ${why}` : ''}`);
  };
  const before = lines.length;
  lines.push('', 'Targets (this run):');
  target('proxy core', 'wardgate-1w', 'undici-bare', 0.9, 'wardgate-1w now carries a bearer token, as every request must be authenticated');
  target('session vs Node ceiling', 'wardgate-session-1w', 'undici-bare', 0.85, 'both one process on CPU 0');
  target('session vs mod_auth_openidc', 'wardgate-session-2w', 'apache-openidc', 2, 'both two processes, unpinned');
  target('full hospital policy vs Node ceiling', 'wardgate-policy-1w', 'undici-bare', 0.85, 'the epic policy (trusted device, country, group, acr) with cookie + posture assertion; both one process on CPU 0');
  target('full hospital policy vs mod_auth_openidc', 'wardgate-policy-2w', 'apache-openidc', 2, 'the epic policy against Require claim acr:phr; both two processes, unpinned');
  const info = rows.find((r) => r.name === 'wardgate-session-1w' && r.rounds > 0);
  if (info && apache) lines.push(`- for information: wardgate-session-1w (one process, one core) is ${(info.rps / apache.rps).toFixed(2)}x apache-openidc (two processes, both cores)`);
  // The same comparisons in CPU time per request: how much work each request costs.
  const cpuRatio = (name, ref) => {
    const a = rows.find((r) => r.name === name && Number.isFinite(r.cpu));
    const b = rows.find((r) => r.name === ref && Number.isFinite(r.cpu));
    return a && b ? `${name} ${a.cpu.toFixed(0)} µs vs ${ref} ${b.cpu.toFixed(0)} µs (${(b.cpu / a.cpu).toFixed(2)}x as efficient)` : undefined;
  };
  const cpuLines = [
    cpuRatio('wardgate-session-1w', 'undici-bare'), cpuRatio('wardgate-session-2w', 'apache-openidc'), cpuRatio('wardgate-session-1w', 'apache-openidc'),
    cpuRatio('wardgate-policy-1w', 'undici-bare'), cpuRatio('wardgate-policy-2w', 'apache-openidc'),
  ].filter(Boolean);
  if (cpuLines.length && lines.length > before + 2) lines.push(`- for information, CPU per request: ${cpuLines.join('; ')}`);
  if (lines.length === before + 2) lines.splice(before); // no target could be judged
  return lines.join('\n');
}

/** Checks an access log from sinceMs on; see the usage at the top. */
function accessLog(kind, file, sinceMs, user) {
  const statuses = new Map();
  const users = new Map();
  const pids = new Map();
  let lines = 0;
  let okForUser = 0;
  let strangers = 0;
  const count = (map, key) => map.set(key, (map.get(key) ?? 0) + 1);
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    let time;
    let status;
    let who;
    let pid;
    if (kind === 'wardgate') {
      if (!line.includes('"kind":"access"')) continue;
      const entry = JSON.parse(line);
      ({ time, status, user: who, pid } = entry);
    } else {
      // LogFormat "%{msec}t %>s \"%u\" %P ..." (run.sh)
      const m = /^(\d+) (\d{3}) "([^"]*)" (\d+) /.exec(line);
      if (!m) throw new Error(`unexpected Apache access log line: ${line.slice(0, 200)}`);
      [time, status, who, pid] = [Number(m[1]), Number(m[2]), m[3] === '-' ? undefined : m[3], Number(m[4])];
    }
    if (time < sinceMs) continue;
    lines++;
    count(statuses, status);
    count(users, who ?? '(none)');
    count(pids, pid);
    if (status === 200 && who === user) okForUser++;
    if (status !== 499 && who !== user) strangers++;
  }
  const describe = (map) => [...map].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`).join(', ');
  const summary = `${lines} lines (status ${describe(statuses) || 'none'}; user ${describe(users) || 'none'}; per process ${[...pids.values()].join('/') || 'none'})`;
  const problems = [];
  if (okForUser === 0) problems.push(`no 200 for ${user}`);
  const unexpected = [...statuses].filter(([status]) => status !== 200 && status !== 499).reduce((n, [, c]) => n + c, 0);
  if (unexpected) problems.push(`${unexpected} answers other than 200`);
  if (strangers) problems.push(`${strangers} lines not for ${user}`);
  return { ok: problems.length === 0, text: problems.length ? `${problems.join('; ')}: ${summary}` : summary };
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'line') {
  const r = parseWrk(readFileSync(args[0], 'utf8'));
  const cpu = args[1] ? cpuPerRequest(args[1], r.requests) : NaN;
  console.log(`${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms${Number.isFinite(cpu) ? `, ${cpu.toFixed(0)} CPU µs/req` : ''}, errors: ${describeErrors(r.errors)}`);
} else if (mode === 'table') {
  console.log(table(args[0], args.slice(1)));
} else if (mode === 'accesslog' && (args[0] === 'wardgate' || args[0] === 'apache') && args.length === 4) {
  const { ok, text } = accessLog(args[0], args[1], Number(args[2]), args[3]);
  console.log(text);
  process.exit(ok ? 0 : 1);
} else {
  console.error('usage: node report.mjs line FILE | node report.mjs table DIR NAME... | node report.mjs accesslog wardgate|apache FILE SINCE_MS USER');
  process.exit(2);
}

#!/usr/bin/env bash
# wardgate load benchmark (not run by CI).
#
#   npm run bench                        # or: bash test/bench/run.sh
#   BENCH_ROUNDS=1 BENCH_DURATION=3 BENCH_CONTENDERS="nginx-proxy undici-bare" npm run bench
#
# Starts nginx as the upstream (a fixed ~1 KiB 200 answer) and measures, in alternating
# rounds, each contender in front of it with wrk (-t1 -c50 --latency):
#   nginx-proxy   nginx proxy_pass with upstream keepalive: the limit on this machine
#   undici-bare   bare-undici.mjs, ~30 lines over one undici Pool: the Node ceiling
#   http-proxy-3  http-proxy-3.mjs: what Node users deploy today
#   wardgate-1w   wardgate (dist/proxy/cli.js start) with workers: 1, access log on, to a file
#   wardgate-2w   the same with workers: 2
#   wardgate-1w-nolog  wardgate-1w with log.access: false, to show what the access log costs
# It prints req/s, p50 and p99 (medians over the rounds) and each one's ratio to undici-bare,
# and saves the table in test/bench/results/ (gitignored). Target: wardgate-1w >= 0.9x undici-bare.
#
# Pinning, for a 2-core machine: wrk and the upstream nginx share CPU 1, the contender gets
# CPU 0. wardgate-2w is not pinned (its two workers share both cores with wrk and nginx).
# Each round runs every contender once, in order; each contender is started fresh for its
# turn and stopped after it (so no contender idles beside another's measurement), gets a
# 2 s warm-up that is discarded, then is measured for BENCH_DURATION seconds.
#
# Environment:
#   BENCH_ROUNDS      rounds (default 3)
#   BENCH_DURATION    seconds measured per contender per round (default 10)
#   BENCH_WARMUP      seconds of discarded warm-up (default 2)
#   BENCH_CONTENDERS  space-separated subset, in order (default: all six above)
#   BENCH_SKIP_BUILD  1 to use the existing dist/ instead of running npm run build
#
# Needs nginx, wrk and taskset (Debian: apt-get install -y nginx-light wrk util-linux).
set -euo pipefail

ROUNDS="${BENCH_ROUNDS:-3}"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONTENDERS="${BENCH_CONTENDERS:-nginx-proxy undici-bare http-proxy-3 wardgate-1w wardgate-2w wardgate-1w-nolog}"
HOST_HEADER="bench.localhost" # wardgate routes by Host; the baselines ignore it
NGINX="${NGINX:-/usr/sbin/nginx}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- prerequisites -------------------------------------------------------------------
missing=()
[ -x "$NGINX" ] || command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "missing tools; install them with:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
[ -x "$NGINX" ] || NGINX="$(command -v nginx)"
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs for the pinning (CPU 0 and 1)"

for c in $CONTENDERS; do
  case "$c" in nginx-proxy|undici-bare|http-proxy-3|wardgate-1w|wardgate-2w|wardgate-1w-nolog) ;; *) die "unknown contender $c" ;; esac
done

if [[ " $CONTENDERS " == *" wardgate-"* ]] && [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building wardgate (npm run build)"
  npm run build --silent >&2 || die "npm run build failed"
fi
if [[ " $CONTENDERS " == *" wardgate-"* ]] && [ ! -f dist/proxy/cli.js ]; then
  die "dist/proxy/cli.js is missing after the build"
fi

# ---- temp dir (tmpfs when there is one, so the access log costs what it costs in memory) ----
if [ -d /dev/shm ] && [ -w /dev/shm ]; then TMP="$(mktemp -d /dev/shm/wardgate-bench.XXXXXX)"
else TMP="$(mktemp -d "${TMPDIR:-/tmp}/wardgate-bench.XXXXXX")"; fi
RAW="$TMP/raw"
mkdir -p "$RAW"

# Every process is started in its own session (setsid), so its pid is also its process
# group and stopping it ends its children too (wardgate's cluster workers).
PIDS=()
# Live (non-zombie) processes in group $1: a zombie leader must not count as running.
group_alive() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'; }
stop_group() {
  local pid="$1" i
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do # up to 5 s to exit cleanly, then KILL
    group_alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
}
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${PIDS[@]}"; do stop_group "$pid"; done
  if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port the kernel says is free right now.
free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# start NAME CPU COMMAND... : starts COMMAND in its own session, pinned to CPU unless CPU is
# "-", stdout/stderr to $TMP/NAME.{out,err}; sets STARTED_PID.
start() {
  local name="$1" cpu="$2"; shift 2
  if [ "$cpu" = - ]; then setsid "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null &
  else setsid taskset -c "$cpu" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null &
  fi
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

forget() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}
stop() {
  stop_group "$1"
  wait "$1" 2>/dev/null || true
  forget "$1"
}

# wait_200 PID URL [HOST] : until URL answers 200 (15 s at most, and not past PID's death).
wait_200() {
  local pid="$1" url="$2" host="${3:-}" i code
  for i in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || return 1
    code="$(curl -s -o /dev/null -m 1 -w '%{http_code}' ${host:+-H "Host: $host"} "$url" || true)"
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

# ---- the upstream: nginx, one process, a fixed ~1 KiB body ---------------------------
BODY="$(printf 'wardgate bench upstream %.0s' $(seq 1 40) | head -c 1000)"
nginx_common() { # the parts both nginx configs share: one process, everything in $TMP
  cat <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/$1.pid;
error_log $TMP/$1.error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_http_common() {
  cat <<EOF
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_temp_path $TMP/$1.body;
  proxy_temp_path $TMP/$1.proxy;
  fastcgi_temp_path $TMP/$1.fastcgi;
  uwsgi_temp_path $TMP/$1.uwsgi;
  scgi_temp_path $TMP/$1.scgi;
EOF
}

# Anything else running on this small machine skews every figure: record the load.
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
awk '{ exit !($1 > 0.5) }' /proc/loadavg && log "warning: load average is ${LOAD_START%% *} before starting; figures will be skewed"
UPSTREAM_PORT="$(free_port)"
{
  nginx_common upstream
  echo "http {"
  nginx_http_common upstream
  cat <<EOF
  server {
    listen 127.0.0.1:$UPSTREAM_PORT reuseport;
    location / {
      default_type text/plain;
      return 200 "$BODY";
    }
  }
}
EOF
} >"$TMP/upstream.conf"
"$NGINX" -t -q -p "$TMP" -e "$TMP/upstream.error.log" -c "$TMP/upstream.conf" || die "upstream nginx.conf is invalid"
start upstream 1 "$NGINX" -p "$TMP" -e "$TMP/upstream.error.log" -c "$TMP/upstream.conf"
UPSTREAM_PID=$STARTED_PID
wait_200 "$UPSTREAM_PID" "http://127.0.0.1:$UPSTREAM_PORT/" || { cat "$TMP/upstream.err" "$TMP/upstream.error.log" >&2 || true; die "upstream nginx did not start"; }
UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT"
log "upstream nginx on $UPSTREAM (CPU 1), tmp $TMP"

# ---- contenders -------------------------------------------------------------------------
# start_contender NAME TAG : starts NAME listening on $PORT; sets STARTED_PID and READY_URL
# (a URL that must answer 200 before measuring).
start_contender() {
  local name="$1" tag="$2"
  PORT="$(free_port)"
  READY_URL="http://127.0.0.1:$PORT/"
  case "$name" in
    nginx-proxy)
      {
        nginx_common "$tag"
        echo "http {"
        nginx_http_common "$tag"
        cat <<EOF
  upstream backend {
    server $UPSTREAM_HOSTPORT;
    keepalive 64;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:$PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
      } >"$TMP/$tag.conf"
      start "$tag" 0 "$NGINX" -p "$TMP" -e "$TMP/$tag.error.log" -c "$TMP/$tag.conf"
      ;;
    undici-bare) start "$tag" 0 node "$HERE/bare-undici.mjs" "$UPSTREAM" "$PORT" ;;
    http-proxy-3) start "$tag" 0 node "$HERE/http-proxy-3.mjs" "$UPSTREAM" "$PORT" ;;
    wardgate-1w|wardgate-2w|wardgate-1w-nolog)
      local workers="${name#wardgate-}"; workers="${workers%%w*}"
      local access=true; [[ "$name" == *-nolog ]] && access=false
      local admin_port; admin_port="$(free_port)"
      cat >"$TMP/$tag.yaml" <<EOF
listen:
  http: "127.0.0.1:$PORT"
admin:
  listen: "127.0.0.1:$admin_port"
workers: $workers
log:
  level: warn
  access: $access
routes:
  - id: bench
    host: $HOST_HEADER
    upstream:
      url: "$UPSTREAM"
EOF
      # stdout is the JSON access log, one line per request: written to a real file.
      # The access log is written whatever log.level says; the line count check below
      # makes sure a run that logged nothing is never reported.
      local cpu=0; [ "$workers" = 1 ] || cpu=-
      start "$tag" "$cpu" node "$ROOT/dist/proxy/cli.js" start --config "$TMP/$tag.yaml"
      wait_200 "$STARTED_PID" "http://127.0.0.1:$admin_port/readyz" || return 1
      ;;
  esac
}
UPSTREAM_HOSTPORT="127.0.0.1:$UPSTREAM_PORT"

# wrk on CPU 1; every contender gets the same Host header. Run in the background and
# waited for, so a signal to this script is handled at once and not after wrk ends.
run_wrk() {
  local seconds="$1" out="$2" pid status=0
  timeout $((seconds + 30)) taskset -c 1 wrk -t1 -c50 -d"${seconds}s" --timeout 5s --latency \
    -H "Host: $HOST_HEADER" "http://127.0.0.1:$PORT/" >"$out" 2>&1 </dev/null &
  pid=$!
  PIDS+=("$pid") # timeout(1) makes itself a process group, so cleanup's group kill reaches wrk
  wait "$pid" || status=$?
  forget "$pid"
  return "$status"
}

for round in $(seq 1 "$ROUNDS"); do
  for name in $CONTENDERS; do
    tag="$name.r$round"
    log "round $round/$ROUNDS: $name"
    if ! start_contender "$name" "$tag" || ! wait_200 "$STARTED_PID" "$READY_URL" "$HOST_HEADER"; then
      # A contender that never answers 200 (e.g. 404 on a wrong Host) is not measured.
      code="$(curl -s -o /dev/null -m 1 -w '%{http_code}' -H "Host: $HOST_HEADER" "$READY_URL" || true)"
      echo "did not answer 200 within 15 s (last status ${code:-none})" >"$RAW/$tag.failed"
      log "  $name did not become ready; its stderr:"; tail -n 20 "$TMP/$tag.err" >&2 || true
      stop "$STARTED_PID"
      continue
    fi
    run_wrk "$WARMUP" "$TMP/$tag.warmup.txt" || true
    if run_wrk "$DURATION" "$RAW/$tag.wrk.txt"; then
      log "  $(node "$HERE/report.mjs" line "$RAW/$tag.wrk.txt")"
    else
      echo "wrk failed: $(tail -n 3 "$RAW/$tag.wrk.txt" | tr '\n' ' ')" >"$RAW/$tag.failed"
      rm -f "$RAW/$tag.wrk.txt"
      log "  wrk failed"
    fi
    if ! kill -0 "$STARTED_PID" 2>/dev/null; then
      echo "exited during the run" >>"$RAW/$tag.failed"
      log "  $name exited during the run"
    fi
    stop "$STARTED_PID" # first, so the access log's buffered tail is flushed
    if [[ "$name" == wardgate-* && "$name" != *-nolog ]]; then
      # The access log must really have been written, else wardgate ran cheaper than deployed.
      lines="$(grep -c '"kind":"access"' "$TMP/$tag.out" || true)"
      per_pid="$(grep '"kind":"access"' "$TMP/$tag.out" | grep -o '"pid":[0-9]*' | sort | uniq -c | awk '{ printf "%s%s", sep, $1; sep = "/" }' || true)"
      log "  access log: $lines lines, $(du -h "$TMP/$tag.out" | cut -f1) (per process: ${per_pid:-none})"
      [ "${lines:-0}" -gt 0 ] || echo "wrote no access log lines" >>"$RAW/$tag.failed"
    fi
    rm -f "$TMP/$tag.out" # the access log is only there to be paid for
  done
done

# ---- report -------------------------------------------------------------------------------
STAMP="$(date +%Y%m%d-%H%M%S)"
mkdir -p "$HERE/results"
RESULT="$HERE/results/bench-$STAMP.md"
{
  echo "# wardgate benchmark $(date -Iseconds)"
  echo
  node "$HERE/report.mjs" table "$RAW" $CONTENDERS
  echo
  echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //' || echo unknown)), $(uname -sr)"
  echo "- node $(node --version), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2), wardgate $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- proxy config 2>/dev/null || echo ' + uncommitted changes')"
  echo "- load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the figures)"
  echo "- wrk -t1 -c50 --latency, $ROUNDS round(s) of ${DURATION} s per contender after ${WARMUP} s of discarded warm-up; figures are medians over the rounds"
  echo "- rounds alternate (every contender once per round, in the order listed); each contender is started fresh for its turn"
  echo "- pinning: wrk and the upstream nginx on CPU 1, the contender on CPU 0; wardgate-2w unpinned, so its two workers share both cores with wrk and the upstream"
  echo "- upstream: nginx, one process, return 200 with a ${#BODY}-byte body; nginx-proxy: one process, upstream keepalive 64"
  echo "- wardgate: log level warn, JSON access log on (to a file on $(df --output=fstype "$TMP" | tail -n1)), Host: $HOST_HEADER; every contender was checked to answer 200 before it was measured"
} >"$RESULT"
echo
cat "$RESULT"
echo
log "saved $RESULT"

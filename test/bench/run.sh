#!/usr/bin/env bash
# wardgate load benchmark (not run by CI).
#
#   npm run bench                        # or: bash test/bench/run.sh
#   BENCH_ROUNDS=1 BENCH_DURATION=3 BENCH_CONTENDERS="nginx-proxy undici-bare" npm run bench
#
# (The policy engine alone, without HTTP, has its own micro-benchmark: npm run bench:policy,
# test/bench/policy.mjs.)
#
# Starts nginx as the upstream (a fixed ~1 KiB 200 answer) and measures, in alternating
# rounds, each contender in front of it with wrk (-t1 -c50 --latency):
#   nginx-proxy          nginx proxy_pass with upstream keepalive: the limit on this machine
#   undici-bare          bare-undici.mjs, ~30 lines over one undici Pool: the Node ceiling (no identity)
#   http-proxy-3         http-proxy-3.mjs: what Node users deploy today (no identity)
#   wardgate-1w          wardgate (dist/proxy/cli.js start), workers: 1, access log on (to a file),
#                        every request with a bearer token (wardgate has no unauthenticated routes)
#   wardgate-2w          the same with workers: 2
#   wardgate-1w-nolog    wardgate-1w with log.access: false, to show what the access log costs
#   wardgate-session-1w  wardgate, workers: 1, every request with a signed-in session cookie
#                        (__Host-wardgate) on a route requiring acr phr
#   wardgate-session-2w  the same with workers: 2
#   wardgate-policy-1w   wardgate, workers: 1, on a route with the full hospital policy (the `epic`
#                        route's, read from config/hospital.yaml at run time: trusted devices only,
#                        deny outside-uk-and-ireland, clinicians with acr phr), every request with
#                        the session cookie AND an X-Device-Posture assertion (see "Device and
#                        network" below)
#   wardgate-policy-2w   the same with workers: 2
#   wardgate-bearer-2w   workers: 2, a client_credentials JWT in Authorization (the configuration
#                        of wardgate-2w, under the name the identity benchmark uses)
#   apache-openidc       Apache httpd (mpm_event) + mod_auth_openidc, signed in to the same IdP,
#                        Require claim acr:phr, mod_proxy_http to the same upstream, access log on:
#                        the identity-aware proxy hospitals already run
# It prints req/s, p50 and p99 (medians over the rounds), the CPU time the contender's processes
# used per request while measured (user + system, from /proc), each one's ratio to undici-bare
# and (wardgate-session and wardgate-policy rows) to apache-openidc, and saves the table in
# test/bench/results/ (gitignored). Targets: wardgate-1w >= 0.9x undici-bare; wardgate-session-1w
# and wardgate-policy-1w >= 0.85x undici-bare; wardgate-session-2w and wardgate-policy-2w >= 2x
# apache-openidc.
#
# Identity: the contenders that need it share one IdP for the whole run, idp.mjs (the demo's
# oidc-provider, from dist/), with a client for wardgate, one for Apache and an API client.
# Each identity contender is signed in afresh for its turn, after it starts: sign-in.mjs drives
# the sign-in as dr.alice with a security key (method hwk, acr phr) in the test Browser
# (dist/test/helpers/), or gets a client_credentials token, and wrk sends the resulting Cookie
# or Authorization header. Before measuring, curl must get the upstream's own 200 body WITH that
# header and a 302/401 WITHOUT it, else the contender is not measured and the script exits 1.
# After measuring, the access log (wardgate, Apache) must show only 200s for the signed-in user
# (and 499 for wrk's last in-flight requests): a session lost mid-run would otherwise answer
# cheap 302s that wrk does not count as errors.
# Bearer routes require no acr: client_credentials tokens carry none (no user signed in).
#
# Device and network, for the wardgate-policy-* contenders: the epic route's policy is taken
# verbatim from config/hospital.yaml (parsed with the yaml package, emitted into the bench config
# as JSON flow YAML), so it demands a trusted device (the default once devices: is configured)
# and denies clients outside GB and IE. To pass it, the bench config adds
#   devices.posture   the bench MDM's public key, from a P-256 key pair generated per run
#                     (posture.mjs keys, in $TMP), issuer https://mdm.bench.localhost; maxAge
#                     15m, raised to warm-up + duration + 5 min when that is longer, so the
#                     observation does not age out during a turn
#   network.countries 127.0.0.0/8: GB; loopback stands for the hospital LAN here (wrk, curl and
#                     the sign-in connect from 127.0.0.1; no GeoIP database, no trusted proxies)
# and each turn mints one posture assertion (posture.mjs mint: managed and compliant device,
# observed_at now, a fresh jti, exp covering the turn), which the sign-in sends on its requests
# to the application's host (the route refuses an untrusted device before sign-in) and wrk
# sends with the cookie. The one assertion serves the whole turn, as an MDM agent reuses its
# assertion until it refreshes it, so wardgate verifies its signature once and then finds it in
# its cache. The checks before measuring: 200 and the upstream's body with cookie + assertion;
# 403 with the cookie alone (the device gate works); 403 with neither.
#
# Pinning, for a 2-core machine: wrk, the upstream nginx and the (idle while measuring) IdP
# share CPU 1, single-process contenders get CPU 0. wardgate-2w, wardgate-session-2w,
# wardgate-policy-2w, wardgate-bearer-2w and apache-openidc are not pinned: two worker
# processes each (Apache: 2 children x 64 threads, more threads than wrk's 50 connections)
# sharing both cores with wrk and the upstream.
# Each round runs every contender once, in order; each contender is started fresh for its
# turn and stopped after it (so no contender idles beside another's measurement), gets a
# 2 s warm-up that is discarded, then is measured for BENCH_DURATION seconds.
#
# Environment:
#   BENCH_ROUNDS      rounds (default 3)
#   BENCH_DURATION    seconds measured per contender per round (default 10)
#   BENCH_WARMUP      seconds of discarded warm-up (default 2)
#   BENCH_CONTENDERS  space-separated subset, in order (default: all twelve above)
#   BENCH_SKIP_BUILD  1 to use the existing dist/ instead of running npm run build
#   BENCH_CPU_PROF    a directory: wardgate runs under node --cpu-prof and writes its
#                     .cpuprofile files there (summarize them with profile.mjs); skews the figures
#   BENCH_KEEP_TMP    1 to keep the temp dir (configs, logs) for inspection
#
# Needs nginx, wrk, taskset and curl (Debian: apt-get install -y nginx-light wrk util-linux curl),
# and for apache-openidc: apt-get install -y apache2 libapache2-mod-auth-openidc.
set -euo pipefail

ROUNDS="${BENCH_ROUNDS:-3}"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
ALL_CONTENDERS="nginx-proxy undici-bare http-proxy-3 wardgate-1w wardgate-2w wardgate-1w-nolog wardgate-session-1w wardgate-session-2w wardgate-policy-1w wardgate-policy-2w wardgate-bearer-2w apache-openidc"
CONTENDERS="${BENCH_CONTENDERS:-$ALL_CONTENDERS}"
HOST_HEADER="bench.localhost" # wardgate routes by Host; the baselines ignore it
NGINX="${NGINX:-/usr/sbin/nginx}"
APACHE="${APACHE:-/usr/sbin/apache2}"
APACHE_MODULES="${APACHE_MODULES:-/usr/lib/apache2/modules}"
USER_ID="dr.alice"  # who the session contenders sign in as (with a security key: acr phr)
API_CLIENT="bench-api" # the sub of the client_credentials tokens (see idp.mjs)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for c in $CONTENDERS; do
  [[ " $ALL_CONTENDERS " == *" $c "* ]] || die "unknown contender $c (known: $ALL_CONTENDERS)"
done
has() { [[ " $CONTENDERS " == *" $1"* ]]; } # has PREFIX: some contender's name starts with PREFIX
IDENTITY=0; if has wardgate- || has apache-openidc; then IDENTITY=1; fi

# ---- prerequisites -------------------------------------------------------------------
missing=()
[ -x "$NGINX" ] || command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
if has apache-openidc; then
  [ -x "$APACHE" ] || missing+=(apache2)
  [ -f "$APACHE_MODULES/mod_auth_openidc.so" ] || missing+=(libapache2-mod-auth-openidc)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "missing tools; install them with:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
[ -x "$NGINX" ] || NGINX="$(command -v nginx)"
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs for the pinning (CPU 0 and 1)"

# The IdP and the sign-in script run from dist/ too (proxy/demo/idp.ts, test/helpers/*.ts).
if [ "$IDENTITY" = 1 ] && [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building wardgate (npm run build)"
  npm run build --silent >&2 || die "npm run build failed (BENCH_SKIP_BUILD=1 uses the dist/ there is)"
fi
if [ "$IDENTITY" = 1 ]; then
  for f in dist/proxy/cli.js dist/proxy/demo/idp.js dist/test/helpers/browser.js dist/test/helpers/idp.js; do
    [ -f "$f" ] || die "$f is missing after the build"
  done
fi
if [ -n "${BENCH_CPU_PROF:-}" ]; then
  mkdir -p "$BENCH_CPU_PROF"
  BENCH_CPU_PROF="$(cd "$BENCH_CPU_PROF" && pwd)"
fi

# ---- temp dir (tmpfs when there is one, so the access log costs what it costs in memory) ----
if [ -d /dev/shm ] && [ -w /dev/shm ]; then TMP="$(mktemp -d /dev/shm/wardgate-bench.XXXXXX)"
else TMP="$(mktemp -d "${TMPDIR:-/tmp}/wardgate-bench.XXXXXX")"; fi
RAW="$TMP/raw"
mkdir -p "$RAW"

# Every process is started in its own session (setsid), so its pid is also its process
# group and stopping it ends its children too (wardgate's cluster workers, Apache's children).
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

# A port the kernel says is free right now, other than those given.
free_port() {
  local port
  while :; do
    port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
    [[ " $* " == *" $port "* ]] || break
  done
  echo "$port"
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

# http_code URL [HEADER...] : the status curl gets (000 when nothing answers), with Host: $HOST_HEADER.
http_code() {
  local url="$1"; shift
  local args=() h
  for h in "$@"; do args+=(-H "$h"); done
  curl -s -o /dev/null -m 2 -w '%{http_code}' "${args[@]+"${args[@]}"}" "$url" || true
}

# wait_for PID WANT URL [HEADER...] : until URL answers WANT (a status, or "any"), 15 s at most
# and not past PID's death; LAST_CODE is the last status seen.
wait_for() {
  local pid="$1" want="$2" url="$3" i; shift 3
  LAST_CODE=none
  for i in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || return 1
    LAST_CODE="$(http_code "$url" "$@")"
    if [ "$want" = any ]; then [ "$LAST_CODE" != 000 ] && return 0
    else [ "$LAST_CODE" = "$want" ] && return 0; fi
    sleep 0.1
  done
  return 1
}
wait_200() { local pid="$1" url="$2" host="${3:-}"; wait_for "$pid" 200 "$url" ${host:+"Host: $host"}; }

# group_cpu_ticks PGID : user + system CPU of every live process in the group, in clock ticks.
# (cat, not awk, opens the files: a process may exit between the glob and the read; cat then
# fails, which pipefail and set -e would turn into a silent exit of this script, hence || true.)
CLK_TCK="$(getconf CLK_TCK)"
group_cpu_ticks() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v g="$1" '{ sub(/^.*\) /, ""); if ($3 == g) t += $12 + $13 } END { print t + 0 }'
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
UPSTREAM_HOSTPORT="127.0.0.1:$UPSTREAM_PORT"
log "upstream nginx on $UPSTREAM (CPU 1), tmp $TMP"

# ---- identity: one IdP for the run, keys, fixed ports ----------------------------------
# The IdP registers each relying party's redirect URI with its port, so wardgate and Apache
# listen on ports fixed for the whole run (only one contender runs at a time).
if [ "$IDENTITY" = 1 ]; then
  WG_PORT="$(free_port "$UPSTREAM_PORT")"
  APACHE_PORT="$(free_port "$UPSTREAM_PORT" "$WG_PORT")"
  start idp 1 node "$HERE/idp.mjs" --wardgate-port "$WG_PORT" --apache-port "$APACHE_PORT" --info "$TMP/idp.json"
  IDP_PID=$STARTED_PID
  for i in $(seq 1 150); do
    [ -s "$TMP/idp.json" ] && break
    kill -0 "$IDP_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -s "$TMP/idp.json" ] || { tail -n 20 "$TMP/idp.err" >&2 || true; die "the bench IdP did not start"; }
  idp_info() { node -e 'const i=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(process.argv[2].split(".").reduce((o,k)=>o[k],i))' "$TMP/idp.json" "$1"; }
  IDP_ISSUER="$(idp_info issuer)"
  # Keys as a deployment has them: given in the config, the same for every worker.
  COOKIE_KEY="$(node -e 'console.log(require("crypto").randomBytes(32).toString("base64"))')"
  node -e 'const c=require("crypto");process.stdout.write(c.generateKeyPairSync("ec",{namedCurve:"P-256"}).privateKey.export({type:"pkcs8",format:"pem"}))' >"$TMP/assertion-key.pem"
  log "IdP $IDP_ISSUER (CPU 1); wardgate on port $WG_PORT, apache on $APACHE_PORT"
fi

# ---- the full hospital policy, and what it needs to pass (wardgate-policy-*) ----------------
POSTURE_ISSUER="https://mdm.bench.localhost" # the bench MDM
# Seconds an assertion (and its observation) stays acceptable: the hospital's 15m, or the turn
# (warm-up + duration) plus 5 minutes for start, sign-in and checks when that is longer.
POSTURE_TTL=$(( WARMUP + DURATION + 300 )); [ "$POSTURE_TTL" -ge 900 ] || POSTURE_TTL=900
if has wardgate-policy-; then
  node "$HERE/posture.mjs" keys "$TMP/mdm-posture.key" "$TMP/mdm-posture.pub" || die "could not generate the bench MDM key pair"
  # The epic route's policy: verbatim from the file, as JSON (which YAML reads as flow style).
  node -e '
    const { readFileSync } = require("fs");
    const { parse } = require("yaml");
    const config = parse(readFileSync(process.argv[1], "utf8"));
    const route = (config.routes ?? []).find((r) => r.id === "epic");
    if (!route || typeof route.policy !== "object" || route.policy === null) throw new Error("config/hospital.yaml has no epic route with a policy");
    process.stdout.write(JSON.stringify(route.policy));
  ' "$ROOT/config/hospital.yaml" >"$TMP/epic-policy.json" || die "could not read the epic policy from config/hospital.yaml"
  epic_summary() {
    node -e '
      const p = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const names = (list) => (list ?? []).map((r) => r.name ?? "(unnamed)").join(", ") || "none";
      console.log(`devices ${p.devices ?? "trusted (default)"}; deny ${names(p.deny)}; allow ${names(p.allow)}`);
    ' "$TMP/epic-policy.json"
  }
  log "epic policy from config/hospital.yaml: $(epic_summary)"
fi

# ---- contenders -------------------------------------------------------------------------
# What each identity contender authenticates with: session (cookie from sign-in.mjs), policy
# (that cookie plus a posture assertion from posture.mjs), bearer (client_credentials token), or
# nothing (the baselines).
credential_kind() {
  case "$1" in
    wardgate-session-*|apache-openidc) echo session ;;
    wardgate-policy-*) echo policy ;; # session cookie + device posture assertion
    wardgate-*) echo bearer ;;
    *) echo none ;;
  esac
}

wardgate_yaml() { # NAME PORT ADMIN_PORT
  local name="$1" port="$2" admin_port="$3" workers=1 access=true
  case "$name" in *-2w) workers=2 ;; esac
  [[ "$name" == *-nolog ]] && access=false
  cat <<EOF
listen:
  http: "127.0.0.1:$port"
admin:
  listen: "127.0.0.1:$admin_port"
workers: $workers
log:
  level: warn
  access: $access
identity:
  issuer: "$IDP_ISSUER"
  clientId: $(idp_info wardgate.clientId)
  clientSecret: "$(idp_info wardgate.clientSecret)"
  authUrl: "http://auth.localhost:$port"
  cookieKeys: ["$COOKIE_KEY"]
  assertion:
    keys: ["$TMP/assertion-key.pem"]
  bearer:
    audience: "$(idp_info api.audience)"
EOF
  if [ "$(credential_kind "$name")" = policy ]; then
    # What the epic policy needs to pass (see the header): the bench MDM's key, and loopback
    # (where every bench client connects from) standing for the hospital LAN, in GB.
    cat <<EOF
devices:
  posture:
    issuer: "$POSTURE_ISSUER"
    keys: ["$TMP/mdm-posture.pub"]
    maxAge: ${POSTURE_TTL}s
network:
  countries:
    127.0.0.0/8: GB
EOF
  fi
  cat <<EOF
routes:
  - id: bench
    host: $HOST_HEADER
EOF
  if [ "$(credential_kind "$name")" = session ]; then
    cat <<EOF
    policy:
      allow: [{ acr: [phr] }]
EOF
  elif [ "$(credential_kind "$name")" = policy ]; then
    # config/hospital.yaml's epic policy, verbatim (JSON is YAML flow style).
    cat <<EOF
    policy: $(cat "$TMP/epic-policy.json")
EOF
  else
    # client_credentials tokens carry no acr (no user signed in): an API route.
    cat <<EOF
    auth:
      methods: [bearer]
    policy:
      allow: [{ authenticated: true }]
EOF
  fi
  cat <<EOF
    upstream:
      url: "$UPSTREAM"
EOF
}

apache_conf() { # TAG PORT
  local tag="$1" port="$2"
  cat <<EOF
# Apache httpd as a hospital runs it in front of an application: mpm_event, mod_auth_openidc
# with server-side sessions in shared memory, mod_proxy_http with pooled upstream connections.
ServerRoot "$TMP"
ServerName $HOST_HEADER
Listen 127.0.0.1:$port
PidFile "$TMP/$tag.pid"
DefaultRuntimeDir "$TMP/$tag.run"
ErrorLog "$TMP/$tag.error.log"
LogLevel warn
User www-data
Group www-data

LoadModule mpm_event_module "$APACHE_MODULES/mod_mpm_event.so"
LoadModule authn_core_module "$APACHE_MODULES/mod_authn_core.so"
LoadModule authz_core_module "$APACHE_MODULES/mod_authz_core.so"
LoadModule proxy_module "$APACHE_MODULES/mod_proxy.so"
LoadModule proxy_http_module "$APACHE_MODULES/mod_proxy_http.so"
LoadModule auth_openidc_module "$APACHE_MODULES/mod_auth_openidc.so"

# Two children (as wardgate's two workers), each with more threads than wrk has connections,
# all started up front and never recycled.
StartServers 2
ServerLimit 2
ThreadLimit 64
ThreadsPerChild 64
MaxRequestWorkers 128
MinSpareThreads 1
MaxSpareThreads 128
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 120

# Like wardgate's, an access log line per request with the user, to a file on the same tmpfs.
LogFormat "%{msec}t %>s \"%u\" %P %h \"%r\" %b %D" bench
CustomLog "$TMP/$tag.access.log" bench

OIDCProviderMetadataURL $IDP_ISSUER/.well-known/openid-configuration
OIDCClientID $(idp_info apache.clientId)
OIDCClientSecret $(idp_info apache.clientSecret)
OIDCRedirectURI $(idp_info apache.redirectUri)
OIDCCryptoPassphrase $(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')
OIDCScope "openid email profile groups"
OIDCPKCEMethod S256
OIDCAuthRequestParams acr_values=phr
OIDCSessionType server-cache
OIDCCacheType shm
OIDCSessionInactivityTimeout 1800
OIDCSessionMaxDuration 43200
OIDCRemoteUserClaim sub
OIDCPassClaimsAs headers

<Location />
  AuthType openid-connect
  Require claim acr:phr
</Location>
ProxyPass /redirect_uri !
ProxyPass / $UPSTREAM/
EOF
}

# start_contender NAME TAG : starts NAME listening on $PORT and waits until it is ready
# (baselines: a 200; wardgate: /readyz; Apache: any answer). Sets STARTED_PID, READY_URL;
# returns 1, with NOT_READY set, when it does not get ready.
start_contender() {
  local name="$1" tag="$2"
  PORT="$(free_port "$UPSTREAM_PORT" "${WG_PORT:-}" "${APACHE_PORT:-}")"
  case "$name" in
    wardgate-*) PORT="$WG_PORT" ;;
    apache-openidc) PORT="$APACHE_PORT" ;;
  esac
  READY_URL="http://127.0.0.1:$PORT/"
  NOT_READY=""
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
    wardgate-*)
      local admin_port; admin_port="$(free_port "$UPSTREAM_PORT" "$WG_PORT" "$APACHE_PORT")"
      wardgate_yaml "$name" "$PORT" "$admin_port" >"$TMP/$tag.yaml"
      # stdout is the JSON access log, one line per request: written to a real file.
      # The access log is written whatever log.level says; the checks after the run make
      # sure a run that logged nothing, or answered anything but 200, is never reported.
      local cpu=0; [[ "$name" == *-2w ]] && cpu=-
      local node_args=()
      # One directory per turn: every process of the turn (cluster workers too) writes its own file.
      [ -n "${BENCH_CPU_PROF:-}" ] && node_args=(--cpu-prof --cpu-prof-dir="$BENCH_CPU_PROF/$tag")
      start "$tag" "$cpu" node "${node_args[@]+"${node_args[@]}"}" "$ROOT/dist/proxy/cli.js" start --config "$TMP/$tag.yaml"
      wait_for "$STARTED_PID" 200 "http://127.0.0.1:$admin_port/readyz" || { NOT_READY="/readyz did not answer 200 within 15 s (last status $LAST_CODE)"; return 1; }
      return 0
      ;;
    apache-openidc)
      mkdir -p "$TMP/$tag.run"
      apache_conf "$tag" "$PORT" >"$TMP/$tag.conf"
      "$APACHE" -t -f "$TMP/$tag.conf" >"$TMP/$tag.configtest" 2>&1 || { NOT_READY="apache2 -t: $(tail -n 3 "$TMP/$tag.configtest" | tr '\n' ' ')"; STARTED_PID=""; return 1; }
      # Not pinned, like the two-process wardgate contenders (see the header).
      start "$tag" - "$APACHE" -DFOREGROUND -f "$TMP/$tag.conf"
      # Without a session it answers 302 (to the IdP); any answer means it is up.
      wait_for "$STARTED_PID" any "$READY_URL" "Host: $HOST_HEADER" || { NOT_READY="did not answer within 15 s"; return 1; }
      return 0
      ;;
  esac
  wait_200 "$STARTED_PID" "$READY_URL" "$HOST_HEADER" || { NOT_READY="did not answer 200 within 15 s (last status $LAST_CODE)"; return 1; }
}

# credentials NAME TAG : the header wrk sends (CRED), made for this turn of NAME, and for the
# policy contenders the device posture assertion header (POSTURE), minted for this turn and
# sent by the sign-in too.
credentials() {
  local name="$1" tag="$2"
  CRED=""
  POSTURE=""
  case "$(credential_kind "$name")" in
    none) return 0 ;;
    session) CRED="$(node "$HERE/sign-in.mjs" session "http://$HOST_HEADER:$PORT/" --user "$USER_ID" --method hwk 2>"$TMP/$tag.sign-in.err")" ;;
    policy)
      POSTURE="$(node "$HERE/posture.mjs" mint "$TMP/mdm-posture.key" --issuer "$POSTURE_ISSUER" --ttl "$POSTURE_TTL" 2>"$TMP/$tag.sign-in.err")" \
        || { echo "sign-in: posture.mjs could not mint an assertion" >>"$TMP/$tag.sign-in.err"; return 1; }
      CRED="$(node "$HERE/sign-in.mjs" session "http://$HOST_HEADER:$PORT/" --user "$USER_ID" --method hwk --header "$POSTURE" 2>>"$TMP/$tag.sign-in.err")"
      ;;
    bearer) CRED="$(node "$HERE/sign-in.mjs" token "$TMP/idp.json" 2>"$TMP/$tag.sign-in.err")" ;;
  esac
}

# verify_auth : with CRED (and POSTURE), the upstream's own body and a 200; without them, 302 or
# 401 (policy contenders: 403 with the cookie alone, so the device gate works, and 403 with
# neither), so the figures are those of an authenticated (and authorized) path. Sets VERIFIED
# (what was seen) or VERIFY_ERROR.
verify_auth() {
  local out code body bare only with="${CRED%%:*}${POSTURE:+ + ${POSTURE%%:*}}"
  out="$(curl -s -m 5 -H "Host: $HOST_HEADER" -H "$CRED" ${POSTURE:+-H "$POSTURE"} -w '\n%{http_code}' "$READY_URL" || true)"
  code="${out##*$'\n'}"; body="${out%$'\n'*}"
  if [ "$code" != 200 ] || [ "$body" != "$BODY" ]; then
    VERIFY_ERROR="with $with it answered $code$([ "$code" = 200 ] && echo ' but not with the upstream body'): ${body:0:200}"
    return 1
  fi
  bare="$(http_code "$READY_URL" "Host: $HOST_HEADER")"
  if [ -n "$POSTURE" ]; then
    only="$(http_code "$READY_URL" "Host: $HOST_HEADER" "$CRED")"
    [ "$only" = 403 ] || { VERIFY_ERROR="with ${CRED%%:*} but no ${POSTURE%%:*} it answered $only, expected 403 (an untrusted device)"; return 1; }
    [ "$bare" = 403 ] || { VERIFY_ERROR="with neither header it answered $bare, expected 403 (an untrusted device)"; return 1; }
    VERIFIED="200 with the upstream's body with $with, 403 with ${CRED%%:*} alone, 403 with neither"
    return 0
  fi
  case "$bare" in
    302|401) ;;
    *) VERIFY_ERROR="without credentials it answered $bare, expected 302 or 401"; return 1 ;;
  esac
  VERIFIED="200 with the upstream's body with $with, $bare without"
}

# wrk on CPU 1; every contender gets the same Host header, and its credential (policy
# contenders: the cookie and the posture assertion) if it has one.
# Run in the background and waited for, so a signal to this script is handled at once and
# not after wrk ends.
run_wrk() {
  local seconds="$1" out="$2" pid status=0
  timeout $((seconds + 30)) taskset -c 1 wrk -t1 -c50 -d"${seconds}s" --timeout 5s --latency \
    -H "Host: $HOST_HEADER" ${CRED:+-H "$CRED"} ${POSTURE:+-H "$POSTURE"} "http://127.0.0.1:$PORT/" >"$out" 2>&1 </dev/null &
  pid=$!
  PIDS+=("$pid") # timeout(1) makes itself a process group, so cleanup's group kill reaches wrk
  wait "$pid" || status=$?
  forget "$pid"
  return "$status"
}

UNVERIFIED=() # identity contender turns that could not be verified: the run fails
CRED=""
POSTURE=""
for round in $(seq 1 "$ROUNDS"); do
  for name in $CONTENDERS; do
    tag="$name.r$round"
    log "round $round/$ROUNDS: $name"
    if ! start_contender "$name" "$tag"; then
      # A contender that never gets ready (e.g. 404 on a wrong Host) is not measured.
      echo "$NOT_READY" >"$RAW/$tag.failed"
      log "  $name did not become ready: $NOT_READY; its stderr:"; tail -n 20 "$TMP/$tag.err" >&2 2>/dev/null || true
      [ -z "$STARTED_PID" ] || stop "$STARTED_PID"
      [ "$(credential_kind "$name")" = none ] || UNVERIFIED+=("$tag")
      continue
    fi
    if [ "$(credential_kind "$name")" != none ]; then
      VERIFY_ERROR=""
      if ! credentials "$name" "$tag" || [ -z "$CRED" ]; then
        VERIFY_ERROR="could not get a credential: $( (grep -m1 '^sign-in:' "$TMP/$tag.sign-in.err" || tail -n 1 "$TMP/$tag.sign-in.err") | cut -c1-200)"
      elif ! verify_auth; then
        :
      fi
      if [ -n "$VERIFY_ERROR" ]; then
        echo "NOT AUTHENTICATED, not measured: $VERIFY_ERROR" >"$RAW/$tag.failed"
        log "  ERROR: $name is not measured: $VERIFY_ERROR"
        tail -n 20 "$TMP/$tag.sign-in.err" >&2 2>/dev/null || true
        UNVERIFIED+=("$tag")
        stop "$STARTED_PID"
        continue
      fi
      log "  $(grep -m1 '^sign-in:' "$TMP/$tag.sign-in.err" | sed 's/^sign-in: //'); checked: $VERIFIED"
    else
      CRED=""
      POSTURE=""
    fi
    since_ms="$(date +%s%3N)" # access-log lines from here on are wrk's
    run_wrk "$WARMUP" "$TMP/$tag.warmup.txt" || true
    cpu_before="$(group_cpu_ticks "$STARTED_PID")"
    if run_wrk "$DURATION" "$RAW/$tag.wrk.txt"; then
      # CPU the contender used (all its processes) while measured, for CPU time per request.
      echo "$(( $(group_cpu_ticks "$STARTED_PID") - cpu_before )) $CLK_TCK" >"$RAW/$tag.cpu"
      log "  $(node "$HERE/report.mjs" line "$RAW/$tag.wrk.txt" "$RAW/$tag.cpu")"
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
    # The access log must really have been written (else the contender ran cheaper than
    # deployed), and show only 200s for the expected user: a lost session answers 302s,
    # which wrk does not count as errors.
    expect_user="$USER_ID"; [ "$(credential_kind "$name")" = bearer ] && expect_user="$API_CLIENT"
    access_file=""
    case "$name" in
      *-nolog) ;;
      wardgate-*) access_file="$TMP/$tag.out"; kind=wardgate ;;
      apache-openidc) access_file="$TMP/$tag.access.log"; kind=apache ;;
    esac
    if [ -n "$access_file" ]; then
      if summary="$(node "$HERE/report.mjs" accesslog "$kind" "$access_file" "$since_ms" "$expect_user" 2>&1)"; then
        log "  access log: $summary, $(du -h "$access_file" | cut -f1)"
      else
        log "  access log: $summary"
        echo "access log: $summary" >>"$RAW/$tag.failed"
      fi
    fi
    rm -f "$TMP/$tag.out" "$TMP/$tag.access.log" # the access log is only there to be paid for
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
  if has apache-openidc; then
    echo "- $("$APACHE" -v 2>/dev/null | sed -n 's/^Server version: //p'), mod_auth_openidc $(dpkg-query -W -f='${Version}' libapache2-mod-auth-openidc 2>/dev/null || echo '?') (mpm_event, 2 children x 64 threads, OIDCSessionType server-cache, OIDCCacheType shm, OIDCPassClaimsAs headers, Require claim acr:phr, access log on)"
  fi
  echo "- load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the figures)"
  echo "- wrk -t1 -c50 --latency, $ROUNDS round(s) of ${DURATION} s per contender after ${WARMUP} s of discarded warm-up; figures are medians over the rounds"
  echo "- rounds alternate (every contender once per round, in the order listed); each contender is started fresh for its turn"
  echo "- pinning: wrk, the upstream nginx and the IdP (idle while measuring) on CPU 1, single-process contenders on CPU 0; the two-worker wardgates and apache-openidc unpinned, so their two processes share both cores with wrk and the upstream"
  echo "- upstream: nginx, one process, return 200 with a ${#BODY}-byte body; nginx-proxy: one process, upstream keepalive 64"
  echo "- wardgate: log level warn, JSON access log on (to a file on $(df --output=fstype "$TMP" | tail -n1)), Host: $HOST_HEADER, cookie and assertion keys from the config; every contender was checked to answer 200 before it was measured"
  if [ "$IDENTITY" = 1 ]; then
    echo "- identity: one demo IdP (oidc-provider) for the run; session contenders signed in as $USER_ID with a security key (acr phr) for each turn and sent only their session cookie; bearer contenders sent a client_credentials JWT (no acr, so their route requires none); each was checked to get the upstream's 200 with its credential and a 302/401 without, and its access log to show only 200s for that user"
  fi
  if has wardgate-policy-; then
    echo "- policy contenders: the epic route's policy from config/hospital.yaml, verbatim ($(epic_summary)); devices.posture with a bench MDM P-256 key pair generated for the run (maxAge ${POSTURE_TTL} s); network.countries 127.0.0.0/8: GB (loopback stands for the hospital LAN); signed in as $USER_ID (security key) with the posture header on the application host's requests; then every request with the session cookie and one X-Device-Posture assertion per turn (ES256, managed, compliant, observed_at at minting, jti); checked: 200 with both, 403 with the cookie alone, 403 with neither; access log only 200s for $USER_ID"
  fi
  if [ "${#UNVERIFIED[@]}" -gt 0 ]; then
    echo "- NOT MEASURED, credentials did not work: ${UNVERIFIED[*]}"
  fi
} >"$RESULT"
echo
cat "$RESULT"
echo
log "saved $RESULT"
if [ "${#UNVERIFIED[@]}" -gt 0 ]; then
  die "identity contender turns not measured: ${UNVERIFIED[*]} (see the errors above)"
fi

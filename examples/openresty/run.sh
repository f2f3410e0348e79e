#!/bin/sh
# Starts or stops the example gateway in DIR, against a CloudTower. With
# TOWER unset it is the bundled simulator: the one whose env file SIM_ENV
# names, else one it starts in DIR/sim (and stops with the gateway), with
# the key "demo-key" for every VM when KEYS is unset too.
#   run.sh start DIR     run.sh stop DIR
# Settings (environment):
#   GATEWAY_PORT (free port), WORKERS (1)
#   TOWER (host:port of CloudTower), TOWER_SCHEME (https), TOWER_PREFIX (/: the
#   path prefix of CTVNC_ENDPOINT, with both slashes), CTVNC_ENDPOINT,
#   CTVNC_TOKEN, CTVNC_TICKET_SECRET (unset: random per start, one node only)
#   TOWER_CA (PEM; default the system store), TOWER_NAME (the name checked in
#   CloudTower's certificate; default TOWER's host), TOWER_TLS (verify |
#   insecure)
#   CLUSTER_CA (PEM bundle the clusters are verified with; default the system
#   store; list self-signed cluster certificates in it), CLUSTER_TLS (verify
#   | insecure)
#   RESOLVER (host:port ...; default the nameservers of /etc/resolv.conf),
#   RESOLVER_IPV6 (on | off; default: on when the system has IPv6)
#   MODE (auto), SCHEME (wss: the cluster's websocket), CLUSTER_PORT (nil),
#   PROXY_SCHEME (unset: CloudTower's console proxy follows TOWER's scheme,
#   https gives wss), PROBE_TIMEOUT (0.5), PROBE_TTL (30), KEYS (key file;
#   empty: no authorize hook), TOWER_TIMEOUT (10s: a whole console request), RATE
#   (50r/s), BURST (200), CREDENTIAL_TTL (0), BATCH_MAX (100), ID_RATE (100
#   batch VM ids per second and client, at least BATCH_MAX; 0: off),
#   ALLOWED_ORIGINS (space separated),
#   FRAME_ANCESTORS ('self'), TICKET_TTL (60: seconds a ticket lives, 1-60)
#   KEYS lines may grant view-only consoles: "<key> vm-1:view,vm-2" (or *:view)
#   MAX_PER_VM, MAX_PER_USER (concurrent consoles; 0: no limit), MAX_SESSION
#   (seconds a console stays open; 0: no cap), IDLE_TIMEOUT (seconds without
#   keys, pointer or clipboard from the browser; 0: none)
#   ADMIN_KEYS (file of admin keys, one a line, given in X-API-Key to
#   /admin/; empty: the admin routes answer 403)
#   SLOT_TTL (10: seconds a crashed worker's slots outlive it), TARGET_TIMEOUT
#   (10: seconds for each step of the target's websocket handshake), STORE
#   (shdict: sessions, slots, kill flags and used tickets on this node; or
#   redis://host[:port][/db], rediss://...: shared by several nodes, the
#   password in CTVNC_REDIS_PASSWORD), STORE_CA (PEM bundle a rediss://
#   store is verified with; default the system store), NODE_NAME (this
#   node's name in sessions, audit lines and metrics; default the host name)
#   AUDIT_LOG (path | error_log | off; default DIR/audit.log)
#   RECORD (off | on | grant), RECORD_DIR (DIR/recordings: 0700, owned by the
#   workers), RECORD_KEEP_DAYS, RECORD_MAX_MB (0: no limit), RECORD_REQUIRED
#   (off | on), RECORD_KEYFRAME (10: seconds between keyframes), RECORD_KEY
#   (environment: HMAC secret of recordings, 32+ bytes)
#   METRICS_ALLOW (addresses or IPv4 CIDRs allowed /metrics besides loopback)
#   RELAY_BUFFER (64k: the relay's read buffer, per side of a session)
#   MAX_SESSIONS (1000: console sessions this node holds; sizes
#   worker_connections, worker_rlimit_nofile and the session book),
#   TOWER_KEEPALIVE (64: kept-alive connections to CloudTower per worker),
#   USER_RATE (0: console requests per second of one authenticated user)
#   SHOT_RATE (120: screenshots a minute per user; 0: no limit), WALL_REFRESH
#   (30: seconds between /wall's refreshes), WALL_STILL (600: seconds a
#   screen stays unchanged before /wall marks it), WALL_VMS (VM ids /wall
#   shows when no ?vms= is given, space or comma separated)
#   JWT (hs256 | rs256: the gateway.jwt hook; with KEYS, either may allow),
#   CTVNC_JWT_SECRET (hs256), JWT_PUBLIC_KEY (PEM file, rs256), JWT_AUDIENCE,
#   JWT_ISSUER, JWT_LEEWAY (0), JWT_COOKIE (cookie holding the token; empty: none)
set -eu
cmd=$1
dir=$2
root=$(cd "$(dirname "$0")/../.." && pwd)

if [ "$cmd" = stop ]; then
  [ -d "$dir/sim" ] && bash "$root/spec/support/sim.sh" stop "$dir/sim" > /dev/null 2>&1
  if [ -f "$dir/nginx.pid" ]; then
    pid=$(cat "$dir/nginx.pid")
    if kill -QUIT "$pid" 2>/dev/null; then
      i=0
      while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # the workers' temp directory outside DIR, when DIR was closed to them
  [ -f "$dir/tmpdir" ] && rm -rf "$(cat "$dir/tmpdir")" "$dir/tmpdir"
  exit 0
fi

free_port() {
  lua5.4 -e 'local s = require("socket").bind("127.0.0.1", 0)
    print((select(2, s:getsockname()))) s:close()'
}

die() { echo "run.sh: $*" >&2; exit 2; }

mkdir -p "$dir/tmp"
# nginx's workers (user nobody when the master is root) write request
# bodies and proxied answers to temp files: a directory they can write,
# DIR/tmp when they can reach it, else a fresh one under /tmp.
tmp=$dir/tmp
if [ "$(id -u)" = 0 ]; then
  chown nobody "$tmp" && chmod 700 "$tmp"
  if ! runuser -u nobody -- test -w "$tmp/" 2>/dev/null; then
    tmp=$(mktemp -d /tmp/ctvnc-gateway.XXXXXXXX) || die "no temp directory for the workers"
    chown nobody "$tmp" && chmod 700 "$tmp"
    echo "$tmp" > "$dir/tmpdir"
    echo "run.sh: nginx's workers (nobody) cannot enter $dir: their temp files go to $tmp" >&2
  fi
fi
if [ -z "${TOWER:-}" ]; then      # the bundled simulator
  if [ -z "${SIM_ENV:-}" ]; then
    bash "$root/spec/support/sim.sh" start "$dir/sim" > "$dir/sim.log" 2>&1 \
      || die "the simulator did not start (see $dir/sim.log)"
    SIM_ENV=$dir/sim/env
  fi
  . "$SIM_ENV"
  TOWER=127.0.0.1:$SIM_HTTPS_PORT TOWER_CA=$SIM_CERT TOWER_NAME=localhost
  CTVNC_ENDPOINT=https://127.0.0.1:$SIM_HTTPS_PORT CTVNC_TOKEN=sim-token
  export CTVNC_ENDPOINT CTVNC_TOKEN
  if [ -z "${KEYS:-}" ]; then
    KEYS=$dir/demo-keys
    echo "demo-key *" > "$KEYS"
    echo "run.sh: the bundled simulator; API key demo-key (X-API-Key) for every VM" >&2
  fi
fi
port=${GATEWAY_PORT:-$(free_port)}
if [ -n "${KEYS:-}" ]; then authorize="gateway.key_file(\"$KEYS\")"; else authorize=nil; fi
lua_str() { if [ -n "$1" ]; then printf '"%s"' "$1"; else printf nil; fi; }
jwt_opts="audience = $(lua_str "${JWT_AUDIENCE:-}"), issuer = $(lua_str "${JWT_ISSUER:-}"), leeway = ${JWT_LEEWAY:-0}, cookie = $(lua_str "${JWT_COOKIE:-}")"
case ${JWT:-} in
  "") jwt_hook= ;;
  hs256) jwt_hook="gateway.jwt({ secret = os.getenv(\"CTVNC_JWT_SECRET\"), $jwt_opts })" ;;
  rs256) [ -r "${JWT_PUBLIC_KEY:-}" ] || die "JWT_PUBLIC_KEY must name a readable PEM file"
         jwt_hook="gateway.jwt({ public_key = assert(io.open(\"$JWT_PUBLIC_KEY\")):read(\"*a\"), $jwt_opts })" ;;
  *) die "JWT must be hs256 or rs256" ;;
esac
if [ -n "$jwt_hook" ]; then
  if [ "$authorize" = nil ]; then authorize=$jwt_hook; else authorize="gateway.either($authorize, $jwt_hook)"; fi
fi
for n in "${MAX_PER_VM:-0}" "${MAX_PER_USER:-0}" "${MAX_SESSION:-0}" "${IDLE_TIMEOUT:-0}" \
         "${JWT_LEEWAY:-0}" "${SLOT_TTL:-10}" "${TARGET_TIMEOUT:-10}" "${PROBE_TIMEOUT:-0.5}" \
         "${PROBE_TTL:-30}" "${MAX_SESSIONS:-1000}" "${TOWER_KEEPALIVE:-64}" "${USER_RATE:-0}" \
         "${RECORD_KEEP_DAYS:-0}" "${RECORD_MAX_MB:-0}" "${RECORD_KEYFRAME:-10}"; do
  # numbers only: each is written into nginx.conf's Lua as it is
  case $n in ''|*[!0-9.]*) die "MAX_PER_VM, MAX_PER_USER, MAX_SESSION, IDLE_TIMEOUT, JWT_LEEWAY, SLOT_TTL, TARGET_TIMEOUT, PROBE_TIMEOUT, PROBE_TTL, MAX_SESSIONS, TOWER_KEEPALIVE, USER_RATE, RECORD_KEEP_DAYS, RECORD_MAX_MB, RECORD_KEYFRAME are numbers" ;; esac
done
# capacity from MAX_SESSIONS: two connections a session in any one worker,
# 512 more (pages, API, /health, CloudTower), files 256 more; 2 KiB of
# session book a session (1 MiB at least)
max_sessions=${MAX_SESSIONS:-1000}
case $max_sessions in *[!0-9]*|0) die "MAX_SESSIONS must be a whole number of 1 or more" ;; esac
worker_connections=$((2 * max_sessions + 512))
nofile=$((worker_connections + 256))
book_kib=$((2 * max_sessions))
[ "$book_kib" -ge 1024 ] || book_kib=1024
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$nofile" ]; then
  echo "run.sh: WARNING: MAX_SESSIONS=$max_sessions needs $nofile open files a worker, the hard limit is $hard: nginx can raise it only with CAP_SYS_RESOURCE (systemd: LimitNOFILE=$nofile)" >&2
fi
# recordings: DIR/recordings, made here for the workers (nobody when the
# master is root) alone; a RECORD_DIR given is the operator's to prepare
record_dir=${RECORD_DIR:-$(cd "$dir" && pwd)/recordings}
if [ "${RECORD:-off}" != off ] && [ -z "${RECORD_DIR:-}" ]; then
  mkdir -p "$record_dir" && chmod 700 "$record_dir"
  if [ "$(id -u)" = 0 ]; then chown nobody "$record_dir"; fi
fi
if [ -n "${ADMIN_KEYS:-}" ]; then admin="gateway.admin_keys(\"$ADMIN_KEYS\")"; else admin=nil; fi
store=/etc/ssl/certs/ca-certificates.crt

# TLS: verified on every hop unless a setting says insecure
tower_tls=${TOWER_TLS:-verify}
cluster_tls=${CLUSTER_TLS:-verify}
case $tower_tls in verify) tower_verify=on ;; insecure) tower_verify=off ;;
  *) die "TOWER_TLS must be verify or insecure" ;; esac
case $cluster_tls in verify|insecure) ;; *) die "CLUSTER_TLS must be verify or insecure" ;; esac
[ "$tower_tls" = verify ] || echo "run.sh: WARNING: TOWER_TLS=insecure: CloudTower's certificate is not verified" >&2
[ "$cluster_tls" = verify ] || echo "run.sh: WARNING: CLUSTER_TLS=insecure: the clusters' certificates are not verified" >&2
tower_ca=${TOWER_CA:-$store}
cluster_ca=${CLUSTER_CA:-$store}
store_ca=${STORE_CA:-$store}
[ -r "$tower_ca" ] || die "TOWER_CA $tower_ca cannot be read"
[ -r "$cluster_ca" ] || die "CLUSTER_CA $cluster_ca cannot be read"
[ -r "$store_ca" ] || die "STORE_CA $store_ca cannot be read"
case ${STORE:-} in
  rediss://*)   # the relays reach the store too: their bundles trust it as well
    cat "$tower_ca" "$store_ca" > "$dir/tower-ca.pem" && tower_ca=$dir/tower-ca.pem
    cat "$cluster_ca" "$store_ca" > "$dir/cluster-ca.pem" && cluster_ca=$dir/cluster-ca.pem ;;
esac
tower_host=$(printf '%s' "$TOWER" | sed -e 's/^\[\(.*\)\]:[0-9]*$/\1/' -e 't' -e 's/:[0-9]*$//')
tower_name=${TOWER_NAME:-$tower_host}

# DNS: RESOLVER or the system's nameservers; IPv6 lookups as the system has it
resolver=${RESOLVER:-}
if [ -z "$resolver" ]; then
  resolver=$(awk '$1 == "nameserver" { a = $2; if (a ~ /:/) a = "[" a "]"; printf "%s ", a }' \
    /etc/resolv.conf 2>/dev/null || true)
fi
[ -n "$resolver" ] || resolver=127.0.0.53
if [ -z "${RESOLVER_IPV6:-}" ]; then
  if awk '$6 != "lo" { found = 1 } END { exit !found }' /proc/net/if_inet6 2>/dev/null; then
    RESOLVER_IPV6=on
  else
    RESOLVER_IPV6=off
  fi
fi

# TOWER_TIMEOUT in seconds for the Lua side (nginx takes 10s, 500ms, 1m)
timeout=${TOWER_TIMEOUT:-10s}
timeout_s=$(printf '%s' "$timeout" | awk '
  /^[0-9.]+ms$/ { sub(/ms$/, ""); print $0 / 1000; next }
  /^[0-9.]+s?$/ { sub(/s$/, ""); print $0 + 0; next }
  /^[0-9.]+m$/ { sub(/m$/, ""); print $0 * 60; next }
  { print "bad" }')
[ "$timeout_s" != bad ] || die "TOWER_TIMEOUT must be like 10s, 500ms or 1m"

frame_ancestors=${FRAME_ANCESTORS:-"'self'"}
sed -e "s|@ROOT@|$root|g" \
    -e "s|@PORT@|$port|g" \
    -e "s|@WORKERS@|${WORKERS:-1}|g" \
    -e "s|@TOWER@|$TOWER|g" \
    -e "s|@TOWER_SCHEME@|${TOWER_SCHEME:-https}|g" \
    -e "s|@TOWER_PREFIX@|${TOWER_PREFIX:-/}|g" \
    -e "s|@TOWER_VERIFY@|$tower_verify|g" \
    -e "s|@TOWER_CA@|$tower_ca|g" \
    -e "s|@TOWER_NAME@|$tower_name|g" \
    -e "s|@TOWER_TLS@|$tower_tls|g" \
    -e "s|@CLUSTER_CA@|$cluster_ca|g" \
    -e "s|@CLUSTER_TLS@|$cluster_tls|g" \
    -e "s|@RESOLVER@|$resolver|g" \
    -e "s|@RESOLVER_IPV6@|$RESOLVER_IPV6|g" \
    -e "s|@TOWER_TIMEOUT@|$timeout|g" \
    -e "s|@TOWER_TIMEOUT_S@|$timeout_s|g" \
    -e "s|@MODE@|${MODE:-auto}|g" \
    -e "s|@SCHEME@|${SCHEME:-wss}|g" \
    -e "s|@CLUSTER_PORT@|${CLUSTER_PORT:-nil}|g" \
    -e "s|@AUTHORIZE@|$authorize|g" \
    -e "s|@RATE@|${RATE:-50r/s}|g" \
    -e "s|@BURST@|${BURST:-200}|g" \
    -e "s|@CREDENTIAL_TTL@|${CREDENTIAL_TTL:-0}|g" \
    -e "s|@BATCH_MAX@|${BATCH_MAX:-100}|g" \
    -e "s|@TICKET_TTL@|${TICKET_TTL:-60}|g" \
    -e "s|@ID_RATE@|${ID_RATE:-100}|g" \
    -e "s|@USER_RATE@|${USER_RATE:-0}|g" \
    -e "s|@ALLOWED_ORIGINS@|${ALLOWED_ORIGINS:-}|g" \
    -e "s|@FRAME_ANCESTORS@|$frame_ancestors|g" \
    -e "s|@MAX_PER_VM@|${MAX_PER_VM:-0}|g" \
    -e "s|@RELAY_BUFFER@|${RELAY_BUFFER:-64k}|g" \
    -e "s|@MAX_PER_USER@|${MAX_PER_USER:-0}|g" \
    -e "s|@MAX_SESSION@|${MAX_SESSION:-0}|g" \
    -e "s|@IDLE_TIMEOUT@|${IDLE_TIMEOUT:-0}|g" \
    -e "s|@ADMIN_AUTHORIZE@|$admin|g" \
    -e "s|@AUDIT_LOG@|${AUDIT_LOG:-}|g" \
    -e "s|@RECORD@|${RECORD:-off}|g" \
    -e "s|@RECORD_DIR@|$record_dir|g" \
    -e "s|@RECORD_KEEP_DAYS@|${RECORD_KEEP_DAYS:-0}|g" \
    -e "s|@RECORD_MAX_MB@|${RECORD_MAX_MB:-0}|g" \
    -e "s|@RECORD_KEYFRAME@|${RECORD_KEYFRAME:-10}|g" \
    -e "s|@RECORD_REQUIRED@|${RECORD_REQUIRED:-off}|g" \
    -e "s|@METRICS_ALLOW@|${METRICS_ALLOW:-}|g" \
    -e "s|@PROXY_SCHEME@|${PROXY_SCHEME:-}|g" \
    -e "s|@PROBE_TIMEOUT@|${PROBE_TIMEOUT:-0.5}|g" \
    -e "s|@PROBE_TTL@|${PROBE_TTL:-30}|g" \
    -e "s|@SLOT_TTL@|${SLOT_TTL:-10}|g" \
    -e "s|@TARGET_TIMEOUT@|${TARGET_TIMEOUT:-10}|g" \
    -e "s|@STORE_CA@|$store_ca|g" \
    -e "s|@MAX_SESSIONS@|$max_sessions|g" \
    -e "s|@WORKER_CONNECTIONS@|$worker_connections|g" \
    -e "s|@NOFILE@|$nofile|g" \
    -e "s|@BOOK_SIZE@|${book_kib}k|g" \
    -e "s|@TOWER_KEEPALIVE@|${TOWER_KEEPALIVE:-64}|g" \
    -e "s|@SHOT_RATE@|${SHOT_RATE:-120}|g" \
    -e "s|@WALL_REFRESH@|${WALL_REFRESH:-30}|g" \
    -e "s|@WALL_STILL@|${WALL_STILL:-600}|g" \
    -e "s|@WALL_VMS@|${WALL_VMS:-}|g" \
    -e "s|@TMP@|$tmp|g" \
    "$root/examples/openresty/nginx.conf" > "$dir/nginx.conf"
# a setting configure refuses is told in one line, not a Lua traceback
if ! nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" 2> "$dir/start.err"; then
  why=$(grep -o 'ctvnc: setting .*' "$dir/start.err" | head -1)
  [ -n "$why" ] || why=$(cat "$dir/start.err")
  die "nginx did not start: $why"
fi
i=0
until lua5.4 -e "assert(require('socket').connect('127.0.0.1', $port))" 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 50 ] || { cat "$dir/error.log"; exit 1; }
  sleep 0.1
done
echo "GATEWAY_PORT=$port"
echo "GATEWAY_PORT=$port" > "$dir/env"

#!/bin/sh
# 5. The console relay (issue 13): the same VNC-like stream (bench/relay_load.c's
# target: 1 MiB messages as fast as a connection takes them, or an echo of
# small input messages) through
#   relay      the gateway's own relay (/console/vm-1/ws, cosockets, full session)
#   native     the same gateway, a location with nginx's proxy_pass to the same
#              target (nginx's default 4k proxy_buffer_size); native64: with 64k
#   websockify websockify in front of the same stream as raw TCP
#   direct     no proxy at all (the baseline of "added" latency)
# and relay, native, native64 again with the target over wss (TLS 1.3).
# with 1 and 100 concurrent sessions: throughput (MiB/s, all sessions
# together); the round trip of an 8-byte message (p50, p99) when every
# session sends one each 10 ms (a pointer moving at 100 Hz), and what the
# proxy adds to it; the p99 when every session keeps one message in flight
# (saturated); the memory each open session costs. One nginx worker;
# bench/relay_load.c (build/bench/relay_load) is the target and the
# browsers. Needs the simulator's env (SIM_*) and a temp dir. Loopback only.
set -u
tmp=$1
free_port() {
  lua5.4 -e "local s = require('socket').bind('$1', 0) print((select(2, s:getsockname()))) s:close()"
}
wait_port() {
  i=0
  until lua5.4 -e "assert(require('socket').connect('$1', $2))" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "bench: $1:$2 did not open" >&2; return 1; }
    sleep 0.1
  done
}

ws_port=$(free_port 127.0.0.2)
wss_port=$(free_port 127.0.0.2)
tcp_port=$(free_port 127.0.0.1)
wf_port=$(free_port 127.0.0.1)
load=build/bench/relay_load
# the target's certificate, as a cluster's (the gateways verify it)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=127.0.0.2 -addext subjectAltName=DNS:127.0.0.2,IP:127.0.0.2 \
  -keyout "$tmp/target.key" -out "$tmp/target.pem" > "$tmp/openssl.log" 2>&1 || {
  cat "$tmp/openssl.log"; exit 1; }
setsid $load target 127.0.0.2 "$ws_port" "$tcp_port" "$wss_port" "$tmp/target.pem" \
  "$tmp/target.key" > "$tmp/target.log" 2>&1 &
target_pid=$!
setsid websockify 127.0.0.1:"$wf_port" 127.0.0.1:"$tcp_port" > "$tmp/websockify.log" 2>&1 &
wf_pid=$!
printf 'bench-key *\n' > "$tmp/relay-keys"
stop_all() {  # silent: stdout may be a closed pipe
  for g in gwr gwt; do
    [ -f "$tmp/$g/nginx.pid" ] && sh examples/openresty/run.sh stop "$tmp/$g" > /dev/null 2>&1
  done
  kill -TERM -"$target_pid" "$target_pid" -"$wf_pid" "$wf_pid" 2>/dev/null
}
# whatever ends the script stops what it started (a signal too)
trap stop_all EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# gateway NAME SCHEME PORT: the example gateway in $tmp/NAME, relaying to the
# target at SCHEME://127.0.0.2:PORT, and beside its relay two locations with
# nginx's proxy_pass to the same target: with nginx's default buffer (what a
# websocket location gets) and with the relay's 64k
# (the stream is not RFB: a full session's handshake cannot be followed to
# ClientInit, so EXCLUSIVE_CONSOLES=on lets it pass unwatched, as a real one
# does past its handshake; 100 sessions from one address: LIMIT_CONN)
gateway() {
  EXCLUSIVE_CONSOLES=on LIMIT_CONN=100000 \
  TOWER=127.0.0.1:$SIM_HTTPS_PORT TOWER_CA=$SIM_CERT TOWER_NAME=localhost \
  CTVNC_ENDPOINT=https://127.0.0.1:$SIM_HTTPS_PORT CTVNC_TOKEN=sim-token KEYS=$tmp/relay-keys \
  MODE=direct SCHEME=$2 CLUSTER_PORT=$3 CLUSTER_CA=$tmp/target.pem RATE=100000r/s BURST=100000 \
  AUDIT_LOG=off sh examples/openresty/run.sh start "$tmp/$1" > "$tmp/$1.out" || {
    cat "$tmp/$1.out"; return 1; }
  native="proxy_http_version 1.1; proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection upgrade; proxy_read_timeout 1h;"
  if [ "$2" = wss ]; then
    native="$native proxy_pass https://127.0.0.2:$3; proxy_ssl_verify on; proxy_ssl_name 127.0.0.2; proxy_ssl_trusted_certificate $tmp/target.pem; proxy_ssl_protocols TLSv1.2 TLSv1.3;"
  else
    native="$native proxy_pass http://127.0.0.2:$3;"
  fi
  buf64='proxy_buffer_size 64k; proxy_buffers 4 64k; proxy_busy_buffers_size 64k;'
  sed -i "s|^        # Liveness|        location = /bench/native { $native }\n        location = /bench/native64 { $buf64 $native }\n        # Liveness|" "$tmp/$1/nginx.conf"
  kill -HUP "$(cat "$tmp/$1/nginx.pid")"
}
gateway gwr ws "$ws_port" && gateway gwt wss "$wss_port" || exit 1
port=$(sed -n 's/^GATEWAY_PORT=//p' "$tmp/gwr/env")
tport=$(sed -n 's/^GATEWAY_PORT=//p' "$tmp/gwt/env")
master=$(cat "$tmp/gwr/nginx.pid")
sleep 1
wait_port 127.0.0.2 "$ws_port" && wait_port 127.0.0.1 "$wf_port" || exit 1

# job <path kind> <sessions> <job...>: the client's JSON answer
job() {
  path_kind=$1
  shift
  case $path_kind in
    relay) set -- 127.0.0.1 "$port" /console/vm-1/ws bench-key "$@" ;;
    native) set -- 127.0.0.1 "$port" /bench/native - "$@" ;;
    native64) set -- 127.0.0.1 "$port" /bench/native64 - "$@" ;;
    websockify) set -- 127.0.0.1 "$wf_port" / - "$@" ;;
    direct) set -- 127.0.0.2 "$ws_port" / - "$@" ;;
    relay_tls) set -- 127.0.0.1 "$tport" /console/vm-1/ws bench-key "$@" ;;
    native_tls) set -- 127.0.0.1 "$tport" /bench/native - "$@" ;;
    native64_tls) set -- 127.0.0.1 "$tport" /bench/native64 - "$@" ;;
  esac
  timeout 120 $load client "$@"
}
num() { printf '%s' "$1" | sed -n "s/.*\"$2\": *\([0-9.e+-]*\).*/\1/p"; }

rss_kib() {  # the proportional set size (PSS) of a process and its children, KiB
  for p in "$1" $(pgrep -P "$1"); do
    awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null
  done | awk '{ s += $1 } END { print s + 0 }'
}

echo "== 5. Console relay: the same VNC-like stream through each path (one nginx worker) =="
for n in 1 100; do
  # saturated rounds (at 100 Hz: 300 rounds, 3 s, in every case)
  if [ "$n" = 1 ]; then sat=2000; else sat=50; fi
  printf '  %-3s session(s) %-10s %8s %18s %10s %14s\n' "$n" path "MiB/s" "p50 / p99 ms" \
    "added p99" "saturated p99"
  base=
  for kind in direct relay native native64 websockify; do
    out=$(job "$kind" "$n" flood 3)
    mib=$(num "$out" mib_s)
    out=$(job "$kind" "$n" echo 300 10)
    p50=$(num "$out" p50_ms) p99=$(num "$out" p99_ms)
    out=$(job "$kind" "$n" echo "$sat" 0)
    sat99=$(num "$out" p99_ms)
    [ -n "$mib" ] && [ -n "$p99" ] && [ -n "$sat99" ] || { echo "  $kind: $out"; continue; }
    [ "$kind" = direct ] && base=$p99
    eval "mib_${kind}_$n=$mib"
    eval "p99_${kind}_$n=$p99 sat_${kind}_$n=$sat99"
    added=$(awk -v a="$p99" -v b="${base:-0}" 'BEGIN { printf "%.3f", a - b }')
    printf '  %-16s %-10s %8.0f %8.3f / %7.3f %10s %14.3f\n' "" "$kind" "$mib" "$p50" "$p99" \
      "$added" "$sat99"
  done
done

echo "  the same with the target over wss (TLS 1.3, AES-128-GCM, verified: as clusters serve it):"
for n in 1 100; do
  printf '  %-3s session(s) %-10s %8s %18s\n' "$n" path "MiB/s" "p50 / p99 ms"
  for kind in relay native native64; do
    out=$(job "${kind}_tls" "$n" flood 3)
    mib=$(num "$out" mib_s)
    out=$(job "${kind}_tls" "$n" echo 300 10)
    p50=$(num "$out" p50_ms) p99=$(num "$out" p99_ms)
    [ -n "$mib" ] && [ -n "$p99" ] || { echo "  $kind over wss: $out"; continue; }
    eval "mib_${kind}_tls_$n=$mib"
    printf '  %-16s %-10s %8.0f %8.3f / %7.3f\n' "" "$kind" "$mib" "$p50" "$p99"
  done
done

echo "  memory per open session (PSS growth with 100 idle sessions open):"
for kind in relay native websockify; do
  case $kind in relay|native) pid=$master ;; websockify) pid=$wf_pid ;; esac
  before=$(rss_kib "$pid")
  job "$kind" 100 hold 2000 > "$tmp/hold.out" &
  cpid=$!
  i=0
  until grep -q open "$tmp/hold.out" || [ $i -ge 300 ]; do sleep 0.1; i=$((i + 1)); done
  sleep 1   # the sessions' first messages relayed
  during=$(rss_kib "$pid")
  wait "$cpid"
  awk -v k="$kind" -v a="$before" -v b="$during" \
    'BEGIN { printf "    %-10s %8.1f KiB per session (%d -> %d KiB)\n", k, (b - a) / 100, a, b }'
done

# the goals of issue 13 beside the figures (v NAME: a figure above, 0 if it failed)
v() { eval "printf '%s' \"\${$1:-0}\""; }
awk -v r1="$(v mib_relay_1)" -v r100="$(v mib_relay_100)" -v n1="$(v mib_native_1)" \
    -v n100="$(v mib_native_100)" -v m1="$(v mib_native64_1)" -v m100="$(v mib_native64_100)" \
    -v w1="$(v mib_websockify_1)" -v w100="$(v mib_websockify_100)" -v d1="$(v mib_direct_1)" \
    -v d100="$(v mib_direct_100)" -v a="$(v p99_relay_100)" -v b="$(v p99_direct_100)" \
    -v sa="$(v sat_relay_100)" -v sb="$(v sat_direct_100)" \
    -v t1="$(v mib_relay_tls_1)" -v t100="$(v mib_relay_tls_100)" -v tm1="$(v mib_native64_tls_1)" \
    -v tm100="$(v mib_native64_tls_100)" -v tn1="$(v mib_native_tls_1)" -v tn100="$(v mib_native_tls_100)" '
function r(x, y) { return y > 0 ? x / y : 0 }
BEGIN {
  print "  goals of issue 13 (1 session / 100 sessions):"
  printf "    relay >= 80%% of native: %.0f%% / %.0f%% of proxy_pass as configured (default buffer),\n",
    100 * r(r1, n1), 100 * r(r100, n100)
  printf "      %.0f%% / %.0f%% of proxy_pass with the relay'"'"'s 64k buffer\n", 100 * r(r1, m1), 100 * r(r100, m100)
  printf "      over wss: %.0f%% / %.0f%% of proxy_pass as configured, %.0f%% / %.0f%% with 64k\n",
    100 * r(t1, tn1), 100 * r(t100, tn100), 100 * r(t1, tm1), 100 * r(t100, tm100)
  printf "    relay >= 5x websockify: %.1fx / %.1fx (no proxy at all: %.1fx / %.1fx, the ceiling here)\n",
    r(r1, w1), r(r100, w100), r(d1, w1), r(d100, w100)
  printf "    added p99 <= 1 ms at 100 sessions: %.3f ms at 100 Hz a session, %.3f ms saturated\n",
    a - b, sa - sb }'

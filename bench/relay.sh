#!/bin/sh
# 5. The console relay (issue 13): the same VNC-like stream (bench/relay_target.js:
# a target sending 1 MiB messages as fast as it can, or echoing small input
# messages) through
#   relay      the gateway's own relay (/console/vm-1/ws, cosockets, full session)
#   native     the same gateway, a location with nginx's proxy_pass to the same target
#   websockify websockify in front of the same stream as raw TCP
#   direct     no proxy at all (the baseline of "added" latency)
# with 1 and 100 concurrent sessions: throughput (MiB/s, all sessions
# together), the round trip of one 8-byte message (p50, p99) and what the
# proxy adds to it, and the memory each open session costs. One nginx
# worker; node runs the target and the clients. Needs the simulator's env
# (SIM_*) and a temp dir. Loopback only.
set -u
tmp=$1
root=$(pwd)
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
tcp_port=$(free_port 127.0.0.1)
wf_port=$(free_port 127.0.0.1)
setsid node bench/relay_target.js 127.0.0.2 "$ws_port" "$tcp_port" > "$tmp/target.log" 2>&1 &
target_pid=$!
setsid websockify 127.0.0.1:"$wf_port" 127.0.0.1:"$tcp_port" > "$tmp/websockify.log" 2>&1 &
wf_pid=$!
printf 'bench-key *\n' > "$tmp/relay-keys"
TOWER=127.0.0.1:$SIM_HTTPS_PORT TOWER_CA=$SIM_CERT TOWER_NAME=localhost \
CTVNC_ENDPOINT=https://127.0.0.1:$SIM_HTTPS_PORT CTVNC_TOKEN=sim-token KEYS=$tmp/relay-keys \
MODE=direct SCHEME=ws CLUSTER_PORT=$ws_port RATE=100000r/s BURST=100000 AUDIT_LOG=off \
  sh examples/openresty/run.sh start "$tmp/gwr" > "$tmp/gwr.out" || { cat "$tmp/gwr.out"; exit 1; }
stop_all() {
  sh examples/openresty/run.sh stop "$tmp/gwr"
  kill -TERM -"$target_pid" "$target_pid" -"$wf_pid" "$wf_pid" 2>/dev/null
}
trap stop_all EXIT
port=$(sed -n 's/^GATEWAY_PORT=//p' "$tmp/gwr/env")
# the native comparison: a location of the same server, proxy_pass to the same target
sed -i "s|^        # Liveness|        location = /bench/native { proxy_pass http://127.0.0.2:$ws_port; proxy_http_version 1.1; proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection upgrade; proxy_read_timeout 1h; }\n        # Liveness|" "$tmp/gwr/nginx.conf"
master=$(cat "$tmp/gwr/nginx.pid")
kill -HUP "$master"
sleep 1
wait_port 127.0.0.2 "$ws_port" && wait_port 127.0.0.1 "$wf_port" || exit 1

# job <path kind> <sessions> <extra json>: the client's JSON answer
job() {
  case $1 in
    relay) p=$port; path=/console/vm-1/ws; h='{"X-API-Key": "bench-key"}'; host=127.0.0.1 ;;
    native) p=$port; path=/bench/native; h='{}'; host=127.0.0.1 ;;
    websockify) p=$wf_port; path=/; h='{}'; host=127.0.0.1 ;;
    direct) p=$ws_port; path=/; h='{}'; host=127.0.0.2 ;;
  esac
  printf '{"host": "%s", "port": %s, "path": "%s", "headers": %s, "sessions": %s, %s}\n' \
    "$host" "$p" "$path" "$h" "$2" "$3" > "$tmp/job.json"
  timeout 120 node bench/relay_client.js "$tmp/job.json"
}
num() { printf '%s' "$1" | sed -n "s/.*\"$2\":\([0-9.e+-]*\).*/\1/p"; }

rss_kib() {  # the proportional set size (PSS) of a process and its children, KiB
  for p in "$1" $(pgrep -P "$1"); do
    awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null
  done | awk '{ s += $1 } END { print s + 0 }'
}

echo "== 5. Console relay: the same VNC-like stream through each path (one nginx worker) =="
for n in 1 100; do
  if [ "$n" = 1 ]; then rounds=400; secs=3; else rounds=20; secs=4; fi
  printf '  %-3s session(s)   %-10s %12s %10s %10s %12s\n' "$n" path "MiB/s" "p50 ms" "p99 ms" "added p99"
  base=
  for kind in direct relay native websockify; do
    out=$(job "$kind" "$n" "\"seconds\": $secs, \"rounds\": $rounds")
    mib=$(num "$out" mib_s); p50=$(num "$out" p50_ms); p99=$(num "$out" p99_ms)
    [ -n "$mib" ] || { echo "  $kind: $out"; continue; }
    [ "$kind" = direct ] && base=$p99
    eval "mib_${kind}_$n=$mib"
    eval "p99_${kind}_$n=$p99"
    added=$(awk -v a="$p99" -v b="${base:-0}" 'BEGIN { printf "%.3f", a - b }')
    printf '  %-18s %-10s %12.0f %10.3f %10.3f %12s\n' "" "$kind" "$mib" "$p50" "$p99" "$added"
  done
done

echo "  memory per open session (PSS growth with 100 idle sessions open):"
for kind in relay native websockify; do
  case $kind in relay|native) pid=$master ;; websockify) pid=$wf_pid ;; esac
  before=$(rss_kib "$pid")
  job "$kind" 100 '"hold_ms": 3000' > /dev/null &
  cpid=$!
  sleep 2
  during=$(rss_kib "$pid")
  wait "$cpid"
  awk -v k="$kind" -v a="$before" -v b="$during" \
    'BEGIN { printf "    %-10s %8.1f KiB per session (%d -> %d KiB)\n", k, (b - a) / 100, a, b }'
done

# the goals of issue 13 beside the figures
eval "r1=\$mib_relay_1 n1=\$mib_native_1 w1=\$mib_websockify_1 r100=\$mib_relay_100 n100=\$mib_native_100 w100=\$mib_websockify_100"
eval "a100=\$p99_relay_100 d100=\$p99_direct_100"
awk -v r1="$r1" -v n1="$n1" -v w1="$w1" -v r100="$r100" -v n100="$n100" -v w100="$w100" \
    -v a100="$a100" -v d100="$d100" 'BEGIN {
  printf "  goals: relay >= 80%% of native: %.0f%% (1), %.0f%% (100); relay >= 5x websockify: %.1fx (1), %.1fx (100);\n",
    100 * r1 / n1, 100 * r100 / n100, r1 / w1, r100 / w100
  printf "         added p99 <= 1 ms at 100 sessions: %.3f ms\n", a100 - d100 }'

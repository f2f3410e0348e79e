#!/bin/sh
# 6. One node at its limit (issue 22): SCALE_N (10000) idle console
# sessions to a target that sends an RFB server's banner, through the
# gateway's relay and, in the same nginx, through a location with nginx's
# proxy_pass (WORKERS=2). Beside each figure its goal:
#   - memory per idle session (PSS growth of nginx, master and workers)
#     and the workers' CPU while the sessions idle (10 s);
#   - 100 sessions echoing at 10 Hz beside the idle ones: their p99, and
#     what it adds over the target reached directly (measured beside it,
#     as the shared machine is then); for the relay also while
#     /admin/sessions is asked every second;
#   - /admin/sessions (one page) and /metrics at SCALE_N sessions;
#   - console opens per second (SCALE_OPENS opens, 50 at a time) and the
#     workers' CPU per open.
# bench/relay_load.c (build/bench/relay_load) is the target and the
# browsers. Needs the simulator's env (SIM_*) and a temp dir. Loopback only.
set -u
tmp=$1
n=${SCALE_N:-10000}
opens_n=${SCALE_OPENS:-3000}
load=build/bench/relay_load
# two sockets a session in the gateway, one in the target and the client
ulimit -n $((4 * n + 4096)) 2>/dev/null || echo "  (the file limit stays $(ulimit -n))"
free_port() {
  lua5.4 -e "local s = require('socket').bind('$1', 0) print((select(2, s:getsockname()))) s:close()"
}
ws_port=$(free_port 127.0.0.2)
tcp_port=$(free_port 127.0.0.1)
setsid $load rfb-target 127.0.0.2 "$ws_port" "$tcp_port" > "$tmp/rfb-target.log" 2>&1 &
target_pid=$!
printf 'bench-key *\n' > "$tmp/scale-keys"
printf 'bench-admin\n' > "$tmp/scale-admin"
hold_pid=
stop_all() {
  [ -n "$hold_pid" ] && kill "$hold_pid" 2>/dev/null
  [ -f "$tmp/gws/nginx.pid" ] && sh examples/openresty/run.sh stop "$tmp/gws" > /dev/null 2>&1
  kill -TERM -"$target_pid" "$target_pid" 2>/dev/null
}
trap stop_all EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

TOWER=127.0.0.1:$SIM_HTTPS_PORT TOWER_CA=$SIM_CERT TOWER_NAME=localhost \
CTVNC_ENDPOINT=https://127.0.0.1:$SIM_HTTPS_PORT CTVNC_TOKEN=sim-token KEYS=$tmp/scale-keys \
ADMIN_KEYS=$tmp/scale-admin MODE=direct SCHEME=ws CLUSTER_PORT=$ws_port RATE=100000r/s \
BURST=100000 AUDIT_LOG=off WORKERS=2 MAX_SESSIONS=$((n + 200)) \
  sh examples/openresty/run.sh start "$tmp/gws" > "$tmp/gws.out" || { cat "$tmp/gws.out"; exit 1; }
native="proxy_http_version 1.1; proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection upgrade; proxy_read_timeout 1h; proxy_pass http://127.0.0.2:$ws_port;"
sed -i "s|^        # Liveness|        location = /bench/native { $native }\n        # Liveness|" "$tmp/gws/nginx.conf"
master=$(cat "$tmp/gws/nginx.pid")
kill -HUP "$master"
sleep 1
port=$(sed -n 's/^GATEWAY_PORT=//p' "$tmp/gws/env")

num() { printf '%s' "$1" | sed -n "s/.*\"$2\": *\([0-9.e+-]*\).*/\1/p"; }
pss_kib() {  # the proportional set size of nginx (master and workers), KiB
  for p in "$master" $(pgrep -P "$master"); do
    awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null
  done | awk '{ s += $1 } END { print s + 0 }'
}
cpu_ticks() {  # user + system clock ticks of nginx's workers
  for p in $(pgrep -P "$master"); do
    awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null
  done | awk '{ s += $1 } END { print s + 0 }'
}
hz=$(getconf CLK_TCK)
path_of() { case $1 in relay) echo /console/vm-1/ws ;; native) echo /bench/native ;; esac; }
key_of() { case $1 in relay) echo bench-key ;; native) echo - ;; esac; }
# echo_p99 HOST PORT PATH KEY: p99 of 100 sessions sending 8 bytes at 10 Hz for 5 s
echo_p99() {
  num "$(timeout 60 $load client "$1" "$2" "$3" "$4" 100 echo 50 100)" p99_ms
}
ms_of() {  # median of 5 requests' time, ms
  for _ in 1 2 3 4 5; do
    curl -s -o /dev/null -w '%{time_total}\n' -H 'X-API-Key: bench-admin' "http://127.0.0.1:$port$1"
  done | sort -n | awk 'NR == 3 { printf "%.1f", $1 * 1000 }'
}

echo "== 6. One node at its limit: $n idle sessions (target sends the RFB banner; WORKERS=2) =="
for kind in native relay; do   # native first: the relay's freed memory stays in the heap
  before=$(pss_kib)
  : > "$tmp/hold-$kind.out"
  t0=$(date +%s.%N)
  $load client 127.0.0.1 "$port" "$(path_of $kind)" "$(key_of $kind)" "$n" hold 3600000 \
    > "$tmp/hold-$kind.out" 2>&1 &
  hold_pid=$!
  i=0
  until grep -q open "$tmp/hold-$kind.out" 2>/dev/null || [ $i -ge 1200 ]; do
    sleep 0.1; i=$((i + 1))
    kill -0 "$hold_pid" 2>/dev/null || break
  done
  grep -q open "$tmp/hold-$kind.out" 2>/dev/null || {
    echo "  $kind: the sessions did not open: $(cat "$tmp/hold-$kind.out")"; continue; }
  open_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  sleep 3   # the banners relayed, the first refreshes done
  during=$(pss_kib)
  c0=$(cpu_ticks)
  sleep 10
  c1=$(cpu_ticks)
  # the target reached directly just before, as the machine is now
  eval "direct_$kind=\$(echo_p99 127.0.0.2 \"\$ws_port\" / -)"
  p99=$(echo_p99 127.0.0.1 "$port" "$(path_of $kind)" "$(key_of $kind)")
  eval "mem_$kind=\$(awk -v a=$before -v b=$during -v n=$n 'BEGIN { printf \"%.1f\", (b - a) / n }')"
  eval "cpu_$kind=\$(awk -v c=$((c1 - c0)) -v hz=$hz 'BEGIN { printf \"%.2f\", 100 * c / hz / 10 }')"
  eval "p99_$kind=\$p99"
  if [ "$kind" = relay ]; then
    admin_ms=$(ms_of "/admin/sessions?limit=100")
    filter_ms=$(ms_of "/admin/sessions?vm_id=vm-2")
    metrics_ms=$(ms_of /metrics)
    # the active sessions' p99 while /admin/sessions is asked every second
    ( for _ in 1 2 3 4 5 6; do
        curl -s -o /dev/null -H 'X-API-Key: bench-admin' "http://127.0.0.1:$port/admin/sessions"
        sleep 1
      done ) &
    poll=$!
    p99_polled=$(echo_p99 127.0.0.1 "$port" /console/vm-1/ws bench-key)
    wait "$poll"
    direct_polled=$(echo_p99 127.0.0.2 "$ws_port" / -)
  fi
  printf '  %-7s %d sessions open in %s s: %s KiB each (%d -> %d KiB), idle CPU %s%% of a core\n' \
    "$kind" "$n" "$open_s" "$(eval echo \$mem_$kind)" "$before" "$during" "$(eval echo \$cpu_$kind)"
  kill "$hold_pid" 2>/dev/null
  wait "$hold_pid" 2>/dev/null
  hold_pid=
  sleep 3   # the sessions closed
done

# opens per second, the workers' CPU per open
for kind in relay native; do
  c0=$(cpu_ticks)
  out=$(timeout 300 $load client 127.0.0.1 "$port" "$(path_of $kind)" "$(key_of $kind)" 50 opens \
    "$opens_n")
  c1=$(cpu_ticks)
  eval "opens_$kind=\$(num \"\$out\" opens_s)"
  eval "cpu_open_$kind=\$(awk -v c=$((c1 - c0)) -v hz=$hz -v n=$opens_n 'BEGIN { printf \"%.3f\", 1000 * c / hz / n }')"
  [ -n "$(eval echo \$opens_$kind)" ] || echo "  $kind opens: $out"
  sleep 2
done

v() { eval "printf '%s' \"\${$1:-0}\""; }
awk -v n="$n" -v mr="$(v mem_relay)" -v mn="$(v mem_native)" -v cr="$(v cpu_relay)" \
    -v cn="$(v cpu_native)" -v pr="$(v p99_relay)" -v pn="$(v p99_native)" \
    -v dr="$(v direct_relay)" -v dn="$(v direct_native)" -v dp="$(v direct_polled)" \
    -v pp="$(v p99_polled)" -v am="$(v admin_ms)" -v fm="$(v filter_ms)" -v mm="$(v metrics_ms)" \
    -v or="$(v opens_relay)" -v on="$(v opens_native)" -v ocr="$(v cpu_open_relay)" \
    -v ocn="$(v cpu_open_native)" '
function r(x, y) { return y > 0 ? x / y : 0 }
BEGIN {
  print "  goals of issue 22 (relay beside proxy_pass in the same nginx):"
  printf "    memory per idle session <= 32 KiB: %.1f KiB (proxy_pass %.1f KiB)\n", mr, mn
  printf "    idle CPU at %d sessions <= 3%% of a core: %.2f%% (proxy_pass %.2f%%)\n", n, cr, cn
  printf "    100 sessions at 10 Hz beside %d idle, added p99 <= 2 ms: %.3f ms (p99 %.3f ms, direct %.3f ms);\n",
    n, pr - dr, pr, dr
  printf "      while /admin/sessions is polled: %.3f ms (p99 %.3f, direct %.3f);\n", pp - dp, pp, dp
  printf "      proxy_pass adds %.3f ms (p99 %.3f, direct %.3f)\n", pn - dn, pn, dn
  printf "    /admin/sessions at %d sessions <= 10 ms: %.1f ms a page of 100, %.1f ms filtered by VM\n", n, am, fm
  printf "    /metrics at %d sessions <= 10 ms: %.1f ms\n", n, mm
  printf "    opens >= 50%% of proxy_pass: %.0f/s against %.0f/s, %.0f%%\n", or, on, 100 * r(or, on)
  printf "    gateway CPU per open <= 0.2 ms: %.3f ms (proxy_pass %.3f ms)\n", ocr, ocn }'

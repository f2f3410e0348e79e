#!/bin/sh
# 4. wrk against the example gateway's /console/<vm>/url for 10 s, the
# simulator at 20 ms latency, beside /health (a Lua answer, no tower) as the
# ceiling of this machine. Needs the simulator's env (SIM_*) and a temp dir.
set -u
tmp=$1
printf 'bench-key *\n' > "$tmp/keys"
TOWER=127.0.0.1:$SIM_HTTPS_PORT TOWER_CA=$SIM_CERT TOWER_NAME=localhost CTVNC_ENDPOINT=https://127.0.0.1:$SIM_HTTPS_PORT \
CTVNC_TOKEN=sim-token KEYS=$tmp/keys MODE=proxy RATE=100000r/s BURST=100000 \
  sh examples/openresty/run.sh start "$tmp/gw" > "$tmp/gw.out" || { cat "$tmp/gw.out"; exit 1; }
. "$tmp/gw/env"
trap 'sh examples/openresty/run.sh stop "$tmp/gw" > /dev/null 2>&1' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
curl -s -X POST -d '{"latency_ms":20}' "http://127.0.0.1:$SIM_HTTP_PORT/_sim/config" > /dev/null

echo "== 4. OpenResty gateway: wrk -t2 -c32 -d10s, simulator at 20 ms, one nginx worker =="
run() {  # label url
  wrk -t2 -c32 -d10s --latency -H 'X-API-Key: bench-key' "$2" > "$tmp/wrk.out" 2>&1
  awk -v label="$1" '
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = $2 }
    $1 == "99%" { p99 = $2 }
    / [0-9]+ requests in/ { n = $1 }
    /Non-2xx/ { bad = $NF }
    END { printf "  %-36s %9s req/s   p50 %8s   p99 %8s   (%s requests, %s non-2xx)\n",
                 label, rps, p50, p99, n, bad == "" ? 0 : bad }' "$tmp/wrk.out"
}
run "/console/vm-1/url (ctvnc + CloudTower)" "http://127.0.0.1:$GATEWAY_PORT/console/vm-1/url"
run "/health (Lua, no tower: the ceiling)" "http://127.0.0.1:$GATEWAY_PORT/health"
echo "  (each /url request waits 20 ms for the simulator: 32 connections can at best"
echo "   reach 32 / 0.020 = 1600 req/s)"
curl -s -X POST -d '{"latency_ms":0}' "http://127.0.0.1:$SIM_HTTP_PORT/_sim/config" > /dev/null

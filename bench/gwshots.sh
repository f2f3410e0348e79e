#!/bin/sh
# 7. The gateway's screenshots: wrk against the example gateway's
# /console/<vm>/screenshot.png?width=320 for 10 s, one nginx worker, the
# console through the simulator's proxy over TLS to spec/support/rfbserver.py
# (no added latency: what the worker itself costs): 64x48 ZRLE desktops,
# and 1920x1080 ones (decoding and the thumbnail run on the worker). Needs
# the simulator's env (SIM_*) and a temp dir.
set -u
tmp=$1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 spec/support/rfbserver.py "127.0.0.1:$port" > "$tmp/rfbserver.out" 2>&1 &
rfb=$!
printf 'bench-key *\n' > "$tmp/shot-keys"
stop() {
  sh examples/openresty/run.sh stop "$tmp/gwshot" > /dev/null 2>&1
  kill "$rfb" 2>/dev/null
  curl -s -X POST -d '{}' "http://127.0.0.1:$SIM_HTTP_PORT/_sim/desktop" > /dev/null
}
trap stop EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
i=0
until grep -q ready "$tmp/rfbserver.out" 2>/dev/null || [ $i -gt 100 ]; do sleep 0.05; i=$((i + 1)); done
curl -s -X POST -d "{\"ws\":\"http://127.0.0.1:$port\"}" "http://127.0.0.1:$SIM_HTTP_PORT/_sim/desktop" > /dev/null
TOWER=127.0.0.1:$SIM_HTTPS_PORT TOWER_CA=$SIM_CERT TOWER_NAME=localhost CTVNC_ENDPOINT=https://127.0.0.1:$SIM_HTTPS_PORT \
CTVNC_TOKEN=sim-token KEYS=$tmp/shot-keys MODE=proxy RATE=100000r/s BURST=100000 SHOT_RATE=0 \
  sh examples/openresty/run.sh start "$tmp/gwshot" > "$tmp/gwshot.out" || { cat "$tmp/gwshot.out"; exit 1; }
. "$tmp/gwshot/env"
# the Python server builds each big desktop's ZRLE data once: not timed
curl -s -o /dev/null -H 'X-API-Key: bench-key' \
  "http://127.0.0.1:$GATEWAY_PORT/console/vm-1001/screenshot.png?width=320"

echo "== 7. the gateway's screenshots: wrk -t2 -d10s, ?width=320, one nginx worker =="
run() {  # label connections url
  wrk -t2 -c"$2" -d10s --latency -H 'X-API-Key: bench-key' "$3" > "$tmp/wrk.out" 2>&1
  awk -v label="$1" '
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = $2 }
    $1 == "99%" { p99 = $2 }
    / [0-9]+ requests in/ { n = $1 }
    /Non-2xx/ { bad = $NF }
    END { printf "  %-40s %8s shots/s   p50 %8s   p99 %8s   (%s, %s non-2xx)\n",
                 label, rps, p50, p99, n, bad == "" ? 0 : bad }' "$tmp/wrk.out"
}
run "64x48 ZRLE, 16 connections" 16 "http://127.0.0.1:$GATEWAY_PORT/console/vm-101/screenshot.png?width=320"
run "1920x1080 ZRLE, 4 connections" 4 "http://127.0.0.1:$GATEWAY_PORT/console/vm-1001/screenshot.png?width=320"
echo "  (each one: a CloudTower vnc query, a TLS websocket through the proxy, the RFB"
echo "   handshake and one frame; the Python server shares the two cores)"

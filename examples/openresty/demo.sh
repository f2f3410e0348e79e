#!/bin/sh
# make console-demo: the console gateway in front of the CloudTower
# simulator and a real VNC desktop, for a browser on this machine. Starts
#   - the simulator (CloudTower, and its /websockify/ console proxy),
#   - Xvnc (a desktop on loopback, painted blue) behind two websockify: the
#     cluster of vm-1 (127.0.0.2, raw-token lookup) and the one the proxy
#     carries to,
#   - the gateway (examples/openresty/run.sh) with the key "demo-key" for
#     vm-1,
# prints a ticket link (one use, 60 s) and how to get more, and stops
# everything on Ctrl-C (or any other signal; a second Ctrl-C does not cut
# the stop short). Loopback only.
set -eu
cd "$(dirname "$0")/../.."
root=$(pwd)
dir=$(mktemp -d)
pids=""
sleeper=""

# Stops everything this script started, once; further signals are ignored
# meanwhile, by the commands it runs too.
stop() {
  trap '' INT TERM HUP QUIT
  trap - EXIT
  if [ -n "$sleeper" ]; then kill "$sleeper" 2>/dev/null || true; fi
  gw_pid=$(cat "$dir/gw/nginx.pid" 2>/dev/null || true)
  sh examples/openresty/run.sh stop "$dir/gw" 2>/dev/null || true
  if [ -n "$gw_pid" ]; then   # the gateway's nginx, gone within 5 s or killed with its workers
    i=0
    while kill -0 "$gw_pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    pkill -KILL -P "$gw_pid" 2>/dev/null || true
    kill -KILL "$gw_pid" 2>/dev/null || true
  fi
  for p in $pids; do kill -TERM "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in $pids; do kill -KILL "-$p" 2>/dev/null || true; done
  bash spec/support/sim.sh stop "$dir/sim" > /dev/null 2>&1 || true
  rm -rf "$dir"
  echo "console-demo: stopped"
}
trap stop EXIT
trap 'stop; exit 130' INT TERM HUP QUIT

spawn() {  # name command...
  name=$1
  shift
  setsid "$@" > "$dir/$name.log" 2>&1 &
  pids="$pids $!"
}

free_port() {
  lua5.4 -e "local s = require('socket').bind('$1', 0)
    print((select(2, s:getsockname()))) s:close()"
}

wait_port() {
  i=0
  until lua5.4 -e "assert(require('socket').connect('$1', $2))" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "console-demo: nothing on $1:$2 ($3):"; tail -5 "$dir/$3.log"; exit 1; }
    sleep 0.1
  done
}

bash spec/support/sim.sh start "$dir/sim" > /dev/null
. "$dir/sim/env"

vnc_port=$(free_port 127.0.0.1)
spawn xvnc Xvnc -displayfd 3 -rfbport "$vnc_port" -localhost -nolisten tcp -SecurityTypes None \
  -geometry 1024x768 -depth 24 -desktop ctvnc-demo 3> "$dir/display"
wait_port 127.0.0.1 "$vnc_port" xvnc
i=0   # Xvnc may listen before it writes its display number
until [ -s "$dir/display" ] || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
xsetroot -display ":$(cat "$dir/display")" -solid '#2a6f97'

desk_port=$(free_port 127.0.0.1)
spawn websockify-desktop websockify "127.0.0.1:$desk_port" "127.0.0.1:$vnc_port"
cluster_port=$(free_port 127.0.0.2)
spawn websockify-cluster env -u http_proxy -u HTTP_PROXY -u https_proxy -u HTTPS_PROXY \
  -u all_proxy -u ALL_PROXY NO_PROXY='*' websockify --token-plugin JSONTokenApi \
  --token-source "http://127.0.0.1:$SIM_HTTP_PORT/_sim/desktop/%s" "127.0.0.2:$cluster_port"
wait_port 127.0.0.1 "$desk_port" websockify-desktop
wait_port 127.0.0.2 "$cluster_port" websockify-cluster
curl -s -m 5 -X POST -H 'Content-Type: application/json' \
  -d "{\"ws\":\"http://127.0.0.1:$desk_port\",\"vnc\":\"127.0.0.1:$vnc_port\"}" \
  "http://127.0.0.1:$SIM_HTTP_PORT/_sim/desktop" > /dev/null

printf 'demo-key vm-1\n' > "$dir/keys"
TOWER=127.0.0.1:$SIM_HTTPS_PORT TOWER_CA=$SIM_CERT TOWER_NAME=localhost \
CTVNC_ENDPOINT=https://127.0.0.1:$SIM_HTTPS_PORT CTVNC_TOKEN=sim-token KEYS=$dir/keys \
MODE=${MODE:-auto} SCHEME=ws CLUSTER_PORT=$cluster_port \
  sh examples/openresty/run.sh start "$dir/gw" > "$dir/gw.out"
. "$dir/gw/env"
gw=http://127.0.0.1:$GATEWAY_PORT

link=$(curl -s -m 5 -X POST -H 'X-API-Key: demo-key' "$gw/console/vm-1/ticket" \
  | lua5.4 -e 'print(require("cjson").decode(io.read("a")).url)')
cat <<EOF

ctvnc console gateway on $gw (simulator, desktop and gateway on loopback)

  Open this link in a browser on this machine within 60 s (it works once):

    $gw$link

  A new link for vm-1 (the demo key goes in a header, never in a URL):

    curl -s -X POST -H 'X-API-Key: demo-key' $gw/console/vm-1/ticket

  An error page: $gw/console/nope   (403: no ticket)
  Logs: $dir/gw/access.log, $dir/gw/error.log      root: $root

Ctrl-C stops everything.
EOF
# a signal ends `wait` at once (a plain sleep would run to its end first);
# stop kills the sleep
while :; do
  sleep 3600 &
  sleeper=$!
  wait "$sleeper" || true
done

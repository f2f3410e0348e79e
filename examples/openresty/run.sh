#!/bin/sh
# Starts or stops the example gateway in DIR, against a CloudTower (by
# default the simulator whose env file SIM_ENV names).
#   run.sh start DIR     run.sh stop DIR
# Settings (environment): GATEWAY_PORT (free port), TOWER (host:port of
# CloudTower), TOWER_SCHEME (https), TOWER_CA (PEM), CTVNC_ENDPOINT,
# CTVNC_TOKEN, MODE (auto), SCHEME (wss), CLUSTER_PORT (nil), KEYS (key
# file; empty: no authorize hook), WORKERS (1), TOWER_TIMEOUT (10s),
# RATE (50r/s), BURST (200), CREDENTIAL_TTL (0).
set -eu
cmd=$1
dir=$2
root=$(cd "$(dirname "$0")/../.." && pwd)

if [ "$cmd" = stop ]; then
  [ -f "$dir/nginx.pid" ] || exit 0
  pid=$(cat "$dir/nginx.pid")
  kill -QUIT "$pid" 2>/dev/null || exit 0
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  kill -KILL "$pid" 2>/dev/null || true
  pkill -KILL -f "nginx -p $dir/ " 2>/dev/null || true
  exit 0
fi

free_port() {
  lua5.4 -e 'local s = require("socket").bind("127.0.0.1", 0)
    print((select(2, s:getsockname()))) s:close()'
}

mkdir -p "$dir/tmp"
port=${GATEWAY_PORT:-$(free_port)}
if [ -n "${KEYS:-}" ]; then authorize="gateway.key_file(\"$KEYS\")"; else authorize=nil; fi
verify=on
[ -n "${TOWER_CA:-}" ] || { verify=off; TOWER_CA=/etc/ssl/certs/ca-certificates.crt; }
sed -e "s|@ROOT@|$root|g" \
    -e "s|@PORT@|$port|g" \
    -e "s|@WORKERS@|${WORKERS:-1}|g" \
    -e "s|@TOWER@|$TOWER|g" \
    -e "s|@TOWER_SCHEME@|${TOWER_SCHEME:-https}|g" \
    -e "s|@TOWER_VERIFY@|$verify|g" \
    -e "s|@TOWER_CA@|$TOWER_CA|g" \
    -e "s|@TOWER_NAME@|${TOWER_NAME:-localhost}|g" \
    -e "s|@TOWER_TIMEOUT@|${TOWER_TIMEOUT:-10s}|g" \
    -e "s|@MODE@|${MODE:-auto}|g" \
    -e "s|@SCHEME@|${SCHEME:-wss}|g" \
    -e "s|@CLUSTER_PORT@|${CLUSTER_PORT:-nil}|g" \
    -e "s|@AUTHORIZE@|$authorize|g" \
    -e "s|@RATE@|${RATE:-50r/s}|g" \
    -e "s|@BURST@|${BURST:-200}|g" \
    -e "s|@CREDENTIAL_TTL@|${CREDENTIAL_TTL:-0}|g" \
    "$root/examples/openresty/nginx.conf" > "$dir/nginx.conf"
nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log"
i=0
until lua5.4 -e "assert(require('socket').connect('127.0.0.1', $port))" 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 50 ] || { cat "$dir/error.log"; exit 1; }
  sleep 0.1
done
echo "GATEWAY_PORT=$port"
echo "GATEWAY_PORT=$port" > "$dir/env"

#!/bin/sh
# Starts or stops the example gateway in DIR, against a CloudTower: a thin
# wrapper over `ctvnc gateway start|stop` (bin/ctvnc of this checkout), the
# settings from the environment (docs/gateway.md's table: the same names
# as in a settings file). With TOWER unset it is the
# bundled simulator: the one whose env file SIM_ENV names, else one it
# starts in DIR/sim (and stops with the gateway), with the key "demo-key"
# for every VM when KEYS is unset too.
#   run.sh start DIR     run.sh stop DIR
# Prints GATEWAY_PORT=<port> and writes it to DIR/env. Every setting:
#   bin/ctvnc gateway check FILE, docs/gateway.md, and the commented
#   defaults lua/ctvnc/gateway/gateway.conf.
set -eu
cmd=$1
dir=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
ctvnc="$root/bin/ctvnc"

if [ "$cmd" = stop ]; then
  [ -d "$dir/sim" ] && bash "$root/spec/support/sim.sh" stop "$dir/sim" > /dev/null 2>&1
  "$ctvnc" gateway stop --prefix "$dir" > /dev/null
  exit 0
fi
[ "$cmd" = start ] || { echo "usage: run.sh start|stop DIR" >&2; exit 2; }

die() { echo "run.sh: $*" >&2; exit 2; }

mkdir -p "$dir"
if [ -z "${TOWER:-}" ]; then      # the bundled simulator
  if [ -z "${SIM_ENV:-}" ]; then
    bash "$root/spec/support/sim.sh" start "$dir/sim" > "$dir/sim.log" 2>&1 \
      || die "the simulator did not start (see $dir/sim.log)"
    SIM_ENV=$dir/sim/env
  fi
  . "$SIM_ENV"
  TOWER=127.0.0.1:$SIM_HTTPS_PORT TOWER_CA=$SIM_CERT TOWER_NAME=localhost
  CTVNC_ENDPOINT=https://127.0.0.1:$SIM_HTTPS_PORT CTVNC_TOKEN=sim-token
  export TOWER TOWER_CA TOWER_NAME CTVNC_ENDPOINT CTVNC_TOKEN
  if [ -z "${KEYS:-}" ]; then
    KEYS=$dir/demo-keys
    echo "demo-key *" > "$KEYS"
    export KEYS
    echo "run.sh: the bundled simulator; API key demo-key (X-API-Key) for every VM" >&2
  fi
fi
"$ctvnc" gateway start --prefix "$dir" /dev/null >&2 || die "the gateway did not start"
cat "$dir/env"

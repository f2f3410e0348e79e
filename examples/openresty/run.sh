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
usage() {
  echo "usage: run.sh start DIR | run.sh stop DIR   (settings in the environment: see run.sh)" >&2
  exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
dir=$2
case $cmd in start|stop) ;; *) usage ;; esac
root=$(cd "$(dirname "$0")/../.." && pwd)
ctvnc="$root/bin/ctvnc"

# Stops the gateway and the simulator of DIR (what start started).
stop() {
  if [ -d "$dir/sim" ]; then bash "$root/spec/support/sim.sh" stop "$dir/sim" > /dev/null 2>&1 || true; fi
  "$ctvnc" gateway stop --prefix "$dir" > /dev/null || true
}

if [ "$cmd" = stop ]; then
  stop
  exit 0
fi
# A signal before the gateway is up stops what this start started; the
# stop itself ignores further signals (a second Ctrl-C), and so do the
# commands it runs.
trap 'trap "" INT TERM HUP QUIT; stop; exit 130' INT TERM HUP QUIT

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
# a start that fails stops the simulator it started, too
"$ctvnc" gateway start --prefix "$dir" /dev/null >&2 || { stop; die "the gateway did not start"; }
trap - INT TERM HUP QUIT
cat "$dir/env"

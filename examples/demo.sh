#!/bin/sh
# make demo: console URLs for VMs of the bundled CloudTower simulator, or of
# the tower in CTVNC_ENDPOINT (VM ids from CTVNC_VMS, space-separated).
set -eu
cd "$(dirname "$0")/.."
# bin/ctvnc finds lua/ and build/5.4/ next to itself (make demo builds them)
ctvnc() { lua5.4 bin/ctvnc "$@"; }

if [ -n "${CTVNC_ENDPOINT:-}" ]; then
  [ -n "${CTVNC_VMS:-}" ] || { echo "set CTVNC_VMS to the VM ids to show"; exit 2; }
  # shellcheck disable=SC2086
  ctvnc batch $CTVNC_VMS
  exit
fi

dir=$(mktemp -d)
trap 'bash spec/support/sim.sh stop "$dir/sim" > /dev/null 2>&1; rm -rf "$dir"' EXIT INT TERM
bash spec/support/sim.sh start "$dir/sim" > /dev/null
. "$dir/sim/env"
export CTVNC_ENDPOINT="https://127.0.0.1:$SIM_HTTPS_PORT" CTVNC_CA_FILE="$SIM_CERT"
export CTVNC_USERNAME=admin CTVNC_PASSWORD=sim-pass

echo "== simulator on $CTVNC_ENDPOINT (logging in as admin)"
echo "== ctvnc vms web-1"
ctvnc vms web-1
echo "== ctvnc url --mode direct vm-1 vm-3  (one line per VM: id, mode, URL)"
ctvnc url --mode direct vm-1 vm-3
echo "== ctvnc url --mode proxy --format json vm-1"
ctvnc url --mode proxy --format json vm-1
echo "== ctvnc batch --port $SIM_CLUSTER_PORT vm-1 ... vm-6  (auto: odd VMs' cluster answers, even ones' does not)"
ctvnc batch --port "$SIM_CLUSTER_PORT" vm-1 vm-2 vm-3 vm-4 vm-5 vm-6
echo "== ctvnc url fault-null  (a failure: id, error, kind, message; exit 1)"
ctvnc url fault-null || echo "(exit status $?)"

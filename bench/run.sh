#!/bin/sh
# ctvnc benchmarks (`make bench`, from the repo root, after `make build`).
# Starts a CloudTower simulator of its own on loopback, prints figures and
# the issue's targets beside them, and stops the simulator on exit.
#   1. batch of 1,000 VMs at 20 ms latency vs curl-per-VM and a LuaSocket loop
#   2. URL building, ctvnc (C) vs plain Lua, on lua5.4 and luajit
#   3. RSS over repeated 10,000-VM batches
#   4. the OpenResty gateway under wrk, beside a static location
#   5. the console relay vs nginx's proxy_pass vs websockify (bench/relay.sh)
#   6. one node at its limit: SCALE_N (10000) idle sessions, the relay beside
#      proxy_pass (bench/scale.sh)
#   6. screenshots of 100 VMs at 20 ms latency, memory per screenshot in flight
#   7. the gateway's screenshots under wrk (bench/gwshots.sh)
#   8. the session store: what Redis adds per console open over shdict (bench/store.sh)
# BENCH_URL_N sets the number of URL-building calls (default 1000000).
# `sh bench/run.sh batch` (make bench-batch) runs the first alone, with its
# perf profile.
set -u
cd "$(dirname "$0")/.." || exit 1

# loopback only: no proxy may catch the requests
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
NO_PROXY='*'
no_proxy='*'
export NO_PROXY no_proxy

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ctvnc-bench.XXXXXX") || exit 1
stop() {
  bash spec/support/sim.sh stop "$tmp/sim" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap stop EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

if ! bash spec/support/sim.sh start "$tmp/sim" >"$tmp/sim.log" 2>&1; then
  cat "$tmp/sim.log"
  echo "bench: the simulator did not start" >&2
  exit 1
fi
set -a
. "$tmp/sim/env"
set +a

LUA_PATH='./?.lua;lua/?.lua;lua/?/init.lua;;'
export LUA_PATH
lua54() { LUA_CPATH_5_4='build/5.4/?.so;;' timeout 120 lua5.4 "$@"; }
jit() { LUA_CPATH='build/jit/?.so;;' timeout 120 luajit "$@"; }

start=$(date +%s)
rc=0
lua54 bench/batch.lua || rc=1
echo "  where ctvnc's CPU goes (perf, one run each; the kernel's share includes the"
echo "  simulator's side of loopback TCP, which runs in the sender's context):"
sh bench/profile.sh "$tmp" 1 "HTTP/1.1 C=16 per_request 1" || rc=1
sh bench/profile.sh "$tmp" 2 "HTTPS h2 C=64 per_request 1" || rc=1
sh bench/profile.sh "$tmp" 3 "HTTP/1.1 C=16 per_request 25" || rc=1
if [ "${1:-}" = batch ]; then
  echo "bench: done in $(( $(date +%s) - start )) s"
  exit $rc
fi
echo
lua54 bench/url.lua || rc=1
jit bench/url.lua || rc=1
echo
lua54 bench/memory.lua || rc=1
echo
sh bench/gateway.sh "$tmp" || rc=1
echo
sh bench/relay.sh "$tmp" || rc=1
echo
sh bench/scale.sh "$tmp" || rc=1
echo
lua54 bench/shots.lua || rc=1
echo
sh bench/gwshots.sh "$tmp" || rc=1
echo
sh bench/store.sh "$tmp" || rc=1
echo
echo "bench: done in $(( $(date +%s) - start )) s"
exit $rc

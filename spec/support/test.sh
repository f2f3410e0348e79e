#!/bin/bash
# Runs every suite of `make test`, JOBS (2) at a time, each busted suite
# against a CloudTower simulator of its own (the specs read its counters),
# prints one summary line per suite as it ends and, last, "N passed, N failed".
# SUITES picks a subset, e.g. SUITES="lua5.4 rock5.4" bash spec/support/test.sh
#
#   lua5.1 lua5.2 lua5.3 lua5.4  the whole suite (but the rock) under that Lua
#   luajit                       the same, LuaJIT 2.1 with the 5.1 module
#   rock5.1 .. rock5.4 rockjit   spec/rock_spec.lua: `luarocks make` into a fresh
#                                tree for that Lua, one exported symbol, the
#                                module and the installed ctvnc command work
#   valgrind asan                the Lua 5.4 suite under valgrind / with ASan+UBSan
#   fuzz luacheck cppcheck
#
# Expects `make build` (and build/asan for asan) done: `make test` does both.
set -u
cd "$(dirname "$0")/../.." || exit 1
OUT=${CTVNC_TEST_OUT:-out/test}
JOBS=${JOBS:-2}
# the longest first, so that two lanes end about together
SUITES=${SUITES:-"valgrind fuzz lua5.4 asan luajit lua5.1 lua5.2 lua5.3 \
rock5.4 rock5.1 rock5.2 rock5.3 rockjit luacheck cppcheck"}
BUSTED=/usr/bin/busted
LPATH='lua/?.lua;lua/?/init.lua;;'
rm -rf "$OUT"
mkdir -p "$OUT"

stop_sims() {
  local d
  for d in "$OUT"/*/sim; do
    [ -d "$d" ] && bash spec/support/sim.sh stop "$d" > /dev/null 2>&1
  done
}
trap 'stop_sims' EXIT
trap 'exit 130' INT TERM

# A job writes "$OUT/<name>.result" (passed failed) and "$OUT/<name>.detail".
check() {  # name command...: one test, the command must exit 0
  local name=$1
  shift
  if "$@" > "$OUT/$name.log" 2>&1; then
    echo "1 0" > "$OUT/$name.result"
  else
    tail -40 "$OUT/$name.log" | sed 's/^/    /' > "$OUT/$name.detail"
    echo "0 1" > "$OUT/$name.result"
  fi
}

# A busted run in TAP against a simulator of its own; a crash or a non-zero
# exit with no failing test counts as one failure.
suite() {  # name abi env-and-command... (abi: the build/<abi> module, or -)
  local name=$1 abi=$2 dir="$OUT/$1" rc p f
  shift 2
  mkdir -p "$dir"
  if ! bash spec/support/sim.sh start "$dir/sim" > "$dir/sim.log" 2>&1; then
    sed 's/^/    /' "$dir/sim.log" > "$OUT/$name.detail"
    echo "0 1" > "$OUT/$name.result"
    return
  fi
  (
    set -a
    . "$dir/sim/env"
    set +a
    if [ "$abi" != - ]; then
      export LUA_PATH="$LPATH" LUA_CPATH="build/$abi/?.so;;" LUA_CPATH_5_2="build/$abi/?.so;;" \
        LUA_CPATH_5_3="build/$abi/?.so;;" LUA_CPATH_5_4="build/$abi/?.so;;"
    fi
    env "$@" -o TAP > "$OUT/$name.tap" 2>&1
  )
  rc=$?
  bash spec/support/sim.sh stop "$dir/sim" > /dev/null 2>&1
  p=$(grep -c '^ok ' "$OUT/$name.tap")
  f=$(grep -c '^not ok ' "$OUT/$name.tap")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  if [ "$f" -ne 0 ]; then
    {
      grep -A12 '^not ok ' "$OUT/$name.tap" | head -150
      [ "$rc" -ne 0 ] && tail -30 "$OUT/$name.tap"
    } | sed 's/^/    /' > "$OUT/$name.detail"
  fi
  echo "$p $f" > "$OUT/$name.result"
}

run() {  # name
  local s=$1
  case $s in
    luacheck) check luacheck luacheck -q lua spec bin examples ;;
    cppcheck) check cppcheck cppcheck --quiet --error-exitcode=1 \
                --enable=warning,portability,performance --std=c99 csrc ;;
    lua5.[1234]) suite "$s" "${s#lua}" "$s" $BUSTED --exclude-tags=rock ;;
    luajit)   suite luajit 5.1 luajit $BUSTED --exclude-tags=rock ;;
    rock5.[1234]) suite "$s" - CTVNC_ROCK_DIR="$OUT/$s" "lua${s#rock}" $BUSTED spec/rock_spec.lua ;;
    rockjit)  suite rockjit - CTVNC_ROCK_DIR="$OUT/rockjit" luajit $BUSTED spec/rock_spec.lua ;;
    valgrind) suite valgrind 5.4 CTVNC_SLOW=1 valgrind -q --error-exitcode=99 --leak-check=full \
                --errors-for-leak-kinds=definite --show-leak-kinds=definite \
                lua5.4 $BUSTED --exclude-tags=novalgrind,rock ;;
    asan)     # the module built with ASan/UBSan, preloaded into lua5.4
              suite asan asan \
                LD_PRELOAD="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)" \
                ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                lua5.4 $BUSTED --exclude-tags=novalgrind,rock ;;
    fuzz)     check fuzz sh fuzz/run.sh 30 ;;
    *)        echo "    unknown suite" > "$OUT/$s.detail"; echo "0 1" > "$OUT/$s.result" ;;
  esac
}

PASSED=0
FAILED=0
report() {  # name
  local p f
  read -r p f < "$OUT/$1.result"
  PASSED=$((PASSED + p))
  FAILED=$((FAILED + f))
  printf '%-10s %5d passed, %d failed\n' "$1" "$p" "$f"
  [ -s "$OUT/$1.detail" ] && cat "$OUT/$1.detail"
}

pending=""   # started, not reported yet
running=0
collect() {  # reports the suites that have ended
  local s left=""
  for s in $pending; do
    if [ -e "$OUT/$s.result" ]; then
      report "$s"
      running=$((running - 1))
    else
      left="$left $s"
    fi
  done
  pending=$left
}

for s in $SUITES; do
  while [ "$running" -ge "$JOBS" ]; do
    sleep 0.2
    collect
  done
  ( run "$s"; [ -e "$OUT/$s.result" ] || echo "0 1" > "$OUT/$s.result" ) &
  pending="$pending $s"
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  sleep 0.2
  collect
done
wait

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

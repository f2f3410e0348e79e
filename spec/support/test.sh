#!/bin/bash
# Runs every suite of `make test`, JOBS (2) at a time, each busted suite
# against a CloudTower simulator of its own (the specs read its counters),
# the suites that run spec/redis_spec.lua (lua5.x, luajit) with a
# redis-server of their own too (spec/support/redis.sh: REDIS_* in the
# environment), prints one summary line per suite as it ends and, last,
# "N passed, N failed".
# SUITES picks a subset, e.g. SUITES="lua5.4 rock5.4" bash spec/support/test.sh
#
#   lua5.1 lua5.2 lua5.3 lua5.4  the whole suite (but the rock) under that Lua
#   luajit                       the same, LuaJIT 2.1 with the 5.1 module
#   rock5.1 .. rock5.4 rockjit   spec/rock_spec.lua: `luarocks make` into a fresh
#                                tree for that Lua, one exported symbol, the
#                                module and the installed ctvnc command work
#   valgrind asan                the Lua 5.4 suite under valgrind / with ASan+UBSan
#   jitheaders                   csrc/ builds, strict, against LuaJIT's own headers
#   fuzz luacheck cppcheck
#
# Expects `make build` (and build/asan for asan) done: `make test` does both.
set -u
cd "$(dirname "$0")/../.." || exit 1
OUT=${CTVNC_TEST_OUT:-out/test}
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
JOBS=${JOBS:-2}
# Longest first; each suite writes its own screenshots (CTVNC_E2E_OUT).
SUITES=${SUITES:-"lua5.4 valgrind luajit fuzz lua5.1 asan lua5.2 lua5.3 \
rock5.4 rock5.1 rock5.2 rock5.3 rockjit jitheaders luacheck cppcheck"}
BUSTED=/usr/bin/busted
# spec/*_luajit_spec.lua need LuaJIT (its FFI): the luajit suite only
NOJIT=--exclude-pattern=_luajit_spec
LPATH='lua/?.lua;lua/?/init.lua;;'
rm -rf "$OUT"
mkdir -p "$OUT"

stop_sims() {
  local d
  for d in "$OUT"/*/sim; do
    [ -d "$d" ] && bash spec/support/sim.sh stop "$d" > /dev/null 2>&1
  done
  for d in "$OUT"/*/redis; do
    [ -d "$d" ] && bash spec/support/redis.sh stop "$d" > /dev/null 2>&1
  done
}
trap 'stop_sims' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A job writes "$OUT/<name>.res" (passed failed) and "$OUT/<name>.detail".
check() {  # name command...: one test, the command must exit 0
  local name=$1
  shift
  if "$@" > "$OUT/$name.log" 2>&1; then
    echo "1 0" > "$OUT/$name.res"
  else
    tail -40 "$OUT/$name.log" | sed 's/^/    /' > "$OUT/$name.detail"
    echo "0 1" > "$OUT/$name.res"
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
    echo "0 1" > "$OUT/$name.res"
    return
  fi
  case $name in
    lua5.?|luajit)  # spec/redis_spec.lua's server (the other suites skip it by tag)
      if ! bash spec/support/redis.sh start "$dir/redis" > "$dir/redis.log" 2>&1; then
        bash spec/support/sim.sh stop "$dir/sim" > /dev/null 2>&1
        sed 's/^/    /' "$dir/redis.log" > "$OUT/$name.detail"
        echo "0 1" > "$OUT/$name.res"
        return
      fi ;;
  esac
  (
    set -a
    . "$dir/sim/env"
    [ -e "$dir/redis/env" ] && . "$dir/redis/env"
    set +a
    if [ "$abi" != - ]; then
      export LUA_PATH="$LPATH" LUA_CPATH="build/$abi/?.so;;" LUA_CPATH_5_2="build/$abi/?.so;;" \
        LUA_CPATH_5_3="build/$abi/?.so;;" LUA_CPATH_5_4="build/$abi/?.so;;"
    fi
    export CTVNC_E2E_OUT="$dir/e2e"
    env "$@" -o TAP > "$OUT/$name.tap" 2>&1
  )
  rc=$?
  bash spec/support/sim.sh stop "$dir/sim" > /dev/null 2>&1
  [ -d "$dir/redis" ] && bash spec/support/redis.sh stop "$dir/redis" > /dev/null 2>&1
  p=$(grep -c '^ok ' "$OUT/$name.tap")
  f=$(grep -c '^not ok ' "$OUT/$name.tap")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  if [ "$f" -ne 0 ]; then
    {
      grep -A12 '^not ok ' "$OUT/$name.tap" | head -150
      [ "$rc" -ne 0 ] && tail -30 "$OUT/$name.tap"
    } | sed 's/^/    /' > "$OUT/$name.detail"
  fi
  echo "$p $f" > "$OUT/$name.res"
}

run() {  # name
  local s=$1
  case $s in
    luacheck) check luacheck luacheck -q lua spec bin examples bench ;;
    cppcheck) check cppcheck cppcheck --quiet --error-exitcode=1 \
                --enable=warning,portability,performance --std=c99 csrc bench ;;
    lua5.[1234]) suite "$s" "${s#lua}" "$s" $BUSTED $NOJIT --exclude-tags=rock ;;
    luajit)   suite luajit 5.1 luajit $BUSTED --exclude-tags=rock ;;
    rock5.[1234]) suite "$s" - CTVNC_ROCK_DIR="$OUT/$s" "lua${s#rock}" $BUSTED spec/rock_spec.lua ;;
    rockjit)  suite rockjit - CTVNC_ROCK_DIR="$OUT/rockjit" luajit $BUSTED spec/rock_spec.lua ;;
    valgrind) suite valgrind 5.4 CTVNC_SLOW=1 valgrind -q --error-exitcode=99 --leak-check=full \
                --errors-for-leak-kinds=definite --show-leak-kinds=definite \
                lua5.4 $BUSTED $NOJIT --exclude-tags=novalgrind,rock ;;
    asan)     # the module built with ASan/UBSan, preloaded into lua5.4
              suite asan asan \
                LD_PRELOAD="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)" \
                ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                lua5.4 $BUSTED $NOJIT --exclude-tags=novalgrind,rock ;;
    fuzz)     check fuzz sh fuzz/run.sh 30 ;;
    jitheaders) # what `LUA_INCDIR=/usr/include/luajit-2.1` would build, strict
              check jitheaders cc -std=c99 -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes -Wcast-qual \
                -Werror -fPIC -shared -I/usr/include/luajit-2.1 -o "$OUT/jitheaders.so" \
                csrc/*.c -lcurl -lz ;;
    *)        echo "    unknown suite" > "$OUT/$s.detail"; echo "0 1" > "$OUT/$s.res" ;;
  esac
}

PASSED=0
FAILED=0
report() {  # name
  local p f t
  read -r p f t < "$OUT/$1.result"
  PASSED=$((PASSED + p))
  FAILED=$((FAILED + f))
  printf '%-10s %5d passed, %d failed  (%s s)\n' "$1" "$p" "$f" "${t:-?}"
  [ -s "$OUT/$1.detail" ] && cat "$OUT/$1.detail"
}

pending=""   # started, not reported yet
queue=$SUITES
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
start() {  # name
  local s=$1 t0=$SECONDS
  (
    # valgrind has timing-sensitive specs (TLS handshakes with a 2 s
    # connect timeout): it goes first for the CPU
    [ "$s" = valgrind ] || renice -n 5 -p "$BASHPID" > /dev/null 2>&1
    run "$s"
    [ -e "$OUT/$s.res" ] || echo "0 1" > "$OUT/$s.res"
    echo "$(cat "$OUT/$s.res") $((SECONDS - t0))" > "$OUT/$s.result.tmp"
    mv "$OUT/$s.result.tmp" "$OUT/$s.result"
  ) &
  pending="$pending $s"
  running=$((running + 1))
}
while [ -n "$(echo $queue)" ] || [ "$running" -gt 0 ]; do
  collect
  s=""
  [ "$running" -lt "$JOBS" ] && s=$(set -- $queue; echo "${1:-}")
  if [ -n "$s" ]; then
    start "$s"
    queue=$(echo " $queue " | sed "s/ $s / /")
  else
    sleep 0.2
  fi
done
wait

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

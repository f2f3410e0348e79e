#!/bin/sh
# Runs every suite of `make test` against one simulator and ends with the
# line "N passed, N failed". SUITES picks a subset (see the list below).
set -u
cd "$(dirname "$0")/../.."
OUT=${CTVNC_TEST_OUT:-out/test}
SUITES=${SUITES:-"luacheck cppcheck lua5.4 luajit valgrind asan fuzz"}
BUSTED=/usr/bin/busted
PASSED=0
FAILED=0
rm -rf "$OUT"
mkdir -p "$OUT"

tally() {  # name passed failed
  PASSED=$((PASSED + $2))
  FAILED=$((FAILED + $3))
  printf '%-10s %5d passed, %d failed\n' "$1" "$2" "$3"
}

# A check that is one test: a command that must exit 0.
check() {
  name=$1
  shift
  if "$@" > "$OUT/$name.log" 2>&1; then
    tally "$name" 1 0
  else
    tally "$name" 0 1
    sed 's/^/    /' "$OUT/$name.log" | tail -40
  fi
}

# A busted run in TAP; a crash or a non-zero exit with no failing test
# counts as one failure.
suite() {
  name=$1
  shift
  "$@" -o TAP > "$OUT/$name.tap" 2>&1
  rc=$?
  p=$(grep -c '^ok ' "$OUT/$name.tap")
  f=$(grep -c '^not ok ' "$OUT/$name.tap")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  tally "$name" "$p" "$f"
  if [ "$f" -ne 0 ]; then
    grep -A12 '^not ok ' "$OUT/$name.tap" | head -150 | sed 's/^/    /'
    [ "$rc" -ne 0 ] && tail -30 "$OUT/$name.tap" | sed 's/^/    /'
  fi
}

bash spec/support/sim.sh start "$OUT/sim" > "$OUT/sim.log" 2>&1 || {
  cat "$OUT/sim.log"
  echo "0 passed, 1 failed"
  exit 1
}
trap 'bash spec/support/sim.sh stop "$OUT/sim" > /dev/null 2>&1' EXIT INT TERM
set -a
. "$OUT/sim/env"
set +a

LPATH='lua/?.lua;lua/?/init.lua;;'
# spec/*_luajit_spec.lua need LuaJIT (its FFI): the luajit suite only.
NOJIT=--exclude-pattern=_luajit_spec
for s in $SUITES; do
  case $s in
    luacheck) check luacheck luacheck -q lua spec bin examples ;;
    cppcheck) check cppcheck cppcheck --quiet --error-exitcode=1 \
                --enable=warning,portability,performance --std=c99 csrc ;;
    lua5.4)   suite lua5.4 env LUA_PATH="$LPATH" LUA_CPATH_5_4='build/5.4/?.so;;' \
                lua5.4 $BUSTED $NOJIT ;;
    luajit)   suite luajit env LUA_PATH="$LPATH" LUA_CPATH='build/jit/?.so;;' \
                luajit $BUSTED ;;
    valgrind) suite valgrind env LUA_PATH="$LPATH" LUA_CPATH_5_4='build/5.4/?.so;;' \
                CTVNC_SLOW=1 valgrind -q --error-exitcode=99 --leak-check=full \
                --errors-for-leak-kinds=definite --show-leak-kinds=definite \
                lua5.4 $BUSTED $NOJIT --exclude-tags=novalgrind ;;
    asan)     # the module built with ASan/UBSan, preloaded into lua5.4
              suite asan env LUA_PATH="$LPATH" LUA_CPATH_5_4='build/asan/?.so;;' \
                LD_PRELOAD="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)" \
                ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                lua5.4 $BUSTED $NOJIT --exclude-tags=novalgrind ;;
    fuzz)     check fuzz sh fuzz/run.sh 30 ;;
    *) echo "unknown suite $s"; tally "$s" 0 1 ;;
  esac
done

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

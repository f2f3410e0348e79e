#!/bin/sh
# fuzz/run.sh [SECONDS]: build the libFuzzer harnesses of csrc/url.c,
# csrc/frames.c (+ grow.c), csrc/rfb.c (+ wsc.c), csrc/png.c and
# csrc/resp.c into build/fuzz/ and run each one for SECONDS (default 30),
# one after another.
# Run from the repository root. Each run works on a scratch copy of
# fuzz/corpus/<name>/ so fuzz/corpus/ never changes; crash inputs go to
# build/fuzz/artifacts/. Exits non-zero, naming the harness, on any crash,
# leak, timeout, out-of-memory or UBSan report.
#
# Environment: CLANG (default clang), HARNESSES (default all nine), URL_C,
# FRAMES_C, GROW_C, RFB_C, PNG_C, RESP_C and RECORDING_C (default
# csrc/url.c, csrc/frames.c, csrc/grow.c, csrc/rfb.c, csrc/png.c,
# csrc/resp.c, csrc/recording.c: point them at a mutated copy to check
# the harnesses).
set -u

SECONDS_EACH=${1:-30}
CLANG=${CLANG:-clang}
HARNESSES=${HARNESSES:-"encode host endpoint url frames rfb png resp recording"}
URL_C=${URL_C:-csrc/url.c}
FRAMES_C=${FRAMES_C:-csrc/frames.c}
GROW_C=${GROW_C:-csrc/grow.c}
RFB_C=${RFB_C:-csrc/rfb.c}
PNG_C=${PNG_C:-csrc/png.c}
RESP_C=${RESP_C:-csrc/resp.c}
RECORDING_C=${RECORDING_C:-csrc/recording.c}
OUT=build/fuzz
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"

case $SECONDS_EACH in
  ''|*[!0-9]*|0) echo "usage: sh fuzz/run.sh [SECONDS>0]" >&2; exit 2 ;;
esac
[ -f csrc/url.c ] && [ -d fuzz/corpus ] || {
  echo "fuzz/run.sh: run from the repository root" >&2; exit 2; }
command -v "$CLANG" >/dev/null 2>&1 || {
  echo "fuzz/run.sh: $CLANG not found (apt-get install -y clang)" >&2; exit 2; }

mkdir -p "$OUT/artifacts" || exit 2
for h in $HARNESSES; do
  echo "build $OUT/$h"
  libs=
  case $h in
    frames) src=$FRAMES_C; also=$GROW_C ;;
    rfb) src=$RFB_C; also="$GROW_C csrc/wsc.c"; libs=-lz ;;
    png) src=$PNG_C; also=$GROW_C; libs=-lz ;;
    resp) src=$RESP_C; also= ;;
    recording) src=$RECORDING_C; also=csrc/sha256.c ;;
    *) src=$URL_C; also= ;;
  esac
  # shellcheck disable=SC2086 # also may name two files
  "$CLANG" $CFLAGS -Icsrc "fuzz/$h.c" "$src" $also -o "$OUT/$h" $libs || {
    echo "fuzz/run.sh: FAILED to build $h" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ctvnc-fuzz.XXXXXX") || exit 2
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Sanitizers stop at the first report; leak checking is on (libFuzzer's
# -detect_leaks=1 is the default under ASan).
ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS UBSAN_OPTIONS

failed=
for h in $HARNESSES; do
  mkdir -p "$WORK/$h"
  cp fuzz/corpus/"$h"/* "$WORK/$h"/ 2>/dev/null
  echo "run $h for ${SECONDS_EACH}s"
  # In the background so a signal to this script can stop it (see cleanup).
  "$OUT/$h" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$h-" \
    "$WORK/$h" >"$WORK/$h.log" 2>&1 &
  PID=$!
  wait "$PID"
  rc=$?
  PID=
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec)' \
    "$WORK/$h.log" | sed "s/^/  $h /"
  if [ "$rc" -ne 0 ] || grep -q -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|check failed' "$WORK/$h.log"; then
    echo "fuzz/run.sh: harness $h FAILED (exit $rc):" >&2
    # The report (first 25 lines from the first error) and the input.
    awk '/ERROR:|runtime error:|check failed/ && !n { n = 1 }
         n && n++ <= 25 { print; next }
         /Test unit written|^Base64:/ { print }' "$WORK/$h.log" >&2
    failed="$failed $h"
  fi
done

if [ -n "$failed" ]; then
  echo "fuzz/run.sh: FAILED:$failed (inputs in $OUT/artifacts/)" >&2
  exit 1
fi
echo "fuzz/run.sh: all harnesses passed (${SECONDS_EACH}s each)"

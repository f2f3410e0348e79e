#!/bin/sh
# Where ctvnc's CPU goes in a 1,000-VM batch (issue 21 point 3): perf
# samples one run of a configuration of bench/batch.lua and sorts them by
# the library they fell in. Run by bench/run.sh, with the simulator's env
# and LUA_PATH set.
#   sh bench/profile.sh TMPDIR K LABEL   K: the configuration (1 HTTP/1.1,
#                                        2 h2, 3 and 4 the same at 25 a request)
set -u
tmp=$1 k=$2 label=$3
if ! command -v perf > /dev/null 2>&1; then
  echo "  $label: perf is not installed (linux-perf): no profile"
  exit 0
fi
data="$tmp/perf-$k.data"
if ! LUA_CPATH_5_4='build/5.4/?.so;;' perf record -q -F 15000 -o "$data" -- \
     timeout 120 lua5.4 bench/batch.lua profile "$k" > /dev/null 2> "$tmp/perf-$k.log"; then
  echo "  $label: perf record failed: $(tail -1 "$tmp/perf-$k.log")"
  exit 0
fi
# the shares of the samples by object, grouped into what they do
perf report -i "$data" --sort comm,dso --stdio 2> /dev/null | awk -v label="$label" '
  /^#/ || NF < 3 || $2 != "lua5.4" { next }
  {
    p = $1; sub("%", "", p); d = $3
    if (d ~ /kernel/) g = "kernel (loopback TCP, poll, wake-ups)"
    else if (d ~ /libcurl/) g = "libcurl"
    else if (d ~ /^lua|liblua5/ && d !~ /cjson/) g = "Lua VM"
    else if (d ~ /cjson/) g = "JSON (lua-cjson)"
    else if (d ~ /^libc\.|vdso/) g = "libc (malloc, copies, clock)"
    else if (d ~ /libssl|libcrypto/) g = "TLS (OpenSSL)"
    else if (d ~ /nghttp2/) g = "HTTP/2 (nghttp2)"
    else if (d ~ /core\.so/) g = "ctvnc C"
    else if (d ~ /ld-linux/) g = "loading (start-up)"
    else g = "other"
    share[g] += p
  }
  END {
    n = 0
    for (g in share) { n++; name[n] = g }
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
      if (share[name[j]] > share[name[i]]) { t = name[i]; name[i] = name[j]; name[j] = t }
    line = ""
    for (i = 1; i <= n; i++)
      if (share[name[i]] >= 1) line = line sprintf("%s%s %.0f%%", line == "" ? "" : ", ", name[i], share[name[i]])
    printf "  %s: %s\n", label, line
  }'

#!/bin/bash
# CloudTower simulator (nginx + ngx_lua) for the ctvnc specs. Loopback only.
#
#   spec/support/sim.sh start DIR   start one simulator with its state in DIR;
#                                   prints (and writes to DIR/env) shell lines:
#                                   SIM_HTTP_PORT SIM_HTTPS_PORT SIM_CLUSTER_PORT
#                                   SIM_CERT SIM_DIR SIM_PID SIM_IPV6
#                                   SIM_WRONGNAME_PORT SIM_WRONGNAME_CERT
#                                   SIM_EXPIRED_PORT SIM_EXPIRED_CA
#   spec/support/sim.sh stop DIR    stop it (idempotent)
#
# Listeners: API over HTTP on 127.0.0.1:SIM_HTTP_PORT and over TLS on
# 127.0.0.1:SIM_HTTPS_PORT (also on [::1] with the same ports when SIM_IPV6=1),
# a reachable "cluster" on 127.0.0.2:SIM_CLUSTER_PORT (and [::1] when
# SIM_IPV6=1). 127.0.0.3 is the unreachable cluster: nothing listens there.
# Hostile TLS (spec/hostile_spec.lua): the API on 127.0.0.1:SIM_WRONGNAME_PORT
# with a certificate for other.example only, and on 127.0.0.1:SIM_EXPIRED_PORT
# with one that expired in 2020 (CA: SIM_EXPIRED_CA).
# Several simulators may run at once in different DIRs.
set -u

# (not $NGINX: nginx itself reads that variable as a list of inherited sockets
# and then refuses to daemonize)
NGINX_BIN=${SIM_NGINX:-nginx}
LUA=${SIM_LUA:-lua5.4}
START_TIMEOUT=5     # seconds until the HTTP port must answer
STOP_TIMEOUT=4      # seconds of graceful quit before TERM, then KILL

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
simdir="$repo/spec/support/simulator"

die() { printf 'sim.sh: %s\n' "$*" >&2; exit 1; }

usage() { printf 'usage: %s start|stop DIR\n' "$0" >&2; exit 2; }

# alive PID: the process exists and is not a zombie
alive() {
  local pid=$1 state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# master_pid DIR: the pid of the nginx master serving DIR, if any
master_pid() {
  local d=$1 pid cmd p
  if [ -r "$d/nginx.pid" ]; then
    pid=$(tr -dc 0-9 <"$d/nginx.pid")
    if alive "$pid"; then
      cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")
      case $cmd in *"$d/nginx.conf"*) echo "$pid"; return 0 ;; esac
    fi
  fi
  # no usable pid file: look for a master started with this config
  # shellcheck disable=SC2016 # the sed program is meant literally
  for p in $(pgrep -f -- "-c $(printf '%s' "$d" | sed 's/[][\\.*^$()+?{}|]/\\&/g')/nginx\.conf " 2>/dev/null); do
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
    case $cmd in
      "nginx: master process "*"-c $d/nginx.conf "*)
        if alive "$p"; then echo "$p"; return 0; fi ;;
    esac
  done
  return 1
}

# wait_gone PID SECONDS
wait_gone() {
  local pid=$1 n=$(( $2 * 20 ))
  while [ "$n" -gt 0 ]; do
    alive "$pid" || return 0
    sleep 0.05
    n=$((n - 1))
  done
  ! alive "$pid"
}

abs_dir() {
  local d=$1
  case $d in
    "") usage ;;
    *[!A-Za-z0-9._/+:@,-]*) die "DIR may only contain letters, digits and . _ / + : @ , - (got '$d')" ;;
  esac
  mkdir -p "$d" || die "cannot create $d"
  (cd "$d" && pwd -P)
}

show_log() {
  if [ -s "$1/error.log" ]; then
    printf -- '--- %s/error.log ---\n' "$1" >&2
    tail -n 40 "$1/error.log" >&2
  fi
}

# prints "HTTP HTTPS CLUSTER IPV6": free ports (IPV6=1 when ::1 is usable and
# the same ports are free there too)
pick_ports() {
  "$LUA" - <<'LUA'
local socket = require "socket"
local held = {}
local function try_bind(host, port)
  local s = host:find(":", 1, true) and socket.tcp6() or socket.tcp()
  if not s then return nil end
  if host:find(":", 1, true) then s:setoption("ipv6-v6only", true) end
  local ok = s:bind(host, port)
  if not ok then s:close(); return nil end
  held[#held + 1] = s
  local _, p = s:getsockname()
  return tonumber(p)
end
local ipv6 = try_bind("::1", 0) ~= nil
local used = {}
local function pick(host)
  for _ = 1, 50 do
    local p = try_bind(host, 0)
    if p and not used[p] and (not ipv6 or try_bind("::1", p)) then
      used[p] = true
      return p
    end
  end
  error("no free port on " .. host)
end
local http, https, cluster = pick("127.0.0.1"), pick("127.0.0.1"), pick("127.0.0.2")
local wrongname, expired = pick("127.0.0.1"), pick("127.0.0.1")
for _, s in ipairs(held) do s:close() end
io.write(http, " ", https, " ", cluster, " ", ipv6 and 1 or 0, " ", wrongname, " ", expired, "\n")
LUA
}

# render TEMPLATE OUT NAME=VALUE...
render() {
  "$LUA" - "$@" <<'LUA'
local tpl, out = arg[1], arg[2]
local vars = {}
for i = 3, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  vars[k] = v
end
local f = assert(io.open(tpl, "rb"))
local text = f:read("a")
f:close()
text = text:gsub("@([%w_]+)@", function(k)
  local v = vars[k]
  if v == nil then error("template variable @" .. k .. "@ has no value") end
  return v
end)
f = assert(io.open(out .. ".tmp", "wb"))
f:write(text)
f:close()
assert(os.rename(out .. ".tmp", out))
LUA
}

# wait_ready PORT SECONDS: GET /_sim/stats answers 200
wait_ready() {
  "$LUA" - "$1" "$2" <<'LUA'
local socket = require "socket"
local port, limit = tonumber(arg[1]), tonumber(arg[2])
local deadline = socket.gettime() + limit
repeat
  local c = socket.tcp()
  c:settimeout(0.5)
  if c:connect("127.0.0.1", port) then
    c:send("GET /_sim/stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    local line = c:receive("*l")
    c:close()
    if line and line:match("^HTTP/1%.1 200 ") then os.exit(0) end
  else
    c:close()
  end
  socket.sleep(0.02)
until socket.gettime() > deadline
os.exit(1)
LUA
}

make_cert() {
  local d=$1
  if [ -s "$d/cert.pem" ] && [ -s "$d/key.pem" ] &&
     openssl x509 -in "$d/cert.pem" -noout -checkend 3600 >/dev/null 2>&1; then
    return 0
  fi
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
    -keyout "$d/key.pem" -out "$d/cert.pem" \
    -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
    >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; die "openssl could not make a certificate"; }
  chmod 600 "$d/key.pem"
}

# make_hostile_certs DIR: for the hostile TLS listeners, a certificate for
# other.example only (wrongname.pem/.key) and one for localhost/127.0.0.1/::1
# valid on 2020-01-01 only (expired.pem/.key), signed by expired-ca.pem
make_hostile_certs() {
  local d=$1 ca="$1/expired-ca"
  if [ -s "$d/wrongname.pem" ] && [ -s "$d/expired.pem" ] && [ -s "$d/expired-ca.pem" ] &&
     openssl x509 -in "$d/wrongname.pem" -noout -checkend 3600 >/dev/null 2>&1 &&
     openssl x509 -in "$d/expired-ca.pem" -noout -checkend 3600 >/dev/null 2>&1; then
    return 0
  fi
  rm -rf "$ca"
  mkdir -p "$ca" || die "cannot create $ca"
  : >"$ca/index.txt"
  echo 01 >"$ca/serial"
  cat >"$ca/ca.cnf" <<CNF
[ ca ]
default_ca = sim_ca
[ sim_ca ]
database = $ca/index.txt
new_certs_dir = $ca
serial = $ca/serial
default_md = sha256
policy = sim_policy
unique_subject = no
x509_extensions = sim_leaf
[ sim_policy ]
commonName = supplied
[ sim_leaf ]
basicConstraints = CA:FALSE
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
CNF
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -keyout "$d/wrongname.key" -out "$d/wrongname.pem" -subj "/CN=other.example" \
      -addext "subjectAltName=DNS:other.example" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -keyout "$ca/ca.key" -out "$d/expired-ca.pem" -subj "/CN=cloudtower-sim expired CA" &&
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$d/expired.key" -out "$ca/leaf.csr" -subj "/CN=localhost" &&
    openssl ca -batch -notext -config "$ca/ca.cnf" -cert "$d/expired-ca.pem" \
      -keyfile "$ca/ca.key" -startdate 20200101000000Z -enddate 20200102000000Z \
      -in "$ca/leaf.csr" -out "$d/expired.pem"
  } >"$d/openssl-hostile.log" 2>&1 ||
    { cat "$d/openssl-hostile.log" >&2; die "openssl could not make the hostile certificates"; }
  chmod 600 "$d/wrongname.key" "$d/expired.key" "$ca/ca.key"
}

start() {
  local d pid ports http https cluster ipv6 wrongname expired user_line v6api v6cluster attempt rc
  d=$(abs_dir "${1:-}") || exit 1
  command -v "$NGINX_BIN" >/dev/null 2>&1 || die "nginx not found (apt-get install -y nginx libnginx-mod-http-lua)"
  command -v "$LUA" >/dev/null 2>&1 || die "$LUA not found (apt-get install -y lua5.4 lua-socket)"
  [ -r /usr/lib/nginx/modules/ngx_http_lua_module.so ] ||
    die "ngx_http_lua_module.so missing (apt-get install -y libnginx-mod-http-lua)"

  if pid=$(master_pid "$d"); then
    if [ -s "$d/env" ]; then
      echo "sim.sh: already running in $d (pid $pid)" >&2
      cat "$d/env"
      return 0
    fi
    stop "$d"
  fi

  mkdir -p "$d/tmp" || die "cannot create $d/tmp"
  make_cert "$d"
  make_hostile_certs "$d"
  rm -f "$d/env"

  user_line=""
  [ "$(id -u)" = 0 ] && user_line="user root;"

  for attempt in 1 2 3 4 5; do
    ports=$(pick_ports) || die "could not pick free loopback ports"
    read -r http https cluster ipv6 wrongname expired <<<"$ports"
    v6api="" v6cluster=""
    if [ "$ipv6" = 1 ]; then
      v6api="listen [::1]:$http; listen [::1]:$https ssl http2;"
      v6cluster="listen [::1]:$cluster;"
    fi
    render "$simdir/nginx.conf.in" "$d/nginx.conf" \
      "DIR=$d" "SIMDIR=$simdir" "USER_LINE=$user_line" \
      "HTTP_PORT=$http" "HTTPS_PORT=$https" "CLUSTER_PORT=$cluster" \
      "IPV6_API_LISTEN=$v6api" "IPV6_CLUSTER_LISTEN=$v6cluster" \
      "WRONGNAME_PORT=$wrongname" "EXPIRED_PORT=$expired" ||
      die "could not render $d/nginx.conf"
    : >"$d/error.log"
    env -u NGINX "$NGINX_BIN" -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" \
      </dev/null >"$d/nginx.out" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then break; fi
    if grep -q "Address already in use" "$d/error.log" "$d/nginx.out" 2>/dev/null; then
      echo "sim.sh: port taken meanwhile, retrying ($attempt)" >&2
      continue
    fi
    cat "$d/nginx.out" >&2
    show_log "$d"
    die "nginx failed to start (exit $rc)"
  done
  [ "$rc" -eq 0 ] || { show_log "$d"; die "nginx failed to start: no free ports after 5 attempts"; }

  if ! wait_ready "$http" "$START_TIMEOUT"; then
    show_log "$d"
    stop "$d" >/dev/null 2>&1
    die "simulator did not answer on 127.0.0.1:$http within ${START_TIMEOUT}s"
  fi
  pid=$(master_pid "$d") || pid=""

  {
    echo "SIM_HTTP_PORT=$http"
    echo "SIM_HTTPS_PORT=$https"
    echo "SIM_CLUSTER_PORT=$cluster"
    echo "SIM_CERT=$d/cert.pem"
    echo "SIM_DIR=$d"
    echo "SIM_PID=$pid"
    echo "SIM_IPV6=$ipv6"
    echo "SIM_WRONGNAME_PORT=$wrongname"
    echo "SIM_WRONGNAME_CERT=$d/wrongname.pem"
    echo "SIM_EXPIRED_PORT=$expired"
    echo "SIM_EXPIRED_CA=$d/expired-ca.pem"
  } >"$d/env.tmp" || die "cannot write $d/env.tmp"
  mv "$d/env.tmp" "$d/env" || die "cannot write $d/env"
  cat "$d/env"
}

stop() {
  local d pid kids
  [ -n "${1:-}" ] || usage
  [ -d "$1" ] || { echo "sim.sh: not running ($1 does not exist)" >&2; return 0; }
  d=$(cd "$1" && pwd -P)
  if ! pid=$(master_pid "$d"); then
    echo "sim.sh: not running in $d" >&2
    return 0
  fi
  kids=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ')
  kill -QUIT "$pid" 2>/dev/null
  if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
    kill -TERM "$pid" 2>/dev/null
    if ! wait_gone "$pid" 1; then
      kids="$kids $(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ')"
      kill -KILL "$pid" 2>/dev/null
      wait_gone "$pid" 1
    fi
  fi
  # workers leave with their master; make sure no orphan is left behind
  for k in $kids; do
    if alive "$k" && tr '\0' ' ' 2>/dev/null <"/proc/$k/cmdline" | grep -q '^nginx: '; then
      kill -KILL "$k" 2>/dev/null
    fi
  done
  rm -f "$d/nginx.pid"
  echo "sim.sh: stopped $d (pid $pid)" >&2
}

case "${1:-}" in
  start) [ $# -eq 2 ] || usage; start "$2" ;;
  stop)  [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac

#!/bin/bash
# A redis-server of its own for the specs (Debian's), on loopback only.
#
#   spec/support/redis.sh start DIR   start one with its state in DIR; prints
#                                     (and writes to DIR/env) shell lines:
#                                     REDIS_PORT REDIS_TLS_PORT REDIS_SOCKET
#                                     REDIS_PASSWORD REDIS_CA REDIS_DIR REDIS_PID
#   spec/support/redis.sh stop DIR    stop it by its pid (idempotent)
#
# 127.0.0.1:REDIS_PORT in the clear and 127.0.0.1:REDIS_TLS_PORT over TLS
# (a certificate for the name "localhost", REDIS_CA its trust anchor) and
# the unix socket REDIS_SOCKET (mode 777: nginx's workers are not root), all
# behind `requirepass` with a random REDIS_PASSWORD; DIR is its working
# directory; nothing is persisted (no RDB, no AOF).
set -u

START_TIMEOUT=5     # seconds until the port must answer
STOP_TIMEOUT=4      # seconds after TERM before KILL

die() { printf 'redis.sh: %s\n' "$*" >&2; exit 1; }
usage() { printf 'usage: %s start|stop DIR\n' "$0" >&2; exit 2; }

# alive PID: the process exists and is not a zombie
alive() {
  local state
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$state" ] && [ "$state" != Z ]
}

# ours DIR: the pid in DIR/redis.pid, when it is a redis-server started here
ours() {
  local pid
  [ -r "$1/redis.pid" ] || return 1
  pid=$(tr -dc 0-9 < "$1/redis.pid")
  alive "$pid" || return 1
  case $(readlink "/proc/$pid/exe" 2>/dev/null) in
    */redis-server|*/redis-check-rdb) echo "$pid" ;;
    *) return 1 ;;
  esac
}

# two free ports on 127.0.0.1
free_ports() {
  lua5.4 -e 'local socket = require "socket"
    local a, b = assert(socket.bind("127.0.0.1", 0)), assert(socket.bind("127.0.0.1", 0))
    local _, pa = a:getsockname()
    local _, pb = b:getsockname()
    print(pa, pb)
    a:close(); b:close()'
}

start() {
  local d=$1 pass port tls pid n
  mkdir -p "$d" || die "cannot create $d"
  d=$(cd "$d" && pwd -P)
  ours "$d" > /dev/null && die "a redis-server already runs in $d"
  command -v redis-server > /dev/null || die "redis-server not found (apt-get install -y redis-server)"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$d/tls.key" -out "$d/tls.crt" > "$d/openssl.log" 2>&1 || die "openssl failed"
  pass=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  read -r port tls <<< "$(free_ports)"
  [ -n "$port" ] && [ -n "$tls" ] || die "no free port"
  cat > "$d/redis.conf" <<EOF
bind 127.0.0.1
port $port
tls-port $tls
tls-cert-file $d/tls.crt
tls-key-file $d/tls.key
tls-auth-clients no
unixsocket $d/redis.sock
unixsocketperm 777
requirepass $pass
dir $d
save ""
appendonly no
daemonize yes
pidfile $d/redis.pid
logfile $d/redis.log
EOF
  chmod 600 "$d/redis.conf"
  redis-server "$d/redis.conf" > "$d/start.log" 2>&1 || { cat "$d/start.log" "$d/redis.log" >&2; die "redis-server did not start"; }
  n=$((START_TIMEOUT * 20))
  until pid=$(ours "$d") && (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; do
    n=$((n - 1))
    [ "$n" -gt 0 ] || { tail -20 "$d/redis.log" >&2; die "redis-server did not answer on $port"; }
    sleep 0.05
  done
  cat > "$d/env" <<EOF
REDIS_PORT=$port
REDIS_TLS_PORT=$tls
REDIS_SOCKET=$d/redis.sock
REDIS_PASSWORD=$pass
REDIS_CA=$d/tls.crt
REDIS_DIR=$d
REDIS_PID=$pid
EOF
  cat "$d/env"
}

stop() {
  local d=$1 pid n
  [ -d "$d" ] || return 0
  pid=$(ours "$d") || return 0
  kill -TERM "$pid" 2> /dev/null
  n=$((STOP_TIMEOUT * 20))
  while alive "$pid" && [ "$n" -gt 0 ]; do sleep 0.05; n=$((n - 1)); done
  alive "$pid" && kill -KILL "$pid" 2> /dev/null
  return 0
}

[ $# -eq 2 ] || usage
case $1 in
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) usage ;;
esac

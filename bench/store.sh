#!/bin/sh
# 8. The session store: what a Redis store (a redis-server of its own on
# loopback, spec/support/redis.sh) adds to each console open over the
# shdict store. One nginx worker runs bench/store.lua: 2,000 sessions'
# store work each way, one after another (a ticket minted and used, the
# session opened with both limits, refreshed once and closed), each timed
# with CLOCK_MONOTONIC. Needs a temp dir.
set -u
tmp=$1
root=$(pwd)
bash spec/support/redis.sh start "$tmp/redis" > "$tmp/redis.out" 2>&1 \
  || { cat "$tmp/redis.out"; exit 1; }
. "$tmp/redis/env"
d=$tmp/store
mkdir -p "$d/tmp"
cleanup() {
  [ -f "$d/nginx.pid" ] && kill -QUIT "$(cat "$d/nginx.pid")" 2> /dev/null
  bash spec/support/redis.sh stop "$tmp/redis" > /dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
port=$(lua5.4 -e 'local s = require("socket").bind("127.0.0.1", 0)
  print((select(2, s:getsockname()))) s:close()')
cat > "$d/nginx.conf" <<EOF
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
daemon on;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
env CTVNC_REDIS_PASSWORD;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $d/tmp; proxy_temp_path $d/tmp;
  lua_package_path "$root/lua/?.lua;$root/lua/?/init.lua;$root/bench/?.lua;;";
  lua_package_cpath "$root/build/jit/?.so;;";
  lua_socket_log_errors off;
  lua_shared_dict ctvnc_sessions 16m;
  lua_shared_dict ctvnc_tickets 16m;
  lua_shared_dict ctvnc_metrics 1m;
  server {
    listen 127.0.0.1:$port;
    location = /run {
      content_by_lua_block { require("store").run("redis://127.0.0.1:$REDIS_PORT/3") }
    }
  }
}
EOF
CTVNC_REDIS_PASSWORD=$REDIS_PASSWORD nginx -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" \
  || { cat "$d/error.log"; exit 1; }
i=0
until curl -s -o /dev/null "http://127.0.0.1:$port/"; do
  i=$((i + 1)); [ $i -lt 50 ] || exit 1; sleep 0.1
done
echo "== 8. The session store: Redis over shdict, per console open (2,000 each, one worker) =="
curl -s -m 120 "http://127.0.0.1:$port/run" || exit 1

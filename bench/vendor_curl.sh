#!/bin/sh
# The vendor document's method: one curl process per VM, one after another,
# POST /api with the vnc query. Loopback only; every curl is capped at 5 s.
#
#   sh bench/vendor_curl.sh PORT COUNT   queries vm-1 .. vm-COUNT and prints
#                                        how many answers carried a raw_token
set -u
port=$1
count=$2
i=1
while [ "$i" -le "$count" ]; do
  curl -s -m 5 --noproxy '*' -X POST "http://127.0.0.1:$port/api" \
    -H 'Authorization: sim-token' \
    -H 'Content-Type: application/json' \
    -H 'accept: application/json' \
    -H 'content-language: en-US' \
    -d '{"operationName":"vnc","variables":{"input":{"vm":{"id":"vm-'"$i"'"}}},"query":"query vnc($input: VncInput!) { vnc(input: $input) { vm_uuid host_ip cluster_ip raw_token token } }"}'
  echo
  i=$((i + 1))
done | grep -c '"raw_token"'

#!/usr/bin/env bash
# The proxy-core throughput figure (issue 2): wrk -t1 -c64 against the same origin three ways
# in one run — directly, through nginx (1 worker, upstream keepalive), and through Subgate
# (event_loops = 1, access_log = off, enforcement on against the simulator with one cached
# unlimited token). Origin, proxies and simulator are pinned to cpu0; wrk runs on cpu1.
#
# usage: bench/proxy-figure.sh [SUBGATE_BINARY] [ROUNDS] [DURATION]
# needs: wrk, nginx (Debian: apt-get install wrk nginx-light), curl, taskset.
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail
BIN=${1:-.build/release/subgate}
ROUNDS=${2:-3}
DURATION=${3:-10s}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for tool in wrk nginx curl taskset; do command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install wrk nginx-light curl util-linux)" >&2; exit 1; }; done

ORIGIN=18081 NGINX=18082 SUBGATE=18083 SUBGATE_ADMIN=18084 SIM=18085
BODY='{"id":1,"name":"subgate-bench","items":[1,2,3],"ok":true,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'

cat > "$WORK/origin.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/origin.pid; error_log $WORK/origin.err;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$ORIGIN; keepalive_requests 1000000;
  location / { default_type application/json; return 200 '$BODY'; } } }
CONF
cat > "$WORK/proxy.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/proxy.pid; error_log $WORK/proxy.err;
events { worker_connections 4096; }
http { access_log off; upstream origin { server 127.0.0.1:$ORIGIN; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGINX; keepalive_requests 1000000;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
taskset -c 0 nginx -c "$WORK/origin.conf" -p "$WORK" & PIDS+=($!)
taskset -c 0 nginx -c "$WORK/proxy.conf" -p "$WORK" & PIDS+=($!)
taskset -c 1 "$BIN" simulate --listen 127.0.0.1:$SIM > "$WORK/sim.log" 2>&1 & PIDS+=($!)
sleep 1
# The simulator's admin prefix (being renamed /_admin → /_sim): SIM_ADMIN, or the one that answers.
SIM_ADMIN=${SIM_ADMIN:-auto}
if [ "$SIM_ADMIN" = auto ]; then SIM_ADMIN=/_admin; curl -sf -o /dev/null "http://127.0.0.1:$SIM/_sim/calls" && SIM_ADMIN=/_sim; fi
TOKEN=$(curl -sf -X POST "http://127.0.0.1:$SIM$SIM_ADMIN/tokens" -H 'content-type: application/json' -d '{"usage_limit":null}' \
  | sed -E 's/.*"token":"([^"]+)".*/\1/')
cat > "$WORK/subgate.conf" <<CONF
listen = 127.0.0.1:$SUBGATE
admin_listen = 127.0.0.1:$SUBGATE_ADMIN
upstream = http://127.0.0.1:$ORIGIN
control_plane_url = http://127.0.0.1:$SIM/api/v1
seller_key = am_k_demo
event_loops = 1
access_log = off
usage_journal = $WORK/usage.journal
CONF
taskset -c 0 "$BIN" run --config "$WORK/subgate.conf" > "$WORK/subgate.log" 2>&1 & PIDS+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$SUBGATE_ADMIN/healthz" >/dev/null && break; sleep 0.2; done
curl -sf -H "x-subscription-token: $TOKEN" "http://127.0.0.1:$SUBGATE/" >/dev/null || { echo "bench: Subgate did not serve the bench token" >&2; cat "$WORK/subgate.log" >&2; exit 1; }

run() { # target port → "req/s p99_ms"
  taskset -c 1 wrk -t1 -c64 -d"$DURATION" --latency -H "x-subscription-token: $TOKEN" "http://127.0.0.1:$1/" \
    | awk '/Requests\/sec/ {rps=$2} / 99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v} END {printf "%d %.2f\n", rps, p99}'
}
declare -A RPS P99
for round in $(seq "$ROUNDS"); do
  for name in direct nginx subgate; do
    case $name in direct) port=$ORIGIN;; nginx) port=$NGINX;; subgate) port=$SUBGATE;; esac
    read -r r p < <(run $port)
    RPS[$name]+="$r "; P99[$name]+="$p "
    echo "round $round $name: $r req/s, p99 $p ms" >&2
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-8s %10s %9s\n' target "req/s" "p99 ms"
for name in direct nginx subgate; do
  printf '%-8s %10s %9s\n' $name "$(echo ${RPS[$name]} | median)" "$(echo ${P99[$name]} | median)"
done
echo "(medians of $ROUNDS rounds of wrk -t1 -c64 -d$DURATION; origin, nginx, Subgate on cpu0, wrk and the simulator on cpu1)"

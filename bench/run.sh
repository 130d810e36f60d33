#!/usr/bin/env bash
# bench/run.sh — the one comparison (issue 5): the same load, from subgate-bench, against
#   direct (the bench upstream), nginx (1 worker, upstream keepalive), and Subgate with one
#   warm token, 10 000 tokens drawn Zipf, a never-seen token on every request (cold), and
#   shadow mode; then c=1 rows for the median latency each proxy adds over direct.
# Builds in release mode, starts everything it needs on 127.0.0.1, pins the proxy under test
# and the origin to cpu0 and the load generator and the simulator to cpu1, prints one table
# (bench/README.md explains the columns), and stops everything it started on exit.
#
# usage: bench/run.sh            (≈ 4-6 minutes with the defaults, after the build)
# knobs (environment):
#   DURATION=10s WARMUP=2s CONNECTIONS=64       every row's load
#   ZIPF_TOKENS=10000 ZIPF_EXPONENT=1.0         the Zipf rows' population
#   COLD_TOKENS=60000                           tokens created for the cold row (each used once)
#   SHADOW_INVALID=0.05 SHADOW_NO_TOKEN=0.05    the shadow row's share of bad/missing tokens
#   CP_RATE=100000/s                            Subgate's verify_rate_limit and usage_rate_limit
#   SIM_RATE=6000000                            the simulator's --rate-limit (calls/min per key)
#   SIM_ADMIN_PREFIX=auto                       the simulator's admin prefix (auto: /_sim, checked)
#   PROXY_CPU=0 LOAD_CPU=1                      pinning
#   PORT_BASE=18200                             ports PORT_BASE … PORT_BASE+5 on 127.0.0.1
#   SCRATCH=.build-release                      release build folder; SKIP_BUILD=1 reuses it
#   OUT=DIR                                     keep rows.jsonl, table.txt and logs there
# needs: swift, nginx (installed with apt-get when missing), taskset, curl. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
ZIPF_TOKENS=${ZIPF_TOKENS:-10000}
ZIPF_EXPONENT=${ZIPF_EXPONENT:-1.0}
COLD_TOKENS=${COLD_TOKENS:-60000}
SHADOW_INVALID=${SHADOW_INVALID:-0.05}
SHADOW_NO_TOKEN=${SHADOW_NO_TOKEN:-0.05}
CP_RATE=${CP_RATE:-100000/s}
SIM_RATE=${SIM_RATE:-6000000}
SIM_ADMIN_PREFIX=${SIM_ADMIN_PREFIX:-auto}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT_BASE=${PORT_BASE:-18200}
SCRATCH=${SCRATCH:-.build-release}
UPSTREAM_PORT=$PORT_BASE NGINX_PORT=$((PORT_BASE + 1)) SIM_PORT=$((PORT_BASE + 2))
SUBGATE_PORT=$((PORT_BASE + 3)) SUBGATE_ADMIN=$((PORT_BASE + 4))

WORK=$(mktemp -d /tmp/subgate-bench.XXXXXX)
OUT=${OUT:-$WORK/keep}
mkdir -p "$OUT"
PIDS=()
SUBGATE_PID=
export SWIFT_BACKTRACE=enable=no

say() { echo "bench: $*" >&2; }
stop_pid() { # pid: TERM, then KILL after 5 s
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  [ -n "$SUBGATE_PID" ] && stop_pid "$SUBGATE_PID"
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  wait 2>/dev/null || true
  if [ "$OUT" = "$WORK/keep" ]; then rm -rf "$WORK"; else cp "$WORK"/*.log "$OUT"/ 2>/dev/null || true; rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools and build (bounded) ----------------------------------------------------------
for tool in taskset curl swift; do command -v "$tool" >/dev/null || { say "$tool is missing"; exit 1; }; done
if ! command -v nginx >/dev/null; then
  say "installing nginx-light"
  timeout 300 apt-get install -y -qq nginx-light >/dev/null || { timeout 120 apt-get update -qq && timeout 300 apt-get install -y -qq nginx-light >/dev/null; }
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "release build in $SCRATCH (subgate, subgate-bench)"
  timeout 2400 swift build -c release --scratch-path "$SCRATCH" --product subgate >&2
  timeout 2400 swift build -c release --scratch-path "$SCRATCH" --product subgate-bench >&2
fi
BIN_DIR=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
SUBGATE="$BIN_DIR/subgate"
BENCH="$BIN_DIR/subgate-bench"
for port in $UPSTREAM_PORT $NGINX_PORT $SIM_PORT $SUBGATE_PORT $SUBGATE_ADMIN; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then say "port $port is taken (set PORT_BASE)"; exit 1; fi
done

wait_http() { # url [seconds]
  for _ in $(seq $((${2:-10} * 10))); do curl -sf -o /dev/null --max-time 1 "$1" && return 0; sleep 0.1; done
  say "no answer from $1"; return 1
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---- the fixed pieces: origin, nginx, simulator ------------------------------------------
taskset -c "$PROXY_CPU" "$BENCH" upstream --listen "127.0.0.1:$UPSTREAM_PORT" > "$WORK/upstream.log" 2>&1 & PIDS+=($!)
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  upstream origin { server 127.0.0.1:$UPSTREAM_PORT; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGINX_PORT; keepalive_requests 1000000;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)
taskset -c "$LOAD_CPU" "$SUBGATE" simulate --listen "127.0.0.1:$SIM_PORT" --rate-limit "$SIM_RATE" > "$WORK/simulator.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$UPSTREAM_PORT/"
wait_http "http://127.0.0.1:$NGINX_PORT/"
for _ in $(seq 100); do grep -q 'listening' "$WORK/simulator.log" && break; sleep 0.1; done
SIM="http://127.0.0.1:$SIM_PORT"

say "pinning: origin (subgate-bench upstream), nginx and Subgate on cpu$PROXY_CPU; load generator and simulator on cpu$LOAD_CPU"
LOAD_BEFORE=$(load_avg)
ROWS="$OUT/rows.jsonl"
: > "$ROWS"

tokens() { # count file
  timeout 600 taskset -c "$LOAD_CPU" "$BENCH" tokens --simulator "$SIM" --admin-prefix "$SIM_ADMIN_PREFIX" --reset --count "$1" --out "$2" >&2
}
load() { # label connections url [load options…] → one JSON line on stdout
  local label=$1 connections=$2 url=$3; shift 3
  timeout 300 taskset -c "$LOAD_CPU" "$BENCH" load "$url" --label "$label" --connections "$connections" \
    --duration "$DURATION" --warmup "$WARMUP" --json "$@"
}
row() { # group label load-json [rss settle-json]
  if [ $# -gt 3 ]; then
    printf '{"group":"%s","label":"%s","load":%s,"rssKiB":%s,"settle":%s}\n' "$1" "$2" "$3" "$4" "$5" >> "$ROWS"
  else
    printf '{"group":"%s","label":"%s","load":%s}\n' "$1" "$2" "$3" >> "$ROWS"
  fi
  say "$2: $(printf '%s' "$3" | grep -o '"requestsPerSecond":[0-9.]*')"
}

start_subgate() { # enforce → starts Subgate fresh (new cache, new journal) on cpu0
  cat > "$WORK/subgate.conf" <<CONF
listen = 127.0.0.1:$SUBGATE_PORT
admin_listen = 127.0.0.1:$SUBGATE_ADMIN
upstream = http://127.0.0.1:$UPSTREAM_PORT
control_plane_url = $SIM/api/v1
seller_key = am_k_demo
event_loops = 1
access_log = off
enforce = $1
verify_rate_limit = $CP_RATE
usage_rate_limit = $CP_RATE
usage_flush_interval = 60s
usage_journal = $WORK/usage.journal
CONF
  rm -f "$WORK/usage.journal"
  taskset -c "$PROXY_CPU" "$SUBGATE" run --config "$WORK/subgate.conf" >> "$WORK/subgate.log" 2>&1 &
  SUBGATE_PID=$!
  wait_http "http://127.0.0.1:$SUBGATE_ADMIN/readyz" 20
}
stop_subgate() {
  stop_pid "$SUBGATE_PID"; wait "$SUBGATE_PID" 2>/dev/null || true; SUBGATE_PID=
}
prewarm() { # tokens-file: every token once, billing nothing (x-subgate-usage: 0), so the row starts with a full cache
  timeout 300 taskset -c "$LOAD_CPU" "$BENCH" load "http://127.0.0.1:$SUBGATE_PORT/" --connections "$CONNECTIONS" \
    --mix cold --tokens-file "$1" --usage 0 --duration 120s --warmup 0s --json > "$WORK/prewarm.json"
}
subgate_row() { # group label enforce tokens-count prewarm(yes/no) [load options…]
  local group=$1 label=$2 enforce=$3 count=$4 warm=$5; shift 5
  say "$label: $count token(s), enforce = $enforce"
  tokens "$count" "$WORK/tokens.txt"
  start_subgate "$enforce"
  [ "$warm" = yes ] && prewarm "$WORK/tokens.txt"
  local result settle rss
  result=$(load "$label" "${CONNECTIONS_OVERRIDE:-$CONNECTIONS}" "http://127.0.0.1:$SUBGATE_PORT/" --tokens-file "$WORK/tokens.txt" "$@")
  settle=$(timeout 200 taskset -c "$LOAD_CPU" "$BENCH" settle --subgate-admin "http://127.0.0.1:$SUBGATE_ADMIN" --simulator "$SIM" \
    --admin-prefix "$SIM_ADMIN_PREFIX" --timeout 150s --json)
  rss=$(rss_kib "$SUBGATE_PID")
  row "$group" "$label" "$result" "$rss" "$settle"
  stop_subgate
}

# ---- c=64 (or CONNECTIONS) rows ----------------------------------------------------------
tokens 1 "$WORK/hot.txt"
row c$CONNECTIONS direct "$(load direct "$CONNECTIONS" "http://127.0.0.1:$UPSTREAM_PORT/" --tokens-file "$WORK/hot.txt")"
row c$CONNECTIONS nginx "$(load nginx "$CONNECTIONS" "http://127.0.0.1:$NGINX_PORT/" --tokens-file "$WORK/hot.txt")"
subgate_row c$CONNECTIONS subgate-hot on 1 no --mix hot
subgate_row c$CONNECTIONS subgate-zipf on "$ZIPF_TOKENS" yes --mix zipf --zipf-exponent "$ZIPF_EXPONENT"
subgate_row c$CONNECTIONS subgate-cold on "$COLD_TOKENS" no --mix cold
subgate_row c$CONNECTIONS subgate-shadow shadow "$ZIPF_TOKENS" yes --mix zipf --zipf-exponent "$ZIPF_EXPONENT" \
  --invalid-share "$SHADOW_INVALID" --no-token-share "$SHADOW_NO_TOKEN"

# ---- c=1 rows: the latency a proxy adds -------------------------------------------------
row c1 direct "$(load direct 1 "http://127.0.0.1:$UPSTREAM_PORT/" --tokens-file "$WORK/hot.txt")"
row c1 nginx "$(load nginx 1 "http://127.0.0.1:$NGINX_PORT/" --tokens-file "$WORK/hot.txt")"
CONNECTIONS_OVERRIDE=1 subgate_row c1 subgate-hot on 1 no --mix hot

LOAD_AFTER=$(load_avg)
{
  echo "subgate bench — $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty')"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); load average before $LOAD_BEFORE, after $LOAD_AFTER"
  echo "pinning: origin, nginx, Subgate on cpu$PROXY_CPU; subgate-bench load and the simulator on cpu$LOAD_CPU. Subgate: event_loops = 1, access_log = off, verify/usage_rate_limit = $CP_RATE"
  echo
  "$BENCH" table "$ROWS"
} | tee "$OUT/table.txt"
[ "$OUT" = "$WORK/keep" ] || say "rows and table kept in $OUT"

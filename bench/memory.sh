#!/usr/bin/env bash
# bench/memory.sh — the memory scenario (issue 5 item 4): TOKENS distinct valid tokens cached
# in one Subgate. Creates the tokens on the simulator, drives each of them once through
# Subgate (verified, cached, served; the bench upstream answers x-subgate-usage: 0, so nothing
# is billed and the usage ledger stays empty), and prints Subgate's RSS before and after, the
# cache entries its /status reports, and the bytes per cached token.
#
# usage: bench/memory.sh [TOKENS]        (default 1000000)
# knobs: CP_RATE=100000/s SIM_RATE=6000000 SIM_ADMIN_PREFIX=auto PORT_BASE=18300 SCRATCH=.build-release
#        SKIP_BUILD=1 CONNECTIONS=64 MAX_SECONDS=1800 PROXY_CPU=0 LOAD_CPU=1
# Loopback only; everything it starts is stopped on exit; every phase is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
TOKENS=${1:-1000000}
CP_RATE=${CP_RATE:-100000/s}
SIM_RATE=${SIM_RATE:-6000000}
SIM_ADMIN_PREFIX=${SIM_ADMIN_PREFIX:-auto}
PORT_BASE=${PORT_BASE:-18300}
SCRATCH=${SCRATCH:-.build-release}
CONNECTIONS=${CONNECTIONS:-64}
MAX_SECONDS=${MAX_SECONDS:-1800}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
UPSTREAM_PORT=$PORT_BASE SIM_PORT=$((PORT_BASE + 2)) SUBGATE_PORT=$((PORT_BASE + 3)) SUBGATE_ADMIN=$((PORT_BASE + 4))
WORK=$(mktemp -d /tmp/subgate-memory.XXXXXX)
PIDS=()
export SWIFT_BACKTRACE=enable=no
say() { echo "memory: $*" >&2; }
stop_pid() { kill "$1" 2>/dev/null || return 0; for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }
cleanup() { for p in "${PIDS[@]}"; do stop_pid "$p"; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  timeout 2400 swift build -c release --scratch-path "$SCRATCH" --product subgate >&2
  timeout 2400 swift build -c release --scratch-path "$SCRATCH" --product subgate-bench >&2
fi
BIN_DIR=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
SUBGATE="$BIN_DIR/subgate"
BENCH="$BIN_DIR/subgate-bench"
wait_http() { for _ in $(seq $((${2:-10} * 10))); do curl -sf -o /dev/null --max-time 1 "$1" && return 0; sleep 0.1; done; say "no answer from $1"; return 1; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
status_field() { curl -sf --max-time 5 "http://127.0.0.1:$SUBGATE_ADMIN/status" | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }

taskset -c "$PROXY_CPU" "$BENCH" upstream --listen "127.0.0.1:$UPSTREAM_PORT" > "$WORK/upstream.log" 2>&1 & PIDS+=($!)
taskset -c "$LOAD_CPU" "$SUBGATE" simulate --listen "127.0.0.1:$SIM_PORT" --rate-limit "$SIM_RATE" > "$WORK/simulator.log" 2>&1 & PIDS+=($!)
SIM_PID=$!
wait_http "http://127.0.0.1:$UPSTREAM_PORT/"
for _ in $(seq 100); do grep -q listening "$WORK/simulator.log" && break; sleep 0.1; done
SIM="http://127.0.0.1:$SIM_PORT"

cat > "$WORK/subgate.conf" <<CONF
listen = 127.0.0.1:$SUBGATE_PORT
admin_listen = 127.0.0.1:$SUBGATE_ADMIN
upstream = http://127.0.0.1:$UPSTREAM_PORT
control_plane_url = $SIM/api/v1
seller_key = am_k_demo
event_loops = 1
access_log = off
# Entries stay: no TTL refresh, no idle eviction, room for every token.
cache_ttl = 24h
idle_evict = 24h
stale_max = 24h
cache_max_entries = $((TOKENS + TOKENS / 10 + 1000))
verify_rate_limit = $CP_RATE
usage_rate_limit = $CP_RATE
usage_journal = off
CONF
say "creating $TOKENS tokens on the simulator"
T0=$(date +%s)
# (The creator runs on the proxy's core: Subgate is not started yet, the simulator has the other.)
timeout "$MAX_SECONDS" taskset -c "$PROXY_CPU" "$BENCH" tokens --simulator "$SIM" --admin-prefix "$SIM_ADMIN_PREFIX" --reset --count "$TOKENS" --out "$WORK/tokens.txt"
T1=$(date +%s)
taskset -c "$PROXY_CPU" "$SUBGATE" run --config "$WORK/subgate.conf" > "$WORK/subgate.log" 2>&1 & PIDS+=($!)
SUBGATE_PID=$!
wait_http "http://127.0.0.1:$SUBGATE_ADMIN/readyz" 20
# One token for a second first, so connections, pools and buffers exist before "before".
head -1 "$WORK/tokens.txt" > "$WORK/one.txt"
timeout 60 taskset -c "$LOAD_CPU" "$BENCH" load "http://127.0.0.1:$SUBGATE_PORT/" --connections "$CONNECTIONS" --tokens-file "$WORK/one.txt" \
  --usage 0 --duration 1s --warmup 0s --json > /dev/null
BEFORE=$(rss_kib "$SUBGATE_PID")
BEFORE_ENTRIES=$(status_field cache_entries)
say "Subgate RSS before: $BEFORE KiB ($BEFORE_ENTRIES cache entries); driving each token once"
timeout "$MAX_SECONDS" taskset -c "$LOAD_CPU" "$BENCH" load "http://127.0.0.1:$SUBGATE_PORT/" --connections "$CONNECTIONS" \
  --tokens-file "$WORK/tokens.txt" --mix cold --usage 0 --duration "$((MAX_SECONDS - 60))s" --warmup 0s --json > "$WORK/load.json"
T2=$(date +%s)
sleep 2
AFTER=$(rss_kib "$SUBGATE_PID")
ENTRIES=$(status_field cache_entries)
SIM_RSS=$(rss_kib "$SIM_PID")
REQUESTS=$(grep -o '"responses":[0-9]*' "$WORK/load.json" | cut -d: -f2)
STATUSES=$(grep -o '"statuses":{[^}]*}' "$WORK/load.json")
echo "memory scenario — $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tokens created: $TOKENS in $((T1 - T0)) s; driven once each in $((T2 - T1)) s ($REQUESTS answers; $STATUSES)"
echo "Subgate cache entries: $BEFORE_ENTRIES before, $ENTRIES after"
echo "Subgate RSS: $BEFORE KiB before, $AFTER KiB after (+$(( (AFTER - BEFORE) / 1024 )) MiB)"
if [ "${ENTRIES:-0}" -gt "${BEFORE_ENTRIES:-0}" ]; then
  echo "bytes per cached token: $(( (AFTER - BEFORE) * 1024 / (ENTRIES - BEFORE_ENTRIES) ))"
fi
echo "(simulator RSS $SIM_RSS KiB; Subgate: event_loops = 1, cache_ttl = 24h, idle_evict = 24h, usage_journal = off)"

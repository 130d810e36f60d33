#!/usr/bin/env bash
# bench/generator-check.sh — is subgate-bench ever the bottleneck? The same direct load
# (64 keep-alive connections, one generator thread on cpu1, the bench upstream on cpu0) from
# `wrk -t1 -c64` and from `subgate-bench load -c64`, ROUNDS interleaved rounds: req/s and
# the generator's own CPU time per request (perf stat task-clock), medians.
#
# usage: bench/generator-check.sh [ROUNDS] [DURATION]      (default 3 rounds of 10s)
# knobs: SCRATCH=.build-release SKIP_BUILD=1 PORT=18250 PROXY_CPU=0 LOAD_CPU=1
# needs: wrk, perf, taskset. Loopback only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${2:-10s}
SCRATCH=${SCRATCH:-.build-release}
PORT=${PORT:-18250}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
export SWIFT_BACKTRACE=enable=no
WORK=$(mktemp -d /tmp/subgate-gencheck.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for tool in wrk perf taskset; do command -v "$tool" >/dev/null || { echo "generator-check: $tool is missing" >&2; exit 1; }; done
[ "${SKIP_BUILD:-0}" = 1 ] || timeout 2400 swift build -c release --scratch-path "$SCRATCH" --product subgate-bench >&2
BENCH="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/subgate-bench"
TOKEN=cro_sub_0123456789abcdef0123456789abcdef
echo "$TOKEN" > "$WORK/token.txt"
taskset -c "$PROXY_CPU" "$BENCH" upstream --listen "127.0.0.1:$PORT" > "$WORK/upstream.log" 2>&1 & PIDS+=($!)
for _ in $(seq 50); do grep -q listening "$WORK/upstream.log" && break; sleep 0.1; done

cpu_ms() { awk -F, '/task-clock/ {print $1}' "$WORK/perf.txt"; }
declare -A RPS CPU
for round in $(seq "$ROUNDS"); do
  perf stat -e task-clock -x, -o "$WORK/perf.txt" taskset -c "$LOAD_CPU" \
    wrk -t1 -c64 -d"$DURATION" -H "x-subscription-token: $TOKEN" "http://127.0.0.1:$PORT/" > "$WORK/wrk.txt"
  n=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
  r=$(awk '/Requests\/sec/ {printf "%d", $2}' "$WORK/wrk.txt")
  RPS[wrk]+="$r "; CPU[wrk]+="$(awk -v ms="$(cpu_ms)" -v n="$n" 'BEGIN {printf "%.2f", ms * 1000 / n}') "
  for decoder in fast nio; do
    perf stat -e task-clock -x, -o "$WORK/perf.txt" taskset -c "$LOAD_CPU" \
      "$BENCH" load "http://127.0.0.1:$PORT/" -c 64 -d "$DURATION" --warmup 0s --tokens-file "$WORK/token.txt" --decoder "$decoder" --json > "$WORK/bench.json"
    n=$(grep -o '"sent":[0-9]*' "$WORK/bench.json" | cut -d: -f2)
    r=$(grep -o '"requestsPerSecond":[0-9.]*' "$WORK/bench.json" | cut -d: -f2 | cut -d. -f1)
    RPS[bench-$decoder]+="$r "; CPU[bench-$decoder]+="$(awk -v ms="$(cpu_ms)" -v n="$n" 'BEGIN {printf "%.2f", ms * 1000 / n}') "
  done
  echo "round $round of $ROUNDS done (load average $(cut -d' ' -f1 /proc/loadavg))" >&2
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-26s %10s %16s   %s\n' generator "req/s" "CPU µs/request" "rounds (req/s)"
for name in wrk bench-fast bench-nio; do
  label=$name
  case $name in wrk) label="wrk -t1 -c64";; bench-fast) label="subgate-bench (fast)";; bench-nio) label="subgate-bench --decoder nio";; esac
  printf '%-26s %10s %16s   %s\n' "$label" "$(echo ${RPS[$name]} | median)" "$(echo ${CPU[$name]} | median)" "${RPS[$name]}"
done
echo "(direct to subgate-bench upstream on cpu$PROXY_CPU, generator on cpu$LOAD_CPU, 64 connections, $DURATION, medians of $ROUNDS; load average $(cut -d' ' -f1-3 /proc/loadavg))"

#!/usr/bin/env bash
# bench/soak.sh — the soak (issue 8, item 4): does Subgate hold steady under long open-loop
# load, and does it bill exactly?
#
#   1. the maximum: a short closed-loop run through Subgate (warm token set, the soak's token
#      mix, 64 connections), as bench/run.sh's zipf row;
#   2. a fresh Subgate (warm token set again), then DURATION of OPEN-loop load at RATE
#      (default: RATE_FRACTION × the maximum) with the same mix: Zipf over TOKENS tokens plus
#      INVALID_SHARE made-up tokens and NO_TOKEN_SHARE requests without one;
#   3. every SAMPLE_EVERY seconds Subgate's VmRSS and open fds go to soak.csv;
#   4. after the load: POST /flush until nothing is pending, then the simulator's units.
#
# It passes (exit 0) when, over the samples taken under load after WARMUP_SECONDS, max RSS ≤ min RSS × (1 +
# SPREAD) and the same for open fds, and billing is exact: units the simulator accepted
# during the soak == the billable answers the generator received (2xx/3xx to a valid token,
# as run.sh counts them), with nothing left pending. The maximum run's billing is checked the
# same way. Anything else exits 1.
#
# usage: bench/soak.sh [--duration 10m] [--rate R] [--warmup-seconds S]
# knobs (environment; flags win):
#   DURATION=10m RATE= (auto) RATE_FRACTION=0.5 WARMUP_SECONDS=120 (a third of DURATION when shorter than 6 min)
#   SAMPLE_EVERY=10 SPREAD=0.10
#   TOKENS=5000 ZIPF_EXPONENT=1.0 INVALID_SHARE=0.02 NO_TOKEN_SHARE=0.01 CONNECTIONS=64
#   MAX_DURATION=15s MAX_WARMUP=3s       the closed-loop maximum run
#   PORT_BASE=18300                      ports PORT_BASE … PORT_BASE+3 on 127.0.0.1
#   and bench/harness.sh's: SCRATCH, SKIP_BUILD, BIN_DIR, CP_RATE, SIM_RATE, PROXY_CPU, LOAD_CPU, OUT
# smoke check: DURATION=60s SKIP_BUILD=1 bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --warmup-seconds) WARMUP_SECONDS=$2; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "soak: unknown argument $1" >&2; exit 2 ;;
  esac
done

NAME=soak
PORT_BASE=${PORT_BASE:-18300}
DURATION=${DURATION:-10m}
RATE=${RATE:-}
RATE_FRACTION=${RATE_FRACTION:-0.5}
SAMPLE_EVERY=${SAMPLE_EVERY:-10}
SPREAD=${SPREAD:-0.10}
TOKENS=${TOKENS:-5000}
ZIPF_EXPONENT=${ZIPF_EXPONENT:-1.0}
INVALID_SHARE=${INVALID_SHARE:-0.02}
NO_TOKEN_SHARE=${NO_TOKEN_SHARE:-0.01}
CONNECTIONS=${CONNECTIONS:-64}
MAX_DURATION=${MAX_DURATION:-15s}
MAX_WARMUP=${MAX_WARMUP:-3s}
# shellcheck source=bench/harness.sh
. bench/harness.sh

SECONDS_TOTAL=$(to_seconds "$DURATION")
[ "$SECONDS_TOTAL" -ge 10 ] 2>/dev/null || fail "DURATION must be at least 10s (got $DURATION)"
if [ -z "${WARMUP_SECONDS:-}" ]; then
  if [ "$SECONDS_TOTAL" -ge 360 ]; then WARMUP_SECONDS=120; else WARMUP_SECONDS=$((SECONDS_TOTAL / 3)); fi
fi
MIX=(--mix zipf --zipf-exponent "$ZIPF_EXPONENT" --invalid-share "$INVALID_SHARE" --no-token-share "$NO_TOKEN_SHARE")
LOAD_BEFORE=$(load_avg)
say "load average before: $LOAD_BEFORE"

start_fixed
make_tokens "$TOKENS" "$WORK/tokens.txt"

# ---- 1. the maximum (closed loop) --------------------------------------------------------
write_subgate_conf "$WORK/max.journal" "usage_flush_interval = 60s"
start_subgate
prewarm "$WORK/tokens.txt"
say "maximum: closed loop, $CONNECTIONS connections, $MAX_WARMUP + $MAX_DURATION"
timeout 300 taskset -c "$LOAD_CPU" "$BENCH" load "http://127.0.0.1:$SUBGATE_PORT/" --label max --connections "$CONNECTIONS" \
  --duration "$MAX_DURATION" --warmup "$MAX_WARMUP" --tokens-file "$WORK/tokens.txt" "${MIX[@]}" --json > "$OUT/max.json"
MAX_SETTLE=$(settle)
echo "$MAX_SETTLE" > "$OUT/max-settle.json"
stop_subgate
MAX_RPS=$(json_field "$(cat "$OUT/max.json")" requestsPerSecond)
MAX_BILLABLE=$(json_field "$(cat "$OUT/max.json")" billableUnits)
ACCEPTED_BEFORE=$(json_field "$MAX_SETTLE" acceptedUnits)
MAX_PENDING=$(json_field "$MAX_SETTLE" pendingUnits)
say "maximum: $MAX_RPS req/s; billed $ACCEPTED_BEFORE units for $MAX_BILLABLE billable (pending $MAX_PENDING)"
if [ -z "$RATE" ]; then
  RATE=$(python3 -c "import sys; print(max(1, int(float(sys.argv[1]) * float(sys.argv[2]))))" "$MAX_RPS" "$RATE_FRACTION")
fi

# ---- 2. the soak (open loop) -----------------------------------------------------------
write_subgate_conf "$WORK/soak.journal"
start_subgate
prewarm "$WORK/tokens.txt"
say "soak: open loop at $RATE req/s for ${SECONDS_TOTAL}s (warm-up for the RSS/fd check: ${WARMUP_SECONDS}s), sampling every ${SAMPLE_EVERY}s"
CSV="$OUT/soak.csv"
echo "elapsed_s,phase,rss_kib,fds,threads,pending_units,load1,cpu_s,runqueue_wait_s" > "$CSV"
timeout $((SECONDS_TOTAL + 120)) taskset -c "$LOAD_CPU" "$BENCH" load "http://127.0.0.1:$SUBGATE_PORT/" --label soak \
  --connections "$CONNECTIONS" --rate "$RATE" --duration "${SECONDS_TOTAL}s" --warmup 0s --drain 10s \
  --tokens-file "$WORK/tokens.txt" "${MIX[@]}" --json > "$OUT/soak.json" 2> "$WORK/load.log" &
LOAD_PID=$!
PIDS+=("$LOAD_PID")
STARTED=$(date +%s)
sample() { # phase: load (counted in the check) or after (the load has ended; its connections are gone)
  local now pending
  now=$(date +%s)
  pending=$(curl -sf --max-time 2 "$ADMIN/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending_units"])' 2>/dev/null || echo "")
  # CPU time Subgate used, and time its threads spent runnable but waiting for a CPU (the
  # machine is shared: a long wait explains latency that is not Subgate's own), cumulative.
  local cpu wait
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$SUBGATE_PID/stat" 2>/dev/null || echo "")
  wait=$(cat /proc/"$SUBGATE_PID"/task/*/schedstat 2>/dev/null | awk '{w += $2} END {printf "%.1f", w / 1e9}')
  echo "$((now - STARTED)),$1,$(rss_kib "$SUBGATE_PID"),$(fd_count "$SUBGATE_PID"),$(awk '/^Threads/ {print $2}' "/proc/$SUBGATE_PID/status"),$pending,$(cut -d' ' -f1 /proc/loadavg),$cpu,$wait" >> "$CSV"
}
sample load
while kill -0 "$LOAD_PID" 2>/dev/null; do
  for _ in $(seq $((SAMPLE_EVERY * 10))); do kill -0 "$LOAD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SUBGATE_PID" 2>/dev/null || fail "Subgate exited during the soak (see subgate.log)"
  kill -0 "$LOAD_PID" 2>/dev/null && sample load
done
LOAD_STATUS=0
wait "$LOAD_PID" || LOAD_STATUS=$?
[ "$LOAD_STATUS" = 0 ] || fail "the load generator exited $LOAD_STATUS (see load.log)"
sample after
SOAK_SETTLE=$(settle)
echo "$SOAK_SETTLE" > "$OUT/soak-settle.json"
LOAD_AFTER=$(load_avg)

# ---- 3. verdict --------------------------------------------------------------------------
python3 - "$OUT" "$WARMUP_SECONDS" "$SPREAD" "$ACCEPTED_BEFORE" "$MAX_BILLABLE" "$MAX_PENDING" "$RATE" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY' | tee "$OUT/verdict.txt"
import csv, json, sys
out, warmup, spread = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
accepted_before, max_billable, max_pending = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rate, load_before, load_after = sys.argv[7], sys.argv[8], sys.argv[9]
mx = json.load(open(f"{out}/max.json"))
soak = json.load(open(f"{out}/soak.json"))
settle = json.load(open(f"{out}/soak-settle.json"))
rows = [r for r in csv.DictReader(open(f"{out}/soak.csv")) if r["rss_kib"] and r["fds"] and r["phase"] == "load"]
after = [r for r in rows if int(r["elapsed_s"]) >= warmup]
failures = []
def band(name, key, unit):
    values = [int(r[key]) for r in after]
    if len(values) < 2:
        failures.append(f"{name}: fewer than 2 samples after the {warmup}s warm-up")
        return f"{name}: not enough samples"
    lo, hi = min(values), max(values)
    grow = (hi - lo) / lo if lo else float("inf")
    first, last = values[0], values[-1]
    ok = hi <= lo * (1 + spread)
    if not ok:
        failures.append(f"{name} moved {grow:.1%} after warm-up (min {lo}, max {hi} {unit}), limit {spread:.0%}")
    return f"{name} after warm-up: min {lo} max {hi} {unit} (spread {grow:.1%}, first {first}, last {last}) {'ok' if ok else 'FAIL'}"
lines = []
lines.append(f"maximum (closed loop, c={mx['connections']}, {mx['mix']}): {mx['requestsPerSecond']:.0f} req/s, p50 {mx['latency']['p50']:.0f}µs p99 {mx['latency']['p99']:.0f}µs")
max_ok = max_pending == 0 and accepted_before == max_billable
if not max_ok:
    failures.append(f"maximum run billing: simulator {accepted_before} units vs billable {max_billable} (pending {max_pending})")
lines.append(f"maximum run billing: simulator {accepted_before} = billable {max_billable}, pending {max_pending}: {'ok' if max_ok else 'FAIL'}")
e = soak["errors"]
lines.append(f"soak (open loop): target {rate} req/s, achieved {soak['requestsPerSecond']:.1f} req/s over {soak['durationSeconds']:.0f}s, "
             f"p50 {soak['latency']['p50']:.0f}µs p99 {soak['latency']['p99']:.0f}µs p99.9 {soak['latency']['p999']:.0f}µs max {soak['latency']['max']/1000:.1f}ms")
lines.append(f"soak statuses {soak['statuses']}; errors timeout {e['timeout']} closed {e['closed']} connect {e['connect']} protocol {e['protocol']}; unsent due {soak['unsentDue']}")
lines.append(f"samples: {len(rows)} ({len(after)} after the {warmup}s warm-up)")
if len(rows) >= 2 and rows[0]["cpu_s"] and rows[-1]["cpu_s"]:
    span = int(rows[-1]["elapsed_s"]) - int(rows[0]["elapsed_s"])
    cpu = float(rows[-1]["cpu_s"]) - float(rows[0]["cpu_s"])
    wait = float(rows[-1]["runqueue_wait_s"]) - float(rows[0]["runqueue_wait_s"])
    lines.append(f"Subgate over {span}s: {cpu:.0f} s of CPU ({cpu / span:.0%} of its core), {wait:.0f} s runnable but waiting for a CPU (all threads)")
pending = [int(r["pending_units"]) for r in rows if r["pending_units"]]
if pending:
    lines.append(f"pending_units (reported later): max {max(pending)}, at the end of the load {pending[-1]}")
lines.append(band("RSS", "rss_kib", "KiB"))
lines.append(band("open fds", "fds", ""))
billed = settle["acceptedUnits"] - accepted_before
bill_ok = settle["pendingUnits"] == 0 and billed == soak["billableUnits"]
if not bill_ok:
    failures.append(f"soak billing: simulator {billed} units vs billable {soak['billableUnits']} (pending {settle['pendingUnits']})")
lines.append(f"soak billing: simulator {billed} units = billable {soak['billableUnits']} ({soak['billableAnswers']} answers), pending {settle['pendingUnits']}, "
             f"{settle['flushes']} flush(es): {'ok (100%)' if bill_ok else 'FAIL'}")
lines.append(f"load average before {load_before}, after {load_after}")
lines.append("PASS" if not failures else "FAIL: " + "; ".join(failures))
print("\n".join(lines))
sys.exit(1 if failures else 0)
PY

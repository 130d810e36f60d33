#!/usr/bin/env bash
# bench/kill-loop.sh — crash durability of billing (issue 8, item 5): under open-loop load,
# SIGKILL Subgate KILLS times at random moments and restart it each time on the SAME config
# and usage journal; then stop the load, flush the last Subgate until nothing is pending and
# compare what the simulator billed with the billable answers the load generator received.
#
#   - the load: `subgate-bench load --rate RATE`, Zipf over TOKENS tokens plus small shares of
#     made-up tokens and requests without one (as bench/soak.sh). While Subgate is down its
#     connections fail and are re-opened every 100 ms; requests that fail are not billable
#     (billable = a 2xx/3xx answer to a valid token that was received in full). The run's
#     length is fixed up front from the drawn delays (their sum + KILLS × RESTART_ALLOWANCE + TAIL).
#   - kill i waits a delay drawn uniformly in [DELAY_MIN, DELAY_MAX] s (seeded by KILL_SEED),
#     scraping the incarnation's /metrics every second and once more right before the SIGKILL;
#     the restarted incarnation is scraped as soon as it is ready.
#   - subgate_usage_ambiguous_units_total lives in each process: a killed incarnation's value
#     is its last scrape. An incarnation counts (a) at start, the previous one's reports that
#     the journal shows sent without an answer (replay; the journal is compacted right after,
#     so the next restart does not count them again) and (b) while it runs, reports sent whose
#     answer never came (timeouts, resets). The total is the sum over incarnations.
#   - accounting per token hash (the generator writes billable answers per token,
#     --billable-out; the simulator's /_sim/usage totals are per hash):
#       over  = Σ max(0, simulator − billable)   billed but never answered (or billed twice)
#       under = Σ max(0, billable − simulator)   answered but never billed
#   - two verdicts are printed; CHECK picks the one that sets the exit code:
#       strict: under == 0 and over ≤ ambiguous (the simulator equals the billable answers
#               apart from the ambiguous units);
#       spec (default): what SPEC §4 promises after a SIGKILL. Units of answers that completed
#               less than journal_sync before a kill may be lost (they were in the group-commit
#               buffer): under ≤ billable rate × (journal_sync + SLACK) × kills, 0 with
#               journal_sync = always. A unit is journaled before its answer's last byte is
#               written, so a kill between the two bills an answer the client never got: over
#               ≤ ambiguous + KILLS × event_loops (1 request being settled per loop).
#     Both also need nothing pending after the settle and every kill under load.
#     See bench/README.md.
#
# usage: bench/kill-loop.sh [--kills N] [--rate R]
# knobs (environment; flags win):
#   KILLS=20 DELAY_MIN=2 DELAY_MAX=8 KILL_SEED=1 RESTART_ALLOWANCE=3 TAIL=10
#   RATE=1000 TOKENS=2000 ZIPF_EXPONENT=1.0 INVALID_SHARE=0.02 NO_TOKEN_SHARE=0.01 CONNECTIONS=64
#   FLUSH_INTERVAL=1s       usage_flush_interval (short, so kills land on reports in flight)
#   JOURNAL_SYNC=           journal_sync (empty: Subgate's default, 100ms; or `always`, 10ms, …)
#   EXTRA_CONFIG='k = v;…'  more Subgate config lines (keys not set already; ACCESS_LOG=on for the access log)
#   CHECK=spec|strict SLACK=0.1 (s, scheduling slack of the group commit on a shared machine)
#   PORT_BASE=18400         ports PORT_BASE … PORT_BASE+3 on 127.0.0.1
#   and bench/harness.sh's: SCRATCH, SKIP_BUILD, BIN_DIR, CP_RATE, SIM_RATE, PROXY_CPU, LOAD_CPU, OUT
# smoke check: KILLS=3 SKIP_BUILD=1 bench/kill-loop.sh
set -euo pipefail
cd "$(dirname "$0")/.."

while [ $# -gt 0 ]; do
  case "$1" in
    --kills) KILLS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "kill-loop: unknown argument $1" >&2; exit 2 ;;
  esac
done

NAME=kill-loop
PORT_BASE=${PORT_BASE:-18400}
KILLS=${KILLS:-20}
DELAY_MIN=${DELAY_MIN:-2}
DELAY_MAX=${DELAY_MAX:-8}
KILL_SEED=${KILL_SEED:-1}
RESTART_ALLOWANCE=${RESTART_ALLOWANCE:-3}
TAIL=${TAIL:-10}
RATE=${RATE:-1000}
TOKENS=${TOKENS:-2000}
ZIPF_EXPONENT=${ZIPF_EXPONENT:-1.0}
INVALID_SHARE=${INVALID_SHARE:-0.02}
NO_TOKEN_SHARE=${NO_TOKEN_SHARE:-0.01}
CONNECTIONS=${CONNECTIONS:-64}
FLUSH_INTERVAL=${FLUSH_INTERVAL:-1s}
JOURNAL_SYNC=${JOURNAL_SYNC:-}
CHECK=${CHECK:-spec}
SLACK=${SLACK:-0.1}
case "$CHECK" in spec|strict) ;; *) echo "kill-loop: CHECK must be spec or strict" >&2; exit 2 ;; esac
# shellcheck source=bench/harness.sh
. bench/harness.sh

LOAD_BEFORE=$(load_avg)
say "load average before: $LOAD_BEFORE"
mapfile -t DELAYS < <(python3 -c 'import random,sys
r = random.Random(int(sys.argv[1]))
for _ in range(int(sys.argv[2])): print(f"{r.uniform(float(sys.argv[3]), float(sys.argv[4])):.2f}")' "$KILL_SEED" "$KILLS" "$DELAY_MIN" "$DELAY_MAX")
LOAD_SECONDS=$(python3 -c 'import sys; print(int(sum(map(float, sys.argv[3:])) + int(sys.argv[1]) * float(sys.argv[2])) + 1)' \
  "$KILLS" "$RESTART_ALLOWANCE" "${DELAYS[@]}")
LOAD_SECONDS=$((LOAD_SECONDS + TAIL))

start_fixed
make_tokens "$TOKENS" "$WORK/tokens.txt"
EXTRA=("usage_flush_interval = $FLUSH_INTERVAL")
[ -n "$JOURNAL_SYNC" ] && EXTRA+=("journal_sync = $JOURNAL_SYNC")
if [ -n "${EXTRA_CONFIG:-}" ]; then IFS=';' read -r -a more <<< "$EXTRA_CONFIG"; EXTRA+=("${more[@]}"); fi
JOURNAL="$WORK/kill.journal"
write_subgate_conf "$JOURNAL" "${EXTRA[@]}"
mkdir -p "$OUT/journals"
SCRAPES="$OUT/scrapes.csv"
echo "incarnation,pid,when,ambiguous_units,reported_units,pending_units" > "$SCRAPES"
INCARNATION=0
scrape() { # when-label → appends a row for the current incarnation (nothing when it does not answer)
  local metrics
  metrics=$(curl -sf --max-time 2 "$ADMIN/metrics" 2>/dev/null) || return 0
  printf '%s\n' "$metrics" | awk -v inc="$INCARNATION" -v pid="$SUBGATE_PID" -v when="$1" '
    $1 == "subgate_usage_ambiguous_units_total" {a = $2}
    $1 == "subgate_usage_reported_units_total" {r = $2}
    $1 == "subgate_usage_pending_units" {p = $2}
    END {printf "%s,%s,%s,%d,%d,%d\n", inc, pid, when, a, r, p}' >> "$SCRAPES"
}

start_subgate
scrape ready
say "load: open loop at $RATE req/s for ${LOAD_SECONDS}s; $KILLS kills, delays ${DELAYS[*]} s"
timeout $((LOAD_SECONDS + 120)) taskset -c "$LOAD_CPU" "$BENCH" load "http://127.0.0.1:$SUBGATE_PORT/" --label kill-loop \
  --connections "$CONNECTIONS" --rate "$RATE" --duration "${LOAD_SECONDS}s" --warmup 0s --drain 10s \
  --tokens-file "$WORK/tokens.txt" --mix zipf --zipf-exponent "$ZIPF_EXPONENT" \
  --invalid-share "$INVALID_SHARE" --no-token-share "$NO_TOKEN_SHARE" \
  --billable-out "$OUT/billable-per-token.txt" --json > "$OUT/load.json" 2> "$WORK/load.log" &
LOAD_PID=$!
PIDS+=("$LOAD_PID")
LOAD_STARTED=$(date +%s.%N)

KILL_LOG="$OUT/kills.csv"
echo "kill,incarnation,pid,delay_s,at_s,down_s,journal_bytes" > "$KILL_LOG"
for ((i = 1; i <= KILLS; i++)); do
  delay=${DELAYS[$((i - 1))]}
  deadline=$(python3 -c "import time,sys; print(time.time() + float(sys.argv[1]))" "$delay")
  # Scrape every second until the drawn moment.
  while :; do
    left=$(python3 -c "import time,sys; print(max(0.0, float(sys.argv[1]) - time.time()))" "$deadline")
    python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > 1.0 else 1)" "$left" || break
    sleep 1
    scrape periodic
  done
  sleep "$left"
  kill -0 "$LOAD_PID" 2>/dev/null || fail "the load ended before kill $i (raise RESTART_ALLOWANCE)"
  kill -0 "$SUBGATE_PID" 2>/dev/null || fail "Subgate incarnation $INCARNATION died by itself (see subgate.log)"
  scrape before-kill
  kill -KILL "$SUBGATE_PID"
  killed_at=$(date +%s.%N)
  wait "$SUBGATE_PID" 2>/dev/null || true
  bytes=$(stat -c %s "$JOURNAL" 2>/dev/null || echo 0)
  cp "$JOURNAL" "$OUT/journals/after-kill-$i.journal" 2>/dev/null || true
  killed_pid=$SUBGATE_PID
  SUBGATE_PID=
  INCARNATION=$((INCARNATION + 1))
  start_subgate
  ready_at=$(date +%s.%N)
  scrape ready
  python3 -c 'import sys; i, inc, pid, d, start, killed, ready, b = sys.argv[1:]; print(f"{i},{inc},{pid},{d},{float(killed)-float(start):.2f},{float(ready)-float(killed):.2f},{b}")' \
    "$i" "$((INCARNATION - 1))" "$killed_pid" "$delay" "$LOAD_STARTED" "$killed_at" "$ready_at" "$bytes" >> "$KILL_LOG"
  say "kill $i/$KILLS: incarnation $((INCARNATION - 1)) (pid $killed_pid) after ${delay}s; journal $bytes bytes; back in $(tail -1 "$KILL_LOG" | cut -d, -f6)s"
done

say "kills done; the load runs to its end"
while kill -0 "$LOAD_PID" 2>/dev/null; do sleep 1; scrape periodic; done
LOAD_STATUS=0
wait "$LOAD_PID" || LOAD_STATUS=$?
[ "$LOAD_STATUS" = 0 ] || fail "the load generator exited $LOAD_STATUS (see load.log)"
scrape after-load
SETTLE=$(settle)
echo "$SETTLE" > "$OUT/settle.json"
scrape settled
timeout 60 curl -sf "$SIM/_sim/usage" > "$OUT/sim-usage.json" || fail "could not read the simulator's usage"
cp "$WORK/tokens.txt" "$OUT/tokens.txt"
LOAD_AFTER=$(load_avg)

python3 - "$OUT" "$CHECK" "$SLACK" "$KILLS" "$RATE" "${JOURNAL_SYNC:-100ms}" "$FLUSH_INTERVAL" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY' | tee "$OUT/verdict.txt"
import csv, hashlib, json, math, sys
out, check, slack, kills = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
rate, journal_sync, flush, load_before, load_after = sys.argv[5:10]
def seconds(text):
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix): return float(text[:-len(suffix)]) * scale
    return float(text)
load = json.load(open(f"{out}/load.json"))
settle = json.load(open(f"{out}/settle.json"))
usage = json.load(open(f"{out}/sim-usage.json"))
tokens = [t.strip() for t in open(f"{out}/tokens.txt") if t.strip() and not t.startswith("#")]
counts = [int(x) for x in open(f"{out}/billable-per-token.txt")]
billable = {hashlib.sha256(t.encode()).hexdigest(): n for t, n in zip(tokens, counts)}
sim = {h: int(u) for h, u in usage["totals"].items()}
# The last scrape of each incarnation holds its counter (a killed process's counter dies with it).
last = {}
for row in csv.DictReader(open(f"{out}/scrapes.csv")):
    last[int(row["incarnation"])] = row
ambiguous = sum(int(r["ambiguous_units"]) for r in last.values())
per_incarnation = {i: int(r["ambiguous_units"]) for i, r in sorted(last.items()) if int(r["ambiguous_units"])}
over = under = 0
over_hashes = under_hashes = 0
for h in set(billable) | set(sim):
    d = sim.get(h, 0) - billable.get(h, 0)
    if d > 0: over += d; over_hashes += 1
    if d < 0: under -= d; under_hashes += 1
B = load["billableUnits"]; S = settle["acceptedUnits"]
assert sum(counts) == load["billableAnswers"], "per-token billable counts do not add up to billableAnswers"
reports = usage["reports"]
status_counts = {}
for r in reports: status_counts[r["status"]] = status_counts.get(r["status"], 0) + 1
e = load["errors"]
lines = [
    f"kill loop: {kills} SIGKILLs, open loop {rate} req/s for {load['durationSeconds']:.0f}s, journal_sync {journal_sync}, usage_flush_interval {flush}",
    f"incarnations seen by the scraper: {len(last)}",
    f"generator: sent {load['sent']}, answers {load['responses']}, statuses {load['statuses']}, errors timeout {e['timeout']} closed {e['closed']} connect {e['connect']} protocol {e['protocol']}, unsent due {load['unsentDue']}",
    f"billable answers (units): {B}",
    f"simulator units accepted: {S} ({len(reports)} usage calls, by status {status_counts})",
    f"ambiguous units (Σ over incarnations): {ambiguous} {per_incarnation}",
    f"difference simulator − billable: {S - B:+d}",
    f"per token: over (billed, never answered or billed twice) {over} units on {over_hashes} tokens; under (answered, never billed) {under} units on {under_hashes} tokens",
    f"pending after settle: {settle['pendingUnits']} ({settle['flushes']} flush(es))",
    f"load average before {load_before}, after {load_after}",
]
common = []
if settle["pendingUnits"] != 0: common.append(f"{settle['pendingUnits']} units still pending")
if len(last) < kills + 1: common.append(f"only {len(last)} incarnations were scraped (expected {kills + 1})")
strict = list(common)
if under > 0: strict.append(f"{under} units answered but never billed")
if over > ambiguous: strict.append(f"{over} units billed beyond billable, {over - ambiguous} more than the {ambiguous} ambiguous")
window = 0.0 if journal_sync == "always" else seconds(journal_sync) + slack
billable_rate = B / load["durationSeconds"] if load["durationSeconds"] else 0
under_bound = math.ceil(billable_rate * window * kills)
over_bound = ambiguous + kills  # event_loops = 1: one request being settled per kill
spec = list(common)
if under > under_bound: spec.append(f"{under} units answered but never billed, more than the {under_bound} answered within journal_sync (+{slack}s) of the kills")
if over > over_bound: spec.append(f"{over} units billed beyond billable, more than ambiguous {ambiguous} + {kills} (one request being settled per kill)")
lines.append(f"strict (simulator = billable apart from ambiguous): {'PASS' if not strict else 'FAIL: ' + '; '.join(strict)}")
lines.append(f"SPEC §4 windows (under ≤ {billable_rate:.0f}/s × {window:.3f}s × {kills} = {under_bound}; over ≤ {ambiguous} + {kills} = {over_bound}): {'PASS' if not spec else 'FAIL: ' + '; '.join(spec)}")
failures = spec if check == "spec" else strict
lines.append(f"verdict ({check}): {'PASS' if not failures else 'FAIL'}")
print("\n".join(lines))
sys.exit(1 if failures else 0)
PY

# bench/harness.sh — the pieces bench/soak.sh and bench/kill-loop.sh share (sourced, not run):
# the release binaries, the bench origin and the simulator, Subgate's config and process,
# pinning, and cleanup on exit. Same setup as bench/run.sh: origin and Subgate on PROXY_CPU,
# the simulator and the load generator on LOAD_CPU, control-plane ceilings lifted.
#
# knobs (environment), on top of the script's own:
#   SCRATCH=.build-release      release build folder (`swift build -c release --scratch-path`)
#   SKIP_BUILD=1                reuse what is in SCRATCH
#   BIN_DIR=DIR                 use DIR/subgate and DIR/subgate-bench (no build, SCRATCH ignored).
#                               (Not SUBGATE_…: Subgate reads every SUBGATE_* variable as a config key.)
#   CP_RATE=100000/s            Subgate's verify_rate_limit and usage_rate_limit
#   SIM_RATE=6000000            the simulator's --rate-limit (calls/min per key)
#   SIM_ADMIN_PREFIX=auto       the simulator's admin prefix
#   PROXY_CPU=0 LOAD_CPU=1      pinning
#   ACCESS_LOG=off              Subgate's access_log (on: one line per request in subgate.log)
#   OUT=DIR                     keep the CSV, JSON results and logs there (default: a temporary folder, removed)
# Requires the caller to set PORT_BASE and NAME before sourcing.

CP_RATE=${CP_RATE:-100000/s}
SIM_RATE=${SIM_RATE:-6000000}
SIM_ADMIN_PREFIX=${SIM_ADMIN_PREFIX:-auto}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
ACCESS_LOG=${ACCESS_LOG:-off}
SCRATCH=${SCRATCH:-.build-release}
UPSTREAM_PORT=$PORT_BASE SIM_PORT=$((PORT_BASE + 1)) SUBGATE_PORT=$((PORT_BASE + 2)) SUBGATE_ADMIN=$((PORT_BASE + 3))
SIM="http://127.0.0.1:$SIM_PORT"
ADMIN="http://127.0.0.1:$SUBGATE_ADMIN"

WORK=$(mktemp -d "/tmp/subgate-$NAME.XXXXXX")
KEEP_OUT=${OUT:-}
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT"
PIDS=()
SUBGATE_PID=
export SWIFT_BACKTRACE=enable=no

say() { echo "$NAME: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
stop_pid() { # pid: TERM, then KILL after 5 s
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
harness_cleanup() {
  local status=$?
  trap - EXIT
  [ -n "$SUBGATE_PID" ] && stop_pid "$SUBGATE_PID"
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
  wait 2>/dev/null || true
  if [ -n "$KEEP_OUT" ]; then
    cp "$WORK"/*.log "$WORK"/*.conf "$OUT"/ 2>/dev/null || true
    say "results and logs kept in $OUT"
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap harness_cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools and binaries ------------------------------------------------------------------
for tool in taskset curl python3 timeout; do command -v "$tool" >/dev/null || fail "$tool is missing"; done
if [ -z "${BIN_DIR:-}" ]; then
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    say "release build in $SCRATCH (subgate, subgate-bench)"
    timeout 2400 swift build -c release --scratch-path "$SCRATCH" --product subgate >&2
    timeout 2400 swift build -c release --scratch-path "$SCRATCH" --product subgate-bench >&2
  fi
  BIN_DIR=$(timeout 300 swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
fi
SUBGATE="$BIN_DIR/subgate"
BENCH="$BIN_DIR/subgate-bench"
[ -x "$SUBGATE" ] || fail "no subgate binary at $SUBGATE"
[ -x "$BENCH" ] || fail "no subgate-bench binary at $BENCH"
for port in $UPSTREAM_PORT $SIM_PORT $SUBGATE_PORT $SUBGATE_ADMIN; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then fail "port $port is taken (set PORT_BASE)"; fi
done

wait_http() { # url [seconds]
  for _ in $(seq $((${2:-10} * 10))); do curl -sf -o /dev/null --max-time 1 "$1" && return 0; sleep 0.1; done
  say "no answer from $1"; return 1
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }
to_seconds() { # 600, 600s, 10m, 1h → seconds
  case "$1" in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}

# ---- origin and simulator -------------------------------------------------------------------
start_fixed() {
  taskset -c "$PROXY_CPU" "$BENCH" upstream --listen "127.0.0.1:$UPSTREAM_PORT" > "$WORK/upstream.log" 2>&1 & PIDS+=($!)
  taskset -c "$LOAD_CPU" "$SUBGATE" simulate --listen "127.0.0.1:$SIM_PORT" --rate-limit "$SIM_RATE" > "$WORK/simulator.log" 2>&1 & PIDS+=($!)
  wait_http "http://127.0.0.1:$UPSTREAM_PORT/" || fail "the bench upstream did not start"
  for _ in $(seq 100); do grep -q 'listening' "$WORK/simulator.log" && break; sleep 0.1; done
  grep -q 'listening' "$WORK/simulator.log" || fail "the simulator did not start"
}

make_tokens() { # count file: a fresh simulator state (reset) with COUNT unlimited tokens
  timeout 600 taskset -c "$LOAD_CPU" "$BENCH" tokens --simulator "$SIM" --admin-prefix "$SIM_ADMIN_PREFIX" --reset --count "$1" --out "$2" >&2
}

# ---- Subgate ------------------------------------------------------------------------------
write_subgate_conf() { # journal-file [extra config lines…]
  local journal=$1; shift
  {
    cat <<CONF
listen = 127.0.0.1:$SUBGATE_PORT
admin_listen = 127.0.0.1:$SUBGATE_ADMIN
upstream = http://127.0.0.1:$UPSTREAM_PORT
control_plane_url = $SIM/api/v1
seller_key = am_k_demo
event_loops = 1
access_log = $ACCESS_LOG
verify_rate_limit = $CP_RATE
usage_rate_limit = $CP_RATE
usage_journal = $journal
CONF
    for line in "$@"; do echo "$line"; done
  } > "$WORK/subgate.conf"
}
start_subgate() { # → SUBGATE_PID, ready (bounded)
  taskset -c "$PROXY_CPU" "$SUBGATE" run --config "$WORK/subgate.conf" >> "$WORK/subgate.log" 2>&1 &
  SUBGATE_PID=$!
  wait_http "$ADMIN/readyz" 30 || fail "Subgate did not become ready (see subgate.log)"
}
stop_subgate() {
  [ -n "$SUBGATE_PID" ] || return 0
  stop_pid "$SUBGATE_PID"; wait "$SUBGATE_PID" 2>/dev/null || true; SUBGATE_PID=
}
prewarm() { # tokens-file: every token once, billing nothing (x-subgate-usage: 0): a full cache
  timeout 300 taskset -c "$LOAD_CPU" "$BENCH" load "http://127.0.0.1:$SUBGATE_PORT/" --connections 64 \
    --mix cold --tokens-file "$1" --usage 0 --duration 120s --warmup 0s --json > "$WORK/prewarm.json"
}
settle() { # → JSON on stdout: POST /flush until nothing is pending, then the simulator's counts
  timeout 200 taskset -c "$LOAD_CPU" "$BENCH" settle --subgate-admin "$ADMIN" --simulator "$SIM" \
    --admin-prefix "$SIM_ADMIN_PREFIX" --timeout 150s --json
}
json_field() { # json field → value (top-level or dotted path)
  python3 -c 'import json,sys
v=json.loads(sys.argv[1])
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1" "$2"
}

#!/usr/bin/env bash
# The control-plane economy figure (issue 4): 10 000 distinct valid tokens driven for
# DURATION at the highest rate wrk manages, through Subgate against the simulator. Prints
# the verify and usage calls per minute the simulator counted (each must stay ≤ 300), and
# units the simulator accepted vs billable answers Subgate served (they must be equal).
#
# usage: bench/economy.sh [SUBGATE_BINARY] [DURATION] [TOKENS]
# needs: wrk, nginx, curl, python3. Loopback only; everything it starts is stopped on exit.
set -euo pipefail
BIN=${1:-.build/release/subgate}
DURATION=${2:-120s}
TOKENS=${3:-10000}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
ORIGIN=18091 SUBGATE=18093 ADMIN=18094 SIM=18095

cat > "$WORK/origin.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/origin.pid; error_log $WORK/origin.err;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$ORIGIN; keepalive_requests 1000000;
  location / { default_type application/json; return 200 '{"ok":true}'; } } }
CONF
nginx -c "$WORK/origin.conf" -p "$WORK" & PIDS+=($!)
"$BIN" simulate --listen 127.0.0.1:$SIM --seed-tokens "$TOKENS" > "$WORK/sim.out" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do [ "$(grep -c '^cro_sub_' "$WORK/sim.out" || true)" -ge "$TOKENS" ] && break; sleep 0.2; done
grep '^cro_sub_' "$WORK/sim.out" > "$WORK/tokens.txt"
# The simulator's admin prefix (being renamed /_admin → /_sim): SIM_ADMIN, or the one that answers.
SIM_ADMIN=${SIM_ADMIN:-auto}
if [ "$SIM_ADMIN" = auto ]; then SIM_ADMIN=/_admin; curl -sf -o /dev/null "http://127.0.0.1:$SIM/_sim/calls" && SIM_ADMIN=/_sim; fi
cat > "$WORK/subgate.conf" <<CONF
listen = 127.0.0.1:$SUBGATE
admin_listen = 127.0.0.1:$ADMIN
upstream = http://127.0.0.1:$ORIGIN
control_plane_url = http://127.0.0.1:$SIM/api/v1
seller_key = am_k_demo
access_log = off
usage_journal = $WORK/usage.journal
CONF
"$BIN" run --config "$WORK/subgate.conf" > "$WORK/subgate.log" 2>&1 & PIDS+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null && break; sleep 0.2; done
cat > "$WORK/tokens.lua" <<LUA
local tokens = {}
for line in io.lines("$WORK/tokens.txt") do tokens[#tokens + 1] = line end
request = function()
  return wrk.format("GET", "/", { ["x-subscription-token"] = tokens[math.random(#tokens)] })
end
LUA
echo "driving $(wc -l < "$WORK/tokens.txt") tokens for $DURATION" >&2
wrk -t1 -c64 -d"$DURATION" --timeout 10s -s "$WORK/tokens.lua" "http://127.0.0.1:$SUBGATE/" | tee "$WORK/wrk.out" >&2
# Let the flusher report everything (within usage_rate_limit), then read both sides.
for _ in $(seq 600); do
  pending=$(curl -sf "http://127.0.0.1:$ADMIN/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending_units"])')
  [ "$pending" = 0 ] && break; sleep 1
done
curl -sf "http://127.0.0.1:$ADMIN/metrics" > "$WORK/metrics.txt"
curl -sf "http://127.0.0.1:$SIM$SIM_ADMIN/calls" > "$WORK/calls.json"
curl -sf "http://127.0.0.1:$SIM$SIM_ADMIN/usage" > "$WORK/usage.json"
python3 - "$WORK" <<'PY'
import json, re, sys
work = sys.argv[1]
calls = json.load(open(f"{work}/calls.json"))
usage = json.load(open(f"{work}/usage.json"))
metrics = open(f"{work}/metrics.txt").read()
def metric(name, labels=""):
    m = re.search(r"^" + re.escape(name + labels) + r" (\S+)$", metrics, re.M)
    return float(m.group(1)) if m else 0.0
outcomes = dict((m.group(1), float(m.group(2))) for m in re.finditer(r'^subgate_requests_total\{outcome="([^"]+)"\} (\S+)$', metrics, re.M))
accepted = sum(usage["totals"].values())
reported = metric("subgate_usage_reported_units_total")
print("subgate outcomes:", {k: int(v) for k, v in sorted(outcomes.items())})
for endpoint in ("verify", "usage"):
    c = calls[endpoint]
    print(f"{endpoint}: total {c['total']}, max per minute {c['max_per_minute']}, per minute {c['per_minute']}")
print(f"billable answers served (forwarded, origin 200): {int(outcomes.get('forwarded', 0))}")
print(f"units reported by Subgate: {int(reported)}; units the simulator accepted: {accepted}")
print(f"pending units left: {int(metric('subgate_usage_pending_units'))}, dropped: {int(metric('subgate_usage_dropped_units_total'))}")
PY

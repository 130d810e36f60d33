#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: repeatable on a shared, noisy machine
# where wall-clock figures are not (and `perf stat` has no hardware counters here).
#
# Subgate (event_loops = 1, access_log = off, one warm unlimited token against the simulator)
# runs under valgrind --tool=callgrind in front of an nginx origin. After a warm-up the
# counters are zeroed, a fixed number of keep-alive requests is sent, and the counters are
# dumped: total instructions / requests is the figure. The profile lands in OUT (default
# /tmp/subgate-callgrind) for callgrind_annotate.
#
# usage: bench/callgrind.sh [SUBGATE_BINARY] [REQUESTS] [OUT]
# needs: valgrind, gcc, nginx, curl, python3 (Debian: apt-get install valgrind gcc nginx-light curl python3).
#
# Two workarounds for valgrind 3.19 (Debian 12): it cannot read the DWARF 5 debug info swiftc
# writes, so it profiles a copy with the debug info stripped (symbols stay); and it crashes in
# rt_sigsuspend, which libdispatch's dispatch_main (Swift's async main on Linux) calls, so
# bench/valgrind-sigsuspend-shim.c parks the main thread with pause() instead.
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail
BIN=${1:-.build/release/subgate}
REQUESTS=${2:-20000}
OUT=${3:-/tmp/subgate-callgrind}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for tool in valgrind callgrind_control gcc strip nginx curl python3; do command -v "$tool" >/dev/null || { echo "callgrind.sh: $tool is missing" >&2; exit 1; }; done
mkdir -p "$OUT"; rm -f "$OUT"/callgrind.out.*

ORIGIN=18181 SUBGATE=18183 SUBGATE_ADMIN=18184 SIM=18185
cat > "$WORK/origin.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/origin.pid; error_log $WORK/origin.err;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$ORIGIN; keepalive_requests 1000000;
  location / { default_type application/json; return 200 '{"id":1,"ok":true,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'; } } }
CONF
nginx -c "$WORK/origin.conf" -p "$WORK" & PIDS+=($!)
"$BIN" simulate --listen 127.0.0.1:$SIM > "$WORK/sim.log" 2>&1 & PIDS+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$SIM/_sim/calls" >/dev/null 2>&1 && break; sleep 0.1; done
TOKEN=$(curl -sf -X POST "http://127.0.0.1:$SIM/_sim/tokens" -H 'content-type: application/json' -d '{"usage_limit":null}' \
  | sed -E 's/.*"token":"([^"]+)".*/\1/')
cat > "$WORK/subgate.conf" <<CONF
listen = 127.0.0.1:$SUBGATE
admin_listen = 127.0.0.1:$SUBGATE_ADMIN
upstream = http://127.0.0.1:$ORIGIN
control_plane_url = http://127.0.0.1:$SIM/api/v1
seller_key = am_k_demo
event_loops = 1
access_log = off
cache_ttl = 10m
usage_journal = $WORK/usage.journal
CONF
cp "$BIN" "$WORK/subgate" && strip -g "$WORK/subgate"
gcc -shared -fPIC -O2 -o "$WORK/shim.so" "$(dirname "$0")/valgrind-sigsuspend-shim.c"
SWIFT_BACKTRACE=enable=no LD_PRELOAD="$WORK/shim.so" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" --dump-instr=no \
  "$WORK/subgate" run --config "$WORK/subgate.conf" > "$WORK/subgate.log" 2>&1 & PIDS+=($!)
VG=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$SUBGATE_ADMIN/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$SUBGATE_ADMIN/healthz" >/dev/null || { echo "callgrind.sh: Subgate did not start under valgrind" >&2; cat "$WORK/subgate.log" >&2; exit 1; }

# A keep-alive client sending REQUESTS back to back on 8 connections: the same bytes every
# time, so the count per request is the proxy's alone.
drive() {
  python3 - "$SUBGATE" "$TOKEN" "$1" <<'PY'
import socket, sys, threading
port, token, total = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
req = (f"GET /item HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n"
       f"x-subscription-token: {token}\r\n\r\n").encode()
statuses = {}
lock = threading.Lock()
def worker(n):
    s = socket.create_connection(("127.0.0.1", port)); f = s.makefile("rb")
    for _ in range(n):
        s.sendall(req)
        status = f.readline().split()[1].decode(); length = 0
        while True:
            line = f.readline()
            if line in (b"\r\n", b""): break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length": length = int(v)
        f.read(length)
        with lock: statuses[status] = statuses.get(status, 0) + 1
    s.close()
threads = [threading.Thread(target=worker, args=(total // 8,)) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(" ".join(f"{k}:{v}" for k, v in sorted(statuses.items())))
PY
}
drive 2000 > /dev/null                  # warm-up: connections, pools, caches, lazy statics
callgrind_control -z "$VG" > /dev/null  # zero the counters
STATUSES=$(drive "$REQUESTS")
callgrind_control -d "$VG" > /dev/null  # dump the measured part
sleep 1
PROFILE=$(ls -t "$OUT"/callgrind.out.* | head -1)
TOTAL=$(callgrind_annotate "$PROFILE" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
echo "answers: $STATUSES"
echo "instructions: $TOTAL for $REQUESTS requests = $((TOTAL / REQUESTS)) per request"
echo "profile: $PROFILE (callgrind_annotate --inclusive=yes $PROFILE | head -60)"

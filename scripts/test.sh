#!/usr/bin/env bash
# Runs every test: builds the package once (the end-to-end tests start the real `subgate`
# binary, so the executable is built too), then runs all suites without building again.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build "$@"

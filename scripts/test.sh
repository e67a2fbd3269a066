#!/usr/bin/env bash
# Runs every sbgq test on a fresh Debian 12 machine: installs what is missing, configures,
# builds and runs ctest. `scripts/test.sh --sanitize` does the same under AddressSanitizer +
# UndefinedBehaviorSanitizer (preset asan-ubsan).
set -euo pipefail
cd "$(dirname "$0")/.."

preset=release
if [[ "${1:-}" == "--sanitize" ]]; then preset=asan-ubsan; fi
jobs=$(nproc 2>/dev/null || echo 2)

scripts/setup.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$jobs"
ctest --preset "$preset" -j "$jobs"

#!/usr/bin/env bash
# Short, bounded libFuzzer runs of the parsers (safetensors, GGUF, config JSON): builds the
# `fuzz` preset with clang and runs each target for SECONDS (default 60), seeded with
# tests/data/fuzz/<target>/. Exits non-zero on the first crash, leak or sanitizer report.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
SBGQ_WITH_CLANG=1 scripts/setup.sh
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc 2>/dev/null || echo 2)"
shopt -s nullglob
ran=0
for exe in build/fuzz/tests/fuzz/fuzz_*; do
  [[ -x "$exe" && -f "$exe" ]] || continue
  name=$(basename "$exe")
  corpus="build/fuzz/corpus/$name"
  mkdir -p "$corpus"
  seeds=()
  [[ -d "tests/data/fuzz/$name" ]] && seeds=("tests/data/fuzz/$name")
  echo "== $name for ${seconds}s"
  "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "$corpus" "${seeds[@]}" 2>&1 | tail -n 12
  ran=$((ran + 1))
done
echo "fuzz: $ran targets ran without a crash"

#!/usr/bin/env bash
# Short, bounded libFuzzer runs of the parsers of untrusted input (safetensors, GGUF,
# config JSON, tokenizer.json + text, imatrix in both formats, recipe JSON): builds the
# `fuzz` preset with clang and splits a TOTAL budget of SECONDS (default 180) evenly over
# the targets (at least 1 s each), each seeded with tests/data/fuzz/<target>/ (and the
# imatrix target also with the GGUF seeds, which hold a GGUF imatrix). Exits non-zero on
# the first crash, leak or sanitizer report.
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-180}
SBGQ_WITH_CLANG=1 scripts/setup.sh
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc 2>/dev/null || echo 2)"
shopt -s nullglob
exes=()
for exe in build/fuzz/tests/fuzz/fuzz_*; do
  [[ -x "$exe" && -f "$exe" ]] && exes+=("$exe")
done
(( ${#exes[@]} > 0 )) || { echo "fuzz: no targets built" >&2; exit 1; }
seconds=$(( total / ${#exes[@]} ))
(( seconds >= 1 )) || seconds=1
ran=0
for exe in "${exes[@]}"; do
  name=$(basename "$exe")
  corpus="build/fuzz/corpus/$name"
  mkdir -p "$corpus"
  seeds=()
  [[ -d "tests/data/fuzz/$name" ]] && seeds=("tests/data/fuzz/$name")
  [[ "$name" == fuzz_imatrix ]] && seeds+=("tests/data/fuzz/fuzz_gguf")
  echo "== $name for ${seconds}s"
  "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "$corpus" "${seeds[@]}" 2>&1 | tail -n 12
  ran=$((ran + 1))
done
echo "fuzz: $ran targets ran without a crash (${seconds}s each, budget ${total}s)"

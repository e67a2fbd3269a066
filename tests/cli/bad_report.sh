#!/usr/bin/env bash
# A bad --report path (or -o path) fails before any work: non-zero exit, an error naming the
# path, no main output, no temporary file, no stage progress.
#
# usage: bad_report.sh SBGQ WORKDIR MODEL_DIR CALIB_TEXT
set -u
sbgq=$1
work=$2
model=$3
calib=$4

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

rm -rf "$work"
mkdir -p "$work/a-directory"

# expect_early_failure NAME TEXT ARGS...: the pipeline run with ARGS fails with TEXT in its
# error and writes nothing into $work.
expect_early_failure() {
  local name=$1 text=$2
  shift 2
  local before
  before=$(ls -A "$work")
  "$sbgq" pipeline "$model" -f "$calib" --ctx 64 --chunks 2 --rounding plain -t 1 "$@" >"$work/../$name.log" 2>&1
  local status=$?
  [ "$status" -ne 0 ] || fail "$name: exit status 0. Log:
$(cat "$work/../$name.log")"
  grep -qF -- "$text" "$work/../$name.log" || fail "$name: the error does not say '$text'. Log:
$(cat "$work/../$name.log")"
  grep -q "quantize\|calibrat" "$work/../$name.log" && fail "$name: work started before the failure. Log:
$(cat "$work/../$name.log")"
  [ "$(ls -A "$work")" = "$before" ] || fail "$name: files were left in $work: $(ls -A "$work")"
  echo "ok: $name (status $status)"
}

expect_early_failure missing-dir "$work/no/such/dir/report.json" \
  -o "$work/out.gguf" --report "$work/no/such/dir/report.json"
expect_early_failure report-is-directory "'$work/a-directory' is a directory, not a regular file" \
  -o "$work/out.gguf" --report "$work/a-directory"
expect_early_failure report-is-output "are the same file" -o "$work/out.gguf" --report "$work/out.gguf"
expect_early_failure output-dir-missing "$work/no/such/dir/out.gguf" -o "$work/no/such/dir/out.gguf" \
  --report "$work/report.json"
rm -rf "$work"
echo "all bad report cases passed"

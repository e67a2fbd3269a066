#!/usr/bin/env bash
# A command killed by SIGINT, SIGTERM or SIGHUP while it writes leaves no OUT.tmp.XXXXXX
# behind, leaves the previous file at the output path byte-identical, and dies of the
# signal (exit status 128 + signal number).
#
# usage: signal_cleanup.sh SBGQ WORKDIR CALIB_TEXT
set -u
set -m  # job control: background jobs keep the default SIGINT disposition
sbgq=$1
work=$2
calib=$3

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Start the child with default signal dispositions even if ours are ignored (nohup, CI).
launch=()
if env --default-signal=INT true 2>/dev/null; then launch=(env --default-signal=INT,TERM,HUP); fi

rm -rf "$work"
mkdir -p "$work"
# 128 tiny layers: each command below writes for a few seconds with one thread.
"$sbgq" synth --preset tiny --layers 128 -o "$work/model" -t 1 >/dev/null 2>&1 || fail "sbgq synth failed"
"$sbgq" convert "$work/model" -o "$work/model-f16.gguf" --outtype f16 -t 1 >/dev/null 2>&1 || fail "sbgq convert failed"

# run_case NAME SIGNAL COMMAND...: COMMAND writes $work/NAME.gguf, which holds a previous output.
run_case() {
  local name=$1 sig=$2
  shift 2
  local out="$work/$name.gguf"
  printf 'the previous output of %s\n' "$name" >"$out"
  cp "$out" "$work/$name.previous"
  "${launch[@]}" "$@" >"$work/$name.log" 2>&1 &
  local pid=$!
  local seen=""
  for _ in $(seq 1 1200); do  # up to 60 s
    if compgen -G "$out.tmp.*" >/dev/null; then
      seen=1
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$seen" ]; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid"
    fail "$name: no temporary file appeared before the command ended (status $?); make the model bigger. Log:
$(cat "$work/$name.log")"
  fi
  sleep 0.2  # well inside the write, not at its first byte
  kill -s "$sig" "$pid" 2>/dev/null || fail "$name: the command ended before SIG$sig could be sent; make the model bigger"
  wait "$pid"
  local status=$?
  local expected=$((128 + $(kill -l "$sig")))
  [ "$status" -eq "$expected" ] ||
    fail "$name: exit status $status, expected $expected (killed by SIG$sig). Log:
$(cat "$work/$name.log")"
  local left
  left=$(compgen -G "$work/*.tmp.*") && fail "$name: temporary files left behind after SIG$sig: $left"
  cmp "$out" "$work/$name.previous" || fail "$name: the previous output was changed"
  echo "ok: $name killed by SIG$sig (status $status), no temporary file left, previous output intact"
}

run_case convert-int INT "$sbgq" convert "$work/model" -o "$work/convert-int.gguf" --outtype q8_0 -t 1
run_case convert-term TERM "$sbgq" convert "$work/model" -o "$work/convert-term.gguf" --outtype q8_0 -t 1
run_case quantize-int INT "$sbgq" quantize "$work/model-f16.gguf" "$work/quantize-int.gguf" q4_k_m -t 1
run_case quantize-hup HUP "$sbgq" quantize "$work/model-f16.gguf" "$work/quantize-hup.gguf" q4_k_m -t 1
run_case pipeline-int INT "$sbgq" pipeline "$work/model" -o "$work/pipeline-int.gguf" --recipe llama-q4_k_m \
  --rounding plain -t 1
run_case pipeline-term TERM "$sbgq" pipeline "$work/model" -o "$work/pipeline-term.gguf" -f "$calib" --ctx 64 \
  --chunks 2 --rounding plain -t 1 --report "$work/pipeline-term.json"
rm -rf "$work"
echo "all signal cases passed"

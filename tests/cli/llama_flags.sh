#!/usr/bin/env bash
# The command line keeps llama.cpp's meanings: one case per run, named by CASE.
#   bad_number        a bad number is a usage error: exit 2, the usage, no output file
#   unsupported_flag  a llama.cpp flag sbgq does not implement: exit 2 and a message naming it
#   kld_roundtrip     perplexity --kl-divergence-base F saves base logits; with --kl-divergence reads them
#   quantize_nthreads llama-quantize's positional thread count (in out TYPE 1), and IN TYPE
#   model_flag        -m MODEL for perplexity and imatrix (llama.cpp's spelling)
#
# usage: llama_flags.sh SBGQ WORKDIR MODEL.gguf CALIB_TEXT CASE
set -u
sbgq=$1
work=$2
model=$3
calib=$4
case_name=$5

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

rm -rf "$work"
mkdir -p "$work"

# expect STATUS TEXT ARGS...: sbgq ARGS exits with STATUS and prints TEXT (stdout or stderr).
expect() {
  local want=$1 text=$2
  shift 2
  "$sbgq" "$@" >"$work/log" 2>&1
  local status=$?
  [ "$status" -eq "$want" ] || fail "sbgq $*: exit status $status, expected $want. Log:
$(cat "$work/log")"
  grep -qF -- "$text" "$work/log" || fail "sbgq $*: the output does not say '$text'. Log:
$(cat "$work/log")"
  echo "ok: sbgq $* -> $status"
}

case "$case_name" in
  bad_number)
    expect 2 "expected an integer in [1, 1024], found 'abc'" quantize "$model" "$work/out.gguf" Q8_0 -t abc
    expect 2 "usage: sbgq quantize" quantize "$model" "$work/out.gguf" Q8_0 -t abc
    expect 2 "nthreads: expected an integer in [1, 1024], found 'x2'" quantize "$model" "$work/out.gguf" Q8_0 x2
    expect 2 "expected an integer in [4, 1048576], found '12k'" perplexity "$model" -f "$calib" -c 12k
    expect 2 "expected an integer in [1, 1073741824], found '-3'" imatrix "$model" -f "$calib" --chunks -3
    expect 2 "expected an integer in [0, 4611686018427387904], found '1.5'" synth -o "$work/synth" --seed 1.5
    # -b is llama-perplexity's batch size in tokens: at most ctx, or a multiple of it.
    expect 2 "the batch size must be at most the context size (128) or a multiple of it" \
      perplexity "$model" -f "$calib" -c 128 -b 200
    [ -z "$(ls -A "$work" | grep -v '^log$')" ] || fail "files were left in $work: $(ls -A "$work")"
    ;;
  unsupported_flag)
    expect 2 "--keep-split: llama.cpp's option is not supported by sbgq" quantize --keep-split "$model" "$work/o.gguf" Q8_0
    expect 2 "--prune-layers: llama.cpp's option is not supported by sbgq" quantize --prune-layers 1,2 "$model" "$work/o.gguf" Q8_0
    expect 2 "--hellaswag: llama.cpp's option is not supported by sbgq" perplexity "$model" -f "$calib" --hellaswag
    expect 2 "-ngl: llama.cpp's option is not supported by sbgq (sbgq runs on the CPU)" perplexity "$model" -f "$calib" -ngl 99
    expect 2 "--save-frequency: llama.cpp's option is not supported by sbgq" imatrix "$model" -f "$calib" --save-frequency 5
    # --kl-divergence is llama.cpp's flag: a file after it is not silently taken as the base.
    expect 2 "--kl-divergence is a flag (llama-perplexity's meaning)" perplexity "$model" --kl-divergence "$work/base.logits"
    expect 2 "--include-weights and --exclude-weights cannot be used together" \
      quantize --imatrix x.gguf --include-weights attn --exclude-weights ffn "$model" "$work/o.gguf" Q8_0
    expect 2 "not a whole number in [0, 4294967295]" quantize --override-kv a.b=int:-1 "$model" "$work/o.gguf" Q8_0
    [ -z "$(ls -A "$work" | grep -v '^log$')" ] || fail "files were left in $work: $(ls -A "$work")"
    ;;
  kld_roundtrip)
    # Base run: saves the logits (llama-perplexity --kl-divergence-base without --kl-divergence).
    expect 0 "Final estimate: PPL" perplexity "$model" -f "$calib" -c 128 --chunks 2 -t 2 --kl-divergence-base "$work/base.logits"
    [ -s "$work/base.logits" ] || fail "--kl-divergence-base did not save $work/base.logits"
    # A Q8_0 copy against it: reads the logits (and the tokens: no -f).
    "$sbgq" quantize "$model" "$work/q8.gguf" Q8_0 -t 2 >/dev/null 2>&1 || fail "quantize Q8_0 failed"
    expect 0 "Mean    KLD:" perplexity "$work/q8.gguf" --kl-divergence-base "$work/base.logits" --kl-divergence -t 2
    grep -q "====== KL divergence statistics ======" "$work/log" || fail "no KL-divergence report"
    # The base model against its own logits: KLD 0.
    expect 0 "Mean    KLD:   0.000000" perplexity -m "$model" --kl-divergence-base "$work/base.logits" --kl-divergence -t 2
    # --kl-divergence without the base file is a usage error.
    expect 2 "--kl-divergence needs --kl-divergence-base FILE" perplexity "$model" --kl-divergence
    ;;
  quantize_nthreads)
    expect 0 "wrote $work/a.gguf (Q4_K_M)" quantize "$model" "$work/a.gguf" Q4_K_M 1
    expect 0 "wrote $work/b.gguf (Q4_K_M)" quantize "$model" "$work/b.gguf" q4_k_m 2
    cmp -s "$work/a.gguf" "$work/b.gguf" || fail "1 and 2 threads wrote different files"
    expect 2 "the thread count is given twice" quantize "$model" "$work/c.gguf" Q4_K_M 1 -t 2
    expect 2 "unexpected argument 'extra'" quantize "$model" "$work/c.gguf" Q4_K_M 1 extra
    # IN TYPE [nthreads]: the output is ggml-model-TYPE.gguf next to IN, as llama-quantize names it.
    cp "$model" "$work/in.gguf"
    expect 0 "wrote $work/ggml-model-Q8_0.gguf (Q8_0)" quantize "$work/in.gguf" Q8_0 1
    # A type sbgq does not write, where llama-quantize reads a type, is refused as a type.
    expect 2 "unknown quantization type 'Q4_0'" quantize "$work/in.gguf" Q4_0 1
    [ ! -e "$work/Q4_0" ] || fail "Q4_0 was taken as an output file name"
    # --override-kv reaches the file.
    expect 0 "wrote" quantize --override-kv general.name=str:cli-override "$model" "$work/kv.gguf" Q8_0 1
    expect 0 "cli-override" inspect "$work/kv.gguf"
    ;;
  model_flag)
    expect 0 "Final estimate: PPL" perplexity -m "$model" -f "$calib" -c 128 --chunks 1 -t 2
    expect 0 "imatrix: wrote $work/im.gguf (gguf" imatrix -m "$model" -f "$calib" -c 128 --chunks 1 -t 2 -o "$work/im.gguf"
    # GGUF unless --output-format dat, whatever the name (llama-imatrix's rule).
    expect 0 "imatrix: wrote $work/im.dat (gguf" imatrix --model "$model" -f "$calib" -c 128 --chunks 1 -t 2 -o "$work/im.dat"
    [ "$(head -c 4 "$work/im.dat")" = GGUF ] || fail "$work/im.dat is not a GGUF file"
    expect 0 "imatrix: wrote $work/legacy.dat (dat" imatrix --in-file "$work/im.gguf" --output-format dat -o "$work/legacy.dat"
    expect 2 "unexpected argument" perplexity -m "$model" "$model" -f "$calib"
    expect 0 "Final estimate: PPL" perplexity -m "$model" -f "$calib" -c 128 -b 256 --chunks 2 -t 2
    # llama-imatrix --chunk N skips N chunks; too few tokens left is an error.
    expect 0 "imatrix: wrote $work/skip.gguf" imatrix -m "$model" -f "$calib" -c 128 --chunk 1 --chunks 1 -t 2 -o "$work/skip.gguf"
    expect 1 "--chunk 100000:" imatrix -m "$model" -f "$calib" -c 128 --chunk 100000 -t 2 -o "$work/skip2.gguf"
    [ ! -e "$work/skip2.gguf" ] || fail "a failed imatrix run left $work/skip2.gguf"
    ;;
  *)
    fail "unknown case '$case_name'"
    ;;
esac
echo "case $case_name passed"

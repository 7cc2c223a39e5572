#!/usr/bin/env bash
# Proves --predictor-type q8_0 through the worker processes (host backend, 2 CPU workers): on a synthetic model
# whose predictor is 32 wide (17 units and 15 of zero weights) pid's plan counts the Q8_0 predictors' bytes, so
# the same VRAM budget holds more hot neurons than with the file's F16 predictors; the GPU worker says it
# predicts from the Q8_0 copy, and the predictor's measured recall stays above 0.9. A predictor 17 wide cannot be
# held as Q8_0: pid run refuses it with a message that names the layer and says what to do.
set -euo pipefail
tmp=$(mktemp -d "${PI_TMP:-/tmp}/predictor_type.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
m=$tmp/tiny32.gguf
"$PI_BIN/pictl" model synth --shape tiny --type f16 --active 0.11 --seed 3 --pred-width 32 -o "$m" >/dev/null 2>&1 \
  || fail "pictl model synth --pred-width 32 failed"
common=(-m "$m" -n 48 --temp 0 -p "hello world" --gpu-backend host --cpu-workers 2 --vram-budget 0.0003
        --ffn predicted --measure-recall)
for t in file q8_0; do
  "$PI_BIN/pid" run "${common[@]}" --predictor-type $t >"$tmp/$t.out" 2>"$tmp/$t.err" \
    || { cat "$tmp/$t.err" >&2; fail "pid run --predictor-type $t failed"; }
done
hot() { sed -n 's/.*placement: hot \([0-9]*\)\/.*/\1/p' "$1"; }
hf=$(hot "$tmp/file.err") hq=$(hot "$tmp/q8_0.err")
[ -n "$hf" ] && [ -n "$hq" ] || fail "no placement line: $(cat "$tmp/q8_0.err")"
[ "$hq" -gt "$hf" ] || fail "q8_0 predictors left no more room for hot neurons: $hq vs $hf"
echo "ok: hot neurons in the same budget: $hf with the file's f16 predictors, $hq with q8_0"
grep -q "q8_0 predictor on the host" "$tmp/q8_0.err" || fail "the GPU worker did not say q8_0: $(grep 'gpu ready' "$tmp/q8_0.err")"
grep -q "q8_0 predictor" "$tmp/file.err" && fail "--predictor-type file reported q8_0"
recall=$(sed -n 's/.*predictor recall \([0-9.]*\),.*/\1/p' "$tmp/q8_0.err")
awk -v r="$recall" 'BEGIN { exit !(r > 0.9) }' || fail "q8_0 predictor recall '$recall' <= 0.9"
echo "ok: the GPU worker predicts from the q8_0 copy, recall $recall"

m17=$tmp/tiny17.gguf
"$PI_BIN/pictl" model synth --shape tiny --type f16 --active 0.11 --seed 3 -o "$m17" >/dev/null 2>&1 || fail "synth"
if "$PI_BIN/pid" run -m "$m17" -n 4 --gpu-backend host --cpu-workers 1 --ffn predicted --predictor-type q8_0 \
     >/dev/null 2>"$tmp/17.err"; then
  fail "a 17-wide predictor was taken as q8_0"
fi
grep -q "layer 0: the predictor's fc2 has 17 columns, not a multiple of 32.*--predictor-type file" "$tmp/17.err" \
  || fail "message: $(cat "$tmp/17.err")"
echo "ok: refused: $(head -1 "$tmp/17.err")"

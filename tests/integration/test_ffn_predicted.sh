#!/usr/bin/env bash
# Proves, on a synthetic sparse ReLU model through the worker processes (host backend, 2 CPU workers holding cold neurons), that --ffn exact gives --ffn dense's greedy text, that --ffn predicted runs on the model's predictor and reports a measured recall above 0.9, and that auto picks predicted for a model with a predictor.
set -euo pipefail
tmp=$(mktemp -d "${PI_TMP:-/tmp}/ffn_predicted.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
m=$tmp/tiny.gguf
"$PI_BIN/pictl" model synth --shape tiny --type f16 --active 0.11 --seed 3 -o "$m" >/dev/null 2>&1 \
  || fail "pictl model synth failed"
common=(-m "$m" -n 64 --temp 0 -p "hello world" --gpu-backend host --cpu-workers 2 --vram-budget 0.0003)
for mode in dense exact predicted auto; do
  "$PI_BIN/pid" run "${common[@]}" --ffn "$mode" --measure-recall >"$tmp/$mode.out" 2>"$tmp/$mode.err" \
    || { cat "$tmp/$mode.err" >&2; fail "pid run --ffn $mode failed"; }
done
grep -qE "cpu:0 ready.*(neurons \[[0-9]*, [0-9]*\) of 256|of 256 neurons per layer)" "$tmp/dense.err" || fail "no cold neurons on cpu:0: $(cat "$tmp/dense.err")"
cmp -s "$tmp/exact.out" "$tmp/dense.out" || { diff "$tmp/exact.out" "$tmp/dense.out" || true; fail "--ffn exact differs from dense"; }
echo "ok: --ffn exact = --ffn dense (64 greedy tokens)"
line=$(grep "predictor recall" "$tmp/predicted.err") || fail "--ffn predicted reported no recall: $(cat "$tmp/predicted.err")"
echo "$line"
recall=$(echo "$line" | sed -n 's/.*recall \([0-9.]*\),.*/\1/p')
awk -v r="$recall" 'BEGIN { exit !(r > 0.9) }' || fail "recall $recall <= 0.9"
grep -q "ffn predicted" "$tmp/auto.err" || fail "auto did not pick predicted: $(cat "$tmp/auto.err")"
cmp -s "$tmp/auto.out" "$tmp/predicted.out" || fail "auto and predicted differ"
echo "ok: --ffn predicted reports recall $recall; auto picks predicted"

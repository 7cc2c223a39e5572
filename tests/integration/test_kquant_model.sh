#!/usr/bin/env bash
# Proves a Q4_K_M-style model (Q4_K weights, Q6_K ffn_down and output, written by test_kquant_model --write) runs through the worker processes (host backend, 2 CPU workers holding cold neurons): --ffn exact gives the same greedy text as --ffn dense and as the in-process reference.
set -euo pipefail
models=${PI_SHARED:-../shared}/models
if [ ! -f "$models/stories260K.bin" ]; then
  echo "SKIP: $models/stories260K.bin not found (the shared test data is absent; its tokenizer is used)"
  exit 77
fi
tmp=$(mktemp -d "${PI_TMP:-/tmp}/kquant_model.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
m=$tmp/kq.gguf
"$PI_BIN/test_kquant_model" --write "$m" || fail "test_kquant_model --write failed"
"$PI_BIN/pictl" model inspect "$m" >"$tmp/inspect.out" 2>&1 || { cat "$tmp/inspect.out" >&2; fail "pictl model inspect failed"; }
grep -q "q4_K" "$tmp/inspect.out" && grep -q "q6_K" "$tmp/inspect.out" || fail "inspect shows no q4_K/q6_K tensors: $(cat "$tmp/inspect.out")"
# 0.0007 GiB: about a sixth of each layer's neurons hot, the rest on the two CPU workers
common=(-m "$m" -p "Once upon a time" -n 40 --temp 0 --gpu-backend host --cpu-workers 2 --vram-budget 0.0007)
for mode in dense exact; do
  "$PI_BIN/pid" run "${common[@]}" --ffn "$mode" >"$tmp/$mode.out" 2>"$tmp/$mode.err" \
    || { cat "$tmp/$mode.err" >&2; fail "pid run --ffn $mode failed"; }
  grep -q "worker cpu:1 ready.*neurons \[[0-9]*, 512) of 512.*ffn $mode" "$tmp/$mode.err" \
    || fail "no CPU worker ran cold neurons with ffn $mode: $(cat "$tmp/$mode.err")"
done
"$PI_BIN/pid" run -m "$m" -p "Once upon a time" -n 40 --temp 0 --reference >"$tmp/ref.out" 2>"$tmp/ref.err" \
  || { cat "$tmp/ref.err" >&2; fail "pid run --reference failed"; }
cmp -s "$tmp/dense.out" "$tmp/ref.out" || { diff "$tmp/dense.out" "$tmp/ref.out" || true; fail "--ffn dense differs from the reference"; }
cmp -s "$tmp/exact.out" "$tmp/dense.out" || { diff "$tmp/exact.out" "$tmp/dense.out" || true; fail "--ffn exact differs from dense"; }
echo "ok: q4_K/q6_K model: --ffn exact = --ffn dense = reference (40 greedy tokens, host backend, 2 CPU workers)"

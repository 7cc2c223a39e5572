#!/usr/bin/env bash
# Proves --ffn exact gives the same greedy text as --ffn dense and as the in-process reference on a ReLU variant of stories260K, through the worker processes (host backend, 2 CPU workers holding cold neurons), and that bad or unavailable modes fail clearly.
set -euo pipefail
models=${PI_SHARED:-../shared}/models
if [ ! -f "$models/stories260K.bin" ]; then
  echo "SKIP: $models/stories260K.bin not found (the shared test data is absent)"
  exit 77
fi
tmp=$(mktemp -d "${PI_TMP:-/tmp}/ffn_modes.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
m=$tmp/relu.gguf
"$PI_BIN/pictl" model import-llama2c --checkpoint "$models/stories260K.bin" --tokenizer "$models/tok512.bin" \
  --act relu -o "$m" >/dev/null
common=(-m "$m" -n 120 --temp 0 --gpu-backend host --cpu-workers 2 --vram-budget 0.00073)
for mode in dense exact; do
  "$PI_BIN/pid" run "${common[@]}" --ffn "$mode" >"$tmp/$mode.out" 2>"$tmp/$mode.err" \
    || { cat "$tmp/$mode.err" >&2; fail "pid run --ffn $mode failed"; }
  grep -q "ffn $mode" "$tmp/$mode.err" || fail "workers did not report ffn $mode: $(cat "$tmp/$mode.err")"
done
"$PI_BIN/pid" run -m "$m" -n 120 --temp 0 --reference >"$tmp/ref.out" 2>/dev/null || fail "pid run --reference failed"
cmp -s "$tmp/dense.out" "$tmp/ref.out" || { diff "$tmp/dense.out" "$tmp/ref.out" || true; fail "--ffn dense differs from the reference"; }
cmp -s "$tmp/exact.out" "$tmp/dense.out" || { diff "$tmp/exact.out" "$tmp/dense.out" || true; fail "--ffn exact differs from dense"; }
echo "ok: --ffn exact = --ffn dense = reference (120 greedy tokens, ReLU stories260K)"

if "$PI_BIN/pid" run -m "$m" -n 5 --ffn bogus >/dev/null 2>"$tmp/bad.err"; then fail "--ffn bogus accepted"; fi
grep -q "expected auto, dense, exact or predicted" "$tmp/bad.err" || fail "unclear error: $(cat "$tmp/bad.err")"
if "$PI_BIN/pid" run -m "$m" -n 5 --ffn predicted >/dev/null 2>"$tmp/pred.err"; then fail "--ffn predicted accepted"; fi
grep -q "predict" "$tmp/pred.err" || fail "unclear error: $(cat "$tmp/pred.err")"
echo "ok: bad modes fail clearly"

#!/usr/bin/env bash
# Proves that pid places hot neurons by activation frequency when the model has a sparse sidecar: a synthetic model written with its frequencies runs through the workers (host backend, 2 CPU workers, small budget) with per-layer hot sets from those frequencies, --ffn exact gives --ffn dense's greedy text, --ffn predicted reports its recall, `pictl model plan` shows a GPU share above the hot fraction, and without a sidecar pid falls back to the index order.
set -euo pipefail
: "${PI_BIN:?PI_BIN must name the bin folder of the build}"
tmp=$(mktemp -d "${PI_TMP:-/tmp}/hotset.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
m=$tmp/tiny.gguf
"$PI_BIN/pictl" model synth --shape tiny --type f16 --active 0.11 --seed 5 -o "$m" >"$tmp/synth.out" 2>&1 \
  || { cat "$tmp/synth.out" >&2; fail "pictl model synth failed"; }
[ -f "$tmp/tiny.pi-sparse.gguf" ] || fail "synth wrote no sidecar: $(cat "$tmp/synth.out")"
grep -q "corpus synthetic" "$tmp/synth.out" || fail "synth did not report the sidecar"

budget=0.0003
common=(-m "$m" -n 48 --temp 0 -p "hello world" --gpu-backend host --cpu-workers 2 --vram-budget $budget)
for mode in dense exact predicted; do
  "$PI_BIN/pid" run "${common[@]}" --ffn "$mode" --measure-recall >"$tmp/$mode.out" 2>"$tmp/$mode.err" \
    || { cat "$tmp/$mode.err" >&2; fail "pid run --ffn $mode failed"; }
done
cat "$tmp/predicted.err"
for mode in dense exact predicted; do
  grep -q "^pid run: placement: hot [0-9]*/512 neurons .* from activation frequencies, expected GPU share" \
    "$tmp/$mode.err" || fail "$mode: pid's placement is not from frequencies: $(cat "$tmp/$mode.err")"
  grep -q "worker gpu ready .*hot sets from activation frequencies" "$tmp/$mode.err" \
    || fail "$mode: the GPU worker did not load the frequency plan: $(cat "$tmp/$mode.err")"
  for i in 0 1; do
    grep -q "worker cpu:$i ready .*cold chunk $i of 2 from activation frequencies: [0-9]*\.\.[0-9]* of 256" \
      "$tmp/$mode.err" || fail "$mode: cpu:$i did not load its cold chunk: $(cat "$tmp/$mode.err")"
  done
done
ls "$tmp"/tiny.pi-plan-*.gguf >/dev/null 2>&1 || fail "no plan cache beside the model"
cmp -s "$tmp/exact.out" "$tmp/dense.out" || { diff "$tmp/exact.out" "$tmp/dense.out" || true; fail "--ffn exact differs from dense"; }
echo "ok: --ffn exact = --ffn dense with hot sets from frequencies"
line=$(grep "predictor recall" "$tmp/predicted.err") || fail "--ffn predicted reported no recall"
recall=$(echo "$line" | sed -n 's/.*recall \([0-9.]*\),.*/\1/p')
awk -v r="$recall" 'BEGIN { exit !(r > 0.9) }' || fail "recall $recall <= 0.9"
echo "ok: --ffn predicted, recall $recall"

# The GPU share pid expects is above the hot fraction, and pictl model plan agrees.
read -r hot_pct share < <(sed -n 's/^pid run: placement: hot [0-9]*\/[0-9]* neurons (\([0-9.]*\)%.*GPU share of activations \([0-9.]*\)%.*/\1 \2/p' "$tmp/dense.err")
awk -v h="$hot_pct" -v s="$share" 'BEGIN { exit !(s > h) }' || fail "pid: GPU share $share% not above the hot fraction $hot_pct%"
"$PI_BIN/pictl" model plan -m "$m" --vram-budget $budget --max-seqs 1 --n-ctx 61 >"$tmp/plan.out" || fail "pictl model plan failed"
cat "$tmp/plan.out"
grep -q "^profile $tmp/tiny.pi-sparse.gguf: 0 tokens of synthetic" "$tmp/plan.out" || fail "plan did not use the sidecar"
read -r p_hot p_share < <(awk '$1 == "total" { gsub("%", "", $4); gsub("%", "", $5); print $4, $5 }' "$tmp/plan.out")
awk -v h="$p_hot" -v s="$p_share" 'BEGIN { exit !(s > h) }' || fail "plan: GPU share $p_share% not above the hot fraction $p_hot%"
grep -q "cache .*: read" "$tmp/plan.out" || fail "pictl model plan did not reuse pid's plan cache"
echo "ok: GPU share $share% (pid), $p_share% (pictl model plan) > hot fraction $hot_pct%"

# Without the sidecar: the index order, as before.
rm -f "$tmp/tiny.pi-sparse.gguf"
"$PI_BIN/pid" run "${common[@]}" --ffn exact >"$tmp/plain.out" 2>"$tmp/plain.err" \
  || { cat "$tmp/plain.err" >&2; fail "pid run without a sidecar failed"; }
grep -q "^pid run: placement: hot [0-9]*/256 neurons per layer .*index order" "$tmp/plain.err" \
  || fail "no index-order fallback: $(cat "$tmp/plain.err")"
grep -q "worker gpu ready .*hot neurons \[0, [0-9]*) of 256" "$tmp/plain.err" || fail "gpu worker not in index order"
cmp -s "$tmp/plain.out" "$tmp/dense.out" || fail "index-order placement changed the greedy text"
echo "ok: index-order fallback without a sidecar"

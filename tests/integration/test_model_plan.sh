#!/usr/bin/env bash
# Proves `pictl model plan` prints a per-layer plan within the budget (uniform without a sidecar, said in the output; from the sidecar's frequencies when one exists), writes and reuses its cache, re-plans when the cache belongs to another budget setup, refuses a budget below the fixed part with the bytes needed, and with --gpu-backend cuda counts the CUDA backend's fp16 KV cache, scratch and context as pid does.
set -euo pipefail

models="${PI_SHARED:-../shared}/models"
if [ ! -d "$models" ]; then
  echo "SKIP: $models not found (the shared test data is absent)"
  exit 77
fi
: "${PI_BIN:?PI_BIN must name the bin folder of the build}"
tmp="${PI_TMP:-/tmp}/model_plan"
rm -rf "$tmp"
mkdir -p "$tmp"
gguf="$tmp/s.gguf"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$PI_BIN/pictl" model import-llama2c --checkpoint "$models/stories260K.bin" \
  --tokenizer "$models/tok512.bin" -o "$gguf" --act relu >/dev/null || fail "import-llama2c failed"

plan() { "$PI_BIN/pictl" model plan -m "$gguf" --max-seqs 2 --n-ctx 128 "$@"; }

# 1. No sidecar: uniform, said so; 5 layer rows + total; GPU bytes <= budget; cache written, then read.
plan --vram-budget 0.0012 >"$tmp/a.out" || fail "plan failed"
cat "$tmp/a.out"
grep -q "profile none: no sparse sidecar" "$tmp/a.out" || fail "uniform frequencies not reported"
[ "$(grep -cE '^ +[0-4] +[0-9]+ +172 ' "$tmp/a.out")" = 5 ] || fail "expected 5 layer rows of 172 neurons"
grep -qE '^total +[0-9]+ +860 ' "$tmp/a.out" || fail "no total row"
grep -q "cache   $tmp/s.pi-plan-1.gguf: written" "$tmp/a.out" || fail "cache not written"
[ -f "$tmp/s.pi-plan-1.gguf" ] || fail "no cache file"
plan --vram-budget 0.0012 >"$tmp/b.out" || fail "second plan failed"
grep -q "pi-plan-1.gguf: read" "$tmp/b.out" || fail "cache not reused"
diff <(grep -E '^ +[0-9]|^total' "$tmp/a.out") <(grep -E '^ +[0-9]|^total' "$tmp/b.out") \
  || fail "the cached plan differs from the solved one"

# 2. Same budget, another KV size: the cache is rejected with the reason and rewritten.
plan --vram-budget 0.0012 --max-seqs 1 >"$tmp/c.out" || fail "plan with another KV size failed"
grep -q "ignoring the plan cache: .*fixed GPU bytes" "$tmp/c.out" || fail "stale cache not rejected"
grep -q "pi-plan-1.gguf: written" "$tmp/c.out" || fail "stale cache not rewritten"

# 3. A sidecar with skewed frequencies: hot counts follow them, share above the hot fraction.
"$PI_BIN/pictl" model profile -m "$gguf" --corpus "${PI_SHARED:-../shared}/corpus/gutenberg-train.txt.xz" \
  --tokens 300 >/dev/null 2>&1 || fail "profile failed"
plan --vram-budget 0.0008 --no-cache >"$tmp/d.out" || fail "plan with a sidecar failed"
cat "$tmp/d.out"
grep -q "^profile $tmp/s.pi-sparse.gguf: " "$tmp/d.out" || fail "sidecar not used"
read -r hot_pct share < <(awk '$1 == "total" { gsub("%", "", $4); gsub("%", "", $5); print $4, $5 }' "$tmp/d.out")
awk -v h="$hot_pct" -v s="$share" 'BEGIN { exit !(s > h) }' || fail "GPU share $share% not above hot fraction $hot_pct%"
grep -q "gap to the optimum" "$tmp/d.out" || fail "no optimality gap printed"

# 4. Budget below the fixed part: a clear error with the bytes needed.
if plan --vram-budget 0.0001 --no-cache >"$tmp/e.out" 2>"$tmp/e.err"; then fail "tiny budget accepted"; fi
grep -q "below the fixed GPU part .* raise the budget to at least" "$tmp/e.err" || { cat "$tmp/e.err"; fail "unclear error"; }
# 5. --gpu-backend cuda plans as pid does for the CUDA backend: an fp16 KV cache (half the host's fp32 one) and its
#    scratch and context inside the budget, so a budget the host plan fits in is refused for cuda.
plan --vram-budget 0.0012 --no-cache --gpu-backend cuda >"$tmp/f.out" 2>"$tmp/f.err" && fail "cuda: a 1.2 MiB budget accepted beside the CUDA context"
grep -q "below the fixed GPU part" "$tmp/f.err" || { cat "$tmp/f.err"; fail "cuda: unclear error"; }
plan --vram-budget 1 --no-cache --gpu-backend cuda >"$tmp/g.out" || fail "cuda plan at 1 GiB failed"
plan --vram-budget 1 --no-cache >"$tmp/h.out" || fail "host plan at 1 GiB failed"
grep -q "^backend cuda: fp16 KV cache" "$tmp/g.out" || fail "cuda: the backend line is missing"
grep -qE "KV cache [0-9.]+ [KM]iB \(2 seqs x 128 ctx, fp16\) .* backend scratch and context" "$tmp/g.out" ||
  { grep budget "$tmp/g.out"; fail "cuda: the fixed part names no fp16 KV cache or backend scratch"; }
kv() { grep -oE "KV cache [0-9.]+ [KM]iB" "$1" | awk '{ print $3 * ($4 == "MiB" ? 1024 : 1) }'; }
awk -v c="$(kv "$tmp/g.out")" -v h="$(kv "$tmp/h.out")" 'BEGIN { exit !(c > 0 && c * 2 == h) }' ||
  fail "cuda KV cache $(kv "$tmp/g.out") KiB is not half the host's $(kv "$tmp/h.out") KiB"
plan --vram-budget 1 --gpu-backend vulkan >/dev/null 2>&1 && fail "--gpu-backend vulkan accepted"
echo "ok: --gpu-backend cuda: $(grep -oE "fixed GPU part .*" "$tmp/g.out")"
echo "ok: pictl model plan"

#!/usr/bin/env bash
# Sparse vs dense at a VRAM budget (docs/benchmarks.md): synthesizes a
# LLaMA-shaped ReLU model with a predictor (pictl model synth), then runs
# `pid run` with --ffn dense, exact and predicted on the same budget and
# prints a markdown table of tok/s, and checks that exact and dense produce
# the same greedy tokens. Run from a Release build (scripts/quickstart.sh or
# scripts/device_check.sh build it).
# Usage: scripts/bench_sparse.sh [--bin DIR] [--shape 13b] [--type f16] [--active 0.11]
#        [--budget GIB] [--tokens N] [--backend cuda|host] [--cpu-workers N] [--model FILE]
set -euo pipefail
bin=build/bin shape=13b type=f16 active=0.11 budget=12.6 tokens=32 backend=auto cpu=-1 model=
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;; --shape) shape=$2; shift 2 ;; --type) type=$2; shift 2 ;;
    --active) active=$2; shift 2 ;; --budget) budget=$2; shift 2 ;; --tokens) tokens=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;; --cpu-workers) cpu=$2; shift 2 ;; --model) model=$2; shift 2 ;;
    *) echo "bench_sparse: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=${OUT:-/tmp}
model=${model:-/tmp/pi-synth-$shape-$type.gguf}
if [ ! -f "$model" ]; then
  t0=$(date +%s.%N)
  "$bin/pictl" model synth --shape "$shape" --type "$type" --active "$active" --seed 1 -o "$model" >&2
  echo "synthesized $model in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }') s ($(du -h "$model" | cut -f1))" >&2
fi
cpuflag=(); [ "$cpu" -ge 0 ] && cpuflag=(--cpu-workers "$cpu")
prompt="The quick brown fox jumps over the lazy dog and then"
run() { # mode extra...
  local mode=$1; shift
  local t0; t0=$(date +%s.%N)
  "$bin/pid" run -m "$model" -n "$tokens" --temp 0 -p "$prompt" --gpu-backend "$backend" \
    --vram-budget "$budget" --ffn "$mode" "${cpuflag[@]}" "$@" >"$out/sparse-$mode.txt" 2>"$out/sparse-$mode.err" \
    || { cat "$out/sparse-$mode.err" >&2; return 1; }
  local wall; wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  local tps; tps=$(sed -n 's/.*generated [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1/p' "$out/sparse-$mode.err")
  echo "| $mode | $tps | $wall |"
}
echo "model $model ($shape, $type, active $active), budget $budget GiB, backend $backend, $tokens tokens"
echo
echo "| --ffn | tok/s (generation) | wall s (load + prompt + generation) |"
echo "|---|---|---|"
run dense
run exact
run predicted
if cmp -s "$out/sparse-dense.txt" "$out/sparse-exact.txt"; then
  echo; echo "exact and dense: identical greedy text ($tokens tokens)"
else
  echo; echo "exact and dense: DIFFERENT greedy text"; diff "$out/sparse-dense.txt" "$out/sparse-exact.txt" | head -5
fi
echo; echo "workers (predicted run):"; grep "ready" "$out/sparse-predicted.err" | sed 's/^/    /'
echo; grep "placement:" "$out/sparse-predicted.err" | sed 's/^pid run: /    /'
# The budget as the daemon reports it: the GPU worker's device bytes (every allocation).
ep="ipc:///tmp/pi-bench-sparse-$$.sock"
if "$bin/pid" start -m "$model" --listen "$ep" --gpu-backend "$backend" --vram-budget "$budget" --max-seqs 1 \
    --n-ctx 256 "${cpuflag[@]}" >"$out/sparse-start.txt" 2>&1; then
  echo; echo "pid start (1 sequence x 256 positions), pictl status and workers:"
  "$bin/pictl" status --endpoint "$ep" | grep -E "vram budget|placement|ffn" | sed 's/^/    /'
  "$bin/pictl" workers --endpoint "$ep" | sed 's/^/    /'
  "$bin/pid" stop --listen "$ep" >/dev/null 2>&1 || true
else
  echo "pid start failed:"; tail -5 "$out/sparse-start.txt"
fi

#!/usr/bin/env bash
# Memory of CPU workers serving a large model: each must hold only its cold
# shard (docs/benchmarks.md). Starts pid on MODEL with the host GPU backend,
# N CPU workers and a VRAM budget, generates a few tokens, and prints every
# worker's RSS next to the bytes of its shard.
# Usage: scripts/bench_worker_rss.sh MODEL [BUDGET_GIB] [CPU_WORKERS] [BIN_DIR]
set -euo pipefail
model=$1 budget=${2:-6} n=${3:-2} bin=${4:-build/bin}
ep="ipc:///tmp/pi-rss-$$.sock"
"$bin/pid" start -m "$model" --listen "$ep" --gpu-backend host --cpu-workers "$n" --vram-budget "$budget" \
  --max-seqs 1 --n-ctx 256 >/tmp/pi-rss-start.txt 2>&1 || { cat /tmp/pi-rss-start.txt; exit 1; }
trap '"$bin/pid" stop --listen "$ep" >/dev/null 2>&1 || true' EXIT
"$bin/pictl" generate --endpoint "$ep" -n 8 --temp 0 "The" >/dev/null 2>&1
echo "model $model ($(du -h "$model" | cut -f1) on disk), budget $budget GiB, $n CPU workers, host GPU backend"
"$bin/pictl" status --endpoint "$ep" | sed -n 's/^placement: *//p'
echo
echo "| worker | holds (MiB: cold shard; gpu: host-backend 'device' bytes) | RSS (MiB) | RSS - holds (MiB) |"
echo "|---|---|---|---|"
"$bin/pictl" workers --endpoint "$ep" | awk 'NR > 1' >/tmp/pi-rss-workers.txt
while read -r line; do
  name=$(echo "$line" | awk '{print $1}') pid=$(echo "$line" | awk '{print $2}')
  rss=$(awk '/VmRSS/ {print int($2 / 1024)}' /proc/"$pid"/status)
  shard=$(echo "$line" | sed -n 's/.*, \([0-9.]*\) MiB.*/\1/p')
  # The GPU worker: its DEVICE column (e.g. 6.0G) in MiB.
  [ -n "$shard" ] || shard=$(echo "$line" | awk '{ v = $6 + 0; u = substr($6, length($6));
    printf "%.0f", u == "G" ? v * 1024 : u == "K" ? v / 1024 : u == "B" ? v / 1048576 : v }')
  printf '| %s | %s | %s | %s |\n' "$name" "${shard:-?}" "$rss" \
    "$(awk -v r="$rss" -v s="${shard:-0}" 'BEGIN { printf "%.0f", r - s }')"
done </tmp/pi-rss-workers.txt

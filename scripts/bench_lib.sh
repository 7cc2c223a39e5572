# shellcheck shell=bash
# Sourced (not run) by the scripts that run on the lent GPU machine (bench_compare.sh, bench_warm_sweep.sh,
# device_check.sh, bench_device_warm.sh, bench_device_quick.sh): what more than one of them reads the same way.
# Run from the repository's root.

# pi_cuda_budget X: a --vram-budget in GiB, the plan's CUDA context reserve (CUDA_NEEDS_CONTEXT_BYTES in
# gpu_worker/cuda_needs.h) plus X, so a small model's budget keeps its meaning when the reserve changes.
pi_cuda_budget() {
  local mib
  mib=$(sed -n 's/^#define CUDA_NEEDS_CONTEXT_BYTES (\([0-9]*\)ull << 20).*/\1/p' gpu_worker/cuda_needs.h)
  [ -n "$mib" ] || { echo "pi_cuda_budget: no CUDA_NEEDS_CONTEXT_BYTES in gpu_worker/cuda_needs.h" >&2; return 1; }
  awk -v c="$mib" -v x="$1" 'BEGIN { printf "%.5f", c / 1024 + x }'
}

# pi_timings_ms FILE ROW: the milliseconds of ROW (e.g. "gpu attn", "cpu:0 cold ffn", "wall") in the decode
# table `pid run --timings` wrote to FILE (the table before the prefill steps' one).
pi_timings_ms() {
  sed '/timings per prefill step/q' "$1" |
    awk -v n="$2" '{ sub(/^pid run: +/, "") } index($0, n) == 1 { $0 = substr($0, length(n) + 1); print $1; exit }'
}

# pi_control FILE LAYERS: issue 7's control + synchronisation from FILE's decode table: gpu publish + gpu finish +
# gpu worker host control + pid control, in ms a token and us a layer.
pi_control() {
  local p f h c
  p=$(pi_timings_ms "$1" "gpu publish") f=$(pi_timings_ms "$1" "gpu finish")
  h=$(pi_timings_ms "$1" "gpu worker host control") c=$(pi_timings_ms "$1" "pid control (round trip - gpu step)")
  awk -v p="$p" -v f="$f" -v h="$h" -v c="$c" -v l="$2" 'BEGIN {
    if (p == "" || f == "" || h == "" || c == "" || l + 0 <= 0) { print "n/a"; exit }
    t = p + f + h + c; printf "%.3f ms a token = %.1f us a layer (publish %s + finish %s + gpu worker host %s + pid %s)",
      t, t * 1000 / l, p, f, h, c }'
}

# pi_steal_s: CPU seconds the hypervisor has given to others so far (/proc/stat's steal, all CPUs); the
# difference over a run says whether a slow run met a host busy elsewhere rather than a slower engine.
pi_steal_s() { awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.2f", $9 / hz; exit }' /proc/stat 2>/dev/null; }

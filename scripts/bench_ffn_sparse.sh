#!/usr/bin/env bash
# GB/s of weight rows read by the CPU sparse FFN kernels (cpu_worker/ffn_sparse*.c)
# per variant, type and thread count, as a markdown table (docs/benchmarks.md).
# Builds Release and runs pi-bench-ffn-sparse; flags pass through, e.g.
#   scripts/bench_ffn_sparse.sh --threads 16 --types f16,q4_0 --seconds 1
# --batch 1,2,4,8 compares, per step of B entries, B separate calls with one
# batched call (ffn_sparse_run_batch; --overlap F: the share of each entry's
# neurons that all B share, default 0.9), e.g.
#   scripts/bench_ffn_sparse.sh --batch 1,2,4,8,16 --types f16,q4_0 --variants avx512
# Defaults: dim 5120, 6912 neurons, 11% active, 1..nproc threads, every variant
# this CPU runs (PI_CPU_KERNEL is not consulted: each is measured by name).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target pi-bench-ffn-sparse >/dev/null
build-bench/bin/pi-bench-ffn-sparse "$@"

#!/usr/bin/env bash
# GB/s of weight rows read by the CPU sparse FFN kernels (cpu_worker/ffn_sparse*.c)
# per variant, type and thread count, as a markdown table (docs/benchmarks.md).
# Builds Release and runs pi-bench-ffn-sparse; flags pass through, e.g.
#   scripts/bench_ffn_sparse.sh --threads 16 --types f16,q4_0 --seconds 1
# Defaults: dim 5120, 6912 neurons, 11% active, 1..nproc threads, every variant
# this CPU runs (PI_CPU_KERNEL is not consulted: each is measured by name).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target pi-bench-ffn-sparse >/dev/null
build-bench/bin/pi-bench-ffn-sparse "$@"

#!/usr/bin/env bash
# Per-layer overhead of pi's control + shared-memory synchronisation with no
# compute (docs/benchmarks.md). Builds Release and runs pi-bench-sync; pass
# its flags through, e.g. scripts/bench_sync.sh --workers 2 --gpu
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DPI_CUDA=AUTO >/dev/null
cmake --build build-bench -j"$(nproc)" --target pi-bench-sync >/dev/null
build-bench/bin/pi-bench-sync "$@"

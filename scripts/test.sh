#!/usr/bin/env bash
# The test suite: set up, build with ASan+UBSan (and the CUDA parts when nvcc
# is present, warnings as errors), run ctest, then run every libFuzzer target
# for PI_FUZZ_SECONDS (default 60) each.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"

scripts/setup.sh

echo "== build (-O2 with address,undefined sanitizers: optimised builds warn about more) =="
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPI_SANITIZE=address,undefined -DPI_CUDA=AUTO >build-test.log 2>&1 \
  || { cat build-test.log; exit 1; }
grep "pi: CUDA" build-test.log || true
cmake --build build-test -j"$jobs"

echo "== ctest =="
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-test && ctest --output-on-failure -j"$jobs")
# ctest names skipped tests but not why: each test prints its reason on a line starting "SKIP".
echo "== skipped, and why =="
awk '/^[0-9]+\/[0-9]+ Test: /{name=$3} /^SKIP/{print "  " name ": " $0; n++} END{if(!n) print "  none"}' \
  build-test/Testing/Temporary/LastTest.log

echo "== ThreadSanitizer: the CPU worker's thread pool and the shm counters =="
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPI_SANITIZE=thread -DPI_CUDA=OFF >build-tsan.log 2>&1 \
  || { cat build-tsan.log; exit 1; }
cmake --build build-tsan -j"$jobs" --target test_ffn_sparse test_shm
TSAN_OPTIONS=halt_on_error=1 build-tsan/bin/test_ffn_sparse
TSAN_OPTIONS=halt_on_error=1 build-tsan/bin/test_shm

if [ "${PI_FUZZ_SECONDS:-60}" -gt 0 ]; then
  echo "== fuzz (${PI_FUZZ_SECONDS:-60} s per target) =="
  CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DPI_FUZZ=ON -DPI_SANITIZE=address,undefined -DPI_CUDA=OFF >build-fuzz.log 2>&1 \
    || { cat build-fuzz.log; exit 1; }
  # Everything, not just the fuzzers: a clang build without CUDA must be warning-free too.
  cmake --build build-fuzz -j"$jobs"
  for src in tests/fuzz/fuzz_*.c; do
    t=$(basename "$src" .c)
    corpus=$(mktemp -d)
    [ -d "tests/fuzz/regress/$t" ] && cp "tests/fuzz/regress/$t"/* "$corpus"/ 2>/dev/null || true
    echo "-- $t"
    (cd "$corpus" && "$root/build-fuzz/bin/$t" -max_total_time="${PI_FUZZ_SECONDS:-60}" -rss_limit_mb=4096 -print_final_stats=0 "$corpus" 2>&1 | tail -n 3) \
      || { echo "fuzz: $t found a crash (see above); add the input to tests/fuzz/regress/$t"; exit 1; }
    rm -rf "$corpus"
  done
fi
echo "all tests passed"

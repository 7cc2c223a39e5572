#!/usr/bin/env bash
# On the GPU machine, one short call (carry .deps, as for device_check.sh): builds pi with CUDA, then
# - test_cuda_backend on stories260K only (PI_CUDA_TEST_QUICK), its kept-arena check included: a backend
#   in a CUDA VMM arena hands out a descriptor, is destroyed, and the next one copies nothing and
#   computes the same logits;
# - the default model (untied: token_embd read from mapped host memory) on cuda against pid run --reference;
# - test_daemon_kill with --gpu-backend cuda on stories260K and on the default model: kill -9 of the GPU
#   worker mid-generation, back within 2 s, nothing copied in again (pid kept the VRAM), the same text.
# Exit status 1 when anything failed; the last line counts the failures. Logs under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-/tmp/out}; mkdir -p "$out"
source scripts/device_env.sh; pi_device_env .deps/offline-debs
shared=$(pwd)/.deps/shared
t0=$(date +%s)
cmake -S . -B build-dev -DCMAKE_BUILD_TYPE=Release -DPI_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 "${PI_DEPS_CMAKE[@]}" \
  -DPI_SHARED_DIR="$shared" >"$out/cmake.log" 2>&1 || { tail -20 "$out/cmake.log"; exit 1; }
cmake --build build-dev -j16 --target pid pi-gpu-worker pi-cpu-worker pictl test_cuda_backend >"$out/build.log" 2>&1 \
  || { grep -E "error" "$out/build.log" | head -20; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
b=$(pwd)/build-dev/bin fails=0
PI_CUDA_TEST_QUICK=1 PI_SHARED=$shared PI_TMP=/tmp timeout 150 "$b/test_cuda_backend" >"$out/cuda_backend.txt" 2>&1 \
  || { echo "FAIL: test_cuda_backend"; fails=$((fails + 1)); }
grep -E "kept arena|FAIL|CHECK" "$out/cuda_backend.txt" | head -5; tail -2 "$out/cuda_backend.txt"
"$b/pid" run --reference -n 200 --temp 0 -p "" >/tmp/d-ref.txt 2>/dev/null
timeout 60 "$b/pid" run -n 200 --temp 0 -p "" --gpu-backend cuda --cpu-workers 2 >/tmp/d-cuda.txt 2>"$out/d-cuda.err"
cmp -s /tmp/d-ref.txt /tmp/d-cuda.txt && r=SAME || r="DIFFERENT ($(cmp /tmp/d-ref.txt /tmp/d-cuda.txt | head -1))"
echo "default model, cuda with 2 CPU workers vs --reference: $r; $(tail -1 "$out/d-cuda.err")"
for m in stories default; do
  PI_DAEMON_MODEL=$([ $m = default ] && echo default) PI_TEST_GPU_BACKEND=cuda PI_SHARED=$shared PI_BIN=$b \
    PI_SRC=$(pwd) PI_TMP=/tmp timeout 120 bash tests/integration/test_daemon_kill.sh >"$out/kill-$m.txt" 2>&1 \
    || { echo "FAIL: test_daemon_kill cuda $m"; fails=$((fails + 1)); }
  grep -E "^ok|^FAIL" "$out/kill-$m.txt" | sed "s/^/kill $m: /"
done
echo "device_vram_check: $fails failures ($(( $(date +%s) - t0 )) s)"
exit $((fails > 0))

#!/usr/bin/env bash
# On the lent GPU machine, in one call (~8 min after the machine starts): builds pi and PowerInfer, writes
# the anchors' 13B PWRI model to /dev/shm, runs pi-bench-cuda-kernels, the stories260K greedy checks (cuda,
# 0/2 CPU workers, graph and layer by layer) and the default model's (cuda against pid run --reference),
# then PowerInfer and pi --ffn predicted at 12.6 GiB (pi with peak VRAM and once with --timings), pi with
# everything in VRAM, the CPU sparse FFN kernels at the 13B shape on this host (pi-bench-ffn-sparse), and
# last test_cuda_backend (PI_QUICK_CUDA_TEST_S, default 240 s). The shorter sibling of bench_compare.sh
# (no llama.cpp). Carry .deps (scripts/bench_compare.sh --stage prepare).
# Figures: docs/benchmarks.md, "After the kernel round".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-/tmp/out}; mkdir -p $out
source scripts/device_env.sh; pi_device_env .deps/offline-debs
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh
shared=$(pwd)/.deps/shared; A=$shared/anchors
t0=$(date +%s)
( bash $A/build_powerinfer.sh /tmp/powerinfer > $out/pwi-build.log 2>&1; echo "powerinfer build rc=$?" >> $out/pwi-build.log ) &
export PATH=/opt/torch/.venv/bin:$PATH
mkdir -p /tmp/pwi && tar -xJf $A/powerinfer-d3ebd7c.tar.xz -C /tmp/pwi
gp=$(find /tmp/pwi -maxdepth 3 -type d -name gguf-py | head -1)
M=/dev/shm/m13/pwri.gguf; mkdir -p /dev/shm/m13
( python3 $A/mk_powerinfer_gguf.py $gp $M 13b $shared/vocab/ggml-vocab-llama-spm.gguf > $out/mk.log 2>&1 && python3 $A/freq_to_sidecar.py $M /dev/shm/m13/activation/freq.npy scripts >> $out/mk.log 2>&1; echo "model rc=$?" >> $out/mk.log ) &
cmake -S . -B build-dev -DCMAKE_BUILD_TYPE=Release -DPI_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 "${PI_DEPS_CMAKE[@]}" -DPI_SHARED_DIR="$shared" >$out/cmake.log 2>&1 || { tail -30 $out/cmake.log; exit 1; }
cmake --build build-dev -j14 --target pid pi-gpu-worker pi-cpu-worker pictl test_cuda_backend pi-bench-cuda-kernels pi-bench-ffn-sparse >$out/build.log 2>&1 || { grep -E "error" $out/build.log | head -30; exit 1; }
echo "pi build $(( $(date +%s) - t0 )) s"
bin=build-dev/bin
$bin/pi-bench-cuda-kernels 30 2>&1 | tee $out/kernels.md
m=/tmp/stories260K.gguf
$bin/pictl model import-llama2c --checkpoint $shared/models/stories260K.bin --tokenizer $shared/models/tok512.bin -o $m >/dev/null
printf '%s\n' "$(cat $shared/models/stories260K.expected.txt)" >/tmp/expected.txt
for cfg in "0 0" "2 0" "2 1"; do set -- $cfg
  PI_LAYER_STEPS=$2 timeout 60 $bin/pid run -m $m -n 200 --temp 0 --gpu-backend cuda --cpu-workers $1 $([ $1 -gt 0 ] && echo --vram-budget "$(pi_cuda_budget 0.0015)") >/tmp/g.txt 2>/tmp/g.err
  printf '%s\n' "$(cat /tmp/g.txt)" >/tmp/g.norm
  cmp -s /tmp/expected.txt /tmp/g.norm && r=SAME || r=DIFFERENT
  echo "stories cuda cpu=$1 layer_steps=$2: $r; $(tail -1 /tmp/g.err)"
done
# The default model (untied: its token_embd read from mapped host memory) on cuda against the reference.
$bin/pid run --reference -n 200 --temp 0 -p "" >/tmp/d-ref.txt 2>/dev/null
timeout 60 $bin/pid run -n 200 --temp 0 -p "" --gpu-backend cuda --cpu-workers 2 >/tmp/d-cuda.txt 2>/tmp/d-cuda.err
cmp -s /tmp/d-ref.txt /tmp/d-cuda.txt && r=SAME || r="DIFFERENT ($(cmp /tmp/d-ref.txt /tmp/d-cuda.txt | head -1))"
echo "default model cuda cpu=2 vs --reference: $r; $(tail -1 /tmp/d-cuda.err)"
wait; tail -1 $out/pwi-build.log; tail -1 $out/mk.log; echo "ready $(( $(date +%s) - t0 )) s"
P="Once upon a time, in a small village at the edge of a great forest, there lived a young girl who"
rm -f $M.generated.gpuidx
( cd /tmp && PYTHONPATH=$A/pyshim GGUF_PY=$gp timeout 100 /tmp/powerinfer/build/bin/main -m $M -n 128 -t 16 -s 1 -p "$P" --ignore-eos --vram-budget 12.6 > $out/pwi-12.6.txt 2>&1 ); echo "powerinfer rc=$?"
grep -E "eval time" $out/pwi-12.6.txt
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader -lms 100 > $out/smi.txt 2>&1 & smi=$!
timeout 100 $bin/pid run -m $M -n 128 --temp 0 -p "$P" --gpu-backend cuda --vram-budget 12.6 --ffn predicted --cpu-workers 1 >$out/pi-12.6.txt 2>$out/pi-12.6.err
echo "== pi predicted 12.6 rc=$?"; grep -E "generated|placement" $out/pi-12.6.err
kill $smi; echo "peak VRAM MiB during pi 12.6: $(awk -F', ' '{gsub(/ MiB/,"",$2); if ($2+0>m) m=$2+0} END {print m}' $out/smi.txt)"
timeout 100 $bin/pid run -m $M -n 128 --temp 0 -p "$P" --gpu-backend cuda --vram-budget 12.6 --ffn predicted --cpu-workers 1 --timings >$out/pi-12.6-t.txt 2>$out/pi-12.6-t.err
echo "== pi predicted 12.6 --timings rc=$?"; grep -E "generated|   " $out/pi-12.6-t.err | tail -22
timeout 100 $bin/pid run -m $M -n 128 --temp 0 -p "$P" --gpu-backend cuda --vram-budget 40 --ffn predicted --cpu-workers 1 >$out/pi-40.txt 2>$out/pi-40.err
echo "== pi predicted all in VRAM rc=$?"; grep -E "generated" $out/pi-40.err
$bin/pi-bench-ffn-sparse --dim 5120 --n-ff 55296 --active 0.01 --threads 15 --seconds 0.3 --types f16,q4_0 --variants avx512 2>&1 | tee $out/ffn_sparse.md
PI_SHARED=$shared PI_TMP=/tmp timeout ${PI_QUICK_CUDA_TEST_S:-240} $bin/test_cuda_backend > $out/cuda_backend.txt 2>&1; echo "test_cuda_backend rc=$?"
grep -cE "run_step" $out/cuda_backend.txt; tail -3 $out/cuda_backend.txt

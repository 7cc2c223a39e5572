#!/usr/bin/env bash
# On the lent GPU machine (no network, no ZeroMQ/protobuf-c installed): unpack
# the offline .debs carried in .deps/, build Release with CUDA, run the test
# suite, compare the CUDA backend with the host backend and the expected text,
# and run the sync benchmark. Logs go to $OUT (or ./device-out).
# Carry: .deps (offline-debs/ and shared/{models,vocab} copied from ../shared).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}; mkdir -p "$out"
P=/tmp/deps; mkdir -p $P
for f in .deps/offline-debs/*.deb; do dpkg -x "$f" $P; done
lib=$P/usr/lib/x86_64-linux-gnu
[ -e $lib/libnuma.so ] || ln -sf /usr/lib/x86_64-linux-gnu/libnuma.so.1 $lib/libnuma.so
export PATH=$P/usr/bin:/usr/local/cuda/bin:$PATH LD_LIBRARY_PATH=$lib:${LD_LIBRARY_PATH:-}
# libzmq.pc names private dependencies that are not installed there; stubs
# satisfy pkg-config (we link dynamically, so they are never used).
stubs=$P/stub-pc; mkdir -p $stubs
for n in krb5-gssapi libsodium openpgm-5.3 norm libbsd; do
  printf 'Name: %s\nDescription: stub\nVersion: 99\n' $n >$stubs/$n.pc
done
export PKG_CONFIG_PATH=$lib/pkgconfig:$stubs PKG_CONFIG_SYSROOT_DIR=$P
shared=$(pwd)/.deps/shared
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

echo "== build"
cmake -S . -B build-dev -DCMAKE_BUILD_TYPE=Release -DPI_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH=$P/usr -DPI_SHARED_DIR="$shared" >"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
cmake --build build-dev -j16 >"$out/build.log" 2>&1 || { grep -E "error|Error" "$out/build.log" | head -30; exit 1; }
bin=build-dev/bin

if [ -z "${PI_SKIP_TESTS:-}" ]; then
echo "== ctest"
(cd build-dev && ctest -j8 --output-on-failure --timeout 600) >"$out/ctest.log" 2>&1
tail -25 "$out/ctest.log"
echo "== cuda backend vs reference forward"
PI_SHARED=$shared PI_TMP=/tmp $bin/test_cuda_backend 2>&1 | tee "$out/cuda_backend.txt"

echo "== greedy stories260K: cuda vs host vs expected"
m=/tmp/stories260K.gguf
$bin/pictl model import-llama2c --checkpoint $shared/models/stories260K.bin --tokenizer $shared/models/tok512.bin -o $m >/dev/null
printf '%s\n' "$(cat $shared/models/stories260K.expected.txt)" >/tmp/expected.txt
for cfg in "cuda 0" "cuda 2" "host 2"; do
  set -- $cfg
  $bin/pid run -m $m -n 200 --temp 0 --gpu-backend $1 --cpu-workers $2 $([ $2 -gt 0 ] && echo --vram-budget $([ $1 = cuda ] && echo 0.0015 || echo 0.00073)) \
    >/tmp/g-$1-$2.txt 2>/tmp/g-$1-$2.err
  printf '%s\n' "$(cat /tmp/g-$1-$2.txt)" >/tmp/g-$1-$2.norm
  if cmp -s /tmp/expected.txt /tmp/g-$1-$2.norm; then r=SAME; else r=DIFFERENT; fi
  echo "backend $1, $2 cpu workers: $r as expected.txt; $(tail -1 /tmp/g-$1-$2.err)" | tee -a "$out/greedy.txt"
done

echo "== synthetic sparse model: host vs cuda in every --ffn mode"
t=/tmp/synth-tiny-q4.gguf
$bin/pictl model synth --shape tiny --type q4_0 --seed 3 -o $t >/dev/null 2>&1
for f in dense exact predicted; do
  for b in host cuda; do
    $bin/pid run -m $t -n 64 --temp 0 -p "hello world" --gpu-backend $b --cpu-workers 2 --vram-budget 0.00075 \
      --ffn $f >/tmp/syn-$b-$f.out 2>/tmp/syn-$b-$f.err || { echo "pid run $b $f failed:"; tail -3 /tmp/syn-$b-$f.err; }
  done
  cmp -s /tmp/syn-host-$f.out /tmp/syn-cuda-$f.out && r=SAME || r=DIFFERENT
  echo "synth tiny q4_0 --ffn $f: cuda $r as host; $(tail -1 /tmp/syn-cuda-$f.err)" | tee -a "$out/greedy.txt"
done

echo "== daemon with the CUDA backend"
ep=ipc:///tmp/pi-dev.sock
$bin/pid start -m $m --gpu-backend cuda --cpu-workers 2 --vram-budget 0.0062 --listen $ep >"$out/pid-start.txt" 2>&1
$bin/pictl workers --endpoint $ep 2>&1 | tee "$out/workers.txt"
$bin/pictl generate --endpoint $ep --temp 0 -n 200 "" >/tmp/d.txt 2>/tmp/d.err
printf '%s\n' "$(cat /tmp/d.txt)" >/tmp/d.norm
cmp -s /tmp/expected.txt /tmp/d.norm && echo "daemon cuda: SAME as expected.txt; $(cat /tmp/d.err)" | tee -a "$out/greedy.txt" \
  || echo "daemon cuda: DIFFERENT" | tee -a "$out/greedy.txt"
$bin/pid stop --listen $ep >/dev/null 2>&1

fi
echo "== sync benchmark"
[ -z "${PI_SKIP_TESTS:-}" ] && for w in 1 2 4; do
  $bin/pi-bench-sync --workers $w --layers 40 --steps 500 --dim 5120 --gpu 2>&1 | tee -a "$out/bench_sync.txt"
done

# Optional: the sparse-vs-dense benchmark on a synthetic model, e.g.
#   PI_BENCH_SPARSE="13b f16 12.6 32" scripts/device_check.sh   (shape type budget-GiB tokens)
if [ -n "${PI_BENCH_SPARSE:-}" ]; then
  set -- $PI_BENCH_SPARSE
  echo "== bench_sparse $*"
  OUT=$out scripts/bench_sparse.sh --bin $bin --shape $1 --type $2 --budget $3 --tokens $4 --backend cuda \
    2>&1 | tee "$out/bench_sparse.txt"
fi

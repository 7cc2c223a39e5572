#!/usr/bin/env bash
# On the lent GPU machine (no network, no ZeroMQ/protobuf-c installed): unpack
# the offline .debs carried in .deps/ (scripts/device_env.sh), build Release with
# CUDA, run the test suite, compare the CUDA backend with the host backend and the
# expected text, and run the sync benchmark. Logs go to $OUT (or ./device-out), packed at the end into
# one archive, device_check-logs.tgz (the device brings back at most 8 files from $OUT).
# Carry: .deps (offline-debs/ and shared/{models,vocab,corpus} copied from ../shared:
# `scripts/bench_compare.sh --stage prepare` writes it, the corpus cut to its first 2 MB).
# Exit status: 1 when anything failed (the build, ctest, test_cuda_backend, a pid
# run, a comparison that says DIFFERENT, a benchmark); every check still runs and
# the last line says "device_check: N failures".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-device-out}; mkdir -p "$out"
mapfile -t out_before < <(ls -A "$out")     # the caller's files there stay as they are
. scripts/device_env.sh
pi_device_env .deps/offline-debs || { echo "device_check: unpacking .deps/offline-debs failed"; exit 1; }
# CUDA budgets are the plan's context reserve (CUDA_NEEDS_CONTEXT_BYTES, gpu_worker/cuda_needs.h, read from there)
# plus what the small models' split needs: part of the FFN hot, the rest on the CPU workers. (When the reserve went
# from 704 to 544 MiB, session 16's check ran with budgets written for 704: all of the FFN fit, and its "2 CPU
# workers" runs had nothing cold.)
# shellcheck source=scripts/bench_lib.sh
. scripts/bench_lib.sh
pi_cuda_budget 0 >/dev/null || exit 1
# A run with CPU workers must have left part of the FFN to them: its plan line "placement: hot A/B neurons" with A < B.
split_ok() { # stderr-of-pid-run what
  local hb; hb=$(grep -m1 -o "placement: hot [0-9]*/[0-9]*" "$1" | grep -o "[0-9]*/[0-9]*")
  if [ -z "$hb" ] || [ "${hb%/*}" -ge "${hb#*/}" ]; then fail "$2: no FFN neurons left to the CPU workers (placement: hot ${hb:-?})"
  else echo "  ($2: hot $hb neurons, the rest on the CPU workers)"; fi
}
shared=$(pwd)/.deps/shared
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

failures=0 failed=()
fail() { # what
  failures=$((failures + 1)); failed+=("$1")
  echo "FAILED: $1"
}
# Every log this run wrote into one archive, the loose ones removed: the device brings back at most 8
# files from $OUT and left the groups' logs behind (session 15).
pack_logs() {
  local f mine=()
  for f in "$out"/*; do
    [ -f "$f" ] || continue
    [[ " ${out_before[*]} " == *" ${f##*/} "* || ${f##*/} == device_check-logs.tgz ]] || mine+=("${f##*/}")
  done
  [ ${#mine[@]} -gt 0 ] || return 0
  tar czf "$out/device_check-logs.tgz" -C "$out" "${mine[@]}" && (cd "$out" && rm -f "${mine[@]}") \
    && echo "device_check: ${#mine[@]} logs in $out/device_check-logs.tgz"
}

summary() {
  pack_logs
  echo "== summary"
  local f
  for f in "${failed[@]}"; do echo "  failed: $f"; done
  echo "device_check: $failures failures"
  [ "$failures" -eq 0 ]
}

echo "== build"
cmake -S . -B build-dev -DCMAKE_BUILD_TYPE=Release -DPI_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  "${PI_DEPS_CMAKE[@]}" -DPI_SHARED_DIR="$shared" >"$out/cmake.log" 2>&1 \
  || { tail -30 "$out/cmake.log"; fail "cmake configure"; summary; exit 1; }
cmake --build build-dev -j16 >"$out/build.log" 2>&1 \
  || { grep -E "error|Error" "$out/build.log" | head -30; fail "build"; summary; exit 1; }
bin=build-dev/bin

if [ -z "${PI_SKIP_TESTS:-}" ]; then
# test_cuda_backend's groups (PI_CUDA_TEST_ONLY, default all) run as processes of their own beside ctest, which
# leaves that test out: run one after another inside ctest and again here they did not fit a 10-minute call
# (the 13B-width groups take minutes each, their reference forward on one core a sequence).
groups=${PI_CUDA_TEST_ONLY:-stories,synth,q8pred,random,kquant,rope,real,switches,fused,residual,residual_nofold,solo}
echo "== test_cuda_backend's groups ($groups) beside ctest"
t_tests=$(date +%s)
group_pids=()
for g in ${groups//,/ }; do
  # a folder each: the groups write model files of the same names (the 13B-width one in four of them)
  mkdir -p "/tmp/cuda_backend-$g"
  PI_CUDA_TEST_ONLY=$g PI_SHARED=$shared PI_TMP="/tmp/cuda_backend-$g" $bin/test_cuda_backend >"$out/cuda_backend-$g.txt" 2>&1 &
  group_pids+=("$g:$!")
done
echo "== ctest"
(cd build-dev && ctest -j6 -E '^unit[.]test_cuda_backend$' --output-on-failure --timeout 600) >"$out/ctest.log" 2>&1 \
  || fail "ctest (see ctest.log)"
tail -25 "$out/ctest.log"
echo "ctest: $(( $(date +%s) - t_tests )) s"
echo "== cuda backend vs reference forward, by group"
for gp in "${group_pids[@]}"; do
  g=${gp%%:*}
  if wait "${gp#*:}"; then r=passed; else r=FAILED; fail "test_cuda_backend group $g (see cuda_backend-$g.txt)"; fi
  echo "group $g: $r, $(grep -c "worst relative error\|kept arena\|solo steps match" "$out/cuda_backend-$g.txt") cases, $(( $(date +%s) - t_tests )) s since the start"
  grep -E "FAIL|CHECK|== group" "$out/cuda_backend-$g.txt" | head -5
done
cat "$out"/cuda_backend-*.txt >"$out/cuda_backend.txt"

echo "== greedy stories260K: cuda vs host vs expected"
m=/tmp/stories260K.gguf
$bin/pictl model import-llama2c --checkpoint "$shared/models/stories260K.bin" --tokenizer "$shared/models/tok512.bin" \
  -o $m >/dev/null || fail "pictl model import-llama2c"
printf '%s\n' "$(cat "$shared/models/stories260K.expected.txt")" >/tmp/expected.txt
for cfg in "cuda 0" "cuda 2" "host 2"; do
  # shellcheck disable=SC2086  # "backend workers"
  set -- $cfg
  budget=(); [ "$2" -gt 0 ] && budget=(--vram-budget "$([ "$1" = cuda ] && pi_cuda_budget 0.0015 || echo 0.00073)")
  if $bin/pid run -m $m -n 200 --temp 0 --gpu-backend "$1" --cpu-workers "$2" "${budget[@]}" \
      >"/tmp/g-$1-$2.txt" 2>"/tmp/g-$1-$2.err"; then
    printf '%s\n' "$(cat "/tmp/g-$1-$2.txt")" >"/tmp/g-$1-$2.norm"
    if cmp -s /tmp/expected.txt "/tmp/g-$1-$2.norm"; then r=SAME; else r=DIFFERENT; fi
    echo "backend $1, $2 cpu workers: $r as expected.txt; $(tail -1 "/tmp/g-$1-$2.err")" | tee -a "$out/greedy.txt"
    [ "$r" = SAME ] || fail "stories260K backend $1, $2 cpu workers: DIFFERENT from expected.txt"
    [ "$2" -eq 0 ] || split_ok "/tmp/g-$1-$2.err" "stories260K backend $1, $2 cpu workers"
  else
    echo "backend $1, $2 cpu workers: pid run failed:"; tail -3 "/tmp/g-$1-$2.err"
    fail "pid run stories260K backend $1, $2 cpu workers"
  fi
done

echo "== synthetic sparse model: host vs cuda in every --ffn mode"
t=/tmp/synth-tiny-q4.gguf
$bin/pictl model synth --shape tiny --type q4_0 --seed 3 -o $t >/dev/null 2>&1 || fail "pictl model synth tiny"
for f in dense exact predicted; do
  ok=1
  for b in host cuda; do
    $bin/pid run -m $t -n 64 --temp 0 -p "hello world" --gpu-backend $b --cpu-workers 2 --vram-budget "$([ "$b" = cuda ] && pi_cuda_budget 0.00075 || echo 0.00075)" \
      --ffn $f >"/tmp/syn-$b-$f.out" 2>"/tmp/syn-$b-$f.err" \
      || { echo "pid run $b $f failed:"; tail -3 "/tmp/syn-$b-$f.err"; fail "pid run synth tiny $b --ffn $f"; ok=0; }
  done
  [ $ok = 1 ] || continue
  cmp -s "/tmp/syn-host-$f.out" "/tmp/syn-cuda-$f.out" && r=SAME || r=DIFFERENT
  echo "synth tiny q4_0 --ffn $f: cuda $r as host; $(tail -1 "/tmp/syn-cuda-$f.err")" | tee -a "$out/greedy.txt"
  [ "$r" = SAME ] || fail "synth tiny q4_0 --ffn $f: cuda DIFFERENT from host"
done

echo "== device out of memory: another process holds the GPU's memory"
# A PyTorch process (the device's /opt/torch) takes all but HOG_LEFT MiB, less than a CUDA context needs; pid run
# on CUDA must then end with one clear error (exit 1, "out of device memory", what to do), not a crash or a hang.
py=/opt/torch/.venv/bin/python; [ -x $py ] || py=python3
hog_left=${HOG_LEFT:-256}
if $py -c "import torch" 2>/dev/null; then
  $py -c "import torch, time
f, t = torch.cuda.mem_get_info()
x = torch.empty(f - $hog_left * 2**20, dtype=torch.uint8, device='cuda')
print('held', x.numel() >> 20, 'MiB', flush=True)
time.sleep(300)" >"$out/hog.txt" 2>&1 &
  hog=$!
  for _ in $(seq 120); do grep -q held "$out/hog.txt" && break; sleep 0.5; done
  if grep -q held "$out/hog.txt"; then
    timeout 120 $bin/pid run -m $m -n 8 --temp 0 --gpu-backend cuda --cpu-workers 0 >/tmp/oom.out 2>/tmp/oom.err
    rc=$?
    echo "pid run with $hog_left MiB of the GPU free: exit $rc: $(tail -2 /tmp/oom.err | tr '\n' ' ')" | tee "$out/oom.txt"
    if [ $rc -eq 0 ] || [ $rc -ge 124 ]; then fail "device out of memory: pid run exit $rc, want a clear error"
    elif ! grep -q "out of device memory\|device memory" /tmp/oom.err; then fail "device out of memory: the error does not say so"
    fi
  else
    fail "device out of memory: the PyTorch process did not take the memory: $(tail -2 "$out/hog.txt")"
  fi
  kill $hog 2>/dev/null; wait $hog 2>/dev/null
else
  echo "SKIP: device out of memory: no PyTorch here to hold the GPU's memory"
fi

echo "== daemon with the CUDA backend"
ep=ipc:///tmp/pi-dev.sock
if $bin/pid start -m $m --gpu-backend cuda --cpu-workers 2 --vram-budget "$(pi_cuda_budget 0.0062)" --listen $ep >"$out/pid-start.txt" 2>&1; then
  $bin/pictl workers --endpoint $ep 2>&1 | tee "$out/workers.txt"
  if $bin/pictl generate --endpoint $ep --temp 0 -n 200 "" >/tmp/d.txt 2>/tmp/d.err; then
    printf '%s\n' "$(cat /tmp/d.txt)" >/tmp/d.norm
    if cmp -s /tmp/expected.txt /tmp/d.norm; then
      echo "daemon cuda: SAME as expected.txt; $(cat /tmp/d.err)" | tee -a "$out/greedy.txt"
    else
      echo "daemon cuda: DIFFERENT" | tee -a "$out/greedy.txt"; fail "daemon cuda: DIFFERENT from expected.txt"
    fi
  else
    echo "pictl generate failed:"; tail -3 /tmp/d.err; fail "pictl generate through the daemon"
  fi
  $bin/pid stop --listen $ep >/dev/null 2>&1
else
  tail -5 "$out/pid-start.txt"; fail "pid start (cuda)"
fi

fi
echo "== the default model on cuda (untied embeddings in host memory; warm neurons) vs pid run --reference"
$bin/pid run --reference -n 200 --temp 0 -p "" >/tmp/d-ref.txt 2>/dev/null || fail "pid run --reference (default model)"
# reserve + 22 MiB: weights 7.3, scratch ~3.3, predictors ~1.7, KV ~1.9 MiB, and about half of the 15.2 MiB FFN
# (at + 64 MiB all of it fit and the CPU workers had nothing: session 17). No solo steps: their scratch (~22 MiB
# at 512 entries, most of it cuBLAS's workspace and the streamed chunks) would take the FFN's half.
for ws in 0 0.5; do
  if timeout 120 $bin/pid run -n 200 --temp 0 -p "" --gpu-backend cuda --cpu-workers 2 --vram-budget "$(pi_cuda_budget 0.0215)" \
      --warm-share $ws --solo-batch 0 >/tmp/d-cuda.txt 2>/tmp/d-cuda.err && cmp -s /tmp/d-ref.txt /tmp/d-cuda.txt; then
    echo "default model cuda, warm share $ws: SAME as --reference"
    split_ok /tmp/d-cuda.err "default model cuda, warm share $ws"
  else
    echo "default model cuda, warm share $ws: DIFFERENT or failed: $(tail -1 /tmp/d-cuda.err)"
    fail "default model cuda --warm-share $ws"
  fi
done
# Solo steps on the device (issue 12): a prompt of ~160 tokens in solo steps of 128 (every FFN neuron on the GPU,
# the half of the FFN outside VRAM streamed from pinned host memory; the CPU workers skip them), then 32 tokens
# decoded as usual: the same text as pid run --reference (the default model's margins leave its greedy text alone
# under the products' fp16 inputs; a wrong row or layer changes it within a few tokens).
solo_p=$(printf 'the old house on the hill %.0s' $(seq 25))
$bin/pid run --reference -n 32 --temp 0 -p "$solo_p" >/tmp/d-sref.txt 2>/dev/null || fail "pid run --reference (solo prompt)"
if timeout 120 $bin/pid run -n 32 --temp 0 -p "$solo_p" --gpu-backend cuda --cpu-workers 2 \
    --vram-budget "$(pi_cuda_budget 0.045)" --solo-batch 128 --solo-min 16 >/tmp/d-solo.txt 2>/tmp/d-solo.err &&
    cmp -s /tmp/d-sref.txt /tmp/d-solo.txt && grep -q "^pid run: [1-9][0-9]* solo steps" /tmp/d-solo.err; then
  echo "default model cuda, a prompt in solo steps: SAME as --reference; $(grep "^pid run: [0-9]* solo steps" /tmp/d-solo.err)"
  split_ok /tmp/d-solo.err "default model cuda, solo steps"
else
  echo "default model cuda, solo steps: DIFFERENT or failed: $(grep "solo steps" /tmp/d-solo.err | head -2) $(tail -1 /tmp/d-solo.err)"
  fail "default model cuda --solo-batch 128"
fi

echo "== CUDA kernels: attention checked against float64 at positions 0..4095, then timed"
$bin/pi-bench-cuda-kernels 10 >"$out/kernels.md" 2>&1 || fail "pi-bench-cuda-kernels (see kernels.md)"
grep -E "FAIL|attention check" "$out/kernels.md"

echo "== sync benchmark"
if [ -z "${PI_SKIP_TESTS:-}" ]; then
  for w in 1 2 4; do
    $bin/pi-bench-sync --workers $w --layers 40 --steps 500 --dim 5120 --gpu 2>&1 | tee -a "$out/bench_sync.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail "pi-bench-sync --workers $w"
  done
fi

# Optional: the sparse-vs-dense benchmark on a synthetic model, e.g.
#   PI_BENCH_SPARSE="13b f16 12.6 32" scripts/device_check.sh   (shape type budget-GiB tokens)
if [ -n "${PI_BENCH_SPARSE:-}" ]; then
  # shellcheck disable=SC2086  # "shape type budget tokens"
  set -- $PI_BENCH_SPARSE
  echo "== bench_sparse $*"
  OUT=$out scripts/bench_sparse.sh --bin $bin --shape "$1" --type "$2" --budget "$3" --tokens "$4" --backend cuda \
    2>&1 | tee "$out/bench_sparse.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || fail "bench_sparse"
  grep -q "DIFFERENT" "$out/bench_sparse.txt" && fail "bench_sparse: exact and dense DIFFERENT"
fi
summary

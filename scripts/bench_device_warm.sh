#!/usr/bin/env bash
# On the lent GPU machine, in one call (carry .deps: scripts/bench_compare.sh --stage prepare): builds pi
# and PowerInfer, writes the anchors' 13B PWRI model to /dev/shm, then
#  - pi-bench-cuda-kernels (its attention check against float64 at positions 0..4095 first; PI_NO_KERNELS=1
#    skips it), then test_cuda_pred_rows (the predictor's fc2 kernels against each other and float64);
#  - the greedy checks: stories260K with cuda (0 and 2 CPU workers) against expected.txt, the default model
#    with cuda (warm shares 0 and 0.5) against pid run --reference;
#  - pid run --ffn predicted at 12.6 GiB with --timings for each warm share in PI_WARM_SHARES (default
#    "0.3 0.4"), PowerInfer at 12.6 GiB before and after them (not with PI_NO_POWERINFER=1), pi with
#    everything in VRAM (--timings);
#  - with PI_EXTRA_BUDGETS="GiB ...", pid run untimed at each of those budgets too (warm 0.4, each PI_AB variant);
#    PI_NO_ALL_VRAM=1 leaves out the all-in-VRAM run;
#  - with PI_DENSE=1, also the plain llama file (written beside) and pi --ffn dense with everything in VRAM;
#  - with PI_AB="VAR=value ...[;VAR=value ...]" (e.g. PI_CUDA_PDL=0; words that are not VAR=value, such as
#    "--predictor-type q8_0", go to pid run as flags), the kernel bench (first variant) and
#    every pi run once more with each variant's environment, its text compared with the first run's (greedy at
#    128 tokens: the same, or DIFFERENT);
#    (PI_KERNELS_AB=0: not the kernel bench);
#  - PI_RUN_ARGS="words": VAR=value words and flags for every pi run (e.g. "--predictor-type q8_0"), before a variant's;
#  - with PI_UNTIMED=1, every pi configuration once more without --timings (the step graph then has no
#    stamp kernels: the tok/s a user gets);
#  - with PI_LLAMA=1 (and PI_DENSE=1), llama.cpp built beside (build_llamacpp.sh) and run with llama-cli on the
#    plain file at -ngl 20 (12.6 GiB, as bench_compare.sh's auto choice) and -ngl 99, the same prompt (its
#    build, ~2.5 min on every core, is waited for before anything is measured: runs beside it measured a busy
#    host, 2026-12-02);
#  - with PI_NCU=1, Nsight Compute's speed-of-light, memory and warp-state sections of the main kernels
#    (pi-bench-cuda-kernels 1) into $OUT/ncu.txt;
#  - with PI_NCU_RUN=1, Nsight Compute on `pid run` itself (its GPU worker's step graphs, 5 tokens, no
#    --timings) all in VRAM and at 12.6 GiB (PI_NCU_CONFIGS="all-vram 40;budget 12.6" picks: name budget;...),
#    each kernel's duration in the last decode step, summed per kernel
#    (scripts/ncu_step_kernels.py), into $OUT/ncu-run.txt;
#  - test_cuda_backend in the time left of PI_WARM_BUDGET_S (default 330 s after the build).
# Every line it prints also goes to $OUT/bench_device_warm.txt; the logs to $OUT/logs.tgz.
# Exit status 1 when a check says DIFFERENT or FAIL. Figures: docs/benchmarks.md, "Warm neurons".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-/tmp/out}; mkdir -p "$out"
exec > >(tee "$out/bench_device_warm.txt") 2>&1
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh; pi_device_env .deps/offline-debs
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh
shared=$(pwd)/.deps/shared A=$shared/anchors fails=0
t0=$(date +%s)
# Background jobs are waited for by pid: a bare `wait` also waits for the tee above (bash >= 5.1) and hangs.
( bash "$A/build_powerinfer.sh" /tmp/powerinfer >"$out/pwi-build.log" 2>&1; echo "powerinfer build rc=$?" >>"$out/pwi-build.log" ) &
jobs_bg=($!)
export PATH=/opt/torch/.venv/bin:$PATH
mkdir -p /tmp/pwi && tar -xJf "$A/powerinfer-d3ebd7c.tar.xz" -C /tmp/pwi
gp=$(find /tmp/pwi -maxdepth 3 -type d -name gguf-py | head -1)
M=/dev/shm/m13/pwri.gguf; mkdir -p /dev/shm/m13
( python3 "$A/mk_powerinfer_gguf.py" "$gp" $M 13b "$shared/vocab/ggml-vocab-llama-spm.gguf" >"$out/mk.log" 2>&1 &&
  python3 "$A/freq_to_sidecar.py" $M /dev/shm/m13/activation/freq.npy scripts >>"$out/mk.log" 2>&1; echo "model rc=$?" >>"$out/mk.log" ) &
jobs_bg+=($!)
if [ -n "${PI_LLAMA:-}" ]; then
  ( bash "$A/build_llamacpp.sh" /tmp/llamacpp >"$out/llama-build.log" 2>&1; echo "llama.cpp build rc=$?" >>"$out/llama-build.log" ) &
  jobs_llama=$!
fi
P0=/dev/shm/m13/plain.gguf
if [ -n "${PI_DENSE:-}" ]; then
  ( mkdir -p /tmp/lgp && tar xJf "$A/llama.cpp-c392e509.tar.xz" -C /tmp/lgp gguf-py &&
    python3 "$A/mk_llama_gguf.py" /tmp/lgp/gguf-py $P0 13b "$shared/vocab/ggml-vocab-llama-spm.gguf" >"$out/mk-plain.log" 2>&1
    echo "plain model rc=$?" >>"$out/mk-plain.log" ) &
  jobs_bg+=($!)
fi
cmake -S . -B build-dev -DCMAKE_BUILD_TYPE=Release -DPI_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 "${PI_DEPS_CMAKE[@]}" \
  -DPI_SHARED_DIR="$shared" >"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
cmake --build build-dev -j14 --target pid pi-gpu-worker pi-cpu-worker pictl test_cuda_backend test_cuda_pred_rows pi-bench-cuda-kernels \
  >"$out/build.log" 2>&1 || { grep -E "error" "$out/build.log" | head -30; exit 1; }
bin=build-dev/bin
echo "pi build $(($(date +%s) - t0)) s"
if [ -n "${PI_LLAMA:-}" ]; then   # nothing is measured while llama.cpp compiles on every core
  wait "$jobs_llama"; echo "$(tail -1 "$out/llama-build.log") after $(($(date +%s) - t0)) s"
fi
T0=$(date +%s)
if [ -z "${PI_NO_KERNELS:-}" ]; then
  $bin/pi-bench-cuda-kernels 30 >"$out/kernels.md" 2>&1 || { echo "FAIL: pi-bench-cuda-kernels"; fails=$((fails + 1)); }
  grep -E "FAIL|position|union" "$out/kernels.md"
fi
$bin/test_cuda_pred_rows >"$out/cuda_pred_rows.txt" 2>&1 || { echo "FAIL: test_cuda_pred_rows"; fails=$((fails + 1)); }
tail -1 "$out/cuda_pred_rows.txt"
IFS=';' read -r -a variants <<<"${PI_AB:-}"
if [ ${#variants[@]} -gt 0 ] && [ "${PI_KERNELS_AB:-1}" != 0 ]; then
  # shellcheck disable=SC2086  # a variant is a list of VAR=value words
  env ${variants[0]} $bin/pi-bench-cuda-kernels 30 >"$out/kernels-ab.md" 2>&1 ||
    { echo "FAIL: pi-bench-cuda-kernels (${variants[0]})"; fails=$((fails + 1)); }
fi
if [ -n "${PI_NCU:-}" ]; then
  command -v ncu >/dev/null || PATH=$PATH:/usr/local/cuda/bin
  ncu --clock-control none -k 'regex:k_matvec|k_attn|k_rmsnorm|k_gate_up_union|k_down_union|k_pred_rows|k_rope' -c 40 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats \
    $bin/pi-bench-cuda-kernels 1 >"$out/ncu.txt" 2>&1 || echo "ncu rc=$? (see ncu.txt)"
fi
m=/tmp/stories260K.gguf
$bin/pictl model import-llama2c --checkpoint "$shared/models/stories260K.bin" --tokenizer "$shared/models/tok512.bin" -o $m >/dev/null
printf '%s\n' "$(cat "$shared/models/stories260K.expected.txt")" >/tmp/expected.txt
same() { # name file reference
  if cmp -s "$2" "$3"; then echo "$1: SAME"; else echo "$1: DIFFERENT"; fails=$((fails + 1)); fi
}
for w in 0 2; do
  budget=(); [ $w -gt 0 ] && budget=(--vram-budget "$(pi_cuda_budget 0.0015)")
  timeout 60 $bin/pid run -m $m -n 200 --temp 0 --gpu-backend cuda --cpu-workers $w "${budget[@]}" >/tmp/g.txt 2>/tmp/g.err
  printf '%s\n' "$(cat /tmp/g.txt)" >/tmp/g.norm
  same "stories260K cuda, $w CPU workers, vs expected.txt" /tmp/g.norm /tmp/expected.txt
done
$bin/pid run --reference -n 200 --temp 0 -p "" >/tmp/d-ref.txt 2>/dev/null
for ws in 0 0.5; do
  timeout 60 $bin/pid run -n 200 --temp 0 -p "" --gpu-backend cuda --cpu-workers 2 --vram-budget 0.75 --warm-share $ws \
    >/tmp/d-cuda.txt 2>/tmp/d-cuda.err
  same "default model cuda, warm share $ws, vs --reference" /tmp/d-cuda.txt /tmp/d-ref.txt
done
wait "${jobs_bg[@]}"; tail -1 "$out/mk.log"; tail -1 "$out/pwi-build.log"
P="Once upon a time, in a small village at the edge of a great forest, there lived a young girl who"
pirun1() { # name env-words model ffn args... (--timings unless name ends in -untimed)
  local n=$1 e=$2 mf=$3 f=$4 t=--timings ev=() av=() w; shift 4
  [[ $n == *-untimed ]] && t=
  for w in ${PI_RUN_ARGS:-} $e; do   # VAR=value words go to the environment, the rest (--flag value) to pid run
    if [[ $w =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; then ev+=("$w"); else av+=("$w"); fi
  done
  # shellcheck disable=SC2086  # t is empty or one word
  timeout 100 env "${ev[@]}" $bin/pid run -m "$mf" -n 128 --temp 0 -p "$P" --gpu-backend cuda --ffn "$f" $t "${av[@]}" "$@" \
    >"$out/$n.txt" 2>"$out/$n.err"
  echo "== pi $n rc=$? (${e:+$e }--ffn $f $t $*): $(grep -oE '[0-9.]+ tok/s' "$out/$n.err" | tail -1)"
  sed '/timings per prefill step/,$d' "$out/$n.err" |     # the decode table's rows
    grep -E "pid run:   (gpu (attn|predict|publish|hot|wait|finish|worker)|pid|sampling|cpu)"
}
pirun() { # name [--dense] args...: predicted on the PWRI file (--dense: dense on the plain file), with PI_AB's variants
  local n=$1 mf=$M f=predicted v; shift
  [ "${1:-}" = --dense ] && { mf=$P0 f=dense; shift; }
  pirun1 "$n" "" "$mf" "$f" "$@"
  if [ -n "${PI_UNTIMED:-}" ]; then
    pirun1 "$n-untimed" "" "$mf" "$f" "$@"
    same "$n: text untimed vs timed" "$out/$n-untimed.txt" "$out/$n.txt"
  fi
  for v in "${!variants[@]}"; do
    pirun1 "$n-ab$v" "${variants[$v]}" "$mf" "$f" "$@"
    same "$n: text with ${variants[$v]} vs without" "$out/$n-ab$v.txt" "$out/$n.txt"
  done
}
pwirun() { # name: PowerInfer at 12.6 GiB, its decode tok/s (the eval line, not the prompt's)
  ( cd /tmp && PYTHONPATH=$A/pyshim GGUF_PY=$gp timeout 100 /tmp/powerinfer/build/bin/main -m $M -n 128 -t 16 -s 1 \
      -p "$P" --ignore-eos --vram-budget 12.6 >"$out/$1.txt" 2>&1 )
  echo "== PowerInfer 12.6 GiB ($1) rc=$?: $(grep -E ' eval time' "$out/$1.txt" | grep -v prompt | grep -oE '[0-9.]+ tokens per second')"
}
# PowerInfer before and after pi's 12.6 GiB runs: the host's memory bandwidth drifts within a call (2026-12-02:
# PowerInfer 20.6 to 29.3 tok/s from call to call), so the ratio is taken against both.
[ -n "${PI_NO_POWERINFER:-}" ] || pwirun powerinfer
for ws in ${PI_WARM_SHARES:-0.3 0.4}; do pirun "warm$ws" --vram-budget 12.6 --cpu-workers 1 --warm-share "$ws"; done
[ -n "${PI_NO_POWERINFER:-}" ] || pwirun powerinfer-after
# Other budgets (PI_EXTRA_BUDGETS="13.28 12.77", warm 0.4, untimed, with PI_AB's variants): what more VRAM would
# give at 12.6 GiB's shape (e.g. a smaller predictor or CUDA context reserve) before it is written.
for eb in ${PI_EXTRA_BUDGETS:-}; do
  pirun1 "budget$eb-untimed" "" "$M" predicted --vram-budget "$eb" --cpu-workers 1 --warm-share 0.4
  [ -f "$out/warm0.4.txt" ] && same "budget $eb: text vs warm0.4's" "$out/budget$eb-untimed.txt" "$out/warm0.4.txt"
  for v in "${!variants[@]}"; do
    pirun1 "budget$eb-ab$v-untimed" "${variants[$v]}" "$M" predicted --vram-budget "$eb" --cpu-workers 1 --warm-share 0.4
  done
done
[ -n "${PI_NO_ALL_VRAM:-}" ] || pirun all-vram --vram-budget 40 --cpu-workers 1
if [ -n "${PI_NCU_RUN:-}" ]; then
  command -v ncu >/dev/null || PATH=$PATH:/usr/local/cuda/bin
  IFS=';' read -r -a ncu_cfgs <<<"${PI_NCU_CONFIGS:-all-vram 40;budget 12.6}"
  for cfg in "${ncu_cfgs[@]}"; do
    # shellcheck disable=SC2086  # "name budget"
    set -- $cfg
    timeout 120 ncu --target-processes all --clock-control none --metrics gpu__time_duration.sum --csv \
      --page raw --print-units base --print-kernel-base function $bin/pid run -m $M -n 5 --temp 0 -p "$P" --gpu-backend cuda \
      --ffn predicted --vram-budget "$2" --cpu-workers 1 >"$out/ncu-$1.csv" 2>"$out/ncu-$1.err"
    echo "ncu pid run ($1) rc=$?" | tee -a "$out/ncu-run.txt"
    python3 scripts/ncu_step_kernels.py "$out/ncu-$1.csv" 40 >>"$out/ncu-run.txt" 2>&1
  done
  grep -E "^(ncu|last step)|\| sum" "$out/ncu-run.txt"
fi
if [ -n "${PI_DENSE:-}" ]; then
  tail -1 "$out/mk-plain.log"
  pirun dense-all --dense --vram-budget 40 --cpu-workers 1
fi
if [ -n "${PI_LLAMA:-}" ] && [ -n "${PI_DENSE:-}" ]; then
  for ngl in 20 99; do
    ( cd /tmp && timeout 150 /tmp/llamacpp/build/bin/llama-cli -m $P0 -ngl $ngl -n 128 -c 256 -t 16 -s 1 -p "$P" \
        --ignore-eos -no-cnv </dev/null >"$out/llama-ngl$ngl.txt" 2>&1 )
    echo "== llama.cpp -ngl $ngl rc=$?: $(grep -E ' eval time' "$out/llama-ngl$ngl.txt" | grep -v prompt | grep -oE '[0-9.]+ tokens per second' | tail -1)"
  done
fi
(cd "$out" && tar czf logs.tgz ./*.err ./*.txt ./*.log && rm -f ./*.err warm*.txt all-vram*.txt dense-all*.txt)
left=$((${PI_WARM_BUDGET_S:-330} - ($(date +%s) - T0)))
if [ $left -ge 30 ]; then
  echo "test_cuda_backend with ${left} s"
  PI_SHARED=$shared PI_TMP=/tmp timeout $left $bin/test_cuda_backend >"$out/cuda_backend.txt" 2>&1
  rc=$?
  echo "test_cuda_backend rc=$rc ($(grep -c worst "$out/cuda_backend.txt") cases passed)"
  [ $rc = 0 ] || [ $rc = 124 ] || fails=$((fails + 1))
else
  echo "test_cuda_backend skipped: ${left} s left of PI_WARM_BUDGET_S"
fi
# At most 8 files come back from a device call: everything but the summary, the tables and ncu.txt goes in logs.tgz.
# (The archive is written outside $out first: tar fails on a file that grows while it reads the folder.)
(cd "$out" && tar czf /tmp/logs-all.tgz --exclude=bench_device_warm.txt --exclude='*.md' --exclude=ncu.txt --exclude=ncu-run.txt . &&
  mv /tmp/logs-all.tgz . && find . -maxdepth 1 -type f ! -name bench_device_warm.txt ! -name '*.md' \
  ! -name ncu.txt ! -name ncu-run.txt ! -name logs-all.tgz -delete) || echo "archiving the logs failed: some may not come back"
echo "bench_device_warm: $fails failures"
exit $((fails > 0))

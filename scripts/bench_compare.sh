#!/usr/bin/env bash
# pi against PowerInfer and llama.cpp on the lent GPU machine (one H200), side by side in one call or in
# restartable stages. Decode at batch 1 on the synthetic 13B-shaped F16 models of ../shared/anchors
# (README.md there): PowerInfer and pi --ffn predicted on the PowerInfer-format file (PWRI: fc1/fc2
# predictor, ffn_down_t), llama.cpp and pi --ffn dense on a plain llama file of the same shape; each at a
# VRAM budget and with everything on the GPU, with the peak VRAM of every run. Prints one markdown table
# with the ratios and writes it, with the command, commit, GPU and date, to OUT/bench_compare.md.
#
# usage: scripts/bench_compare.sh [--stage STAGES] [--budget 12.6] [--all-budget 40] [--tokens 128]
#          [--prompt TEXT] [--only ENGINES] [--out DIR] [--ngl auto|N] [--timeout 180] [--no-timings]
#          [--rebuild] [--model-dir /dev/shm/pi-bench] [--shape 13b|tiny] [--gpu-backend cuda|host]
#          [--build-dir build-dev] [--anchors DIR] [--llama-tool cli|bench]
#        scripts/bench_compare.sh --parse eval|prompt|pi|llama-bench FILE   # the tok/s a saved log holds
#        scripts/bench_compare.sh --table [--out DIR]     # the table from the results stored so far
# STAGES: build, models, run, all (= build,models,run) or a comma list; prepare runs HERE, before the
#   device call: it copies what the device needs from ../shared into .deps/ (offline-debs, shared/{models,
#   vocab,anchors} and the corpus's first 2 MB, for device_check.sh too). ENGINES: a comma list of pi, powerinfer, llamacpp (default: all three).
#
# Stages skip what already exists, so a call on a machine that is still warm carries on from the last:
#   build   pi into BUILD_DIR (Release, CUDA sm_90; ZeroMQ/protobuf-c from .deps/offline-debs through
#           scripts/device_env.sh), PowerInfer and llama.cpp with the anchors' build scripts into
#           bench-engines/ (ignored); the three in parallel (llama.cpp ~2.5 min alone on 16 cores).
#   models  into MODEL_DIR (/dev/shm stays while the machine is warm): the PWRI file
#           (mk_powerinfer_gguf.py, PowerInfer's gguf-py), its pi sidecar (freq_to_sidecar.py) and the plain
#           file (mk_llama_gguf.py, llama.cpp's gguf-py); numpy from /opt/torch/.venv. ~25 + 24 GiB, written
#           in parallel, and while the engines compile when both stages run.
#   run     PowerInfer --vram-budget B and ALL (M.generated.gpuidx deleted first); llama.cpp (llama-cli on
#           the same prompt, or llama-bench -p 0 -r 1 with --llama-tool bench) -ngl N (auto: as many layers as fit B with their KV, 0.5 GiB kept for buffers) and -ngl 99;
#           pi run --ffn predicted (PWRI file) and --ffn dense (plain file) at B and ALL, --cpu-workers 1;
#           then one more pi run per configuration with --timings when `pid run --help` lists it.
#           Each run is limited by --timeout; nvidia-smi samples the memory of the GPU's processes every
#           100 ms. Results persist under MODEL_DIR, so `--stage run --only pi` after an earlier
#           `--only powerinfer,llamacpp` still prints the whole table (rows from earlier calls are marked).
# OUT (default $OUT, else bench-out): bench_compare.md and bench_compare-logs.tgz (every log), both
# rewritten after each run so a call cut short still brings back what it measured.
# Exit status: non-zero when a build, a model or a run of this call failed.
set -uo pipefail
here=$(pwd)
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
cmdline="scripts/bench_compare.sh$(printf ' %q' "$@")"

stages=all budget=12.6 all_budget=40 tokens=128 only=pi,powerinfer,llamacpp out=${OUT:-bench-out} ngl=auto
llama_tool=cli timeout_s=180 timings=1 rebuild='' mdir=/dev/shm/pi-bench shape=13b backend=cuda build_dir=build-dev anchors=''
prompt="Once upon a time, in a small village at the edge of a great forest, there lived a young girl who"
parse_kind='' parse_file='' table_only=''
abs() { case $1 in /*) echo "$1" ;; *) echo "$here/$1" ;; esac; }   # paths given relative to the caller's folder
usage() { sed -n '/^# usage:/,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
bad() { echo "bench_compare: $*; see --help" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --no-timings|--rebuild|--table|-h|--help) ;; --parse) [ $# -ge 3 ] || bad "--parse KIND FILE" ;;
    *) [ $# -ge 2 ] || bad "$1 needs a value" ;;
  esac
  case $1 in
    --stage) stages=$2; shift 2 ;; --budget) budget=$2; shift 2 ;; --all-budget) all_budget=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;; --prompt) prompt=$2; shift 2 ;; --only) only=$2; shift 2 ;;
    --out) out=$(abs "$2"); shift 2 ;; --ngl) ngl=$2; shift 2 ;; --timeout) timeout_s=$2; shift 2 ;;
    --no-timings) timings=; shift ;; --rebuild) rebuild=1; shift ;; --model-dir) mdir=$(abs "$2"); shift 2 ;;
    --shape) shape=$2; shift 2 ;; --gpu-backend) backend=$2; shift 2 ;; --build-dir) build_dir=$2; shift 2 ;;
    --anchors) anchors=$(abs "$2"); shift 2 ;; --llama-tool) llama_tool=$2; shift 2 ;;
    --parse) parse_kind=$2; parse_file=$(abs "$3"); shift 3 ;; --table) table_only=1; shift ;;
    -h|--help) usage ;;
    *) bad "unknown argument $1" ;;
  esac
done
[ "$stages" = all ] && stages=build,models,run
want_stage() { case ",$stages," in *",$1,"*) return 0 ;; esac; return 1; }
want() { case ",$only," in *",$1,"*) return 0 ;; esac; return 1; }
for s in ${stages//,/ }; do
  case $s in build|models|run|prepare) ;; *) bad "unknown stage $s" ;; esac
done
for e in ${only//,/ }; do
  case $e in pi|powerinfer|llamacpp) ;; *) bad "unknown engine $e" ;; esac
done
case $shape in 13b) lshape=13b ;; tiny) lshape=small ;; *) bad "--shape 13b|tiny" ;; esac
case $llama_tool in cli|bench) ;; *) bad "--llama-tool cli|bench" ;; esac
case $ngl in auto|[0-9]|[0-9][0-9]|[0-9][0-9][0-9]) ;; *) bad "--ngl auto|N" ;; esac

# ---------------------------------------------------------------- log parsers (--parse KIND FILE)
# llama.cpp / PowerInfer: "llama_print_timings:        eval time =  4321.00 ms /   127 runs   (   34.02 ms
# per token,    29.39 tokens per second)" (newer llama.cpp: llama_perf_context_print); the last one counts.
parse_eval() { sed -n 's/.*[^t] eval time *=.*[ (,]\([0-9][0-9.]*\) tokens per second.*/\1/p' "$1" | tail -1; }
parse_prompt() { sed -n 's/.*prompt eval time *=.*[ (,]\([0-9][0-9.]*\) tokens per second.*/\1/p' "$1" | tail -1; }
# pid run: "pid run: prompt 12 tokens, generated 128 tokens in 3.500 s (36.6 tok/s), seed 1"
parse_pi() { sed -n 's/.*generated [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1/p' "$1" | tail -1; }
# llama-bench -o md: the t/s column ("7.07 ± 0.01") of the tgN row.
parse_llama_bench() {
  awk -F'|' '
    /\| *t\/s *\|/ { for (i = 1; i <= NF; i++) { f = $i; gsub(/ /, "", f); if (f == "t/s") c = i; if (f == "test") t = i } next }
    c && t { f = $t; gsub(/ /, "", f); if (f ~ /^tg[0-9]+$/) { n = split($c, v, " "); for (k = 1; k <= n; k++) if (v[k] ~ /^[0-9.]+$/) { r = v[k]; break } } }
    END { if (r != "") print r }' "$1"
}
if [ -n "$parse_kind" ]; then
  case $parse_kind in
    eval) parse_eval "$parse_file" ;; prompt) parse_prompt "$parse_file" ;; pi) parse_pi "$parse_file" ;;
    llama-bench) parse_llama_bench "$parse_file" ;;
    *) bad "--parse eval|prompt|pi|llama-bench FILE" ;;
  esac
  exit 0
fi

# ---------------------------------------------------------------- paths
first_dir() { local d; for d in "$@"; do [ -e "$d" ] && { (cd "$d" && pwd); return 0; }; done; return 1; }
[ -n "$anchors" ] || anchors=$(first_dir .deps/shared/anchors ../shared/anchors) || anchors=$root/.deps/shared/anchors
vocab=$(first_dir .deps/shared/vocab ../shared/vocab)/ggml-vocab-llama-spm.gguf
engines=$root/bench-engines pinf=$root/bench-engines/powerinfer lcpp=$root/bench-engines/llama.cpp
bin=$build_dir/bin
pwri=$mdir/pwri-$shape/$shape-pwri.gguf          # its activation/ (freq.npy) lies beside it
side=${pwri%.gguf}.pi-sparse.gguf
plain=$mdir/plain-$shape/$shape-plain.gguf
meta=$mdir/meta-$shape.txt
state=$mdir/state-$shape; logs=$state/logs res=$state/results
mkdir -p "$out" "$logs" "$res" || exit 1
[ -d /opt/torch/.venv/bin ] && export PATH=/opt/torch/.venv/bin:$PATH   # numpy (and torch) there
orig_ld=${LD_LIBRARY_PATH:-}
nthreads=$(nproc)
this_call=$(date +%s)
failures=0
failed() { failures=$((failures + 1)); echo "FAILED: $*"; }
secs() { echo $(($(date +%s) - $1)); }
pack_logs() { tar czf "$out/bench_compare-logs.tgz" -C "$state" logs 2>/dev/null || true; }

# ---------------------------------------------------------------- build
engine_env=(env -u PKG_CONFIG_PATH -u PKG_CONFIG_SYSROOT_DIR LD_LIBRARY_PATH="$orig_ld")

build_pi() {
  if [ -x "$bin/pid" ] && [ -z "$rebuild" ]; then echo "pi: $bin/pid exists, build skipped"; return 0; fi
  local shared_arg=(); [ -d .deps/shared ] && shared_arg=(-DPI_SHARED_DIR="$root/.deps/shared")
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DPI_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    "${PI_DEPS_CMAKE[@]}" "${shared_arg[@]}" && cmake --build "$build_dir" -j"$nthreads"
}
build_engine() { # name script dir binary
  if [ -x "$3/build/bin/$4" ] && [ -z "$rebuild" ]; then echo "$1: $3/build/bin/$4 exists, build skipped"; return 0; fi
  "${engine_env[@]}" bash "$anchors/$2" "$3"
}
wait_builds() {
  local n
  for n in "${!build_pids[@]}"; do
    if wait "${build_pids[$n]}"; then echo "build $n: ok ($(tail -1 "$logs/build-$n.log")), $(secs "$build_t0") s since the builds started"
    else failed "build $n; last lines of its log:"; tail -15 "$logs/build-$n.log" | sed 's/^/    /'; fi
  done
  build_pids=()
  pack_logs
}

# ---------------------------------------------------------------- models
gguf_py() { # powerinfer|llamacpp tarball -> prints the gguf-py folder (extracted alone from the tarball)
  local d=$mdir/gguf-py-$1
  if [ ! -f "$d/gguf-py/gguf/__init__.py" ]; then
    mkdir -p "$d" && tar xJf "$anchors/$2" -C "$d" gguf-py || return 1
  fi
  echo "$d/gguf-py"
}
room_for_models() { # is there room in MODEL_DIR for the files still to write (13b: ~25.7 + ~24.3 GiB)?
  [ "$shape" = 13b ] || return 0
  local need=0 avail
  { want pi || want powerinfer; } && [ ! -s "$pwri" ] && need=$((need + 27))
  { want pi || want llamacpp; } && [ ! -s "$plain" ] && need=$((need + 26))
  avail=$(($(df --output=avail -B1 "$mdir" | tail -1) >> 30))
  [ "$avail" -ge "$need" ] && return 0
  echo "only $avail GiB free in $mdir, the models need ~$need GiB: give --model-dir a larger file system" >&2
  return 1
}
mk_pwri() {
  if [ -s "$pwri" ]; then
    echo "PWRI file $pwri exists"
  else
    local gp; gp=$(gguf_py powerinfer powerinfer-d3ebd7c.tar.xz) || return 1
    python3 "$anchors/mk_powerinfer_gguf.py" "$gp" "$pwri.tmp" "$shape" "$vocab" || return 1
    mv "$pwri.tmp" "$pwri" || return 1
  fi
  if want pi && { [ ! -s "$side" ] || [ "$side" -ot "$pwri" ]; }; then
    python3 "$anchors/freq_to_sidecar.py" "$pwri" "$(dirname "$pwri")/activation/freq.npy" "$root/scripts" || return 1
  fi
}
mk_plain() {
  [ -s "$plain" ] && { echo "plain file $plain exists"; return 0; }
  local gp; gp=$(gguf_py llamacpp llama.cpp-c392e509.tar.xz) || return 1
  python3 "$anchors/mk_llama_gguf.py" "$gp" "$plain.tmp" "$lshape" "$vocab" && mv "$plain.tmp" "$plain"
}
# n_layer, bytes of one layer's weights and K+V bytes per position per layer of the plain file: llama.cpp's
# offload count at the budget comes from them.
mk_meta() {
  if [ -s "$meta" ] && ! [ "$meta" -ot "$pwri" ] && ! [ "$meta" -ot "$plain" ]; then cat "$meta"; return 0; fi
  local gp; gp=$(gguf_py llamacpp llama.cpp-c392e509.tar.xz) || return 1
  {
    if [ -s "$pwri" ]; then echo "pwri_bytes=$(stat -c %s "$pwri")"; fi
    if [ -s "$plain" ]; then echo "plain_bytes=$(stat -c %s "$plain")"; python3 - "$gp" "$plain" <<'PY' || return 1
import sys, types
sys.path.insert(0, sys.argv[1])
sys.modules.setdefault("sentencepiece", types.SimpleNamespace(SentencePieceProcessor=None))
import gguf
r = gguf.GGUFReader(sys.argv[2])
def num(k):
    f = r.fields[k]
    return int(f.parts[f.data[0]][0])
L, d, h, kv = num("llama.block_count"), num("llama.embedding_length"), num("llama.attention.head_count"), num("llama.attention.head_count_kv")
print(f"n_layer={L}")
print(f"layer_bytes={sum(int(t.n_bytes) for t in r.tensors if t.name.startswith('blk.0.'))}")
print(f"kv_bytes_per_pos={2 * 2 * d * kv // h}")
PY
    fi
  } >"$meta.tmp" && mv "$meta.tmp" "$meta"
}
getmeta() { sed -n "s/^$1=//p" "$meta" 2>/dev/null | tail -1; }

# ---------------------------------------------------------------- run
gib() { awk -v b="$1" 'BEGIN { if (b == "") print "n/a"; else printf "%.2f", b / 1073741824 }'; }
# Peak memory of the GPU's processes while CMD runs: nvidia-smi loops (-lms 100) over the compute apps
# (per process) and the whole GPU (memory.used; less the value before the run, for machines whose
# nvidia-smi cannot see the processes of a container).
vram_start() { # prefix
  vram_pids=()
  command -v nvidia-smi >/dev/null || return 0
  vram_base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 100 >"$1.apps" 2>/dev/null &
  vram_pids+=($!)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$1.gpu" 2>/dev/null &
  vram_pids+=($!)
}
vram_stop() { # prefix -> sets peak_app (MiB, max over processes) and peak_gpu (MiB above the baseline)
  local p
  for p in "${vram_pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  peak_app=$(awk -F', *' '$2 ~ /^[0-9]+$/ && $2 > m { m = $2 } END { if (m) print m }' "$1.apps" 2>/dev/null)
  peak_gpu=$(awk -v b="${vram_base:-0}" '$1 ~ /^[0-9]+$/ && $1 > m { m = $1 } END { if (m) print m - b }' "$1.gpu" 2>/dev/null)
}
# run_one ID KIND CMD...: KIND eval|pi|llama-bench picks the parser; stdout and stderr go to logs/ID.log
# (pi: the generated text to logs/ID.out). Writes results/ID.
run_one() {
  local id=$1 kind=$2; shift 2
  local log=$logs/$id.log outf=$logs/$id.out
  local shown; shown=$(printf ' %q' "$@"); shown=${shown# }
  [ "$1" = env ] && shown=$(printf ' %q' "${@:$((${#engine_env[@]} + 1))}") && shown=${shown# }
  echo "$shown" >"$log.cmd"
  vram_start "$logs/$id.vram"
  local t0 rc tp; t0=$(date +%s.%N)
  if [ "$kind" = pi ]; then
    timeout -k 10 "$timeout_s" "$@" >"$outf" 2>"$log" </dev/null &
  else
    timeout -k 10 "$timeout_s" "$@" >"$log" 2>&1 </dev/null &
  fi
  tp=$!
  wait "$tp"; rc=$?
  kill -KILL -- "-$tp" 2>/dev/null   # anything the run left in timeout's process group (e.g. workers)
  local wall; wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  vram_stop "$logs/$id.vram"
  local tps ptps=
  case $kind in
    eval) tps=$(parse_eval "$log"); ptps=$(parse_prompt "$log") ;;
    llama-bench) tps=$(parse_llama_bench "$log") ;;
    pi) tps=$(parse_pi "$log") ;;
  esac
  local status=ok
  if [ "$rc" -ne 0 ] || [ -z "$tps" ]; then
    status=FAILED
    case $rc in 124|137) status="FAILED (timeout ${timeout_s} s)" ;; 0) status="FAILED (no tok/s in its log)" ;; esac
  fi
  {
    echo "status=$status"; echo "rc=$rc"; echo "tps=$tps"; echo "ptps=$ptps"; echo "peak_app=$peak_app"
    echo "peak_gpu=$peak_gpu"; echo "wall=$wall"; echo "when=$(date +%s)"; echo "params=$params"; echo "cmd=$shown"
  } >"$res/$id"
  if [ "$status" = ok ]; then
    echo "$id: $tps tok/s$([ -n "$ptps" ] && echo ", prompt $ptps tok/s"), peak VRAM (GiB) $(cell_peak "$id"), ${wall} s"
  else
    failed "$id: $status (rc $rc); last lines of $id.log:"; tail -6 "$log" | sed 's/^/    /'
  fi
}
get() { sed -n "s/^$2=//p" "$res/$1" 2>/dev/null | tail -1; }
# What a result must have been measured with to count in this call's table: the same model shape, budgets,
# tokens and prompt (results of other settings stay on disk but are left out).
params="$shape|$budget|$all_budget|$tokens|$(printf %s "$prompt" | cksum | cut -d' ' -f1)"
have() { [ -f "$res/$1" ] && [ "$(get "$1" params)" = "$params" ]; }

# The table (and bench_compare.md) from every result stored under MODEL_DIR.
cell_tps() { # id
  have "$1" || { echo "–"; return; }
  local s; s=$(get "$1" status)
  if [ "$s" != ok ]; then echo "FAILED"; return; fi
  local m=""; [ "$(get "$1" when)" -lt "$this_call" ] && m=" †"
  echo "$(get "$1" tps)$m"
}
cell_peak() { # id
  have "$1" || { echo "–"; return; }
  local a g; a=$(get "$1" peak_app) g=$(get "$1" peak_gpu)
  if [ -n "$a" ]; then gib $((a << 20)); elif [ -n "$g" ]; then echo "~$(gib $((g << 20)))"; else echo "n/a"; fi
}
cell_ptps() { have "$1" && [ "$(get "$1" status)" = ok ] && [ -n "$(get "$1" ptps)" ] && get "$1" ptps || echo "n/a"; }
ratio() { # id id
  local a b; a=$(get "$1" tps) b=$(get "$2" tps)
  if have "$1" && have "$2" && [ "$(get "$1" status)" = ok ] && [ "$(get "$2" status)" = ok ] && [ -n "$a" ] && [ -n "$b" ]; then
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx (%s / %s tok/s)", a / b, a, b }'
  else echo "n/a (missing or failed run)"; fi
}
ngl_used() { have llamacpp-budget || { echo "?"; return; }; local c; c=$(get llamacpp-budget cmd); c=${c#* -ngl }; echo "${c%% *}"; }
render() {
  local gpu cpu commit pb lb
  gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
  cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
  if commit=$(git rev-parse --short HEAD 2>/dev/null); then
    git diff --quiet HEAD -- 2>/dev/null || commit="$commit (+ uncommitted changes)"
  elif [ -n "${PI_COMMIT:-}" ]; then
    commit=$PI_COMMIT
  elif [ -s .deps/pi-commit ]; then
    commit="$(cat .deps/pi-commit) (when --stage prepare ran; no .git here)"
  else
    commit="unknown (no .git here; set PI_COMMIT)"
  fi
  pb=$(getmeta pwri_bytes) lb=$(getmeta plain_bytes)
  echo "# bench_compare: pi vs PowerInfer vs llama.cpp, decode at batch 1"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- command: \`$cmdline\`"
  echo "- git commit: $commit"
  echo "- GPU: ${gpu:-none found}; CPU: ${cpu:-?} ($nthreads threads)"
  echo "- models ($shape shape, F16): PWRI $(basename "$pwri") $(gib "$pb") GiB (PowerInfer, pi predicted); plain $(basename "$plain") $(gib "$lb") GiB (llama.cpp, pi dense)"
  echo "- $tokens tokens after the prompt \"$prompt\"; PowerInfer and llama.cpp with -t $nthreads, pi with --cpu-workers 1 --temp 0 --gpu-backend $backend"
  echo
  echo "| engine / config | tok/s @ $budget GiB | tok/s all in VRAM | peak VRAM GiB @ $budget | peak VRAM GiB all in VRAM | prompt tok/s @ $budget |"
  echo "|---|---|---|---|---|---|"
  echo "| PowerInfer (PWRI, --vram-budget $budget / $all_budget) | $(cell_tps powerinfer-budget) | $(cell_tps powerinfer-all) | $(cell_peak powerinfer-budget) | $(cell_peak powerinfer-all) | $(cell_ptps powerinfer-budget) |"
  echo "| llama.cpp dense (plain, -ngl $(ngl_used) / 99) | $(cell_tps llamacpp-budget) | $(cell_tps llamacpp-all) | $(cell_peak llamacpp-budget) | $(cell_peak llamacpp-all) | $(cell_ptps llamacpp-budget) |"
  echo "| pi --ffn predicted (PWRI, --vram-budget $budget / $all_budget) | $(cell_tps pi-predicted-budget) | $(cell_tps pi-predicted-all) | $(cell_peak pi-predicted-budget) | $(cell_peak pi-predicted-all) | n/a |"
  echo "| pi --ffn dense (plain, --vram-budget $budget / $all_budget) | $(cell_tps pi-dense-budget) | $(cell_tps pi-dense-all) | $(cell_peak pi-dense-budget) | $(cell_peak pi-dense-all) | n/a |"
  echo
  echo "- pi predicted / PowerInfer @ $budget GiB: $(ratio pi-predicted-budget powerinfer-budget)"
  echo "- pi predicted / llama.cpp dense @ $budget GiB: $(ratio pi-predicted-budget llamacpp-budget)"
  echo "- pi predicted / llama.cpp dense, all in VRAM: $(ratio pi-predicted-all llamacpp-all)"
  echo "- pi dense / llama.cpp dense, all in VRAM: $(ratio pi-dense-all llamacpp-all)"
  echo
  echo "Notes:"
  echo "- tok/s: decode (PowerInfer, llama.cpp: their \`eval time\` line; pi: \`pid run\`'s generated tok/s). Peak VRAM: the"
  echo "  largest per-process figure nvidia-smi reported during the run, CUDA context included (~: the GPU's memory.used"
  echo "  above its value before the run, where no process was visible). † = measured, with the same settings, by an"
  echo "  earlier invocation of this script on this machine (results persist in $mdir while it stays warm)."
  local id
  for id in pi-predicted-budget pi-dense-budget; do
    have "$id" && grep -m1 "placement:" "$logs/$id.log" | sed "s/^pid run: placement: /- $id placement: /"
  done
  for id in powerinfer-budget powerinfer-all llamacpp-budget llamacpp-all pi-predicted-budget pi-predicted-all pi-dense-budget pi-dense-all; do
    have "$id" || continue
    [ "$(get "$id" status)" = ok ] && continue
    echo "- $id $(get "$id" status), rc $(get "$id" rc): \`$(get "$id" cmd)\`; last lines of its log:"
    echo '  ```'; tail -6 "$logs/$id.log" | sed 's/^/  /'; echo '  ```'
  done
  for id in pi-predicted-budget pi-predicted-all pi-dense-budget pi-dense-all; do
    have "$id-timings" || continue
    echo "- $id --timings ($(get "$id-timings" status), $(get "$id-timings" tps) tok/s), stderr, last 20 lines:"
    echo '  ```'; tail -20 "$logs/$id-timings.log" | sed 's/^/  /'; echo '  ```'
  done
}
publish() { render >"$out/bench_compare.md"; pack_logs; }

# ================================================================ main
if [ -n "$table_only" ]; then render; exit 0; fi

# ---------------------------------------------------------------- prepare (here, not on the device)
if want_stage prepare; then
  sh=$(first_dir ../shared) || { echo "bench_compare: ../shared not found" >&2; exit 1; }
  mkdir -p .deps/shared
  for p in offline-debs:offline-debs shared/models:models shared/vocab:vocab shared/anchors:anchors; do
    rm -rf ".deps/${p%%:*}" && cp -r "$sh/${p#*:}" ".deps/${p%%:*}" && chmod -R u+w ".deps/${p%%:*}" || exit 1
  done
  { git rev-parse --short HEAD && { git diff --quiet HEAD -- || echo "(+ uncommitted changes)"; }; } 2>/dev/null \
    | tr '\n' ' ' | sed 's/ $//' >.deps/pi-commit
  # The tests that profile (device_check's ctest) read a few thousand tokens of the corpus: its first 2 MB.
  mkdir -p .deps/shared/corpus
  { xz -dc "$sh/corpus/gutenberg-train.txt.xz" || true; } | head -c 2000000 | sed '$d' | xz -6 >.deps/shared/corpus/gutenberg-train.txt.xz \
    || { echo "bench_compare: could not write .deps/shared/corpus" >&2; exit 1; }
  echo "prepared .deps ($(du -sh .deps | cut -f1)): offline-debs, shared/{models,vocab,anchors,corpus (2 MB of it)}; carry [\".deps\"]"
  [ "$stages" = prepare ] && exit 0
fi

. scripts/device_env.sh
pi_device_env .deps/offline-debs || { echo "bench_compare: unpacking .deps/offline-debs failed" >&2; exit 1; }

declare -A build_pids=()
if want_stage build; then
  echo "== build ($(date -u +%H:%M:%S)): ${only}; logs in $logs/build-*.log"
  mkdir -p "$engines"
  want pi && { build_pi >"$logs/build-pi.log" 2>&1 & build_pids[pi]=$!; }
  want powerinfer && { build_engine powerinfer build_powerinfer.sh "$pinf" main >"$logs/build-powerinfer.log" 2>&1 & build_pids[powerinfer]=$!; }
  want llamacpp && { build_engine llama.cpp build_llamacpp.sh "$lcpp" llama-cli >"$logs/build-llamacpp.log" 2>&1 & build_pids[llamacpp]=$!; }
  build_t0=$(date +%s)
fi
if want_stage models; then
  echo "== models ($(date -u +%H:%M:%S)): $shape into $mdir"
  mkdir -p "$(dirname "$pwri")" "$(dirname "$plain")"
  t0=$(date +%s); mp=() mn=()
  room_for_models || { failed "models: no room in $mdir"; mp=(); }
  if [ $failures -eq 0 ] && { want pi || want powerinfer; }; then mk_pwri >"$logs/model-pwri.log" 2>&1 & mp+=($!); mn+=(pwri); fi
  if [ $failures -eq 0 ] && { want pi || want llamacpp; }; then mk_plain >"$logs/model-plain.log" 2>&1 & mp+=($!); mn+=(plain); fi
  for i in "${!mp[@]}"; do
    if wait "${mp[$i]}"; then echo "model ${mn[$i]}: $(tail -1 "$logs/model-${mn[$i]}.log")"
    else failed "model ${mn[$i]}; last lines of its log:"; tail -8 "$logs/model-${mn[$i]}.log" | sed 's/^/    /'; fi
  done
  mk_meta >"$logs/model-meta.log" 2>&1 || { failed "reading the plain file's shape:"; tail -5 "$logs/model-meta.log" | sed 's/^/    /'; }
  echo "models: $(secs "$t0") s; $(tr '\n' ' ' 2>/dev/null <"$meta")"
  pack_logs
fi
[ ${#build_pids[@]} -gt 0 ] && wait_builds

if want_stage run; then
  echo "== run ($(date -u +%H:%M:%S)): $only, $tokens tokens, budget $budget GiB / all $all_budget GiB, timeout ${timeout_s} s per run"
  plen=$(printf %s "$prompt" | wc -c)
  ctx=$(( (tokens + plen + 16 + 63) / 64 * 64 ))   # a prompt never has more tokens than bytes (+ BOS)
  if want powerinfer; then
    for cfg in "budget $budget" "all $all_budget"; do
      # shellcheck disable=SC2086  # "name value"
      set -- $cfg
      rm -f "$pwri.generated.gpuidx"   # PowerInfer reuses a split solved for another budget
      run_one "powerinfer-$1" eval "${engine_env[@]}" PYTHONPATH="$anchors/pyshim" \
        GGUF_PY="$(gguf_py powerinfer powerinfer-d3ebd7c.tar.xz)" "$pinf/build/bin/main" -m "$pwri" \
        -n "$tokens" -c "$ctx" -t "$nthreads" -s 1 -p "$prompt" --ignore-eos --vram-budget "$2"
      publish
    done
  fi
  if want llamacpp; then
    n=$ngl
    if [ "$n" = auto ]; then
      L=$(getmeta n_layer) lb=$(getmeta layer_bytes) kp=$(getmeta kv_bytes_per_pos)
      if [ -n "$L" ] && [ -n "$lb" ] && [ -n "$kp" ]; then
        n=$(awk -v B="$budget" -v lb="$lb" -v kp="$kp" -v c="$ctx" -v L="$L" 'BEGIN {
          n = int((B * 1073741824 - 0.5 * 1073741824) / (lb + kp * c)); if (n < 0) n = 0; if (n > L) n = L; print n }')
        echo "llama.cpp: -ngl $n at $budget GiB ($L layers of $(gib "$lb") GiB + KV $(gib $((kp * ctx))) GiB at -c $ctx; 0.5 GiB kept for buffers)"
      else
        n=20; echo "llama.cpp: no shape in $meta (run --stage models); -ngl 20"
      fi
    fi
    for cfg in "budget $n" "all 99"; do
      # shellcheck disable=SC2086  # "name value"
      set -- $cfg
      if [ "$llama_tool" = cli ]; then
        run_one "llamacpp-$1" eval "${engine_env[@]}" "$lcpp/build/bin/llama-cli" -m "$plain" -ngl "$2" \
          -n "$tokens" -c "$ctx" -t "$nthreads" -s 1 -p "$prompt" --ignore-eos -no-cnv
      else
        run_one "llamacpp-$1" llama-bench "${engine_env[@]}" "$lcpp/build/bin/llama-bench" -m "$plain" -ngl "$2" \
          -n "$tokens" -p 0 -r 1 -t "$nthreads" -o md
      fi
      publish
    done
  fi
  if want pi; then
    pirun() { # id model mode budget extra...
      local id=$1 m=$2 mode=$3 b=$4; shift 4
      run_one "$id" pi "$bin/pid" run -m "$m" -n "$tokens" --temp 0 -p "$prompt" --gpu-backend "$backend" \
        --vram-budget "$b" --ffn "$mode" --cpu-workers 1 "$@"
      publish
    }
    pi_all() { # id-suffix extra...
      local x=$1; shift
      pirun "pi-predicted-budget$x" "$pwri" predicted "$budget" "$@"
      pirun "pi-predicted-all$x" "$pwri" predicted "$all_budget" "$@"
      pirun "pi-dense-budget$x" "$plain" dense "$budget" "$@"
      pirun "pi-dense-all$x" "$plain" dense "$all_budget" "$@"
    }
    pi_all ""
    if [ -n "$timings" ]; then
      if "$bin/pid" run --help 2>&1 | grep -q -- --timings; then
        pi_all -timings --timings   # not rows of the table: the end of their logs goes into the notes
      else
        echo "pid run --help lists no --timings: no timing runs"
      fi
    fi
  fi
fi

publish
if want_stage run || [ -n "$table_only" ]; then
  echo; sed -n '/^| engine/,$p' "$out/bench_compare.md"
fi
echo
echo "bench_compare: $failures failures; $out/bench_compare.md, $out/bench_compare-logs.tgz"
[ "$failures" -eq 0 ]

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
#          [--ttft 128,512,2048] [--streams 1,4,16,32] [--no-decode] [--pi-args "ARGS"] [--reps N]
#          [--warm-sweep "0.33 0.4 0.47"]
#        scripts/bench_compare.sh --parse eval|prompt|pi|llama-bench FILE   # the tok/s a saved log holds
#        scripts/bench_compare.sh --parse prefill|pictl|batched-bench FILE   # the --ttft / --streams figures
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
#           --pi-args "ARGS": more flags for pi's --ffn predicted runs (e.g. --predictor-type q8_0), named in
#           the table's row (give them to --table too).
#           Each run is limited by --timeout; nvidia-smi samples the memory of the GPU's processes every
#           100 ms. Results persist under MODEL_DIR, so `--stage run --only pi` after an earlier
#           `--only powerinfer,llamacpp` still prints the whole table (rows from earlier calls are marked).
#   Two optional measurements, off by default (then nothing more runs and the output is as before), after
#   the decode runs of the run stage, each with its own table in bench_compare.md (--table shows them too):
#   --ttft L1,L2..  time to first token at --budget for prompts of L tokens (BOS included, cut with
#           `pictl tokenize` on the anchors' vocabulary, which both files use): the corpus's first ASCII text
#           (else --prompt repeated), whitespace made single spaces, kept in MODEL_DIR so every engine and
#           every later call reads the same text. PowerInfer (-f FILE) and llama.cpp (llama-cli -f FILE,
#           -ngl at the budget for that context) report their `prompt eval time` line; pi --ffn predicted
#           (with --pi-args) and dense run `pid run --timings` and report its "prefill excluded: S steps, T tokens, M ms"
#           (pid run prints no first-token time of its own). 8 tokens decoded, -c the prompt + 8 + 16.
#   --streams N1,N2..  aggregate decode at --budget with N concurrent streams: pi --ffn predicted as a
#           daemon (`pid start --max-seqs N --timings` with --pi-args, one start per N; without --max-seqs, pid
#           sizing its KV cache, where pid refuses N sequences at the budget), N `pictl generate` clients of
#           --tokens tokens on --prompt at once, tok/s = tokens generated / wall time of the N clients; then
#           `pictl status` (the steps' phases) into the notes, and pid stop.
#           llama.cpp: llama-batched-bench if bench-engines/ holds one (build_llamacpp.sh builds only
#           llama-bench and llama-cli, so "not built" otherwise); PowerInfer: no run (its build has only main,
#           which decodes one sequence).
#   --reps N  the contested pair at --budget, PowerInfer and pi --ffn predicted, N times in all, alternating
#           after the other runs (-rK results); their cells then give the median, with every run's figure in the
#           notes. The host's memory bandwidth moved by a quarter within one call (session 14), which one run an
#           engine cannot tell from a change. Default 1: one run each, as before.
#   --warm-sweep "W1 W2.."  before pi's decode runs, pi --ffn predicted at --budget once with each --warm-share
#           (--timings; -sweep-wW results), and every pi --ffn predicted run of the table then with the fastest
#           share, named in its row: the best split between the GPU's PCIe reads and the CPU worker moves with
#           the host's memory bandwidth (0.33 to 0.47 in sessions 14-16), as a user would tune it on that host.
#           The sweep's runs are not the table's; the notes list them with their phases.
#   --no-decode  skip the batch-1 decode runs (the table keeps what earlier calls stored), so a call can be
#           spent on --ttft / --streams alone within the device's 10-minute limit.
# OUT (default $OUT, else bench-out): bench_compare.md and bench_compare-logs.tgz (every log), both
# rewritten after each run so a call cut short still brings back what it measured.
# Exit status: non-zero when a build, a model or a run of this call failed.
set -uo pipefail
here=$(pwd)
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
# shellcheck source=scripts/bench_lib.sh
. scripts/bench_lib.sh
cmdline="scripts/bench_compare.sh$(printf ' %q' "$@")"

stages=all budget=12.6 all_budget=40 tokens=128 only=pi,powerinfer,llamacpp out=${OUT:-bench-out} ngl=auto
llama_tool=cli timeout_s=180 timings=1 rebuild='' mdir=/dev/shm/pi-bench shape=13b backend=cuda build_dir=build-dev anchors=''
prompt="Once upon a time, in a small village at the edge of a great forest, there lived a young girl who"
parse_kind='' parse_file='' table_only='' ttft='' streams='' no_decode='' pi_args='' reps=1 warm_sweep=''
abs() { case $1 in /*) echo "$1" ;; *) echo "$here/$1" ;; esac; }   # paths given relative to the caller's folder
usage() { sed -n '/^# usage:/,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
bad() { echo "bench_compare: $*; see --help" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --no-timings|--rebuild|--table|--no-decode|-h|--help) ;; --parse) [ $# -ge 3 ] || bad "--parse KIND FILE" ;;
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
    --ttft) ttft=$2; shift 2 ;; --streams) streams=$2; shift 2 ;; --no-decode) no_decode=1; shift ;;
    --reps) reps=$2; shift 2 ;;
    --pi-args) pi_args=$2; shift 2 ;;
    --warm-sweep) warm_sweep=$2; shift 2 ;;
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
[[ $reps =~ ^[1-9]$ ]] || bad "--reps takes 1 to 9"
for w in $warm_sweep; do [[ $w =~ ^(0(\.[0-9]+)?|1)$ ]] || bad "--warm-sweep takes shares from 0 to 1, e.g. \"0.33 0.4 0.47\""; done
[ -z "$warm_sweep" ] || [[ " $pi_args " != *" --warm-share "* ]] || bad "--warm-sweep chooses --warm-share: leave it out of --pi-args"
# A list of counts, each a positive integer: sorted and without repeats, so results stored under one
# spelling are found under another.
counts() { # option value -> prints the sorted list, comma-separated
  [[ $2 =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || bad "$1 takes a comma list of positive counts, e.g. $3"
  tr , '\n' <<<"$2" | sort -n -u | paste -sd, -
}
[ -z "$ttft" ] || ttft=$(counts --ttft "$ttft" 128,512,2048) || exit 2
[ -z "$streams" ] || streams=$(counts --streams "$streams" 1,4,16,32) || exit 2

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
# --ttft: "TOKENS MS" of the prompt's evaluation. PowerInfer / llama.cpp: "llama_print_timings: prompt eval time =
# 3110.47 ms /   506 tokens (    6.15 ms per token, ...)" (llama_perf_context_print in newer llama.cpp); pid run
# --timings: "pid run: timings per decode step, ms (7 steps, 1.00 tokens each; prefill excluded: 13 steps, 773
# tokens, 821.762 ms)": the wall time of the steps that fed the prompt, the last of which yields the first token.
parse_prefill() {
  sed -n -e 's/.*prompt eval time *= *\([0-9][0-9.]*\) ms *\/ *\([0-9][0-9]*\) tokens.*/\2 \1/p' \
    -e 's/.*prefill excluded: [0-9]* steps, \([0-9][0-9]*\) tokens, \([0-9][0-9.]*\) ms).*/\1 \2/p' "$1" | tail -1
}
# --streams, pi: pictl generate's statistics on stderr, "prompt 24 tokens, generated 128 tokens, first token 35.2
# ms, 61.3 tok/s, seed 1" -> "GENERATED FIRST_MS TOK_S" (its tok/s counts the tokens after the first).
parse_pictl() {
  sed -n 's/^prompt [0-9]* tokens, generated \([0-9]*\) tokens, first token \([0-9.]*\) ms, \([0-9.]*\) tok\/s.*/\1 \2 \3/p' "$1" | tail -1
}
# --streams, llama.cpp: llama-batched-bench's rows "| PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s |
# T s | S t/s |" -> "B S_TG B*TG/T" a row: S_TG is decode alone; B*TG/T counts the whole run, prefill included, as
# pi's tokens over the clients' wall time do (its own S t/s would count the prompt tokens too).
parse_batched_bench() {
  awk -F'|' 'NF >= 12 && $2 ~ /^ *[0-9]+ *$/ && $10 + 0 > 0 { printf "%d %.2f %.2f\n", $4, $9, $4 * $3 / $10 }' "$1"
}
if [ -n "$parse_kind" ]; then
  case $parse_kind in
    eval) parse_eval "$parse_file" ;; prompt) parse_prompt "$parse_file" ;; pi) parse_pi "$parse_file" ;;
    llama-bench) parse_llama_bench "$parse_file" ;; prefill) parse_prefill "$parse_file" ;;
    pictl) parse_pictl "$parse_file" ;; batched-bench) parse_batched_bench "$parse_file" ;;
    *) bad "--parse eval|prompt|pi|llama-bench|prefill|pictl|batched-bench FILE" ;;
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
# llama.cpp's -ngl at the budget for a context of CTX positions (--ngl N: N): as many layers as fit the budget
# with their KV cache, 0.5 GiB kept for buffers. Sets ngl_n and says how it was chosen.
llama_ngl() { # ctx
  ngl_n=$ngl
  [ "$ngl_n" = auto ] || return 0
  local L lb kp
  L=$(getmeta n_layer) lb=$(getmeta layer_bytes) kp=$(getmeta kv_bytes_per_pos)
  if [ -n "$L" ] && [ -n "$lb" ] && [ -n "$kp" ]; then
    ngl_n=$(awk -v B="$budget" -v lb="$lb" -v kp="$kp" -v c="$1" -v L="$L" 'BEGIN {
      n = int((B * 1073741824 - 0.5 * 1073741824) / (lb + kp * c)); if (n < 0) n = 0; if (n > L) n = L; print n }')
    echo "llama.cpp: -ngl $ngl_n at $budget GiB ($L layers of $(gib "$lb") GiB + KV $(gib $((kp * $1))) GiB at -c $1; 0.5 GiB kept for buffers)"
  else
    ngl_n=20; echo "llama.cpp: no shape in $meta (run --stage models); -ngl 20"
  fi
}

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
# A signal (e.g. an outer `timeout`) ends the run in flight too: `timeout` puts each run in its own process
# group, which a signal to this script does not reach (2026-12-03: a pid run the wrapper's limit cut kept the
# GPU and the CPU cores busy into the next measurements).
run_tp='' vram_pids=()
stop_run() {
  [ -n "$run_tp" ] && kill -KILL -- "-$run_tp" 2>/dev/null
  local p
  for p in "${vram_pids[@]}"; do kill "$p" 2>/dev/null; done
}
trap 'stop_run; exit 143' INT TERM
run_one() {
  local id=$1 kind=$2; shift 2
  local log=$logs/$id.log outf=$logs/$id.out
  local shown; shown=$(printf ' %q' "$@"); shown=${shown# }
  [ "$1" = env ] && shown=$(printf ' %q' "${@:$((${#engine_env[@]} + 1))}") && shown=${shown# }
  echo "$shown" >"$log.cmd"
  vram_start "$logs/$id.vram"
  local t0 rc tp st0; t0=$(date +%s.%N) st0=$(pi_steal_s)
  if [ "$kind" = pi ]; then
    timeout -k 10 "$timeout_s" "$@" >"$outf" 2>"$log" </dev/null &
  else
    timeout -k 10 "$timeout_s" "$@" >"$log" 2>&1 </dev/null &
  fi
  tp=$! run_tp=$!
  wait "$tp"; rc=$?
  kill -KILL -- "-$tp" 2>/dev/null   # anything the run left in timeout's process group (e.g. workers)
  run_tp=
  local wall; wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  local steal; steal=$(awk -v a="$st0" -v b="$(pi_steal_s)" 'BEGIN { if (a != "" && b != "") printf "%.2f", b - a }')
  vram_stop "$logs/$id.vram"
  local tps ptps=
  case $kind in
    eval) tps=$(parse_eval "$log"); ptps=$(parse_prompt "$log") ;;
    llama-bench) tps=$(parse_llama_bench "$log") ;;
    pi) tps=$(parse_pi "$log") ;;
    batched-bench) tps=$(parse_batched_bench "$log" | tail -1 | cut -d' ' -f3) ;;   # its largest count
  esac
  local status=ok
  if [ "$rc" -ne 0 ] || [ -z "$tps" ]; then
    status=FAILED
    case $rc in 124|137) status="FAILED (timeout ${timeout_s} s)" ;; 0) status="FAILED (no tok/s in its log)" ;; esac
  fi
  {
    echo "status=$status"; echo "rc=$rc"; echo "tps=$tps"; echo "ptps=$ptps"; echo "peak_app=$peak_app"
    echo "peak_gpu=$peak_gpu"; echo "wall=$wall"; echo "steal=$steal"; echo "when=$(date +%s)"; echo "params=$params"
    echo "cmd=$shown"
  } >"$res/$id"
  if [ "$status" = ok ]; then
    echo "$id: $tps tok/s$([ -n "$ptps" ] && echo ", prompt $ptps tok/s"), peak VRAM (GiB) $(cell_peak "$id"), ${wall} s${steal:+, CPU time stolen by the hypervisor $steal s}"
  else
    failed "$id: $status (rc $rc); last lines of $id.log:"; tail -6 "$log" | sed 's/^/    /'
  fi
}
get() { sed -n "s/^$2=//p" "$res/$1" 2>/dev/null | tail -1; }
# --reps: results/ID's tps becomes the median of its own run (tps_first) and this call's ID-rK repeats that
# succeeded; tps_runs lists them all in the order they ran.
median_into() { # id
  local id=$1 v=() r t
  [ "$(get "$id" status)" = ok ] || return 0
  t=$(get "$id" tps_first); [ -n "$t" ] || t=$(get "$id" tps)
  v+=("$t")
  for ((r = 2; r <= reps; r++)); do
    have "$id-r$r" && [ "$(get "$id-r$r" status)" = ok ] && [ "$(get "$id-r$r" when)" -ge "$this_call" ] &&
      v+=("$(get "$id-r$r" tps)")
  done
  [ ${#v[@]} -gt 1 ] || return 0
  local med; med=$(printf '%s\n' "${v[@]}" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
  { echo "tps_first=$t"; echo "tps=$med"; echo "tps_runs=${v[*]}"; } >>"$res/$id"
  echo "$id: median $med tok/s of ${#v[@]} runs (${v[*]})"
}
# What a result must have been measured with to count in this call's table: the same model shape, budgets,
# tokens and prompt (results of other settings stay on disk but are left out).
params="$shape|$budget|$all_budget|$tokens|$(printf %s "$prompt" | cksum | cut -d' ' -f1)"
plen=$(printf %s "$prompt" | wc -c)
ctx=$(( (tokens + plen + 16 + 63) / 64 * 64 ))   # a prompt never has more tokens than bytes (+ BOS)
have() { [ -f "$res/$1" ] && [ "$(get "$1" params)" = "${2:-$params}" ]; }   # id [the params of a --ttft/--streams run]

# ---------------------------------------------------------------- --ttft
ttft_gen=8   # tokens decoded after the prompt: pid run prints its prefill time only once a decode step has run
# Tokens of the text on stdin, BOS included, by the anchors' vocabulary (both model files carry it) through pi's
# tokenizer; fails where pictl is not built.
ntok() { [ -x "$bin/pictl" ] && [ -f "$vocab" ] || return 1; "$bin/pictl" tokenize -m "$vocab" | wc -w; }
# The prompt of L tokens: STATE/ttft-L.txt, written once and then reused, so every engine and every later call
# reads the same bytes (STATE/ttft-L.tokens: its count by pictl, or ~L where none was there to count). The text:
# the corpus's start, printable ASCII only and every run of other bytes one space (one line, no multi-byte
# character to cut in half), else --prompt repeated. Cut to the longest prefix of at most L tokens by bisection
# (the count grows with the prefix, give or take a merge at the cut); without pictl, 4 bytes a token.
ttft_prompt() { # L -> prints the file
  local L=$1 f=$state/ttft-$1.txt src corpus need lo hi mid n how
  if [ -s "$f" ] && [ -s "${f%.txt}.tokens" ]; then echo "$f"; return 0; fi
  need=$((L * 8 + 4096))   # English is ~4.5 bytes a token in this vocabulary: never too short
  corpus=$(first_dir .deps/shared/corpus ../shared/corpus)/gutenberg-train.txt.xz
  src=$({ xz -dc "$corpus" 2>/dev/null || true; } | head -c $((need * 2)) | LC_ALL=C tr -c '\041-\176' ' ' \
    | tr -s ' ' | sed 's/^ //' | head -c "$need")
  while [ ${#src} -lt "$need" ]; do src+="${src:+ }$prompt"; done
  if n=$(printf %s "$src" | ntok); then
    lo=0 hi=${#src}
    [ "$n" -le "$L" ] && lo=$hi
    while [ $((hi - lo)) -gt 1 ]; do
      mid=$(((lo + hi) / 2))
      if [ "$(printf %s "${src:0:mid}" | ntok)" -le "$L" ]; then lo=$mid; else hi=$mid; fi
    done
    n=$(printf %s "${src:0:lo}" | ntok) how="$n tokens by pictl tokenize"
  else
    lo=$(((L - 1) * 4)) n="~$L" how="no pictl to count with: 4 bytes a token, the engines' counts say what it is"
  fi
  printf %s "${src:0:lo}" >"$f.tmp" && mv "$f.tmp" "$f" && echo "$n" >"${f%.txt}.tokens" || return 1
  echo "ttft: the prompt of $L tokens: $f, $lo bytes, $how" >&2
  echo "$f"
}
# What a --ttft result must have been measured with: the shape, the budget and the prompt's bytes.
ttft_params() { # L
  local f=$state/ttft-$1.txt
  echo "$shape|$budget|$1|$([ -f "$f" ] && cksum <"$f" | cut -d' ' -f1)"
}
ttft_figs() { # "TOKENS MS" -> the figures in words
  awk -v t="${1% *}" -v ms="${1#* }" 'BEGIN { printf "%d tokens, TTFT %.3f s, %.1f prompt tok/s", t, ms / 1000, (ms > 0 ? t * 1000 / ms : 0) }'
}
# ttft_one ID L KIND CMD...: run_one under the prompt's params, then the prefill ("TOKENS MS") of its log; a run
# whose log has none failed (pid run without --timings, an engine that stopped before printing its timings).
ttft_one() {
  local id=$1 params; params=$(ttft_params "$2"); shift 2
  run_one "$id" "$@"
  local p; p=$(parse_prefill "$logs/$id.log")
  echo "prefill=$p" >>"$res/$id"
  if [ -n "$p" ]; then
    echo "  $id prefill: $(ttft_figs "$p")"
  elif [ "$(get "$id" status)" = ok ]; then
    echo "status=FAILED (no prompt eval time in its log)" >>"$res/$id"   # get reads the last
    failed "$id: no prompt eval time in its log"
  fi
  publish
}
run_ttft() {
  local L f c tk pi_timings=''
  want pi && "$bin/pid" run --help 2>&1 | grep -q -- --timings && pi_timings=1
  echo "== ttft ($(date -u +%H:%M:%S)): prompts of $ttft tokens at $budget GiB, $ttft_gen tokens decoded after each"
  for L in ${ttft//,/ }; do
    f=$(ttft_prompt "$L") || { failed "ttft: could not write the prompt of $L tokens under $state"; continue; }
    tk=$(cat "${f%.txt}.tokens")
    case $tk in "~"*) tk=$(($(stat -c %s "$f") + 1)) ;; esac   # uncounted: never more tokens than bytes + BOS
    c=$(((tk + ttft_gen + 16 + 63) / 64 * 64))   # + 16: an engine that counts a token or two more
    if want powerinfer; then
      rm -f "$pwri.generated.gpuidx"   # PowerInfer reuses a split solved for another budget or context
      ttft_one "powerinfer-ttft-$L" "$L" eval "${engine_env[@]}" PYTHONPATH="$anchors/pyshim" \
        GGUF_PY="$(gguf_py powerinfer powerinfer-d3ebd7c.tar.xz)" "$pinf/build/bin/main" -m "$pwri" \
        -n "$ttft_gen" -c "$c" -t "$nthreads" -s 1 -f "$f" --ignore-eos --vram-budget "$budget"
    fi
    if want llamacpp; then
      llama_ngl "$c"   # llama-cli whatever --llama-tool says: llama-bench's prompt test is not this text
      ttft_one "llamacpp-ttft-$L" "$L" eval "${engine_env[@]}" "$lcpp/build/bin/llama-cli" -m "$plain" \
        -ngl "$ngl_n" -n "$ttft_gen" -c "$c" -t "$nthreads" -s 1 -f "$f" --ignore-eos -no-cnv
    fi
    if want pi && [ -z "$pi_timings" ]; then
      failed "pi --ttft: \`pid run --help\` lists no --timings, so pid run prints no prefill time"
    elif want pi; then
      # shellcheck disable=SC2086  # --pi-args is a list of words (the predicted runs' flags, as in the decode table)
      ttft_one "pi-predicted-ttft-$L" "$L" pi "$bin/pid" run -m "$pwri" -n "$ttft_gen" --temp 0 -p "$(cat "$f")" \
        --gpu-backend "$backend" --vram-budget "$budget" --ffn predicted --cpu-workers 1 $pi_args -c "$c" --timings
      ttft_one "pi-dense-ttft-$L" "$L" pi "$bin/pid" run -m "$plain" -n "$ttft_gen" --temp 0 -p "$(cat "$f")" \
        --gpu-backend "$backend" --vram-budget "$budget" --ffn dense --cpu-workers 1 -c "$c" --timings
    fi
  done
}

# ---------------------------------------------------------------- --streams
# What a --streams result must have been measured with: shape, budget, tokens, prompt, and the count (pi) or
# "batched" (llama.cpp's one run for every count).
streams_params() { echo "$shape|$budget|$tokens|$(printf %s "$prompt" | cksum | cut -d' ' -f1)|$1"; }
# The daemon of one count is stopped by its own command (pid stop waits for its workers to go), else by the
# pids it and `pictl workers` reported; also on exit, so a call cut short leaves no daemon holding the GPU.
sd_dir='' sd_pids=''
streams_daemon_stop() {
  [ -n "$sd_dir" ] || return 0
  if ! timeout 60 "$bin/pid" stop --listen "ipc://$sd_dir/pid.sock" --pid-file "$sd_dir/pid.pid" >>"$sd_dir/stop.log" 2>&1; then
    local p
    for p in $(cat "$sd_dir/pid.pid" 2>/dev/null) $sd_pids; do kill -9 "$p" 2>/dev/null; done
  fi
  sd_dir='' sd_pids=''
}
# pi with N streams: `pid start --max-seqs N` (its KV cache for N sequences comes out of the budget, as a
# server's would), then N `pictl generate` clients at once; tok/s = what they generated / the wall time from
# the first client's start to the last one's end, prefill and first tokens included. Where pid refuses N
# sequences' KV cache at the budget, it starts again without --max-seqs and sizes the cache itself (sequences
# lowered until the cache takes half of what the weights leave, at most 8): the clients beyond wait in its
# queue, and the table says how many sequences ran. Writes results/pi-streams-N.
streams_pi() { # N ctx
  local n=$1 c=$2 id=pi-streams-$1 d=$state/streams-$1 params i rc=0 st=ok t0 wall='' sums nok gen agg dsum fmean fmax seqs=''
  params=$(streams_params "$n")
  rm -rf "$d" && mkdir -p "$d" || return 1
  printf %s "$prompt" >"$d/prompt.txt"
  local mb=(); [ "$n" -gt 32 ] && mb=(--max-batch "$n")   # a step holds one entry of every stream (default 32)
  local pa=()
  # shellcheck disable=SC2206  # --pi-args is a list of words
  pa=($pi_args)
  local cmd=("$bin/pid" start -m "$pwri" --ffn predicted --gpu-backend "$backend" --vram-budget "$budget" \
    --cpu-workers 1 "${mb[@]}" "${pa[@]}" --timings -c "$c" --listen "ipc://$d/pid.sock" --pid-file "$d/pid.pid" \
    --log-file "$d/pid.log")
  local shown; shown=$(printf ' %q' "${cmd[@]}" --max-seqs "$n"); shown=${shown# }
  echo "$shown" >"$logs/$id.log.cmd"
  vram_start "$logs/$id.vram"
  sd_dir=$d
  timeout -k 10 "$timeout_s" "${cmd[@]}" --max-seqs "$n" >"$logs/$id.log" 2>&1 </dev/null; rc=$?
  if [ "$rc" -ne 0 ] && grep -q "plan: a KV cache of .* needs" "$logs/$id.log"; then
    shown=$(printf ' %q' "${cmd[@]}"); shown=${shown# }
    echo "--- $n sequences do not fit $budget GiB: again, without --max-seqs: $shown" | tee -a "$logs/$id.log"
    timeout -k 10 "$timeout_s" "${cmd[@]}" >>"$logs/$id.log" 2>&1 </dev/null; rc=$?
  fi
  if [ "$rc" -eq 0 ]; then
    sd_pids=$(timeout 10 "$bin/pictl" workers --endpoint "ipc://$d/pid.sock" 2>/dev/null | awk 'NR > 1 { print $2 }')
    seqs=$(sed -n 's/.*KV cache [^(]*([0-9]* positions x \([0-9]*\) sequences\{0,1\}).*/\1/p' "$d/pid.log" | head -1)
    local pids=()
    t0=$(date +%s.%N)
    for ((i = 0; i < n; i++)); do
      timeout -k 10 "$timeout_s" "$bin/pictl" generate --endpoint "ipc://$d/pid.sock" --temp 0 -n "$tokens" \
        -f "$d/prompt.txt" >"$d/out-$i" 2>"$d/err-$i" </dev/null &
      pids+=($!)
    done
    # where steps of N entries spend their time: the status's "last step" line (pid start --timings: the GPU
    # worker's phases), sampled every 0.5 s while the clients run
    ( while :; do
        timeout 5 "$bin/pictl" status --endpoint "ipc://$d/pid.sock" 2>/dev/null | grep "last step:"
        sleep 0.5
      done >"$logs/$id.steps" ) &
    local sampler=$!
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || rc=$?; done
    wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  else
    st="FAILED (pid start)"
  fi
  vram_stop "$logs/$id.vram"
  streams_daemon_stop
  cp "$d/pid.log" "$logs/$id.pid.log" 2>/dev/null
  for ((i = 0; i < n; i++)); do
    [ -f "$d/err-$i" ] && { echo "--- client $i (pictl generate), stderr:"; cat "$d/err-$i"; } >>"$logs/$id.log"
  done
  sums=$(for ((i = 0; i < n; i++)); do [ -f "$d/err-$i" ] && parse_pictl "$d/err-$i"; done | awk -v w="$wall" '
    { k++; g += $1; f += $2; r += $3; if ($2 > m) m = $2 }
    END { if (k) printf "%d %d %.1f %.1f %.3f %.3f\n", k, g, (w > 0 ? g / w : 0), r, f / k / 1000, m / 1000; else print 0 }')
  read -r nok gen agg dsum fmean fmax <<<"$sums"
  if [ "$st" = ok ] && { [ "$rc" -ne 0 ] || [ "$nok" -lt "$n" ]; }; then
    st="FAILED ($nok of $n clients reported)"
    case $rc in 124|137) st="FAILED (timeout ${timeout_s} s; $nok of $n clients reported)" ;; esac
  fi
  {
    echo "status=$st"; echo "rc=$rc"; echo "nok=$nok"; echo "seqs=$seqs"; echo "gen=${gen:-}"; echo "agg=${agg:-}"; echo "dsum=${dsum:-}"
    echo "fmean=${fmean:-}"; echo "fmax=${fmax:-}"; echo "peak_app=$peak_app"; echo "peak_gpu=$peak_gpu"
    echo "wall=$wall"; echo "when=$(date +%s)"; echo "params=$params"; echo "cmd=$shown"
  } >"$res/$id"
  if [ "$st" = ok ]; then
    echo "$id: $agg tok/s ($gen tokens in $wall s, ${seqs:-?} at once), decode $dsum tok/s summed, first token $fmean s mean, peak VRAM (GiB) $(cell_peak "$id" "$params")"
  else
    failed "$id: $st (rc $rc); last lines of $id.log:"; tail -6 "$logs/$id.log" | sed 's/^/    /'
  fi
}
# llama.cpp: llama-batched-bench, one run for every count (prompts of P dummy tokens, P = --prompt's count, not
# shared), where a build made it; build_llamacpp.sh does not, and the table says "not built" then.
streams_llamacpp() {
  local b=$lcpp/build/bin/llama-batched-bench id=llamacpp-streams params pp c max=${streams##*,}
  if [ ! -x "$b" ]; then
    echo "llama.cpp --streams: not built ($b; build_llamacpp.sh builds llama-bench and llama-cli only)"
    return 0
  fi
  params=$(streams_params batched)
  pp=$(printf %s "$prompt" | ntok) || pp=$(($(printf %s "$prompt" | wc -c) / 4 + 1))
  c=$(((max * (pp + tokens) + 63) / 64 * 64))   # every stream's prompt and tokens in one KV cache
  llama_ngl "$c"
  run_one "$id" batched-bench "${engine_env[@]}" "$b" -m "$plain" -ngl "$ngl_n" -c "$c" -b 2048 -ub 512 \
    -npp "$pp" -ntg "$tokens" -npl "$streams" -t "$nthreads"
  parse_batched_bench "$logs/$id.log" | while read -r k stg agg; do echo "b$k=$agg $stg"; done >>"$res/$id"
  publish
}
run_streams() {
  local n
  echo "== streams ($(date -u +%H:%M:%S)): $streams concurrent streams of $tokens tokens at $budget GiB"
  if want pi; then
    local pt c
    pt=$(printf %s "$prompt" | ntok) || pt=$plen   # bytes bound a prompt's tokens where pictl cannot count them
    c=$(((pt + tokens + 16 + 15) / 16 * 16))   # every KV position counts N times: no more than the streams use
    # (in 64s, 16 sequences of 192 missed 12.6 GiB by 0.01 GiB in session 14, and 8 ran at once)
    trap streams_daemon_stop EXIT
    trap 'streams_daemon_stop; stop_run; exit 130' INT TERM
    for n in ${streams//,/ }; do streams_pi "$n" "$c"; publish; done
    trap - EXIT
    trap 'stop_run; exit 143' INT TERM
  fi
  want llamacpp && streams_llamacpp
  want powerinfer && echo "PowerInfer --streams: not run (its build makes only main, which decodes one sequence)"
  return 0
}

# The table (and bench_compare.md) from every result stored under MODEL_DIR.
cell_tps() { # id
  have "$1" || { echo "–"; return; }
  local s; s=$(get "$1" status)
  if [ "$s" != ok ]; then echo "FAILED"; return; fi
  local m=""; [ "$(get "$1" when)" -lt "$this_call" ] && m=" †"
  local n; n=$(get "$1" tps_runs | wc -w)
  echo "$(get "$1" tps)$([ "$n" -gt 1 ] && echo " (median of $n)")$m"
}
cell_peak() { # id [params]
  have "$1" "${2:-}" || { echo "–"; return; }
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
  # .deps/pi-commit first: the device's copy of the tree may carry a stale .git (seen: HEAD one commit behind)
  if [ -n "${PI_COMMIT:-}" ]; then
    commit=$PI_COMMIT
  elif [ -s .deps/pi-commit ]; then
    commit="$(cat .deps/pi-commit) (when --stage prepare ran)"
  elif commit=$(git rev-parse --short HEAD 2>/dev/null); then
    git diff --quiet HEAD -- 2>/dev/null || commit="$commit (+ uncommitted changes)"
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
  echo "| pi --ffn predicted${pi_args:+ $pi_args} (PWRI, --vram-budget $budget / $all_budget) | $(cell_tps pi-predicted-budget) | $(cell_tps pi-predicted-all) | $(cell_peak pi-predicted-budget) | $(cell_peak pi-predicted-all) | n/a |"
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
  for id in powerinfer-budget pi-predicted-budget; do
    have "$id" && [ -n "$(get "$id" tps_runs)" ] && echo "- $id, every run in the order they ran (--reps): $(get "$id" tps_runs) tok/s"
  done
  for id in pi-predicted-budget pi-dense-budget; do
    have "$id" && grep -m1 "placement:" "$logs/$id.log" | sed "s/^pid run: placement: /- $id placement: /"
  done
  local w f
  for w in $warm_sweep; do   # the sweep's runs (this call's): tok/s and the decode table's main rows
    f=$logs/pi-sweep-w$w.log
    if ! have "pi-sweep-w$w" || [ ! -f "$f" ]; then continue; fi
    echo "- --warm-sweep, --warm-share $w: $(get "pi-sweep-w$w" tps) tok/s ($(get "pi-sweep-w$w" status)); ms a token:" \
      "attn $(pi_timings_ms "$f" "gpu attn"), predict $(pi_timings_ms "$f" "gpu predict"), hot ffn $(pi_timings_ms "$f" "gpu hot ffn")," \
      "wait for cpu $(pi_timings_ms "$f" "gpu wait for cpu"), CPU cold ffn $(pi_timings_ms "$f" "cpu:0 cold ffn"), wall $(pi_timings_ms "$f" wall);" \
      "control + sync $(pi_control "$f" "$(getmeta n_layer)")"
  done
  for id in powerinfer-budget powerinfer-all llamacpp-budget llamacpp-all pi-predicted-budget pi-predicted-all pi-dense-budget pi-dense-all; do
    have "$id" || continue
    [ "$(get "$id" status)" = ok ] && continue
    echo "- $id $(get "$id" status), rc $(get "$id" rc): \`$(get "$id" cmd)\`; last lines of its log:"
    echo '  ```'; tail -6 "$logs/$id.log" | sed 's/^/  /'; echo '  ```'
  done
  for id in pi-predicted-budget pi-predicted-all pi-dense-budget pi-dense-all; do
    have "$id-timings" || continue
    echo "- $id --timings ($(get "$id-timings" status), $(get "$id-timings" tps) tok/s), control + sync" \
      "$(pi_control "$logs/$id-timings.log" "$(getmeta n_layer)"); stderr, the decode table:"
    # the decode steps' table (pid run prints the prefill steps' one after it: its header only here)
    echo '  ```'; sed '/timings per prefill step/q' "$logs/$id-timings.log" | tail -22 | sed 's/^/  /'; echo '  ```'
  done
  render_ttft
  render_streams
}
# ---------------------------------------------------------------- the --ttft and --streams tables
# Their counts: the option's, else those of the results stored so far with this call's settings, so --table
# shows them; with neither, no section at all (the output of a call without the options is as it was).
stored_counts() { # ttft|streams -> the counts some stored result names, one a line
  { find "$res" -maxdepth 1 -name "*-$1-*" -printf '%f\n' 2>/dev/null | sed -n "s/.*-$1-\([0-9][0-9]*\)$/\1/p"
    [ "$1" = streams ] && have llamacpp-streams "$(streams_params batched)" && sed -n 's/^b\([0-9][0-9]*\)=.*/\1/p' "$res/llamacpp-streams"
  } | sort -n -u
}
earlier() { [ "$(get "$1" when)" -lt "$this_call" ] && echo " †"; }   # id (stored): measured by an earlier call
cmd_ngl() { local c; c=$(get "$1" cmd); case $c in *" -ngl "*) c=${c#* -ngl }; echo "${c%% *}" ;; *) echo "?" ;; esac; }
fail_notes() { # params id...: the status and the end of the log of each stored run that failed
  local p=$1 id; shift
  for id in "$@"; do
    have "$id" "$p" || continue
    [ "$(get "$id" status)" = ok ] && continue
    echo "- $id $(get "$id" status), rc $(get "$id" rc); last lines of its log:"
    echo '  ```'; tail -6 "$logs/$id.log" | sed 's/^/  /'; echo '  ```'
  done
}
ttft_cells() { # id params -> tokens | TTFT s | prompt tok/s
  have "$1" "$2" || { echo "– | – | –"; return; }
  [ "$(get "$1" status)" = ok ] || { echo "FAILED | – | –"; return; }
  get "$1" prefill | awk -v m="$(earlier "$1")" '{ printf "%d | %.3f%s | %.1f", $1, $2 / 1000, m, ($2 > 0 ? $1 * 1000 / $2 : 0) }'
}
ttft_ratio() { # id id params: the first's prompt tok/s over the second's
  if have "$1" "$3" && have "$2" "$3" && [ "$(get "$1" status)" = ok ] && [ "$(get "$2" status)" = ok ]; then
    awk -v a="$(get "$1" prefill)" -v b="$(get "$2" prefill)" 'BEGIN { split(a, x, " "); split(b, y, " ")
      if (x[2] > 0 && y[2] > 0 && y[1] > 0) printf "%.2fx", (x[1] / x[2]) / (y[1] / y[2]); else print "n/a" }'
  else echo "n/a"; fi
}
render_ttft() {
  local list=$ttft L p e id name
  if [ -z "$list" ]; then
    for L in $(stored_counts ttft); do
      p=$(ttft_params "$L")
      for e in powerinfer llamacpp pi-predicted pi-dense; do have "$e-ttft-$L" "$p" && { list+=,$L; break; }; done
    done
    list=${list#,}
  fi
  [ -n "$list" ] || return 0
  echo
  echo "## Time to first token @ $budget GiB (--ttft)"
  echo
  echo "| prompt (tokens) | engine / config | prompt tokens it counted | TTFT s | prompt tok/s | peak VRAM GiB |"
  echo "|---|---|---|---|---|---|"
  for L in ${list//,/ }; do
    p=$(ttft_params "$L")
    for e in powerinfer llamacpp pi-predicted pi-dense; do
      id=$e-ttft-$L
      case $e in
        powerinfer) name="PowerInfer (PWRI, --vram-budget $budget)" ;;
        llamacpp) name="llama.cpp dense (plain, llama-cli -ngl $(cmd_ngl "$id"))" ;;
        pi-predicted) name="pi --ffn predicted${pi_args:+ $pi_args} (PWRI, --vram-budget $budget)" ;;
        pi-dense) name="pi --ffn dense (plain, --vram-budget $budget)" ;;
      esac
      echo "| $L | $name | $(ttft_cells "$id" "$p") | $(cell_peak "$id" "$p") |"
    done
  done
  echo
  for L in ${list//,/ }; do
    p=$(ttft_params "$L")
    echo "- $L-token prompt, prompt tok/s: pi predicted / PowerInfer $(ttft_ratio "pi-predicted-ttft-$L" "powerinfer-ttft-$L" "$p");" \
      "pi dense / llama.cpp dense $(ttft_ratio "pi-dense-ttft-$L" "llamacpp-ttft-$L" "$p")"
  done
  echo
  echo "Notes (--ttft):"
  echo "- The prompt of L tokens: $state/ttft-L.txt, the corpus's start as one line of ASCII (else --prompt"
  echo "  repeated) cut to L tokens, BOS included, by pictl tokenize on the anchors' vocabulary (ttft-L.tokens: the"
  echo "  count); the same bytes for every engine (PowerInfer and llama.cpp -f, pi -p). -c: the prompt + $ttft_gen + 16,"
  echo "  in 64s; $ttft_gen tokens decoded after it. llama.cpp's -ngl fits the budget with that context's KV cache."
  echo "- TTFT: PowerInfer and llama.cpp, their \`prompt eval time\`; pi, \`pid run --timings\`' prefill (the wall time"
  echo "  of the steps that fed the prompt, the last of which gives the first token's logits; with the timestamps"
  echo "  --timings adds). None counts loading, tokenizing or sampling the first token. prompt tok/s = tokens / TTFT."
  for L in ${list//,/ }; do
    fail_notes "$(ttft_params "$L")" "powerinfer-ttft-$L" "llamacpp-ttft-$L" "pi-predicted-ttft-$L" "pi-dense-ttft-$L"
  done
  # where pi's time to the first token went: its prefill steps' phases (pid run --timings, this call's logs)
  for L in ${list//,/ }; do
    for id in pi-predicted-ttft-$L pi-dense-ttft-$L; do
      grep -q "timings per prefill step" "$logs/$id.log" 2>/dev/null || continue
      echo "- $id, the prefill steps' table:"
      echo '  ```'; sed -n '/timings per prefill step/,$p' "$logs/$id.log" | sed 's/^/  /'; echo '  ```'
    done
  done
}
stream_cells_pi() { # N -> generated / wall | decode summed | first token mean / max | peak VRAM
  local id=pi-streams-$1 p; p=$(streams_params "$1")
  have "$id" "$p" || { echo "– | – | – | –"; return; }
  if [ "$(get "$id" status)" != ok ]; then echo "FAILED | – | – | $(cell_peak "$id" "$p")"; return; fi
  # The streams' own rates add up only while they all decode together: not where some waited in pid's queue.
  local q d; q=$(get "$id" seqs) d=$(get "$id" dsum)
  if [ "$q" = "$1" ]; then q=''; else q=" (${q:-?} at once)" d="n/a (in turns)"; fi
  echo "$(get "$id" agg)$q$(earlier "$id") | $d | $(get "$id" fmean) / $(get "$id" fmax) | $(cell_peak "$id" "$p")"
}
stream_cells_llama() { # N -> generated / wall | decode (S_TG)
  local id=llamacpp-streams p r; p=$(streams_params batched)
  if ! have "$id" "$p"; then
    if [ -x "$lcpp/build/bin/llama-batched-bench" ]; then echo "– | –"; else echo "not built | not built"; fi
    return
  fi
  [ "$(get "$id" status)" = ok ] || { echo "FAILED | FAILED"; return; }
  r=$(get "$id" "b$1")
  if [ -n "$r" ]; then echo "${r% *}$(earlier "$id") | ${r#* }"; else echo "– | –"; fi
}
render_streams() {
  local list=$streams n
  if [ -z "$list" ]; then
    for n in $(stored_counts streams); do
      { have "pi-streams-$n" "$(streams_params "$n")" || [ -n "$(get llamacpp-streams "b$n")" ]; } && list+=,$n
    done
    list=${list#,}
  fi
  [ -n "$list" ] || return 0
  echo
  echo "## Concurrent streams @ $budget GiB, $tokens tokens each (--streams)"
  echo
  echo "| streams | pi --ffn predicted: tok/s, generated / wall | pi: decode tok/s, the streams' summed | pi: first token s, mean / max | pi: peak VRAM GiB | llama.cpp dense: tok/s, generated / wall | llama.cpp: decode tok/s (S_TG) |"
  echo "|---|---|---|---|---|---|---|"
  for n in ${list//,/ }; do echo "| $n | $(stream_cells_pi "$n") | $(stream_cells_llama "$n") |"; done
  echo
  echo "Notes (--streams):"
  echo "- pi: for each count N, \`pid start -m $(basename "$pwri") --ffn predicted --vram-budget $budget --cpu-workers 1 --max-seqs N"
  echo "  ${pi_args:+$pi_args }--timings -c C\` (C: the prompt's tokens + $tokens + 16, in 16s; the KV cache of N sequences comes out of the budget, so"
  echo "  the hot set shrinks as N grows; where pid refuses it, pid sizes the cache itself without --max-seqs, and"
  echo "  \"(M at once)\" says how many sequences it decoded together, the other clients waiting in its queue), then N"
  echo "  \`pictl generate --temp 0 -n $tokens\` clients on --prompt, started together; generated / wall: the tokens they"
  echo "  got over the time from the first one's start to the last one's end (prefill and first tokens included);"
  echo "  decode: the sum of the clients' own tok/s (tokens after the first over their time), where all N ran at"
  echo "  once; then \`pid stop\`."
  echo "- llama.cpp: llama-batched-bench -npl LIST -npp P -ntg $tokens (P dummy prompt tokens per stream, not shared;"
  echo "  -ngl fitting the budget with the KV cache of the largest count); generated / wall = B x TG / T. build_llamacpp.sh"
  echo "  builds llama-bench and llama-cli only: \"not built\" unless bench-engines/llama.cpp holds llama-batched-bench."
  echo "- PowerInfer: not run. build_powerinfer.sh builds only \`main\`, which decodes one sequence; the batched examples"
  echo "  in its tree are not built, and building them would change the anchors' build."
  for n in ${list//,/ }; do
    have "pi-streams-$n" "$(streams_params "$n")" && grep -m1 '^pid [0-9]*: hot ' "$logs/pi-streams-$n.pid.log" 2>/dev/null \
      | sed "s/^pid [0-9]*: /- pi-streams-$n placement: /; s/; starting workers$//"
  done
  for n in ${list//,/ }; do
    if ! have "pi-streams-$n" "$(streams_params "$n")" || [ ! -s "$logs/pi-streams-$n.steps" ]; then continue; fi
    echo "- pi-streams-$n: the step of the most tokens among \`pictl status\`'s \"last step\" lines sampled every 0.5 s"
    echo "  while the clients ran ($(wc -l <"$logs/pi-streams-$n.steps") samples; ms, pid start --timings):"
    echo '  ```'
    sort -t, -k2 -n -s "$logs/pi-streams-$n.steps" | awk -F, '{ split($2, a, " "); if (a[1] + 0 >= m) { m = a[1] + 0; l = $0 } } END { print l }' \
      | sed 's/^ */  /'
    echo '  ```'
  done
  for n in ${list//,/ }; do fail_notes "$(streams_params "$n")" "pi-streams-$n"; done
  fail_notes "$(streams_params batched)" llamacpp-streams
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
  pwi_run() { # id budget
    rm -f "$pwri.generated.gpuidx"   # PowerInfer reuses a split solved for another budget
    run_one "$1" eval "${engine_env[@]}" PYTHONPATH="$anchors/pyshim" \
      GGUF_PY="$(gguf_py powerinfer powerinfer-d3ebd7c.tar.xz)" "$pinf/build/bin/main" -m "$pwri" \
      -n "$tokens" -c "$ctx" -t "$nthreads" -s 1 -p "$prompt" --ignore-eos --vram-budget "$2"
    publish
  }
  if [ -z "$no_decode" ] && want powerinfer; then
    pwi_run powerinfer-budget "$budget"
    pwi_run powerinfer-all "$all_budget"
  fi
  if [ -z "$no_decode" ] && want llamacpp; then
    llama_ngl "$ctx"; n=$ngl_n
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
    pirun() { # id model mode budget extra... (--pi-args: the predicted runs')
      local id=$1 m=$2 mode=$3 b=$4 pa=(); shift 4
      # shellcheck disable=SC2206  # --pi-args is a list of words
      [ "$mode" = predicted ] && pa=($pi_args)
      run_one "$id" pi "$bin/pid" run -m "$m" -n "$tokens" --temp 0 -p "$prompt" --gpu-backend "$backend" \
        --vram-budget "$b" --ffn "$mode" --cpu-workers 1 "${pa[@]}" "$@"
      publish
    }
    # Each configuration, then (with --timings) its timed twin at once: a twin right after the slow dense run
    # at the budget met a host still busy (session 17: the CPU worker's cold FFN 44.8 ms a token against 4.3).
    pi_twins() { # timed id model mode budget
      pirun "$2" "$3" "$4" "$5"
      [ -z "$1" ] || pirun "$2-timings" "$3" "$4" "$5" --timings   # not a row of the table: notes
    }
    pi_all() { # timed (1 or '')
      pi_twins "$1" pi-predicted-budget "$pwri" predicted "$budget"
      pi_twins "$1" pi-predicted-all "$pwri" predicted "$all_budget"
      pi_twins "$1" pi-dense-all "$plain" dense "$all_budget"
      pi_twins "$1" pi-dense-budget "$plain" dense "$budget"    # the slow one last: a call cut short keeps the rest
    }
  fi
  if [ -z "$no_decode" ] && want pi && [ -n "$warm_sweep" ]; then
    best='' best_tps=0
    for w in $warm_sweep; do
      pirun "pi-sweep-w$w" "$pwri" predicted "$budget" --warm-share "$w" --timings
      t=$(get "pi-sweep-w$w" tps)
      [ "$(get "pi-sweep-w$w" status)" = ok ] && awk -v a="$t" -v b="$best_tps" 'BEGIN { exit !(a > b) }' &&
        best=$w best_tps=$t
    done
    if [ -n "$best" ]; then
      echo "warm sweep: --warm-share $best was the fastest ($best_tps tok/s): every pi --ffn predicted run takes it"
      pi_args="${pi_args:+$pi_args }--warm-share $best"
    else
      failed "warm sweep: no run succeeded; pi's runs keep the default share"
    fi
  fi
  if [ -z "$no_decode" ] && want pi; then
    tm=''
    if [ -n "$timings" ]; then
      if "$bin/pid" run --help 2>&1 | grep -q -- --timings; then tm=1
      else echo "pid run --help lists no --timings: no timing runs"; fi
    fi
    pi_all "$tm"
  fi
  if [ -z "$no_decode" ] && [ "$reps" -gt 1 ]; then
    echo "== repeats ($(date -u +%H:%M:%S)): PowerInfer and pi --ffn predicted at $budget GiB, $reps runs each in all"
    for ((r = 2; r <= reps; r++)); do
      want powerinfer && pwi_run "powerinfer-budget-r$r" "$budget"
      want pi && pirun "pi-predicted-budget-r$r" "$pwri" predicted "$budget"
    done
    want powerinfer && median_into powerinfer-budget
    want pi && median_into pi-predicted-budget
    publish
  fi
  [ -z "$ttft" ] || run_ttft
  [ -z "$streams" ] || run_streams
fi

publish
if want_stage run || [ -n "$table_only" ]; then
  echo; sed -n '/^| engine/,$p' "$out/bench_compare.md"
fi
echo
echo "bench_compare: $failures failures; $out/bench_compare.md, $out/bench_compare-logs.tgz"
[ "$failures" -eq 0 ]

#!/usr/bin/env bash
# Issue 10's GPU line on the lent GPU machine: the GPU worker restarted during a generation with the 13B PWRI
# model at a VRAM budget, by kill -9 and by `pictl restart-worker gpu`: back within 2 s, nothing copied to the
# device again (pid keeps the VRAM), the same greedy text as without the fault.
# Run it on a warm machine after scripts/bench_compare.sh has built build-dev and written the model (carry .deps):
#   scripts/device_restart.sh [MODEL] [BUDGET_GIB] [pid start flags...]
# (default /dev/shm/pi-bench/pwri-13b/13b-pwri.gguf at 12.6 with --cpu-workers 1 --predictor-type q8_0).
# Prints, per fault, the time until the new worker was ready, its Ready line (the load's phases) and the CUDA
# backend's context / arena / warm-row times from pid's log; logs under $OUT. Exit status 1 when a line fails.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-/tmp/out}; mkdir -p "$out"
# Its lines also to $out/device_restart.txt. (Session 16 sent them to $out/restart.txt, the file the
# restart case's text is written to, and the two writers garbled the comparison: texts are text-*.txt now.)
exec > >(tee "$out/device_restart.txt") 2>&1
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh; pi_device_env .deps/offline-debs
model=${1:-/dev/shm/pi-bench/pwri-13b/13b-pwri.gguf} budget=${2:-12.6}
shift $(( $# > 2 ? 2 : $# ))
flags=("$@"); [ ${#flags[@]} -gt 0 ] || flags=(--cpu-workers 1 --predictor-type q8_0)
b=$(pwd)/build-dev/bin ep=ipc:///tmp/pi-restart.sock log=/tmp/pid-restart.log fails=0
prompt="Once upon a time, in a small village"
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
now_ms() { date +%s%3N; }
field() { "$b/pictl" workers --endpoint $ep 2>/dev/null | awk -v n="$1" -v f="$2" '$1==n{print $f}'; }
[ -f "$model" ] || { echo "device_restart: no model at $model (run scripts/bench_compare.sh --stage models first)"; exit 1; }
[ -x "$b/pid" ] || { echo "device_restart: no $b/pid (run scripts/bench_compare.sh --stage build first)"; exit 1; }
# Its files in one archive at the end (the device returns a few files a call).
trap '"$b/pid" stop --listen $ep >/dev/null 2>&1; cp -f $log "$out/pid-restart.log" 2>/dev/null
  tar -czf /tmp/restart-logs.tgz -C "$out" --exclude restart-logs.tgz . 2>/dev/null && mv /tmp/restart-logs.tgz "$out/"' EXIT
rm -f $log
t0=$(now_ms)
timeout 300 "$b/pid" start -m "$model" --vram-budget "$budget" "${flags[@]}" --listen $ep --log-file $log \
  >"$out/start.txt" 2>&1 || { cat "$out/start.txt"; echo "device_restart: pid start failed"; exit 1; }
echo "pid start: $(( $(now_ms) - t0 )) ms"
timeout 120 "$b/pictl" generate --endpoint $ep --temp 0 -n 256 "$prompt" >"$out/text-ref.txt" 2>"$out/ref.err" \
  || { cat "$out/ref.err"; echo "device_restart: the reference generation failed"; exit 1; }
[ -s "$out/text-ref.txt" ] || { echo "device_restart: the reference text is empty"; exit 1; }
echo "reference: $(tail -1 "$out/ref.err")"
# Where a text parts from the reference (cmp's first differing byte), to tell a fault's change from a run's.
differs() { echo "$(cmp "$out/text-ref.txt" "$1" 2>&1 | head -1); $(wc -c <"$out/text-ref.txt") and $(wc -c <"$1") bytes"; }
# The same request again without a fault: the reference must repeat, or no restart can be judged by it.
timeout 120 "$b/pictl" generate --endpoint $ep --temp 0 -n 256 "$prompt" >"$out/text-again.txt" 2>"$out/again.err" \
  || fail "the second generation without a fault failed: $(tail -1 "$out/again.err")"
if cmp -s "$out/text-ref.txt" "$out/text-again.txt"; then echo "again, no fault: SAME as the reference"
else fail "again, no fault: text DIFFERENT from the reference ($(differs "$out/text-again.txt"))"; fi
for how in kill restart; do
  old=$(field gpu 2)
  [ -n "$old" ] || { fail "$how: no GPU worker pid"; continue; }
  timeout 120 "$b/pictl" generate --endpoint $ep --temp 0 -n 256 "$prompt" >"$out/text-$how.txt" 2>"$out/$how.err" &
  gen=$!
  sleep 1.5
  t=$(now_ms)
  # When the old process was gone (reaped by pid, which SIGCHLD tells once every thread has exited: a zombie
  # leader alone says nothing, its threads may still be tearing the process down): the exit's share of the time.
  ( while [ -e "/proc/$old" ]; do sleep 0.005; done; now_ms ) >"$out/exit-$how.ms" &
  if [ $how = kill ]; then kill -9 "$old"; else "$b/pictl" restart-worker gpu --endpoint $ep >"$out/rw.txt" 2>&1 || fail "pictl restart-worker gpu: $(cat "$out/rw.txt")"; fi
  new='' st=''
  while [ $(( $(now_ms) - t )) -lt 60000 ]; do
    new=$(field gpu 2) st=$(field gpu 3)
    [ -n "$new" ] && [ "$new" != "$old" ] && [ "$st" = ready ] && break
    sleep 0.05
  done
  ms=$(( $(now_ms) - t ))
  wait $! 2>/dev/null
  echo "$how: GPU worker $old -> $new ($st) after $ms ms (the old process had exited after $(( $(cat "$out/exit-$how.ms") - t )) ms)"
  if [ "$st" != ready ] || [ "$new" = "$old" ]; then fail "$how: the GPU worker did not come back"; fi
  [ "$ms" -le 2000 ] || fail "$how: back after $ms ms, not within 2 s"
  wait $gen || fail "$how: the generation failed: $(tail -1 "$out/$how.err")"
  echo "  generation: $(tail -1 "$out/$how.err")"
  if cmp -s "$out/text-ref.txt" "$out/text-$how.txt"; then echo "  text: SAME as the reference"
  else fail "$how: text DIFFERENT from the reference ($(differs "$out/text-$how.txt"))"; fi
  ready=$(grep "worker gpu ready (pid $new," $log | tail -1)
  echo "  ${ready#pid: }"
  grep -B3 "worker gpu ready (pid $new," $log | grep "cuda backend:" | tail -1 | sed 's/^/  /'
  case $ready in *"0.0 MiB copied in, kept memory taken as it was"*) ;; *) fail "$how: the new worker copied weights in again" ;; esac
done
echo "device_restart: $fails failures ($(( $(now_ms) - t0 )) ms)"
exit $((fails > 0))

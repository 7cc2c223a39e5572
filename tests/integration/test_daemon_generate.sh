#!/bin/bash
# pid with 2 CPU workers and the host GPU backend, some neurons cold: greedy output equals llama2.c's exactly, the three workers are separate processes, status/stop work and clean up, and startup errors read well.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup daemon_generate

timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 2 --gpu-backend host --max-seqs 4 \
    --vram-budget $SOME_COLD_GIB --listen "$EP" >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids
DAEMON=$(cat "$D/pid.pid") || fail "no pidfile"

generate_expected "$D/out.txt" || fail "pictl generate: $(cat "$D/out.txt.err")"
same_as_expected "$D/out.txt" || { diff "$D/out.txt" "$EXPECTED" | head; fail "output differs from the reference"; }
echo "ok: greedy output equals $EXPECTED"

# Three separate worker processes, none of them pid itself.
"$B/pictl" workers --endpoint "$EP" >"$D/workers.txt" || fail "pictl workers"
cat "$D/workers.txt"
[ "$(awk 'NR>1' "$D/workers.txt" | wc -l)" = 3 ] || fail "expected 3 workers"
for name in gpu cpu:0 cpu:1; do
    p=$(awk -v n=$name '$1==n{print $2}' "$D/workers.txt")
    st=$(awk -v n=$name '$1==n{print $3}' "$D/workers.txt")
    [ -n "$p" ] && [ "$p" != "$DAEMON" ] && kill -0 "$p" || fail "worker $name has no process of its own"
    [ "$st" = ready ] || fail "worker $name is $st"
    comm=$(ps -o comm= -p "$p")
    case $name in gpu) want=pi-gpu-worker ;; *) want=pi-cpu-worker ;; esac
    [ "$comm" = "$want" ] || fail "worker $name runs '$comm', not $want"
done
[ "$(awk 'NR>1{print $2}' "$D/workers.txt" | sort -u | wc -l)" = 3 ] || fail "worker pids not distinct"
echo "ok: three separate worker processes"
# The cold shards asked for transparent huge pages (cpu_worker/shard.c), which the kernel takes unless THP is off.
thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)
if [ -n "$thp" ] && [[ $thp != *"[never]"* ]]; then
    grep "^cpu:" "$D/workers.txt" | grep -q "(no huge pages)" && fail "a CPU worker's shard has no huge pages (THP: $thp)"
    echo "ok: the CPU workers' shards advised huge pages (THP: $thp)"
else
    echo "note: transparent huge pages are off here ('${thp:-no THP}'): the huge-page check is skipped"
fi

"$B/pid" status --listen "$EP" >"$D/status.txt" || fail "pid status"
cat "$D/status.txt"
hot=$(sed -n 's/^placement: hot \([0-9]*\)\/\([0-9]*\).*/\1 \2/p' "$D/status.txt")
set -- $hot
[ -n "${1:-}" ] && [ "$1" -gt 0 ] && [ "$1" -lt "$2" ] || fail "placement should leave some neurons cold: '$hot'"
grep -q "^pid $DAEMON " "$D/status.txt" || fail "status names another pid"
echo "ok: pid status ($1 of $2 neurons hot)"

# A second pid on the same endpoint is refused with a clear message.
"$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --listen "$EP" --pid-file "$D/other.pid" \
    >"$D/second.out" 2>&1 && fail "a second pid started on a busy endpoint"
grep -q "already listening at $EP" "$D/second.out" || { cat "$D/second.out"; fail "busy endpoint message"; }
echo "ok: busy endpoint refused: $(head -1 "$D/second.out")"

SHM=/dev/shm/pi-step-$DAEMON
[ -e "$SHM" ] || fail "no step segment $SHM while running"
W=$(worker_pids)
timeout 60 "$B/pid" stop --listen "$EP" || fail "pid stop"
alive "$DAEMON" && fail "pid still running after stop"
for p in $W; do alive "$p" && fail "worker $p still running after stop"; done
[ -e "$D/pid.sock" ] && fail "socket left behind"
[ -e "$D/pid.pid" ] && fail "pidfile left behind"
[ -e "$SHM" ] && fail "step segment left behind"
ls "$D"/ctl-*.sock >/dev/null 2>&1 && fail "control socket left behind"
grep -q "ERROR: LeakSanitizer\|runtime error" "$D/pid.log" && fail "sanitizer report in pid.log"
echo "ok: pid stop cleaned up"

# Startup errors users will hit.
"$B/pid" start -m "$D/missing.gguf" --listen "$EP" >"$D/e1.out" 2>&1 && fail "started without a model file"
grep -q "missing.gguf" "$D/e1.out" || { cat "$D/e1.out"; fail "missing model message"; }
echo "ok: $(head -1 "$D/e1.out")"
head -c 4096 /dev/urandom >"$D/bad.gguf"
timeout 60 "$B/pid" start -m "$D/bad.gguf" --cpu-workers 1 --gpu-backend host --listen "$EP" >"$D/e2.out" 2>&1 \
    && fail "started on a corrupt model"
grep -q "bad.gguf" "$D/e2.out" || { cat "$D/e2.out"; fail "corrupt model message"; }
echo "ok: corrupt model refused:"; cat "$D/e2.out"
[ -e "$D/pid.pid" ] && fail "pidfile left by a failed start"
echo PASS

#!/bin/bash
# kill -9 of a CPU worker, then of the GPU worker, during a generation: the request completes (or fails with a clear error), the worker is back (new pid, ready) within 2 s, the restarted GPU worker copies nothing in (it takes the memory pid kept), and the next greedy generation is byte-identical to the reference.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup daemon_kill

timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 2 --gpu-backend "$GPU_BACKEND" --max-seqs 4 \
    --listen "$EP" >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids

now_ms() { date +%s%3N; }

kill_during_generation() {
    local name=$1 old new st t0 gen rc
    old=$(worker_field "$name" 2)
    [ -n "$old" ] || fail "no pid for worker $name"
    timeout 120 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 200 --json "" >"$D/kill-$name.json" \
        2>"$D/kill-$name.err" &
    gen=$!
    sleep 0.3
    t0=$(now_ms)
    kill -9 "$old" || fail "could not kill $name ($old)"
    # Back within 2 s: a new pid, state ready.
    while :; do
        new=$(worker_field "$name" 2)
        st=$(worker_field "$name" 3)
        [ -n "$new" ] && [ "$new" != "$old" ] && [ "$new" != 0 ] && [ "$st" = ready ] && break
        [ $(( $(now_ms) - t0 )) -gt 2000 ] && fail "worker $name not back within 2 s (pid '$new', state '$st')"
        sleep 0.05
    done
    echo "ok: worker $name back after $(( $(now_ms) - t0 )) ms (pid $old -> $new)"
    PIDS_TO_KILL="$PIDS_TO_KILL $new"
    wait "$gen"
    rc=$?
    if [ $rc = 0 ]; then
        /usr/bin/python3 - "$D/kill-$name.json" "$EXPECTED" <<'PY' || fail "generation across the kill of $name differs"
import json, sys
j = json.load(open(sys.argv[1]))
want = open(sys.argv[2], encoding='utf-8').read().rstrip('\n')
got = j['text'].rstrip('\n')
print("   retried steps:", j.get('retried_steps'), "generated:", j.get('generated_tokens'))
open(sys.argv[1] + ".retried", "w").write(str(j.get('retried_steps') or 0))
sys.exit(0 if got == want else 1)
PY
        echo "ok: the generation in flight completed, identical to the reference"
    else
        [ -s "$D/kill-$name.err" ] || fail "generation failed with no message"
        echo "ok: the generation in flight failed with: $(cat "$D/kill-$name.err")"
    fi
    generate_expected "$D/after-$name.txt" || fail "generation after $name restart: $(cat "$D/after-$name.txt.err")"
    same_as_expected "$D/after-$name.txt" || fail "output after the $name restart differs"
    echo "ok: next generation after the $name restart equals the reference"
    [ "$(worker_field "$name" 4)" -ge 1 ] || fail "restart count of $name not counted"
}

kill_during_generation cpu:0
kill_during_generation gpu

# The restarted GPU worker took the memory pid kept as it was: nothing copied in again.
grep -q "pid: keeping the GPU worker's memory" "$D/pid.log" || fail "pid did not keep the GPU worker's memory"
n=$(grep -c "worker gpu ready.*0.0 MiB copied in, kept memory taken as it was" "$D/pid.log")
[ "$n" = 1 ] || { grep "worker gpu ready" "$D/pid.log" >&2; fail "want one GPU worker restart that copied nothing, got $n"; }
echo "ok: $(grep -o "worker gpu ready.*" "$D/pid.log" | tail -1 | grep -o "[0-9.]* MiB copied in[^)]*")"
# ... its KV cache too: the generation in flight went on from where it was, without a replay (and its
# text was checked equal to the reference above).
# (When the kill came after the generation had ended, there was nothing to resume.)
if [ "$(cat "$D/kill-gpu.json.retried" 2>/dev/null || echo 0)" -gt 0 ]; then
    grep -q "pid: 1 sequence resume from the kept KV cache (no replay)" "$D/pid.log" ||
        { grep "kept KV\|keeping" "$D/pid.log" >&2; fail "the sequence in flight replayed instead of resuming from the kept KV cache"; }
    echo "ok: the generation in flight resumed from the kept KV cache"
else
    echo "note: the kill of gpu came after the generation ended (no step retried): nothing to resume"
fi

timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
grep -q "ERROR: LeakSanitizer\|runtime error" "$D/pid.log" && fail "sanitizer report in pid.log"
echo PASS

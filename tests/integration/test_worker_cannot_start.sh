#!/bin/bash
# A worker that cannot come back (its binary gone): after kill -9 of the CPU worker mid-generation, pid's restarts
# fail at exec, and the request in flight fails within 5 s with one clear error naming the worker and why ("worker
# cpu:0 cannot start (2 starts in a row failed): exited with status 127 (could not exec the worker binary)"), not
# after the 30 s pid gives a slow load; a request sent while it still cannot start fails the same way. pid keeps
# serving: once the binary is back the worker is restarted (back-off up to 5 s) and the reference text comes out.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup worker_cannot_start

# pid starts its workers from its own folder: a copy of the three binaries, one of which the test takes away
mkdir -p "$D/bin" || fail "mkdir"
for b in pid pi-gpu-worker pi-cpu-worker; do cp "$B/$b" "$D/bin/" || fail "copy $b"; done
P=$D/bin
# steps 10 ms longer, so a 200-token generation is still running when the worker dies
PI_TEST_STEP_DELAY_MS=10 timeout 120 "$P/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend "$GPU_BACKEND" \
    --max-seqs 2 --listen "$EP" --log-file "$D/pid.log" >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids
now_ms() { date +%s%3N; }

timeout 120 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 200 "" >"$D/ref.txt" 2>"$D/ref.err" ||
    fail "the reference generation: $(tail -2 "$D/ref.err")"
same_as_expected "$D/ref.txt" || fail "the reference generation differs from $EXPECTED"

old=$(worker_field cpu:0 2)
[ -n "$old" ] || fail "no CPU worker"
timeout 120 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 200 "" >"$D/lost.txt" 2>"$D/lost.err" &
gen=$!
sleep 0.5
mv "$P/pi-cpu-worker" "$P/pi-cpu-worker.away" || fail "mv"
t0=$(now_ms)
kill -9 "$old" || fail "kill -9 $old"
wait $gen
rc=$?
ms=$(( $(now_ms) - t0 ))
[ $rc != 0 ] || fail "the generation in flight succeeded without its CPU worker"
err=$(grep "cannot start" "$D/lost.err")
[ -n "$err" ] || fail "the failed generation did not say why: $(tail -3 "$D/lost.err")"
case $err in *"cpu:0"*"could not exec the worker binary"*) ;; *) fail "the error does not name the worker and why: $err" ;; esac
[ $ms -le 5000 ] || fail "the generation failed $ms ms after the fault, not within 5 s"
echo "ok: the request in flight failed $ms ms after the fault: $err"

t0=$(now_ms)
timeout 60 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 20 "" >"$D/new.txt" 2>"$D/new.err" &&
    fail "a request succeeded while the CPU worker cannot start"
ms=$(( $(now_ms) - t0 ))
grep -q "cannot start" "$D/new.err" || fail "a new request did not say why it failed: $(tail -3 "$D/new.err")"
[ $ms -le 5000 ] || fail "a new request failed after $ms ms, not within 5 s"
echo "ok: a new request failed after $ms ms with the same error"

mv "$P/pi-cpu-worker.away" "$P/pi-cpu-worker" || fail "mv back"
t0=$(now_ms)
while [ "$(worker_field cpu:0 3)" != ready ]; do
    [ $(( $(now_ms) - t0 )) -gt 15000 ] && fail "the CPU worker not back 15 s after its binary came back"
    sleep 0.1
done
echo "ok: the CPU worker back $(( $(now_ms) - t0 )) ms after its binary (pid's back-off)"
remember_pids
timeout 120 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 200 "" >"$D/after.txt" 2>"$D/after.err" ||
    fail "generation after the worker came back: $(tail -2 "$D/after.err")"
same_as_expected "$D/after.txt" || fail "the text after the worker came back differs from the reference"
echo "ok: pid kept serving: the reference text once the worker is back"
timeout 60 "$P/pid" stop --listen "$EP" >/dev/null 2>&1 || fail "pid stop"
echo "PASS"

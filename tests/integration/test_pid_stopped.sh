#!/bin/bash
# A stopped pid (SIGSTOP) during `pictl generate`: pictl's ZeroMQ heartbeat (1 s pings, 5 s timeout) ends the wait within 8 s with one clear line (exit non-zero) instead of hanging; after SIGCONT pid has cancelled that request (its client went away) and serves the next one with the reference text.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup pid_stopped
now_ms() { date +%s%3N; }

# Steps 10 ms longer (PI_TEST_STEP_DELAY_MS): the stopped request is still running when the stop comes.
PI_TEST_STEP_DELAY_MS=10 timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --max-seqs 1 --listen "$EP" \
    >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids
P=$(cat "$D/pid.pid")
timeout 60 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 200 "" >"$D/before.txt" 2>"$D/before.err" ||
    fail "generate before the stop: $(cat "$D/before.err")"
same_as_expected "$D/before.txt" || fail "the text before the stop differs from the reference"

timeout 60 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 200 "" >"$D/stopped.txt" 2>"$D/stopped.err" &
gen=$!
for _ in $(seq 1 100); do [ -s "$D/stopped.txt" ] && break; sleep 0.05; done
[ -s "$D/stopped.txt" ] || fail "no text streamed in 5 s: $(cat "$D/stopped.err")"
kill -STOP "$P" || fail "SIGSTOP pid"
t0=$(now_ms)
wait $gen && { kill -CONT "$P"; fail "pictl generate succeeded across a stopped pid"; }
took=$(( $(now_ms) - t0 ))
kill -CONT "$P" || fail "SIGCONT pid"
[ "$took" -le 8000 ] || fail "pictl waited ${took} ms for the stopped pid (the heartbeat should end it within ~6 s)"
grep -q "closed during generate (pid exited, or did not answer for 5 s)" "$D/stopped.err" ||
    fail "pictl said: $(cat "$D/stopped.err")"
[ "$(wc -l <"$D/stopped.err")" -eq 1 ] || fail "more than one line: $(cat "$D/stopped.err")"
echo "ok: pictl ended ${took} ms after pid was stopped: $(cat "$D/stopped.err")"

timeout 60 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 200 "" >"$D/after.txt" 2>"$D/after.err" ||
    fail "generate after SIGCONT: $(cat "$D/after.err")"
same_as_expected "$D/after.txt" || fail "the text after SIGCONT differs from the reference"
echo "ok: after SIGCONT pid served the next request with the reference text"
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
grep -q "ERROR: LeakSanitizer\|runtime error" "$D/pid.log" && fail "sanitizer report in pid.log"
echo PASS

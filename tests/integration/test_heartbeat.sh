#!/bin/bash
# Heartbeats: steps made 6 s long (PI_TEST_STEP_DELAY_MS, longer than the 5 s silence limit) finish with the reference text and no worker is taken for hung, since each worker's heartbeat thread beats during the step; a worker SIGSTOPped inside such a step is killed and replaced within 3 s (1 s of silence with /proc state T), and the request still ends with the reference text.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup heartbeat

PI_TEST_STEP_DELAY_MS=6000 timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host \
    --max-seqs 1 --listen "$EP" >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids
now_ms() { date +%s%3N; }
N=2   # tokens: a prefill step and a decode step, 6 s each

t0=$(now_ms)
timeout 120 "$B/pictl" generate --endpoint "$EP" --temp 0 -n $N --json "" >"$D/long.json" 2>"$D/long.err" ||
    fail "generation with 6 s steps: $(cat "$D/long.err")"
secs=$(( ($(now_ms) - t0) / 1000 ))
grep -q "killed as hung" "$D/pid.log" && fail "a worker was taken for hung during 6 s steps"
[ "$(worker_field gpu 4)" = 0 ] && [ "$(worker_field cpu:0 4)" = 0 ] || fail "a worker was restarted"
/usr/bin/python3 - "$D/long.json" "$EXPECTED" <<'PY' || fail "text with 6 s steps is not the reference's start"
import json, sys
got = json.load(open(sys.argv[1]))['text']
sys.exit(0 if open(sys.argv[2], encoding='utf-8').read().startswith(got) and got else 1)
PY
echo "ok: $N tokens in ${secs} s of 6 s steps: no worker taken for hung, text = the reference's start"

old=$(worker_field cpu:0 2)
timeout 120 "$B/pictl" generate --endpoint "$EP" --temp 0 -n $N --json "" >"$D/stop.json" 2>"$D/stop.err" &
gen=$!
sleep 2   # inside the first 6 s step
kill -STOP "$old" || fail "SIGSTOP"
t0=$(now_ms)
while :; do
    new=$(worker_field cpu:0 2)
    [ -n "$new" ] && [ "$new" != "$old" ] && [ "$new" != 0 ] && break
    [ $(( $(now_ms) - t0 )) -gt 3000 ] && fail "the stopped worker cpu:0 was not replaced within 3 s"
    sleep 0.05
done
echo "ok: worker cpu:0 SIGSTOPped inside a step was replaced after $(( $(now_ms) - t0 )) ms ($old -> $new)"
PIDS_TO_KILL="$PIDS_TO_KILL $new"
grep -q "stopped (SIGSTOP?)" "$D/pid.log" || fail "pid's log does not say the worker was stopped"
wait $gen || fail "the request across the SIGSTOP failed: $(cat "$D/stop.err")"
cmp -s <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["text"])' "$D/stop.json") \
       <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["text"])' "$D/long.json") ||
    fail "the request across the SIGSTOP gave another text"
echo "ok: the request across the SIGSTOP ended with the same text"

timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
grep -q "ERROR: LeakSanitizer\|runtime error" "$D/pid.log" && fail "sanitizer report in pid.log"
echo PASS

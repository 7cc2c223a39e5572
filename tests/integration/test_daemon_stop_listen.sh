#!/bin/bash
# pid stop / pid status --listen EP talk only to the daemon at EP: with nothing there they say "no pid is listening at EP" and exit non-zero (no pidfile fallback); of two daemons on two ipc endpoints, stopping one leaves the other answering.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup daemon_stop_listen

mkdir -p "$D/b" || fail "mkdir"
EP2="ipc://$D/b/pid.sock"
for ep in "$EP" "$EP2"; do
    timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --max-seqs 1 \
        --listen "$ep" >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start at $ep"; }
done
remember_pids
PIDS_TO_KILL="$PIDS_TO_KILL $(cat "$D/b/pid.pid") $(EP=$EP2 worker_pids)"

NOBODY=tcp://127.0.0.1:18089
timeout 30 "$B/pid" stop --listen "$NOBODY" >"$D/stop0.out" 2>&1 && fail "pid stop at $NOBODY succeeded: $(cat "$D/stop0.out")"
grep -q "no pid is listening at $NOBODY" "$D/stop0.out" || fail "pid stop at $NOBODY said: $(cat "$D/stop0.out")"
echo "ok: $(head -1 "$D/stop0.out")"
timeout 30 "$B/pid" status --listen "$NOBODY" >"$D/st0.out" 2>&1 && fail "pid status at $NOBODY succeeded"
grep -q "no pid is listening at $NOBODY" "$D/st0.out" || fail "pid status at $NOBODY said: $(cat "$D/st0.out")"
echo "ok: pid status at $NOBODY exits non-zero"
for ep in "$EP" "$EP2"; do
    timeout 10 "$B/pid" status --listen "$ep" >/dev/null || fail "the daemon at $ep was touched"
done
echo "ok: both daemons still answer"

timeout 60 "$B/pid" stop --listen "$EP2" >"$D/stop2.out" 2>&1 || fail "pid stop at $EP2: $(cat "$D/stop2.out")"
echo "ok: $(cat "$D/stop2.out")"
timeout 10 "$B/pid" status --listen "$EP2" >/dev/null 2>&1 && fail "the daemon at $EP2 still answers"
timeout 10 "$B/pid" status --listen "$EP" >"$D/st1.out" || fail "the daemon at $EP stopped too"
echo "ok: the daemon at $EP still answers: $(head -1 "$D/st1.out")"
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop at $EP"
echo PASS

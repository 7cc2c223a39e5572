#!/bin/bash
# A pid killed with SIGKILL (and its workers) leaves /dev/shm/pi-step-<pid> and <rundir>/ctl-<pid>.sock; the next pid start removes them and says how many.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup daemon_stale

start() {
    timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --max-seqs 1 \
        --listen "$EP" >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
    remember_pids
}
start
old=$(cat "$D/pid.pid")
workers=$(worker_pids)
[ -e "/dev/shm/pi-step-$old" ] || fail "no /dev/shm/pi-step-$old while pid runs"
[ -S "$D/ctl-$old.sock" ] || fail "no $D/ctl-$old.sock while pid runs"
kill -9 "$old" $workers || fail "kill -9"
for p in $old $workers; do
    for _ in $(seq 100); do alive "$p" || break; sleep 0.05; done
    alive "$p" && fail "process $p survived kill -9"
done
[ -e "/dev/shm/pi-step-$old" ] || fail "the killed pid left no segment (nothing to test)"
echo "ok: pid $old killed; it left /dev/shm/pi-step-$old and ctl-$old.sock"

start
[ -e "/dev/shm/pi-step-$old" ] && fail "/dev/shm/pi-step-$old is still there after a new start"
[ -e "$D/ctl-$old.sock" ] && fail "$D/ctl-$old.sock is still there after a new start"
line=$(grep "stale file" "$D/pid.log" | tail -1)
[ -n "$line" ] || fail "pid did not report the stale files it removed"
echo "ok: $line"
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
echo PASS

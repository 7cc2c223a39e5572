#!/bin/bash
# pid start refuses a tcp port outside 1..65535 or without a host, and an ipc socket in a folder that does not exist (creating nothing); the ipc socket it binds is mode 0600.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup daemon_endpoint_check

refused() {  # $1: endpoint, $2: words the error must hold
    timeout 60 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --listen "$1" \
        >"$D/r.out" 2>&1 && { PIDS_TO_KILL="$PIDS_TO_KILL $(cat "$D/pid.pid" 2>/dev/null)"; fail "pid start --listen $1 was accepted"; }
    grep -q "$2" "$D/r.out" || fail "pid start --listen $1 said: $(cat "$D/r.out")"
    echo "ok: $1 refused: $(head -1 "$D/r.out")"
}
refused tcp://127.0.0.1:99999 "port must be a number in 1..65535"
refused tcp://127.0.0.1:0 "port must be a number in 1..65535"
refused tcp://:5555 "with a host"
refused tcp://127.0.0.1 "with a host"
refused "ipc://$D/nonexistent/dir/x.sock" "No such file or directory"
[ -e "$D/nonexistent" ] && fail "pid start created $D/nonexistent"
echo "ok: no folder created"

timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --listen "$EP" \
    >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids
mode=$(stat -c %a "$D/pid.sock")
[ "$mode" = 600 ] || fail "socket mode $mode, want 600"
echo "ok: socket mode $mode"
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
echo PASS

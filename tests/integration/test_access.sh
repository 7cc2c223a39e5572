#!/bin/bash
# Access: tcp without a token is refused at start; the default ipc folder is 0700 and the socket 0600; with tokens, a request without one or with a wrong one gets UNAUTHENTICATED naming the fix, the client token (pictl --token or PI_TOKEN) generates the reference text, shutdown/restart-worker need the admin token, and pid stop uses the one in pid.conf.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup access

TOK=client-token-$$-0123456789
ADM=admin-token-$$-9876543210
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TCP=tcp://127.0.0.1:$PORT
no_pid_left() { ! pgrep -f "pid start.*$D" >/dev/null; }

# 1. Refused configurations: one line each, nothing left running.
expect_refused() {  # $1: what the message must contain; rest: pid start arguments
    local want=$1; shift
    timeout 60 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host "$@" >"$D/bad.out" 2>&1 &&
        fail "pid start $* succeeded"
    grep -q -- "$want" "$D/bad.out" || fail "pid start $*: expected '$want', got: $(cat "$D/bad.out")"
    no_pid_left || fail "a pid is left after the refused start $*"
    echo "ok: refused: $(head -1 "$D/bad.out")"
}
expect_refused "needs a token" --listen "$TCP"
expect_refused "token is 5 bytes" --listen "$TCP" --token short
expect_refused "are the same" --listen "$TCP" --token "$TOK" --admin-token "$TOK"

# 2. The default ipc endpoint: folder 0700, socket 0600.
mkdir -p "$D/xdg" && chmod 0700 "$D/xdg" || fail "mkdir"
XDG_RUNTIME_DIR=$D/xdg PI_ENDPOINT= timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 \
    --gpu-backend host --max-seqs 1 >"$D/start0.out" 2>&1 || { cat "$D/start0.out"; fail "pid start (default endpoint)"; }
PIDS_TO_KILL="$PIDS_TO_KILL $(cat "$D/xdg/pi/pid.pid")"
[ "$(stat -c %a "$D/xdg/pi")" = 700 ] || fail "socket folder mode $(stat -c %a "$D/xdg/pi"), want 700"
[ "$(stat -c %a "$D/xdg/pi/pid.sock")" = 600 ] || fail "socket mode $(stat -c %a "$D/xdg/pi/pid.sock"), want 600"
echo "ok: default endpoint $D/xdg/pi/pid.sock: folder 700, socket 600"
XDG_RUNTIME_DIR=$D/xdg PI_ENDPOINT= timeout 60 "$B/pid" stop >/dev/null || fail "pid stop (default endpoint)"

# 3. tcp with both tokens, from pid.conf.
cat >"$D/pid.conf" <<CONF
listen = $TCP
token = $TOK
admin_token = $ADM
pid_file = $D/pid.pid
log_file = $D/pid.log
CONF
timeout 120 "$B/pid" start --config "$D/pid.conf" -m "$MODEL" --cpu-workers 1 --gpu-backend host \
    --max-seqs 2 >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start on $TCP"; }
EP=$TCP
PI_TOKEN=$TOK remember_pids

expect_unauth() {  # $1: what the message must contain; rest: the pictl command
    local want=$1; shift
    timeout 30 "$@" >"$D/u.out" 2>&1 && fail "$* succeeded"
    grep -q "UNAUTHENTICATED" "$D/u.out" && grep -q -- "$want" "$D/u.out" ||
        fail "$*: expected UNAUTHENTICATED '$want', got: $(cat "$D/u.out")"
    echo "ok: $(grep -m1 UNAUTHENTICATED "$D/u.out")"
}
expect_unauth "needs a token" env -u PI_TOKEN "$B/pictl" status --endpoint "$TCP"
expect_unauth "wrong token" env PI_TOKEN=wrong-token-0123456789 "$B/pictl" status --endpoint "$TCP"
expect_unauth "needs a token" env -u PI_TOKEN "$B/pictl" generate --endpoint "$TCP" -n 5 "Hi"
expect_unauth "needs the admin token" "$B/pictl" shutdown --endpoint "$TCP" --token "$TOK"
expect_unauth "needs the admin token" env PI_TOKEN=$TOK "$B/pictl" restart-worker --endpoint "$TCP" cpu:0
timeout 10 env PI_TOKEN=$TOK "$B/pictl" status --endpoint "$TCP" >/dev/null || fail "status with the client token"
echo "ok: pid still serves after the refused admin requests"

PI_TOKEN=$TOK timeout 120 "$B/pictl" generate --endpoint "$TCP" --temp 0 -n 200 "" >"$D/gen.txt" 2>"$D/gen.err" ||
    fail "generate with PI_TOKEN: $(cat "$D/gen.err")"
same_as_expected "$D/gen.txt" || fail "text over tcp with the token differs from the reference"
timeout 120 "$B/pictl" generate --endpoint "$TCP" --token "$TOK" --temp 0 -n 200 "" >"$D/gen2.txt" 2>"$D/gen2.err" ||
    fail "generate with --token: $(cat "$D/gen2.err")"
same_as_expected "$D/gen2.txt" || fail "text with --token differs"
echo "ok: the client token (PI_TOKEN and --token) generates the reference text"

timeout 60 "$B/pictl" restart-worker --endpoint "$TCP" --token "$ADM" cpu:0 >"$D/rw.out" 2>&1 ||
    fail "restart-worker with the admin token: $(cat "$D/rw.out")"
echo "ok: restart-worker with the admin token: $(head -1 "$D/rw.out")"
PIDS_TO_KILL="$PIDS_TO_KILL $(PI_TOKEN=$TOK worker_pids)"

timeout 60 "$B/pid" stop --config "$D/pid.conf" >"$D/stop.out" 2>&1 || fail "pid stop --config: $(cat "$D/stop.out")"
echo "ok: $(cat "$D/stop.out")"
grep -q "ERROR: LeakSanitizer\|runtime error" "$D/pid.log" && fail "sanitizer report in pid.log"
echo PASS

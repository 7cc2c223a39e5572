#!/bin/bash
# pid's limits (daemon/req_limits.h, proto/wire.h) each get a clear error and pid keeps serving: a body over 16 MiB (WIRE_MAX_BODY), a prompt over 1 MiB, max_tokens beyond the context, and a request past max_queue ("queue full"); a generation right after each passes.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup limits
RAW="/usr/bin/python3 $(dirname "$0")/rpc_raw.py"

# One slot and at most 2 waiting, so the 4th concurrent request overflows the queue. Steps are
# made 8 ms longer (PI_TEST_STEP_DELAY_MS) so a 500-token generation lasts seconds: on a fast
# machine the first one ended before the 4th request came, and the queue had room again.
PI_TEST_STEP_DELAY_MS=8 timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --listen "$EP" \
    --max-seqs 1 --max-queue 2 --log-file "$D/pid.log" --pid-file "$D/pid.pid" >"$D/start.out" 2>&1 \
    || { cat "$D/start.out"; fail "pid start"; }
remember_pids

still_serving() {
    timeout 60 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 20 "Once" >"$D/ok.out" 2>&1 \
        || fail "pid stopped serving after $1: $(cat "$D/ok.out")"
}
rpc_refuses() {  # $1: case name, $2: pattern on "error CODE MESSAGE", rest: rpc_raw.py arguments
    local name=$1 pat=$2 out
    shift 2
    out=$(timeout 120 $RAW "$EP" generate "$@" 2>&1) || fail "$name: rpc_raw.py failed: $out"
    echo "$out" | grep -qE "$pat" || fail "$name: answer '$out' does not match '$pat'"
    still_serving "$name"
    echo "ok: $name: $out"
}

# Frame size: a 17 MiB body is refused before unpacking (below the socket's 64 MiB cut-off).
rpc_refuses "17 MiB body" '^error 1 pi.Request body of [0-9]+ bytes exceeds the 16777216-byte limit' --body-bytes 17000000

# Prompt size: 1 MiB + 1 byte refused, through pictl -f and raw RPC; exactly 1 MiB passes the check
# (and then does not fit the context).
head -c 1048577 /dev/zero | tr '\0' a >"$D/big.txt"
timeout 60 "$B/pictl" generate --endpoint "$EP" -n 5 -f "$D/big.txt" >/dev/null 2>"$D/err"
rc=$?
[ $rc = 1 ] && grep -q 'BAD_REQUEST: .*the prompt is 1048577 bytes, more than pid accepts (1048576 bytes); shorten it' "$D/err" \
    || fail "1 MiB + 1 prompt: rc $rc: $(cat "$D/err")"
[ "$(wc -l <"$D/err")" = 1 ] || fail "1 MiB + 1 prompt: more than one line: $(cat "$D/err")"
still_serving "a 1 MiB + 1 prompt"
echo "ok: pictl -f with a 1 MiB + 1 byte prompt: $(cat "$D/err")"
rpc_refuses "1 MiB + 1 prompt (RPC)" '^error 1 .*the prompt is 1048577 bytes, more than pid accepts' --body-bytes 1048577
rpc_refuses "1 MiB prompt (RPC)" "^error 5 .*exceed the context of $MODEL_CTX positions" --body-bytes 1048576

# max_tokens: at most the context (MODEL_CTX, counting the prompt).
C=$MODEL_CTX fit=$((MODEL_CTX - 2))
out=$(timeout 60 $RAW "$EP" generate --prompt-hex 4f6e6365 --temp 0 --max-tokens $fit) || fail "max_tokens $fit: $out"
[ "$out" = "done $fit" ] || fail "a 2-3 token prompt + $fit fits $C positions, got: $out"
echo "ok: max_tokens $fit with a short prompt fits the $C-position context: $out"
rpc_refuses "max_tokens $C (RPC)" "^error 5 .*prompt \\([23] tokens\\) \\+ max_tokens \\($C\\) exceed the context of $C positions.*-c/--ctx-size" --prompt-hex 4f6e6365 --max-tokens $C

# Queue: 1 active + 2 waiting; the next one is refused at once with "queue full".
active() { timeout 10 "$B/pictl" status --endpoint "$EP" 2>/dev/null | awk '/^requests:/{print $2, $4}'; }
GENS=""
for i in 1 2 3; do
    # greedy: both models write this many tokens with no end-of-text, so none of the three ends early
    # (sampled ones sometimes did, and the queue was no longer full when the 4th came)
    timeout 300 "$B/pictl" generate --endpoint "$EP" --temp 0 -n $((MODEL_CTX - 12)) "Once upon a time" >"$D/q$i.out" 2>"$D/q$i.err" &
    GENS="$GENS $!"
done
PIDS_TO_KILL="$PIDS_TO_KILL $GENS"
for t in $(seq 1 200); do [ "$(active)" = "1 2" ] && break; sleep 0.05; done
[ "$(active)" = "1 2" ] || fail "want 1 active and 2 queued, got: $(active)"
timeout 60 "$B/pictl" generate --endpoint "$EP" -n 5 "x" >/dev/null 2>"$D/err"
rc=$?
[ $rc = 1 ] && grep -qE '^pictl generate: pid: UNAVAILABLE: request 1: queue full \(2 requests waiting, max_queue 2\); retry later or raise max_queue in pid.conf$' "$D/err" \
    || fail "queue full: rc $rc: $(cat "$D/err")"
echo "ok: the 4th request: $(cat "$D/err")"
kill -INT $GENS
for p in $GENS; do wait "$p"; done
for t in $(seq 1 100); do [ "$(active)" = "0 0" ] && break; sleep 0.05; done
still_serving "queue full"
echo "ok: after the queue drained, pid serves"

timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
echo PASS

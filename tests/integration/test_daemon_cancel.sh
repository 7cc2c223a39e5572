#!/bin/bash
# Ctrl-C (SIGINT) on pictl generate sends Cancel: pictl exits 130 and pid shows 0 active requests within 1 s; 8 interrupted clients, and 8 clients killed with SIGKILL (gone without a word), leave 0 active requests.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup daemon_cancel

# A context far beyond stories260K's 512 (allowed with a warning) so -n 10000 runs for long.
timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --max-seqs 8 \
    --n-ctx 10100 --listen "$EP" >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids

now_ms() { date +%s%3N; }
active() { timeout 10 "$B/pictl" status --endpoint "$EP" 2>/dev/null | awk '/^requests:/{print $2}'; }
wait_active() {  # $1: wanted count, $2: within ms; prints the ms it took
    local t0 n
    t0=$(now_ms)
    while :; do
        n=$(active)
        [ "$n" = "$1" ] && { echo $(( $(now_ms) - t0 )); return 0; }
        [ $(( $(now_ms) - t0 )) -gt "$2" ] && { echo "timeout: $n active"; return 1; }
        sleep 0.05
    done
}
start_gens() {  # $1: count, $2: a wrapper (timeout 300) or none; the pids in GENS
    GENS=""
    for i in $(seq 1 "$1"); do
        ${2:-} "$B/pictl" generate --endpoint "$EP" --temp 0.8 -n 10000 "Once upon a time" \
            >"$D/gen$i.out" 2>"$D/gen$i.err" &
        GENS="$GENS $!"
    done
    t=$(wait_active "$1" 20000) || fail "$1 generations did not all start ($t)"
}

# One client, SIGINT.
start_gens 1 "timeout 300"
sleep 0.5
kill -INT $GENS
wait $GENS
rc=$?
[ $rc = 130 ] || fail "pictl generate exited $rc after SIGINT, want 130: $(cat "$D/gen1.err")"
t=$(wait_active 0 1000) || fail "still active 1 s after the Ctrl-C: $t"
echo "ok: pictl exited 130 ($(tail -1 "$D/gen1.err")); 0 active after $t ms"

# 8 clients, SIGINT.
start_gens 8 "timeout 300"
sleep 0.5
kill -INT $GENS
for p in $GENS; do wait "$p"; rc=$?; [ $rc = 130 ] || fail "an interrupted pictl exited $rc"; done
t=$(wait_active 0 1000) || fail "8 interrupted clients: $t"
echo "ok: 8 interrupted clients exited 130; 0 active after $t ms"

# 8 clients, SIGKILL (pictl itself, no timeout wrapper): pid finds them gone at its next send.
start_gens 8 ""
PIDS_TO_KILL="$PIDS_TO_KILL $GENS"
sleep 0.5
kill -9 $GENS
{ for p in $GENS; do wait "$p"; done; } 2>/dev/null
t=$(wait_active 0 2000) || fail "8 killed clients: $t"
echo "ok: 8 killed clients; 0 active after $t ms"
grep -c "went away or stopped reading; cancelled" "$D/pid.log" | sed 's/^/ok: pid logged /; s/$/ gone clients/'

# The daemon still serves.
timeout 60 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 20 "Once" >"$D/after.out" 2>&1 || fail "generate after the cancels: $(cat "$D/after.out")"
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
echo PASS

#!/bin/bash
# A full /dev/shm: pid run and pid start refuse with one line that names /dev/shm, the bytes the step segment needs
# and what to do, exit 1, and leave nothing behind (no segment, no worker). Before posix_fallocate in
# shm/segment.c pid died of SIGBUS ("Bus error") at its first touch of the segment. The test mounts a small
# tmpfs on /dev/shm in a user and mount namespace of its own (unshare -rm), so the machine's /dev/shm is never
# filled; with room enough there the same commands serve the reference text.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup shm_full

if ! unshare -rm sh -c 'mount -t tmpfs -o size=1m tmpfs /dev/shm' >"$D/unshare.err" 2>&1; then
    echo "SKIP: no private /dev/shm can be mounted here (unshare -rm: $(head -1 "$D/unshare.err")); user namespaces are off"
    exit 77
fi

# in_small_shm SIZE CMD...: CMD with a tmpfs of SIZE on /dev/shm; what /dev/shm holds after it goes to $D/left
in_small_shm() {
    local size=$1
    shift
    unshare -rm sh -c 'mount -t tmpfs -o size="$0" tmpfs /dev/shm || exit 99; "$@"; rc=$?; ls -A /dev/shm >"$LEFT"; exit $rc' \
        "$size" "$@"
}
export LEFT=$D/left
left() { [ ! -s "$LEFT" ] || fail "$1 left $(tr '\n' ' ' <"$LEFT")in /dev/shm"; }

# pid run, no room
in_small_shm 64k "$B/pid" run -m "$MODEL" -n 16 --temp 0 -p "" --gpu-backend "$GPU_BACKEND" --cpu-workers 1 \
    >"$D/run.out" 2>"$D/run.err"
rc=$?
[ $rc = 99 ] && fail "mounting the tmpfs failed"
[ $rc = 1 ] || fail "pid run with a full /dev/shm: exit $rc, want 1: $(tail -3 "$D/run.err")"
grep -q "Bus error" "$D/run.err" && fail "pid run died of SIGBUS"
grep -q "/dev/shm has no room for its [0-9.]* [KM]iB ([0-9.]* [KM]iB free of 64 KiB); free space there" "$D/run.err" ||
    fail "pid run did not say why: $(cat "$D/run.err")"
[ "$(grep -c . "$D/run.err")" = 1 ] || fail "pid run said more than one line: $(cat "$D/run.err")"
left "pid run"
echo "ok: pid run: $(cat "$D/run.err")"

# pid start, no room: no daemon, no worker, nothing in /dev/shm
in_small_shm 64k "$B/pid" start -m "$MODEL" --gpu-backend "$GPU_BACKEND" --cpu-workers 1 --max-seqs 1 \
    --listen "$EP" --log-file "$D/pid.log" >"$D/start.out" 2>&1
rc=$?
[ $rc != 0 ] && [ $rc != 99 ] || fail "pid start with a full /dev/shm: exit $rc"
grep -q "/dev/shm has no room for its" "$D/start.out" "$D/pid.log" 2>/dev/null ||
    fail "pid start did not say why: $(cat "$D/start.out")"
left "pid start"
pgrep -f "pi-(gpu|cpu)-worker .*$D" >/dev/null && fail "a worker of the failed start is still running"
timeout 10 "$B/pid" status --listen "$EP" >/dev/null 2>&1 && fail "a daemon answers at $EP after the failed start"
echo "ok: pid start (exit $rc): $(grep -h "no room" "$D/start.out" | head -1)"

# room enough in the same kind of mount: the reference text
in_small_shm 64m "$B/pid" run -m "$MODEL" -n 200 --temp 0 --gpu-backend "$GPU_BACKEND" --cpu-workers 1 \
    >"$D/ok.out" 2>"$D/ok.err" || fail "pid run with 64 MiB of /dev/shm: $(tail -3 "$D/ok.err")"
left "pid run"
# one trailing newline either way (llama2.c's expected file has one)
[ "$(cat "$D/ok.out")" = "$(cat "$EXPECTED")" ] || fail "pid run with 64 MiB of /dev/shm: text DIFFERENT from $EXPECTED"
echo "ok: with 64 MiB of /dev/shm pid run serves the reference text"
echo "PASS"

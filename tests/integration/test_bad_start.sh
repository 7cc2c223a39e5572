#!/bin/bash
# pid start / pid run refuse a bad model or backend with a clear one-line reason and a non-zero exit, within 60 s, leaving no process, no /dev/shm/pi-step-* segment and no socket behind: a missing file, an unreadable one (skipped as root), a folder, a file that is not GGUF, an unsupported architecture (a GGUF naming 'mamba'), and --gpu-backend cuda in a build without CUDA or on a machine without a GPU.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup bad_start

/usr/bin/python3 - "$D/mamba.gguf" <<'PY'
import struct, sys
def s(x): b = x.encode(); return struct.pack('<Q', len(b)) + b
# GGUF v3: 0 tensors, 1 key: general.architecture = "mamba" (type 8 = string)
open(sys.argv[1], 'wb').write(b'GGUF' + struct.pack('<IQQ', 3, 0, 1) + s('general.architecture')
                              + struct.pack('<I', 8) + s('mamba'))
PY
echo "hello, not a model" >"$D/notgguf.gguf"
cp "$MODEL" "$D/unreadable.gguf" && chmod 000 "$D/unreadable.gguf"
mkdir -p "$D/folder.gguf"

shm_before=$(ls /dev/shm | grep -c '^pi-step-')
# Processes (not this shell, not zombies) whose command line holds $1.
live_procs() {
    local p st
    for p in $(pgrep -f -- "$1" || true); do
        [ "$p" = $$ ] && continue
        st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || continue
        [ -n "$st" ] && [ "$st" != Z ] && echo "$p"
    done
}
# Runs one case: $1 name, $2 pattern (grep -E) the output must hold, $3 start or run, rest: its flags.
refuses() {
    local name=$1 pat=$2 cmd=$3 rc t0 left
    shift 3
    t0=$(date +%s)
    if [ "$cmd" = start ]; then
        timeout 60 "$B/pid" start --cpu-workers 1 --listen "$EP" --log-file "$D/pid.log" \
            --pid-file "$D/pid.pid" "$@" >"$D/out" 2>&1 </dev/null
    else
        timeout 60 "$B/pid" run --cpu-workers 1 -n 5 "$@" >"$D/out" 2>&1 </dev/null
    fi
    rc=$?
    [ $rc = 124 ] && fail "$name: still running after 60 s"
    [ $rc != 0 ] || fail "$name: exited 0: $(cat "$D/out")"
    grep -qE -e "$pat" "$D/out" || fail "$name: output does not say '$pat': $(cat "$D/out")"
    [ -e "$D/pid.sock" ] && fail "$name: left its socket $D/pid.sock"
    # A daemon's process may still be exiting: give it up to 5 s. Zombies hold
    # nothing (where PID 1 does not reap orphans they stay): not counted.
    for _ in $(seq 50); do
        left=$(live_procs "$D/")
        [ -z "$left" ] && break
        sleep 0.1
    done
    [ -z "$left" ] || fail "$name: left processes: $(ps -o pid,stat,args -p $(echo $left | tr ' ' ,))"
    [ "$(ls /dev/shm | grep -c '^pi-step-')" -le "$shm_before" ] || fail "$name: left a /dev/shm/pi-step-* segment"
    echo "ok: $name: exit $rc in $(( $(date +%s) - t0 )) s: $(grep -E -e "$pat" "$D/out" | head -1)"
}

for cmd in start run; do
    refuses "pid $cmd: missing model" "$D/nope.gguf.*No such file or directory" $cmd -m "$D/nope.gguf" --gpu-backend host
    if [ "$(id -u)" = 0 ]; then
        echo "skip: pid $cmd: unreadable model (root reads any file)"
    else
        refuses "pid $cmd: unreadable model" "unreadable.gguf.*Permission denied" $cmd -m "$D/unreadable.gguf" --gpu-backend host
    fi
    refuses "pid $cmd: a folder" "folder.gguf: not a regular file" $cmd -m "$D/folder.gguf" --gpu-backend host
    refuses "pid $cmd: not GGUF" 'notgguf.gguf: bad magic \(not a GGUF file' $cmd -m "$D/notgguf.gguf" --gpu-backend host
    refuses "pid $cmd: architecture mamba" "general.architecture is 'mamba'; pi supports 'llama'" $cmd -m "$D/mamba.gguf" --gpu-backend host
    if [ -e /dev/nvidiactl ]; then
        echo "skip: pid $cmd: --gpu-backend cuda (there is a GPU here: the case needs a machine without one)"
    else
        refuses "pid $cmd: --gpu-backend cuda" "--gpu-backend cuda: (this build has no CUDA backend|no NVIDIA GPU here).*use --gpu-backend host" \
            $cmd -m "$MODEL" --gpu-backend cuda
    fi
done
echo PASS

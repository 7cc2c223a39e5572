# Shared helpers of the daemon integration tests (sourced, not a test).
# Sets B (binaries), D (this test's folder), EP (its endpoint), MODEL, EXPECTED.
daemon_setup() {
    local name=$1
    if [ -z "${PI_SHARED:-}" ] || [ ! -f "$PI_SHARED/models/stories260K.bin" ]; then
        echo "SKIP: \$PI_SHARED/models/stories260K.bin not found (the shared test data is absent)"
        exit 77
    fi
    B=${PI_BIN:?PI_BIN not set}
    D=${PI_TMP:-/tmp}/$name.$$
    rm -rf "$D" && mkdir -p "$D" || exit 1
    EP="ipc://$D/pid.sock"
    EXPECTED=$PI_SHARED/models/stories260K.expected.txt
    MODEL=$D/stories260K.gguf
    PIDS_TO_KILL=""
    trap daemon_cleanup EXIT
    "$B/pictl" model import-llama2c --checkpoint "$PI_SHARED/models/stories260K.bin" \
        --tokenizer "$PI_SHARED/models/tok512.bin" -o "$MODEL" >/dev/null || fail "import failed"
}

daemon_cleanup() {
    local p
    if [ -f "$D/pid.pid" ]; then
        p=$(cat "$D/pid.pid" 2>/dev/null)
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null
    fi
    for p in $PIDS_TO_KILL; do kill -9 "$p" 2>/dev/null; done
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$D"
}

fail() {
    echo "FAIL: $*" >&2
    [ -f "$D/pid.log" ] && { echo "--- pid.log:" >&2; tail -n 30 "$D/pid.log" >&2; }
    exit 1
}

# Remembers the daemon's and its workers' pids for the trap.
remember_pids() {
    PIDS_TO_KILL="$PIDS_TO_KILL $(cat "$D/pid.pid" 2>/dev/null) $(worker_pids)"
}

worker_pids() { timeout 10 "$B/pictl" workers --endpoint "$EP" 2>/dev/null | awk 'NR>1{print $2}'; }
worker_field() { timeout 10 "$B/pictl" workers --endpoint "$EP" 2>/dev/null | awk -v n="$1" -v f="$2" '$1==n{print $f}'; }

# Same text as the reference, one trailing newline aside.
same_as_expected() {
    /usr/bin/python3 - "$1" "$EXPECTED" <<'PY'
import sys
a = open(sys.argv[1], 'rb').read(); b = open(sys.argv[2], 'rb').read()
strip = lambda s: s[:-1] if s.endswith(b'\n') else s
sys.exit(0 if strip(a) == strip(b) else 1)
PY
}

generate_expected() {  # $1: output file
    timeout 120 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 200 "" >"$1" 2>"$1.err"
}

# A process counts as gone once it is a zombie (its reaper may be slow).
alive() {
    local s
    s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}

# Shared helpers of the daemon integration tests (sourced, not a test).
# Sets B (binaries), D (this test's folder), EP (its endpoint), MODEL (MODEL_NAME, its trained context
# MODEL_CTX), EXPECTED, SOME_COLD_GIB (a --vram-budget that leaves some neurons cold with --max-seqs 4;
# RUN_COLD_GIB the same for pid run -n 200).
# The model: stories260K (llama2.c's tiny Llama, its greedy text byte-exact against llama2.c) when the
# shared data is there, else (or with PI_DAEMON_MODEL=default) the committed default model, whose
# greedy text comes from pid run --reference (the in-process dense forward; check_logits.py held its
# logits to PyTorch's within 1.2e-6). DEFAULT_MODEL=1 says which.
daemon_setup() {
    local name=$1 src=${PI_SRC:-$(dirname "$0")/../..}
    B=${PI_BIN:?PI_BIN not set}
    GPU_BACKEND=${PI_TEST_GPU_BACKEND:-host}   # cuda on the GPU machine (scripts/device_vram_check.sh)
    DEFAULT_MODEL=0
    if [ "${PI_DAEMON_MODEL:-}" = default ] || [ -z "${PI_SHARED:-}" ] || [ ! -f "$PI_SHARED/models/stories260K.bin" ]; then
        DEFAULT_MODEL=1
        [ "${PI_DAEMON_MODEL:-}" = default ] || echo "note: \$PI_SHARED/models/stories260K.bin not found: the test runs on the committed default model"
        if [ ! -f "$src/models/pi-tiny-gutenberg.gguf" ]; then
            echo "SKIP: neither \$PI_SHARED/models/stories260K.bin nor models/pi-tiny-gutenberg.gguf is there"
            exit 77
        fi
    fi
    D=${PI_TMP:-/tmp}/$name.$$
    rm -rf "$D" && mkdir -p "$D" || exit 1
    EP="ipc://$D/pid.sock"
    PIDS_TO_KILL=""
    trap daemon_cleanup EXIT
    if [ "$DEFAULT_MODEL" = 1 ]; then
        MODEL=$D/pi-tiny-gutenberg.gguf MODEL_NAME=pi-tiny-gutenberg.gguf MODEL_CTX=256
        SOME_COLD_GIB=0.0318  # the fixed part with 4 seqs (27.6 MiB) and about a third of the FFN
        RUN_COLD_GIB=0.0156   # pid run (1 seq of 201): the fixed part (13.1 MiB) and about a sixth
        cp "$src/models/pi-tiny-gutenberg.gguf" "$MODEL" || fail "copy the default model"
        cp "$src/models/pi-tiny-gutenberg.pi-sparse.gguf" "$D/" || fail "copy its sidecar"
        EXPECTED=$D/expected.txt
        timeout 120 "$B/pid" run --reference -m "$MODEL" --temp 0 -n 200 -p "" >"$EXPECTED" 2>"$D/expected.err" ||
            fail "pid run --reference: $(tail -3 "$D/expected.err")"
    else
        EXPECTED=$PI_SHARED/models/stories260K.expected.txt
        MODEL=$D/stories260K.gguf MODEL_NAME=stories260K.gguf MODEL_CTX=512
        SOME_COLD_GIB=0.0032  # the fixed part with 4 seqs (~2.9 MiB) and about 100 of 172 neurons
        RUN_COLD_GIB=0.00073  # pid run (1 seq of 201): the fixed part and some neurons
        "$B/pictl" model import-llama2c --checkpoint "$PI_SHARED/models/stories260K.bin" \
            --tokenizer "$PI_SHARED/models/tok512.bin" -o "$MODEL" >/dev/null || fail "import failed"
    fi
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

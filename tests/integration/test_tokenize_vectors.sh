#!/usr/bin/env bash
# Proves `pictl tokenize --no-bos` prints llama.cpp's ids for every vector of the llama-spm (SPM) and MPT (byte-level BPE) vocabularies, byte-exactly, through the real binary.
set -u
vocab="${PI_SHARED:-../shared}/vocab"
pictl="${PI_BIN:?PI_BIN must name the bin folder of the build}/pictl"
work="$(mktemp -d "${PI_TMP:-/tmp}/tokvec.XXXXXX")" || exit 1
trap 'rm -rf "$work"' EXIT

# Checks every vector of one vocabulary; prints "N vectors match" or the failures.
check_vocab() {
    local model="$1" dir="$work/$(basename "$1")"
    mkdir -p "$dir" || return 1
    # .inp holds each string followed by "\n__ggml_vocab_test__\n"; strings may end
    # in spaces or newlines, so they are split and written out byte for byte.
    python3 - "$model.inp" "$dir" <<'PY' || { echo "FAIL: cannot split $model.inp"; return 1; }
import sys
data = open(sys.argv[1], 'rb').read()
parts = data.split(b'\n__ggml_vocab_test__\n')
assert parts[-1] == b'', 'the .inp must end with a separator'
for i, s in enumerate(parts[:-1]):
    open('%s/%03d.txt' % (sys.argv[2], i + 1), 'wb').write(s)
PY
    local n_out n_inp fail=0 i f want got
    n_out=$(wc -l < "$model.out")
    n_inp=$(ls "$dir" | wc -l)
    if [ "$n_inp" -ne "$n_out" ] || [ "$n_inp" -eq 0 ]; then
        echo "FAIL: $model: $n_inp strings in .inp but $n_out lines in .out"
        return 1
    fi
    for i in $(seq 1 "$n_inp"); do
        f="$dir/$(printf %03d "$i").txt"
        # .out writes " ID" per id; pictl separates ids by single spaces.
        want="$(sed -n "${i}p" "$model.out")"
        want="${want# }"
        if ! got="$("$pictl" tokenize -m "$model" --no-bos --file "$f")"; then
            echo "FAIL: $model vector $i: pictl exited with an error"
            fail=1
            continue
        fi
        # Exactly one newline-terminated line: compare the raw bytes too.
        if [ "$got" != "$want" ] || [ "$("$pictl" tokenize -m "$model" --no-bos --file "$f" | wc -l)" -ne 1 ]; then
            echo "FAIL: $model vector $i ($(head -c 40 "$f" | od -An -c | tr -s ' ' | head -c 80))"
            echo "  want: $want"
            echo "  got:  $got"
            fail=1
        fi
    done
    [ "$fail" -eq 0 ] || return 1
    echo "$(basename "$model"): $n_inp vectors match"
}

checked=0
status=0
for name in llama-spm mpt; do
    model="$vocab/ggml-vocab-$name.gguf"
    if [ ! -f "$model" ] || [ ! -f "$model.inp" ] || [ ! -f "$model.out" ]; then
        echo "SKIP: $model(.inp/.out) not found (the shared test data is absent)"
        continue
    fi
    check_vocab "$model" || status=1
    checked=$((checked + 1))
done
[ "$status" -eq 0 ] || exit 1
[ "$checked" -gt 0 ] || exit 77

# Errors name the file.
if err="$("$pictl" tokenize -m "$work/missing.gguf" x 2>&1)" || [[ "$err" != *missing.gguf* ]]; then
    echo "FAIL: a missing model must fail naming the file; got: $err"
    exit 1
fi

#!/usr/bin/env bash
# Proves `pictl tokenize --no-bos` prints llama.cpp's ids for every llama-spm vocab vector, byte-exactly, through the real binary.
set -u
vocab="${PI_SHARED:-../shared}/vocab"
model="$vocab/ggml-vocab-llama-spm.gguf"
if [ ! -f "$model" ] || [ ! -f "$model.inp" ] || [ ! -f "$model.out" ]; then
    echo "SKIP: $model(.inp/.out) not found (the shared test data is absent)"
    exit 77
fi
pictl="${PI_BIN:?PI_BIN must name the bin folder of the build}/pictl"
work="$(mktemp -d "${PI_TMP:-/tmp}/tokvec.XXXXXX")" || exit 1
trap 'rm -rf "$work"' EXIT

# .inp holds each string followed by "\n__ggml_vocab_test__\n"; strings may end
# in spaces or newlines, so they are split and written out byte for byte.
python3 - "$model.inp" "$work" <<'PY' || { echo "FAIL: cannot split $model.inp"; exit 1; }
import sys
data = open(sys.argv[1], 'rb').read()
parts = data.split(b'\n__ggml_vocab_test__\n')
assert parts[-1] == b'', 'the .inp must end with a separator'
for i, s in enumerate(parts[:-1]):
    open('%s/%03d.txt' % (sys.argv[2], i + 1), 'wb').write(s)
PY

n_out=$(wc -l < "$model.out")
n_inp=$(ls "$work" | wc -l)
if [ "$n_inp" -ne "$n_out" ] || [ "$n_inp" -eq 0 ]; then
    echo "FAIL: $n_inp strings in .inp but $n_out lines in .out"
    exit 1
fi

fail=0
for i in $(seq 1 "$n_inp"); do
    f="$work/$(printf %03d "$i").txt"
    # .out writes " ID" per id; pictl separates ids by single spaces.
    want="$(sed -n "${i}p" "$model.out")"
    want="${want# }"
    if ! got="$("$pictl" tokenize -m "$model" --no-bos --file "$f")"; then
        echo "FAIL: vector $i: pictl exited with an error"
        fail=1
        continue
    fi
    # Exactly one newline-terminated line: compare the raw bytes too.
    if [ "$got" != "$want" ] || [ "$("$pictl" tokenize -m "$model" --no-bos --file "$f" | wc -l)" -ne 1 ]; then
        echo "FAIL: vector $i ($(head -c 40 "$f" | od -An -c | tr -s ' ' | head -c 80))"
        echo "  want: $want"
        echo "  got:  $got"
        fail=1
    fi
done
[ "$fail" -eq 0 ] || exit 1

# Errors name the file.
if err="$("$pictl" tokenize -m "$work/missing.gguf" x 2>&1)" || [[ "$err" != *missing.gguf* ]]; then
    echo "FAIL: a missing model must fail naming the file; got: $err"
    exit 1
fi
echo "$n_inp vectors match"

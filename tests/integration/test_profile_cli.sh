#!/usr/bin/env bash
# Proves `pictl model profile` runs a ReLU stories260K over a text (.txt, and the shared .xz corpus when xz is
# installed), writes a sidecar that `pictl model inspect` lists with per-layer frequencies and provenance,
# dumps training pairs of the documented size, and fails clearly on bad input (no xz, missing corpus, bad flags).
set -u
S=${PI_SHARED:-../shared}
[ -f "$S/models/stories260K.bin" ] && [ -f "$S/models/tok512.bin" ] || { echo "SKIP: $S/models absent"; exit 77; }
PICTL=$PI_BIN/pictl
T=$PI_TMP/test_profile_cli
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*"; exit 1; }

# expect_fail DESCRIPTION PATTERN CMD...: CMD exits non-zero and its stderr matches PATTERN.
expect_fail() {
    local what=$1 pat=$2; shift 2
    if "$@" >"$T/out" 2>"$T/err"; then fail "$what: exited 0"; fi
    grep -qE "$pat" "$T/err" || fail "$what: stderr lacks /$pat/: $(cat "$T/err")"
    echo "ok: $what -> $(head -1 "$T/err")"
}

$PICTL model import-llama2c --checkpoint "$S/models/stories260K.bin" --tokenizer "$S/models/tok512.bin" \
    -o "$T/s.gguf" --act relu >"$T/import" 2>&1 || fail "import: $(cat "$T/import")"

# a text of a few thousand tokens, written here
for i in $(seq 1 60); do
    echo "Once upon a time, there was a little girl named Lily number $i. She loved to play outside in the sun."
    echo "One day, she saw a big red ball in the park. \"Can I play with you?\" asked the dog. Lily smiled."
done >"$T/corpus.txt"

$PICTL model profile -m "$T/s.gguf" --corpus "$T/corpus.txt" --tokens 2000 --ctx 128 \
    --dump-pairs "$T/pairs.bin" --pairs-per-layer 100 >"$T/profile" 2>"$T/progress" \
    || fail "profile: $(cat "$T/profile" "$T/progress")"
cat "$T/profile"
[ -f "$T/s.pi-sparse.gguf" ] || fail "no sidecar next to the model (s.pi-sparse.gguf)"
grep -q 'wrote .*s.pi-sparse.gguf: 5 layers x 172 neurons, 2000 tokens' "$T/profile" || fail "summary line"
# stderr is not a terminal here: one progress line per 10%
[ "$(grep -c '^profile: .*%' "$T/progress")" = 10 ] || fail "progress lines: $(cat "$T/progress")"
grep -q '100%  2000/2000 tokens' "$T/progress" || fail "final progress line"

$PICTL model inspect "$T/s.pi-sparse.gguf" >"$T/inspect" 2>&1 || fail "inspect: $(cat "$T/inspect")"
for want in 'general.architecture +"pi-sparse"' 'pi.sparse.version +1$' 'pi.sparse.n_layers +5$' \
            'pi.sparse.n_ff +172$' 'pi.sparse.dim +64$' 'pi.sparse.tokens +2000$' 'pi.sparse.corpus +".*corpus.txt"' \
            'pi.sparse.model_hash +"[0-9a-f]{16}"' 'pi.sparse.date +"[0-9]{4}-[0-9]{2}-[0-9]{2}T' \
            'blk.0.ffn_freq +f32 +\[172\]' 'blk.4.ffn_freq +f32 +\[172\]'; do
    grep -qE "$want" "$T/inspect" || fail "inspect output lacks /$want/: $(cat "$T/inspect")"
done
echo "ok: inspect lists the sidecar's keys and blk.N.ffn_freq"

# pairs: 32-byte header + 100 tokens x 5 layers x (8 + 64*4 + 22) bytes
size=$(stat -c %s "$T/pairs.bin")
[ "$size" = $((32 + 100 * 5 * (8 + 256 + 22))) ] || fail "pairs file is $size bytes"
[ "$(head -c 8 "$T/pairs.bin")" = PIPAIRS1 ] || fail "pairs magic"
echo "ok: pairs file of $size bytes"

# -o, the default window, and a missing xz named as such
$PICTL model profile -m "$T/s.gguf" --corpus "$T/corpus.txt" --tokens 300 -o "$T/o.gguf" >/dev/null 2>&1 \
    && [ -f "$T/o.gguf" ] || fail "-o"
xz -c "$T/corpus.txt" >"$T/corpus.txt.xz" 2>/dev/null || cp "$T/corpus.txt" "$T/corpus.txt.xz"
expect_fail "no xz on PATH" 'xz is not installed' \
    env PATH=/nonexistent "$PICTL" model profile -m "$T/s.gguf" --corpus "$T/corpus.txt.xz" -o "$T/x.gguf"
expect_fail "missing corpus" 'nope.txt: No such file' \
    $PICTL model profile -m "$T/s.gguf" --corpus "$T/nope.txt" -o "$T/x.gguf"
expect_fail "window beyond the context" 'exceeds the model.s context length 512' \
    $PICTL model profile -m "$T/s.gguf" --corpus "$T/corpus.txt" --ctx 1000 -o "$T/x.gguf"
expect_fail "missing --corpus" 'required' $PICTL model profile -m "$T/s.gguf"
expect_fail "half of the pairs options" 'go together' \
    $PICTL model profile -m "$T/s.gguf" --corpus "$T/corpus.txt" --dump-pairs "$T/p"
[ ! -e "$T/x.gguf" ] || fail "a failed profile left $T/x.gguf behind"

# the shared corpus, decompressed through xz
C=$S/corpus/gutenberg-train.txt.xz
if command -v xz >/dev/null && [ -f "$C" ]; then
    $PICTL model profile -m "$T/s.gguf" --corpus "$C" --tokens 3000 -o "$T/g.gguf" >"$T/profile" 2>"$T/progress" \
        || fail "profile of $C: $(cat "$T/profile" "$T/progress")"
    grep -q 'wrote .*g.gguf: 5 layers x 172 neurons, 3000 tokens' "$T/profile" || fail "xz summary: $(cat "$T/profile")"
    $PICTL model inspect "$T/g.gguf" | grep -qE 'blk.0.ffn_freq +f32' || fail "inspect of the xz profile"
    echo "ok: 3000 tokens of $C"
else
    echo "note: xz or $C absent; the .xz corpus run was skipped"
fi

rm -rf "$T"
echo "test_profile_cli: ok"

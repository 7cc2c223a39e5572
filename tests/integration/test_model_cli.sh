#!/usr/bin/env bash
# Proves `pictl model import-llama2c` turns the shared llama2.c checkpoint into a GGUF that
# `pictl model inspect` describes with the right hyperparameters, and that bad inputs fail clearly.
set -u
S=${PI_SHARED:-../shared}/models
[ -f "$S/stories260K.bin" ] && [ -f "$S/tok512.bin" ] || { echo "SKIP: $S absent"; exit 77; }
PICTL=$PI_BIN/pictl
T=$PI_TMP/test_model_cli
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*"; exit 1; }

# expect_fail DESCRIPTION PATTERN CMD...: CMD exits non-zero and its stderr matches PATTERN.
expect_fail() {
    local what=$1 pat=$2; shift 2
    if "$@" >"$T/out" 2>"$T/err"; then fail "$what: exited 0"; fi
    grep -qE "$pat" "$T/err" || fail "$what: stderr lacks /$pat/: $(cat "$T/err")"
    echo "ok: $what -> $(head -1 "$T/err")"
}

$PICTL model import-llama2c --checkpoint "$S/stories260K.bin" --tokenizer "$S/tok512.bin" \
    -o "$T/s.gguf" >"$T/import" 2>&1 || fail "import: $(cat "$T/import")"
cat "$T/import"
$PICTL model inspect "$T/s.gguf" >"$T/inspect" 2>&1 || fail "inspect: $(cat "$T/inspect")"
for want in 'architecture: llama' 'embedding_length +64$' 'block_count +5$' 'head_count +8$' \
            'head_count_kv +4$' 'vocab_size +512$' 'feed_forward_length +172$' 'context_length +512$' \
            'ffn_activation +silu$' 'output +tied' 'tokens +512$' 'bos_token_id +1$' \
            'blk.4.ffn_down.weight +f32 +\[172,64\] +44032$' 'total: 47 tensors'; do
    grep -qE "$want" "$T/inspect" || fail "inspect output lacks /$want/"
done
echo "ok: inspect shows the hyperparameters"

$PICTL model import-llama2c --checkpoint "$S/stories260K.bin" --tokenizer "$S/tok512.bin" \
    -o "$T/q.gguf" --type q8_0 --act relu >/dev/null 2>&1 || fail "q8_0 import"
$PICTL model inspect "$T/q.gguf" >"$T/inspect" 2>&1 || fail "inspect q8_0"
grep -qE 'blk.0.attn_q.weight +q8_0' "$T/inspect" && grep -qE 'ffn_activation +relu$' "$T/inspect" \
    || fail "q8_0/relu import not reflected: $(cat "$T/inspect")"
echo "ok: --type q8_0 --act relu"

# a vocab-only GGUF is listed through the fallback (keys + tensors), exit 0
V=${PI_SHARED:-../shared}/vocab/ggml-vocab-llama-spm.gguf
if [ -f "$V" ]; then
    $PICTL model inspect "$V" >"$T/inspect" 2>&1 || fail "inspect of a vocab-only GGUF: $(cat "$T/inspect")"
    grep -q 'not a loadable llama model' "$T/inspect" && grep -q 'tokenizer.ggml.tokens' "$T/inspect" \
        || fail "fallback listing: $(head -5 "$T/inspect")"
    echo "ok: inspect falls back to keys and tensors"
fi

head -c 100000 "$S/stories260K.bin" >"$T/trunc.bin"
expect_fail "truncated checkpoint" 'trunc.bin: file is 100000 bytes .* needs exactly 1056540' \
    $PICTL model import-llama2c --checkpoint "$T/trunc.bin" --tokenizer "$S/tok512.bin" -o "$T/x.gguf"
printf '24ka\001\000\000\000' >"$T/v1.bin"; head -c 300 "$S/stories260K.bin" >>"$T/v1.bin"
expect_fail "versioned export" 'magic ak42' \
    $PICTL model import-llama2c --checkpoint "$T/v1.bin" --tokenizer "$S/tok512.bin" -o "$T/x.gguf"
if [ -f "$S/tokenizer32k.bin" ]; then
    expect_fail "mismatched tokenizer" 'tokenizer32k.bin: .*vocab_size of 512' \
        $PICTL model import-llama2c --checkpoint "$S/stories260K.bin" --tokenizer "$S/tokenizer32k.bin" -o "$T/x.gguf"
fi
head -c 3000 "$S/tok512.bin" >"$T/tok-trunc.bin"
expect_fail "truncated tokenizer" 'tok-trunc.bin: .*(ends after|length)' \
    $PICTL model import-llama2c --checkpoint "$S/stories260K.bin" --tokenizer "$T/tok-trunc.bin" -o "$T/x.gguf"
expect_fail "missing checkpoint" 'nope.bin: No such file' \
    $PICTL model import-llama2c --checkpoint "$T/nope.bin" --tokenizer "$S/tok512.bin" -o "$T/x.gguf"
expect_fail "bad --type" 'q3_k' \
    $PICTL model import-llama2c --checkpoint "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$T/x.gguf" --type q3_k
expect_fail "missing -o" 'required' \
    $PICTL model import-llama2c --checkpoint "$S/stories260K.bin" --tokenizer "$S/tok512.bin"
[ ! -e "$T/x.gguf" ] || fail "a failed import left $T/x.gguf behind"
expect_fail "inspect of a non-GGUF file" 'stories260K.bin' $PICTL model inspect "$S/stories260K.bin"
expect_fail "unknown subcommand" 'unknown subcommand' $PICTL model frobnicate

rm -rf "$T"
echo "test_model_cli: ok"

#!/usr/bin/env bash
# Proves `pid run` reproduces llama2.c's greedy stories260K output byte for byte, that a seed reproduces a sampled run and another seed changes it, and that bad input fails clearly.
set -euo pipefail

models="${PI_SHARED:-../shared}/models"
if [ ! -d "$models" ]; then
  echo "SKIP: $models not found (the shared test data is absent)"
  exit 77
fi
: "${PI_BIN:?PI_BIN must name the bin folder of the build}"
tmp="${PI_TMP:-/tmp}/pid_run_expected"
rm -rf "$tmp"
mkdir -p "$tmp"
gguf="$tmp/stories260K.gguf"

fail() { echo "FAIL: $*" >&2; exit 1; }

"$PI_BIN/pictl" model import-llama2c --checkpoint "$models/stories260K.bin" \
  --tokenizer "$models/tok512.bin" -o "$gguf" || fail "import-llama2c failed"

# Exactly one trailing newline, whatever the file had.
norm() { printf '%s\n' "$(cat "$1")" >"$2"; }

# 1. Greedy: BOS, then 200 generated tokens, as llama2.c prints them: on the
# worker processes (GPU worker's host backend + 2 CPU workers holding the
# cold neurons of a small budget) and in-process on the reference forward.
norm "$models/stories260K.expected.txt" "$tmp/expected.txt"
check_greedy() {
  local name=$1; shift
  "$PI_BIN/pid" run -m "$gguf" -n 200 --temp 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" \
    || { cat "$tmp/$name.err" >&2; fail "pid run --temp 0 $* failed"; }
  cat "$tmp/$name.err"
  grep -q "generated 200 tokens" "$tmp/$name.err" || fail "expected 'generated 200 tokens' on stderr"
  norm "$tmp/$name.out" "$tmp/$name.got"
  if ! cmp -s "$tmp/expected.txt" "$tmp/$name.got"; then
    diff -u "$tmp/expected.txt" "$tmp/$name.got" || true
    fail "greedy output ($name) differs from stories260K.expected.txt"
  fi
  echo "ok: greedy output ($name) matches stories260K.expected.txt"
}
check_greedy workers --gpu-backend host --cpu-workers 2 --vram-budget 0.00073
grep -q "neurons \[37, 104) of 172" "$tmp/workers.err" || fail "expected cpu:0 to hold neurons [37, 104)"
check_greedy reference --reference

# 2. Sampling: the same seed gives the same text, another seed another text.
run_seed() {
  "$PI_BIN/pid" run -m "$gguf" -n 200 --temp 0.8 --seed "$1" >"$2" 2>"$2.err" \
    || { cat "$2.err" >&2; fail "pid run --seed $1 failed"; }
  grep -q "seed $1\$" "$2.err" || fail "stderr must report seed $1: $(cat "$2.err")"
}
run_seed 7 "$tmp/s7a.out"
run_seed 7 "$tmp/s7b.out"
run_seed 8 "$tmp/s8.out"
cmp -s "$tmp/s7a.out" "$tmp/s7b.out" || { diff "$tmp/s7a.out" "$tmp/s7b.out" || true; fail "--seed 7 twice gave different output"; }
cmp -s "$tmp/s7a.out" "$tmp/s8.out" && fail "--seed 7 and --seed 8 gave the same output"
[ -s "$tmp/s7a.out" ] || fail "sampled output is empty"
echo "ok: --seed 7 reproduces, --seed 8 differs"

# 3. Errors: a missing model is named; a bad flag gets the usage message.
if "$PI_BIN/pid" run -m "$tmp/nope.gguf" -n 5 >/dev/null 2>"$tmp/missing.err"; then
  fail "a missing model must fail"
fi
grep -q "nope.gguf" "$tmp/missing.err" || fail "the error must name the missing file: $(cat "$tmp/missing.err")"
set +e
"$PI_BIN/pid" run -m "$gguf" --top-p 2 >/dev/null 2>"$tmp/badflag.err"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "a bad flag value must exit 2, got $rc"
grep -q -- "--top-p" "$tmp/badflag.err" && [ "$(wc -l <"$tmp/badflag.err")" -eq 1 ] \
  || fail "bad flag: want one line naming the flag: $(cat "$tmp/badflag.err")"
echo "ok: errors"

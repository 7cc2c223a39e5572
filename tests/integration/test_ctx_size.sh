#!/bin/bash
# pid run -c/--ctx-size as llama.cpp has it: without it the context is what the run needs, at most the
# model's trained one (MODEL_CTX: a longer request is refused, naming -c); with -c
# larger it goes on past it, with one warning line; bad values are refused with one clear line.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup ctx_size

run() { timeout 120 "$B/pid" run -m "$MODEL" --gpu-backend host --cpu-workers 1 --temp 0.8 --seed 3 -p "Once" "$@"; }
generated() { sed -n 's/.*generated \([0-9]*\) tokens.*/\1/p' "$1" | tail -1; }

C=$MODEL_CTX over=$((MODEL_CTX + 188)) within=$((MODEL_CTX * 3 / 5)) big=$((MODEL_CTX * 2))
if run -n $over >"$D/a.out" 2>"$D/a.err"; then fail "pid run -n $over without -c ran past the $C trained positions"; fi
grep -q "exceed the context of $C positions.*-c/--ctx-size" "$D/a.err" || fail "without -c: $(tail -2 "$D/a.err")"
echo "ok: without -c, $over tokens are refused: $(grep -o "exceed the context.*" "$D/a.err")"
run -n $within >"$D/a.out" 2>"$D/a.err" || fail "pid run -n $within: $(tail -3 "$D/a.err")"
! grep -q "warning" "$D/a.err" || fail "without -c: unexpected warning: $(grep warning "$D/a.err")"
echo "ok: without -c a run within the trained context needs no warning ($(generated "$D/a.err") tokens)"

run -c $big -n $over >"$D/b.out" 2>"$D/b.err" || fail "pid run -c $big: $(tail -3 "$D/b.err")"
n=$(generated "$D/b.err")
grep -q "warning: --n-ctx $big is larger than the model's trained context ($C)" "$D/b.err" \
    || fail "-c $big: no warning about the trained context: $(head -3 "$D/b.err")"
case "$n" in
    $over) echo "ok: -c $big generated $over tokens past the $C trained positions, with a warning" ;;
    *) grep -q "eos\|end of text" "$D/b.err" && [ "$n" -gt 0 ] && echo "ok: -c $big stopped at eos after $n tokens" \
           || fail "-c $big: generated '$n' tokens, want $over" ;;
esac

for bad in 0 -5 x 99999999999; do
    if run --ctx-size "$bad" -n 5 >"$D/c.out" 2>"$D/c.err"; then fail "--ctx-size $bad accepted"; fi
    grep -q "is not a number of positions" "$D/c.err" || fail "--ctx-size $bad: $(head -2 "$D/c.err")"
done
echo "ok: bad --ctx-size values refused with one line"
echo PASS

#!/bin/bash
# pid run -c/--ctx-size as llama.cpp has it: without it the context is what the run needs, at most the
# model's trained one (512 positions for stories260K: a longer request is refused, naming -c); with -c
# larger it goes on past it, with one warning line; bad values are refused with one clear line.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup ctx_size

run() { timeout 120 "$B/pid" run -m "$MODEL" --gpu-backend host --cpu-workers 1 --temp 0.8 --seed 3 -p "Once" "$@"; }
generated() { sed -n 's/.*generated \([0-9]*\) tokens.*/\1/p' "$1" | tail -1; }

if run -n 700 >"$D/a.out" 2>"$D/a.err"; then fail "pid run -n 700 without -c ran past the 512 trained positions"; fi
grep -q "exceed the context of 512 positions.*-c/--ctx-size" "$D/a.err" || fail "without -c: $(tail -2 "$D/a.err")"
echo "ok: without -c, 700 tokens are refused: $(grep -o "exceed the context.*" "$D/a.err")"
run -n 300 >"$D/a.out" 2>"$D/a.err" || fail "pid run -n 300: $(tail -3 "$D/a.err")"
! grep -q "warning" "$D/a.err" || fail "without -c: unexpected warning: $(grep warning "$D/a.err")"
echo "ok: without -c a run within the trained context needs no warning ($(generated "$D/a.err") tokens)"

run -c 1024 -n 700 >"$D/b.out" 2>"$D/b.err" || fail "pid run -c 1024: $(tail -3 "$D/b.err")"
n=$(generated "$D/b.err")
grep -q "warning: --n-ctx 1024 is larger than the model's trained context (512)" "$D/b.err" \
    || fail "-c 1024: no warning about the trained context: $(head -3 "$D/b.err")"
case "$n" in
    700) echo "ok: -c 1024 generated 700 tokens past the 512 trained positions, with a warning" ;;
    *) grep -q "eos\|end of text" "$D/b.err" && [ "$n" -gt 0 ] && echo "ok: -c 1024 stopped at eos after $n tokens" \
           || fail "-c 1024: generated '$n' tokens, want 700" ;;
esac

for bad in 0 -5 x 99999999999; do
    if run --ctx-size "$bad" -n 5 >"$D/c.out" 2>"$D/c.err"; then fail "--ctx-size $bad accepted"; fi
    grep -q "is not a number of positions" "$D/c.err" || fail "--ctx-size $bad: $(head -2 "$D/c.err")"
done
echo "ok: bad --ctx-size values refused with one line"
echo PASS

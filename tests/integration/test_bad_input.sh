#!/bin/bash
# Bad Generate input, through pictl and through raw RPC (rpc_raw.py: pid validates what pictl would refuse to send): each gets a one-line error naming the problem, and pid keeps serving (a greedy generation right after each matches the reference). The empty prompt is allowed (BOS only) and matches llama2.c's output.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup bad_input
RAW="/usr/bin/python3 $(dirname "$0")/rpc_raw.py"

timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --listen "$EP" \
    --log-file "$D/pid.log" --pid-file "$D/pid.pid" >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids

still_serving() {  # $1: what came before
    timeout 60 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 20 "Once" >"$D/ok.out" 2>&1 \
        || fail "pid stopped serving after $1: $(cat "$D/ok.out")"
}
# pictl exits $2 with $3 (a grep -E pattern) as its last stderr line; then pid still serves.
pictl_refuses() {  # $1: case name, $2: exit code, $3: pattern, rest: pictl generate arguments
    local name=$1 want=$2 pat=$3 rc
    shift 3
    timeout 60 "$B/pictl" generate --endpoint "$EP" "$@" >"$D/out" 2>"$D/err"
    rc=$?
    [ $rc = "$want" ] || fail "$name: pictl exited $rc, want $want: $(cat "$D/err")"
    [ "$(wc -l <"$D/err")" = 1 ] || fail "$name: want one line of error, got: $(cat "$D/err")"
    grep -qE "$pat" "$D/err" || fail "$name: error '$(cat "$D/err")' does not match '$pat'"
    still_serving "$name"
    echo "ok: $name: $(cat "$D/err")"
}
rpc_refuses() {  # $1: case name, $2: pattern on "error CODE MESSAGE", rest: rpc_raw.py arguments
    local name=$1 pat=$2 out
    shift 2
    out=$(timeout 60 $RAW "$EP" generate "$@" 2>&1) || fail "$name: rpc_raw.py failed: $out"
    echo "$out" | grep -qE "$pat" || fail "$name: answer '$out' does not match '$pat'"
    still_serving "$name (RPC)"
    echo "ok: $name (RPC): $out"
}

# Empty prompt = BOS only, as llama2.c's run does with no prompt.
generate_expected "$D/empty.out" || fail "empty prompt: $(cat "$D/empty.out.err")"
same_as_expected "$D/empty.out" || fail "empty prompt: text differs from $EXPECTED"
echo "ok: empty prompt (BOS only) reproduces the reference"
pictl_refuses "empty prompt with --no-bos" 1 'BAD_REQUEST: .*prompt is empty and no_bos is set' --no-bos -n 5 ""
rpc_refuses "empty prompt with no_bos" '^error 1 .*prompt is empty and no_bos is set' --no-bos

# Invalid UTF-8: refused with the offset of the first bad byte.
pictl_refuses "invalid UTF-8 (0xff)" 1 'BAD_REQUEST: .*not valid UTF-8 at byte 2 \(0xff\)' -n 5 $'ab\xffcd'
pictl_refuses "invalid UTF-8 (overlong)" 1 'not valid UTF-8 at byte 4 \(0xc0\)' -n 5 $'Once\xc0\xafx'
pictl_refuses "invalid UTF-8 (surrogate)" 1 'not valid UTF-8 at byte 1 \(0xed\)' -n 5 $'a\xed\xa0\x80'
pictl_refuses "invalid UTF-8 (cut short)" 1 'not valid UTF-8 at byte 3 \(0xe2\)' -n 5 $'abc\xe2\x82'
rpc_refuses "invalid UTF-8" '^error 1 .*not valid UTF-8 at byte 1 \(0xff\)' --prompt-hex 61ff62
timeout 60 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 5 "héllo wörld ✓ 🙂" >"$D/utf8.out" 2>&1 \
    || fail "valid UTF-8 refused: $(cat "$D/utf8.out")"
echo "ok: valid multi-byte UTF-8 accepted"

# Longer than the model's context.
pictl_refuses "prompt + n beyond the context" 1 "TOO_LONG: .*exceed the context of $MODEL_CTX positions.*-c/--ctx-size" -n $((MODEL_CTX + 88)) "Once"
long=$(printf 'Once upon a time %.0s' $(seq 1 200))
pictl_refuses "prompt beyond the context" 1 'TOO_LONG: .*-c/--ctx-size' -n 1 "$long"

# n = 0 and negative n.
pictl_refuses "-n 0" 2 '^pictl generate: -n must be at least 1$' -n 0 "Once"
pictl_refuses "-n -1" 2 "^pictl generate: -n: bad value '-1': expected an integer >= 0$" -n -1 "Once"
rpc_refuses "max_tokens -1 (as uint32)" '^error 5 .*max_tokens \(4294967295\) exceed the context' --max-tokens -1
out=$(timeout 60 $RAW "$EP" generate --max-tokens 0 --temp 0) || fail "max_tokens 0: $out"
[ "$out" = "done 128" ] || fail "max_tokens 0 should mean pid's default (128): $out"
echo "ok: max_tokens 0 (RPC) = pid's default n_predict: $out"

# Sampling parameters out of range: pictl refuses them, and pid refuses them from RPC.
pictl_refuses "--temp -1" 2 "^pictl generate: --temp: bad value '-1': expected a number >= 0" --temp -1 "x"
pictl_refuses "--temp nan" 2 "^pictl generate: --temp: bad value 'nan'" --temp nan "x"
pictl_refuses "--top-p 0" 2 "^pictl generate: --top-p: bad value '0': expected a number in \(0, 1\]" --top-p 0 "x"
pictl_refuses "--top-p 1.5" 2 "^pictl generate: --top-p: bad value '1.5'" --top-p 1.5 "x"
pictl_refuses "--top-k -1" 2 "^pictl generate: --top-k: bad value '-1': expected an integer >= 0" --top-k -1 "x"
pictl_refuses "--min-p -0.1" 2 "^pictl generate: --min-p: bad value '-0.1': expected a number in \[0, 1\]" --min-p -0.1 "x"
pictl_refuses "--min-p 1.5" 2 "^pictl generate: --min-p: bad value '1.5'" --min-p 1.5 "x"
pictl_refuses "--repeat-penalty 0" 2 "^pictl generate: --repeat-penalty: bad value '0': expected a number > 0" --repeat-penalty 0 "x"
pictl_refuses "--repeat-penalty -1" 2 "^pictl generate: --repeat-penalty: bad value '-1'" --repeat-penalty -1 "x"
rpc_refuses "temperature -1" '^error 1 .*sampling.temperature -1: must be a finite number >= 0' --temp -1
rpc_refuses "temperature NaN" '^error 1 .*sampling.temperature nan: must be a finite number' --temp nan
rpc_refuses "top_p -0.5" '^error 1 .*sampling.top_p -0.5: must be in \(0, 1\]' --top-p -0.5
rpc_refuses "top_p 1.5" '^error 1 .*sampling.top_p 1.5: must be in \(0, 1\]' --top-p 1.5
rpc_refuses "top_p NaN" '^error 1 .*sampling.top_p nan' --top-p nan
rpc_refuses "top_k -1 (as uint32)" '^error 1 .*sampling.top_k 4294967295 .*must be at most 2147483647' --top-k -1
rpc_refuses "min_p -0.1" '^error 1 .*sampling.min_p -0.1: must be in \[0, 1\]' --min-p -0.1
rpc_refuses "min_p 1.5" '^error 1 .*sampling.min_p 1.5' --min-p 1.5
rpc_refuses "repeat_penalty -1" '^error 1 .*sampling.repeat_penalty -1: must be a finite number > 0' --repeat-penalty -1
rpc_refuses "repeat_penalty inf" '^error 1 .*sampling.repeat_penalty inf' --repeat-penalty inf
out=$(timeout 60 $RAW "$EP" generate --temp 0 --top-p 0 --repeat-penalty 0 --prompt-hex 4f6e6365) || fail "zeros: $out"
[ "$out" = "done 5" ] || fail "top_p 0 / repeat_penalty 0 (proto3 zero = off) refused: $out"
echo "ok: top_p 0 and repeat_penalty 0 from RPC mean off: $out"

# After all that: the reference output, and a clean stop.
generate_expected "$D/final.out" || fail "final generation: $(cat "$D/final.out.err")"
same_as_expected "$D/final.out" || fail "final generation differs from $EXPECTED"
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
echo PASS

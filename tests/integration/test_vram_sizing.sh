#!/bin/bash
# On the host backend with a pretend GPU (PI_PRETEND_GPU_MEMORY, read by pi-gpu-worker --probe-memory): pid start without --vram-budget takes 90% of the free memory and says so with its 10% margin, lowers its default KV cache to fit (pictl status: positions x sequences, lowered) and serves the reference text; a KV cache asked for that does not fit is refused with sizes that fit (pid run at those sizes starts, one position more is refused); a budget over the free memory is refused naming it; without a pretend device the host defaults are unchanged (no budget, 8 sequences).
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup vram_sizing

# Per model: a free size whose budget cannot hold the default 8 sequences x the trained context beside
# the weights, and the sequences that half the room holds (the plan's rule, sparse/plan.c kv_fit):
#   stories260K: weights 370.8 KiB, 1280 B per position (fp32), 512 positions: budget 7.20 MiB,
#     room 6.84 MiB, half of it / (512 x 1280 B) = 5 sequences;
#   default model: weights 7.33 MiB, predictors 1.59 MiB (its sidecar's), 18 KiB per position,
#     256 positions: budget 28.80 MiB, room 19.88 MiB, half / (256 x 18 KiB) = 2 sequences.
if [ "$DEFAULT_MODEL" = 1 ]; then FREE_MIB=32 BUDGET=28.80 SEQS=2; else FREE_MIB=8 BUDGET=7.20 SEQS=5; fi
FREE=$((FREE_MIB << 20)) TOTAL=$(((FREE_MIB + 2) << 20))

# pid start with $@, logging to $LOG; its output in $D/start.out; rc in $rc.
LOG=$D/pid.log
start() {
    timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 2 --gpu-backend host --listen "$EP" \
        --log-file "$LOG" --pid-file "$D/pid.pid" "$@" >"$D/start.out" 2>&1 </dev/null
    rc=$?
}

stop() {
    timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
}

# A refusal: exit 1 (not a timeout, not a signal), the message in the output, nothing left listening.
refused() {
    local name=$1 pat=$2 out=$3
    [ "$rc" = 1 ] || fail "$name: exit $rc, expected 1: $(cat "$out")"
    grep -qF -e "$pat" "$out" || fail "$name: the output does not say '$pat': $(cat "$out")"
    [ -e "$D/pid.sock" ] && fail "$name: left its socket"
    echo "ok: $name refused: $(grep -F -e "$pat" "$out" | head -1)"
}

# 1. The budget from the free memory; the default KV cache lowered to fit it; the daemon serves.
export PI_PRETEND_GPU_MEMORY=$FREE,$TOTAL
start
[ "$rc" = 0 ] || { cat "$D/start.out"; fail "pid start with $FREE_MIB MiB free"; }
remember_pids
"$B/pictl" status --endpoint "$EP" >"$D/status.txt" || fail "pictl status"
cat "$D/status.txt"
want="budget $BUDGET MiB = 90% of the GPU's $FREE_MIB.00 MiB free (a 10% margin left free; $((FREE_MIB + 2)).00 MiB total)"
grep -qF "$want" "$D/status.txt" || fail "the plan line does not say '$want'"
grep -qF "$want" "$LOG" || fail "pid's log does not say '$want'"
grep -q "^vram budget: $(printf %.1f "$BUDGET")M " "$D/status.txt" || fail "pictl status: the budget is not $BUDGET MiB"
kv="($MODEL_CTX positions x $SEQS sequences), lowered to fit the VRAM budget"
grep -q "^kv cache: .*$kv" "$D/status.txt" || fail "pictl status: no 'kv cache: ... $kv'"
grep -q "^gpu .*$SEQS seqs x $MODEL_CTX ctx" <("$B/pictl" workers --endpoint "$EP") || fail "the GPU worker's KV cache is not $SEQS x $MODEL_CTX"
generate_expected "$D/out.txt" || fail "pictl generate: $(cat "$D/out.txt.err")"
same_as_expected "$D/out.txt" || { diff "$D/out.txt" "$EXPECTED" | head; fail "output differs from the reference"; }
echo "ok: budget $BUDGET MiB from $FREE_MIB MiB free, KV cache $MODEL_CTX x $SEQS, reference text"
stop

# 2. A KV cache asked for that does not fit: refused with what fits, and what it says fits does.
start --max-seqs 4096
refused "pid start --max-seqs 4096" "positions x 4096 sequences needs" "$D/start.out"
grep -qF "would fit. Give a smaller --ctx-size or --max-seqs" "$D/start.out" || fail "no way out said: $(cat "$D/start.out")"
timeout 60 "$B/pid" run -m "$MODEL" --cpu-workers 2 --gpu-backend host -n 4 -p "" -c 100000 >"$D/run.out" 2>&1
rc=$?
refused "pid run -c 100000" "a KV cache of 100000 positions x 1 sequence needs" "$D/run.out"
fits=$(sed -n 's/.*: 1 sequence x \([0-9]*\) positions would fit.*/\1/p' "$D/run.out")
[ -n "$fits" ] || fail "no size that fits in: $(cat "$D/run.out")"
timeout 60 "$B/pid" run -m "$MODEL" --cpu-workers 2 --gpu-backend host -n 4 -p "" -c "$fits" >"$D/run.out" 2>&1 ||
    fail "pid run -c $fits (said to fit): $(tail -3 "$D/run.out")"
grep -q "($fits positions x 1 sequence)" "$D/run.out" || fail "pid run -c $fits: its plan line: $(cat "$D/run.out")"
timeout 60 "$B/pid" run -m "$MODEL" --cpu-workers 2 --gpu-backend host -n 4 -p "" -c $((fits + 1)) >"$D/run.out" 2>&1
rc=$?
refused "pid run -c $((fits + 1))" "a KV cache of $((fits + 1)) positions x 1 sequence needs" "$D/run.out"
echo "ok: -c $fits (what the message said fits) runs"

# 3. A budget larger than the free memory.
start --vram-budget 1
refused "pid start --vram-budget 1" "the VRAM budget 1.00 GiB is larger than the GPU's free memory ($FREE_MIB.00 MiB free of $((FREE_MIB + 2)).00 MiB)" "$D/start.out"
grep -q "give --vram-budget 0\.0[0-9]* or less, or leave it out" "$D/start.out" || fail "no budget that fits said: $(cat "$D/start.out")"

# 4. No pretend device: the host backend's defaults as before (no budget from a device, the full
#    default KV cache).
unset PI_PRETEND_GPU_MEMORY
LOG=$D/pid-nodevice.log
start
[ "$rc" = 0 ] || { cat "$D/start.out"; fail "pid start without a device"; }
remember_pids
"$B/pictl" status --endpoint "$EP" >"$D/status.txt" || fail "pictl status"
grep -q "^kv cache: .*($MODEL_CTX positions x 8 sequences)$" "$D/status.txt" || fail "host default: $(grep kv "$D/status.txt")"
grep -q "GPU's\|GPU has\|lowered" "$LOG" && fail "host default: the plan line speaks of a device: $(cat "$LOG")"
echo "ok: no device: nothing said of one, $MODEL_CTX positions x 8 sequences"
stop
grep -q "ERROR: LeakSanitizer\|runtime error" "$D"/pid*.log && fail "sanitizer report in a pid log"
echo PASS

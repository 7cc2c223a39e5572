#!/bin/bash
# Proves `pid run --timings` (host GPU backend, 2 CPU workers) keeps the greedy text and prints where each decode step's time went, then the prefill steps' (and how many steps ended on the step bell, all of them where pid spins): every row, both CPU workers' non-zero cold FFN and their wait, the wall, and the sum within 5% of it once the GPU worker sends its phases (else n/a, said so); and that pictl status shows the last decode step of `pid start --timings`.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup timings

# 1. pid run --timings: the reference text, then the table on stderr.
common=(-m "$MODEL" -n 200 --temp 0 --gpu-backend host --cpu-workers 2 --vram-budget $RUN_COLD_GIB)
timeout 300 "$B/pid" run "${common[@]}" --timings >"$D/run.out" 2>"$D/run.err" \
    || { cat "$D/run.err" >&2; fail "pid run --timings"; }
cat "$D/run.err"
same_as_expected "$D/run.out" || { diff "$D/run.out" "$EXPECTED" | head; fail "--timings changed the text"; }
grep -q "^pid run: timings per decode step, ms (199 steps, 1.00 tokens each; prefill excluded: 1 steps, 1 tokens," \
    "$D/run.err" || fail "no table header for 199 decode steps + 1 prefill step"

# The value column of a row ("n/a" or milliseconds).
val() { awk -v r="$1" 'index($0, "pid run:   " r " ") == 1 { s = substr($0, length("pid run:   " r) + 1);
                                                            split(s, f, " "); print f[1]; exit }' "$D/run.err"; }
rows=("gpu embed" "gpu attn" "gpu predict" "gpu publish" "gpu hot ffn" "gpu wait for cpu" "gpu finish"
      "gpu logits" "gpu worker host control" "pid control (round trip - gpu step)"
      "pid scheduling (loop, build, send, read)" "sampling (sample, detokenize, stream)" "sum" "wall"
      "sum / wall" "cpu:0 cold ffn" "cpu:0 wait for gpu" "cpu:1 cold ffn" "cpu:1 wait for gpu")
for r in "${rows[@]}"; do
    [ -n "$(val "$r")" ] || fail "row '$r' missing"
done
positive() { awk -v x="$1" 'BEGIN { exit !(x + 0 > 0) }'; }
for w in 0 1; do
    positive "$(val "cpu:$w cold ffn")" || fail "cpu:$w cold ffn is '$(val "cpu:$w cold ffn")', want > 0"
    [[ "$(val "cpu:$w wait for gpu")" =~ ^[0-9]+\.[0-9]+$ ]] || fail "cpu:$w wait for gpu is not a number"
done
grep -q "stats of .* steps; the rest were stale" "$D/run.err" && fail "a CPU worker's stats line was stale"
grep -q "not in the sum" "$D/run.err" || fail "the CPU rows must say they are not in the sum"
positive "$(val wall)" || fail "wall is '$(val wall)'"
positive "$(val "pid scheduling (loop, build, send, read)")" || fail "pid scheduling not measured"
echo "ok: table with both CPU workers (cold $(val "cpu:0 cold ffn"), $(val "cpu:1 cold ffn") ms per step)"

if [ "$(val "gpu attn")" = n/a ]; then
    echo "case: GPU phases ABSENT (this GPU worker sends no StepDone.timings): checking n/a and the known parts"
    for r in "gpu embed" "gpu hot ffn" "gpu worker host control" "pid control (round trip - gpu step)" sum "sum / wall"; do
        [ "$(val "$r")" = n/a ] || fail "row '$r' should be n/a without GPU phases"
    done
    positive "$(val "round trip (gpu worker + zeromq, not split)")" || fail "no round trip row without GPU phases"
    grep -q "the GPU worker sent no phases; pid scheduling + sampling:" "$D/run.err" || fail "known parts not summed"
else
    ratio=$(val "sum / wall")
    echo "case: GPU phases PRESENT: sum / wall = $ratio (want 95%..105%)"
    awk -v x="${ratio%\%}" 'BEGIN { exit !(x >= 95 && x <= 105) }' || fail "sum / wall is $ratio, not within 5%"
fi

# 1a. The prompt's steps get a table of their own after the decode one (where the time to the first token
# goes): its header counts the one prefill step, every GPU row is there, and its sum meets its wall as the
# decode table's does.
pre=$D/prefill.txt
sed -n '/^pid run: timings per prefill step/,$p' "$D/run.err" >"$pre"
grep -q "^pid run: timings per prefill step, ms (1 steps, 1.00 entries each, [0-9.]* ms in all)" "$pre" ||
    fail "no prefill table for the one prefill step"
pval() { awk -v r="$1" 'index($0, "pid run:   " r " ") == 1 { s = substr($0, length("pid run:   " r) + 1);
                                                             split(s, f, " "); print f[1]; exit }' "$pre"; }
for r in "${rows[@]}"; do
    [ -n "$(pval "$r")" ] || fail "prefill table: row '$r' missing"
done
positive "$(pval wall)" || fail "prefill table: wall is '$(pval wall)'"
if [ "$(pval "gpu attn")" != n/a ]; then
    r=$(pval "sum / wall")
    awk -v x="${r%\%}" 'BEGIN { exit !(x >= 95 && x <= 105) }' || fail "prefill table: sum / wall is $r, not within 5%"
fi
echo "ok: prefill table (1 step, wall $(pval wall) ms, sum / wall $(pval "sum / wall"))"

# 1b. The step bell (shm/step_bell.h): where pid and the workers spin between steps (PI_ZMQ_SPIN_US; on the
# GPU machine pid and the GPU worker do so by default without CPU workers), steps start and end through the
# segment before their ZeroMQ messages land. The text is the same, every decode step ends on the bell, and
# PI_STEP_BELL=0 leaves only the messages.
bell_steps() { sed '/^pid run: timings per prefill step/,$d' "$1" |     # the decode table's line
                 sed -n 's/^pid run:   (\([0-9]*\) of the \([0-9]*\) steps ended on the step bell.*/\1 \2/p'; }
[ "$(bell_steps "$D/run.err")" = "0 199" ] || fail "without spinning no step should end on the bell: $(bell_steps "$D/run.err")"
PI_ZMQ_SPIN_US=20000 timeout 300 "$B/pid" run "${common[@]}" --timings >"$D/bell.out" 2>"$D/bell.err" \
    || { cat "$D/bell.err" >&2; fail "pid run with PI_ZMQ_SPIN_US"; }
same_as_expected "$D/bell.out" || { diff "$D/bell.out" "$EXPECTED" | head; fail "the step bell changed the text"; }
[ "$(bell_steps "$D/bell.err")" = "199 199" ] || fail "spinning: want all 199 steps ended on the bell, got $(bell_steps "$D/bell.err")"
PI_STEP_BELL=0 PI_ZMQ_SPIN_US=20000 timeout 300 "$B/pid" run "${common[@]}" --timings >"$D/nobell.out" 2>"$D/nobell.err" \
    || { cat "$D/nobell.err" >&2; fail "pid run with PI_STEP_BELL=0"; }
same_as_expected "$D/nobell.out" || fail "PI_STEP_BELL=0 changed the text"
[ "$(bell_steps "$D/nobell.err")" = "0 199" ] || fail "PI_STEP_BELL=0: $(bell_steps "$D/nobell.err") steps on the bell"
echo "ok: the step bell ends all 199 steps where pid spins ($(grep -h "tok/s" "$D/bell.err" | grep -oE '[0-9.]+ tok/s'))," \
     "none with PI_STEP_BELL=0 ($(grep -h "tok/s" "$D/nobell.err" | grep -oE '[0-9.]+ tok/s')); the same text"

# 2. --timings needs the workers.
"$B/pid" run -m "$MODEL" -n 5 --reference --timings >/dev/null 2>"$D/ref.err" && fail "--reference --timings accepted"
grep -q "leave out --reference" "$D/ref.err" || fail "unclear --reference --timings error: $(cat "$D/ref.err")"
echo "ok: --timings with --reference is refused"

# 3. pictl status shows the last decode step of a daemon started with --timings.
timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 2 --gpu-backend host --timings --listen "$EP" \
    --pid-file "$D/pid.pid" --log-file "$D/pid.log" >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start --timings"; }
remember_pids
"$B/pictl" status --endpoint "$EP" >"$D/status0.txt" || fail "pictl status"
grep -q "^last step:" "$D/status0.txt" && fail "a last step before any request"
timeout 120 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 12 "Once upon" >/dev/null 2>"$D/gen.err" \
    || fail "pictl generate: $(cat "$D/gen.err")"
"$B/pictl" status --endpoint "$EP" >"$D/status.txt" || fail "pictl status"
grep -E "^(last step|cpu ffn):" "$D/status.txt"
grep -qE "^last step: +#[0-9]+, 1 token, [0-9.]+ ms = " "$D/status.txt" || fail "no last step in pictl status"
grep -qE "^cpu ffn: +cpu:0 cold [0-9.]+ wait [0-9.]+, cpu:1 cold [0-9.]+ wait [0-9.]+ ms" "$D/status.txt" \
    || fail "pictl status lacks the CPU workers' part"
grep -q "(GPU phases: pid start --timings)" "$D/status.txt" && fail "status says --timings was not given"
if grep -q "(the GPU worker sent no phases)" "$D/status.txt"; then
    echo "case: GPU phases ABSENT in status (this GPU worker sends none)"
else
    grep -qE "= gpu [0-9.]+ \(embed [0-9.]+ attn" "$D/status.txt" || fail "status shows neither GPU phases nor why"
    echo "case: GPU phases PRESENT in status"
fi
"$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
echo "ok: pictl status shows the last decode step"

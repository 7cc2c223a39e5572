#!/bin/bash
# Warm neurons (--warm-share): on the committed default model (its sidecar gives a placement), pid run with
# half of the cold neurons warm prints the same greedy text as the reference, its plan line counts the warm
# neurons, and the CPU workers hold fewer neurons per layer than without warm; pid start passes the share to
# restarted workers (the text stays the same after a CPU worker, then the GPU worker, is killed; the new GPU
# worker takes the kept memory with its warm rows as it was); a share outside 0..1 is refused, and without a
# sidecar (index-order plan) pid warns that the share has no effect; with every neuron within the budget pid
# starts no CPU workers.
# (The host backend holds warm rows like hot ones; on CUDA they sit in pinned host memory and the GPU reads
# them over PCIe: test_cuda_backend's hot+warm cases.)
set -u
export PI_DAEMON_MODEL=default
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup warm_share

# pid run with share $1: text into $D/run-$1.txt, stderr into $D/run-$1.err.
run() {
    timeout 120 "$B/pid" run -m "$MODEL" --temp 0 -n 200 -p "" --gpu-backend host --cpu-workers 2 \
        --vram-budget "$RUN_COLD_GIB" --warm-share "$1" >"$D/run-$1.txt" 2>"$D/run-$1.err" ||
        fail "pid run --warm-share $1: $(tail -3 "$D/run-$1.err")"
    cmp -s "$EXPECTED" "$D/run-$1.txt" || fail "pid run --warm-share $1: the text differs from the reference"
}
# The largest count of neurons per layer the CPU workers say they hold ("cold chunk ...: A..B of N").
cpu_most() { grep -oE "cold chunk [0-9]+ of [0-9]+ [^:]*: [0-9]+\.\.[0-9]+" "$1" | sed 's/.*\.\.//' | sort -n | tail -1; }

run 0
run 0.5
grep -q "warm " "$D/run-0.err" && fail "--warm-share 0: the plan line names warm neurons"
line=$(grep -oE "warm [0-9]+ neurons [^;]*" "$D/run-0.5.err") || fail "--warm-share 0.5: no warm neurons in the plan line"
echo "ok: --warm-share 0.5 prints the reference text; plan: $line"
a=$(cpu_most "$D/run-0.err") b=$(cpu_most "$D/run-0.5.err")
[ -n "$a" ] && [ -n "$b" ] && [ "$b" -lt "$a" ] || fail "CPU workers hold at most $b neurons per layer with warm, $a without"
echo "ok: CPU workers hold at most $b neurons per layer with half the cold warm, $a without"

# Without a sidecar the plan is in index order: no warm neurons, and pid says why.
mkdir -p "$D/bare" && cp "$MODEL" "$D/bare/" || fail "copy the model without its sidecar"
timeout 120 "$B/pid" run -m "$D/bare/$MODEL_NAME" --temp 0 -n 8 -p "" --gpu-backend host --cpu-workers 2 \
    --vram-budget "$RUN_COLD_GIB" --warm-share 0.5 >/dev/null 2>"$D/bare.err" || fail "pid run without a sidecar: $(tail -3 "$D/bare.err")"
grep -q "warm-share 0.5 has no effect: warm neurons need a placement" "$D/bare.err" ||
    fail "no warning that --warm-share needs a sidecar: $(grep -i warm "$D/bare.err")"
echo "ok: without a sidecar pid warns: $(grep -o "warning: --warm-share.*" "$D/bare.err")"

# Every neuron within the budget: pid starts no CPU workers (they would hold nothing and only be waited for
# at every layer), and the text is the same.
timeout 120 "$B/pid" run -m "$MODEL" --temp 0 -n 200 -p "" --gpu-backend host --cpu-workers 2 --vram-budget 8 \
    >"$D/all.txt" 2>"$D/all.err" || fail "pid run with everything in the budget: $(tail -3 "$D/all.err")"
grep -q "no CPU workers started" "$D/all.err" || fail "everything in the budget, but pid did not say it starts no CPU workers"
grep -q "cold chunk" "$D/all.err" && fail "everything in the budget, but a CPU worker was started"
cmp -s "$EXPECTED" "$D/all.txt" || fail "everything in the budget without CPU workers: the text differs from the reference"
echo "ok: everything in the budget: $(grep -o "no CPU workers started.*" "$D/all.err"), reference text"

timeout 30 "$B/pid" run -m "$MODEL" -n 1 --warm-share 1.5 >/dev/null 2>"$D/bad.err" && fail "--warm-share 1.5 accepted"
grep -q "warm-share '1.5'" "$D/bad.err" || fail "--warm-share 1.5: $(cat "$D/bad.err")"
echo "ok: --warm-share 1.5 refused: $(head -1 "$D/bad.err")"

timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 2 --gpu-backend host --vram-budget "$SOME_COLD_GIB" \
    --max-seqs 4 --warm-share 0.5 --listen "$EP" --log-file "$D/pid.log" --pid-file "$D/pid.pid" \
    >"$D/start.out" 2>&1 </dev/null || fail "pid start --warm-share 0.5: $(cat "$D/start.out")"
remember_pids
grep -q "warm " "$D/pid.log" || fail "pid start: the log has no warm neurons: $(head -5 "$D/pid.log")"
generate_expected "$D/g1.txt"
same_as_expected "$D/g1.txt" || fail "pid start --warm-share 0.5: the text differs from the reference"
w=$(worker_field cpu:1 2) && [ -n "$w" ] && kill -9 "$w" || fail "no cpu:1 worker to kill"
for _ in $(seq 100); do n=$(worker_field cpu:1 2); [ -n "$n" ] && [ "$n" != "$w" ] && break; sleep 0.1; done
generate_expected "$D/g2.txt"
same_as_expected "$D/g2.txt" || fail "after cpu:1 was restarted the text differs from the reference"
echo "ok: pid start --warm-share 0.5 serves the reference text, also after cpu:1 was killed and restarted"
# The GPU worker too: its kept arena holds the warm rows beside the hot ones (host backend), so the new one
# takes it as it was, and the text stays the reference.
g=$(worker_field gpu 2) && [ -n "$g" ] && kill -9 "$g" || fail "no gpu worker to kill"
for _ in $(seq 100); do n=$(worker_field gpu 2); [ -n "$n" ] && [ "$n" != "$g" ] && break; sleep 0.1; done
generate_expected "$D/g3.txt"
same_as_expected "$D/g3.txt" || fail "after the GPU worker was restarted the text differs from the reference"
grep -q "worker gpu ready.*0.0 MiB copied in, kept memory taken as it was" "$D/pid.log" ||
    { grep "worker gpu ready" "$D/pid.log" >&2; fail "the restarted GPU worker did not take the kept memory as it was"; }
echo "ok: after a kill -9 the new GPU worker took the kept memory (warm rows included) and serves the reference text"
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
echo "PASS"

#!/bin/bash
# Solo steps (issue 12; docs/shm.md): a prompt step the GPU worker runs alone, every FFN neuron on its side, while the CPU workers skip it, gives the same greedy text: pid run's greedy reference text with its prompt (the text's start) in solo steps; a long prompt in solo steps of 100 (the host backend runs them in parts of 64) the same text as the in-process reference forward; and through the daemon (max-batch 8, solo-batch 64) a long prompt prefilled by solo steps while another request decodes: both texts are the reference's, the decoder kept getting tokens, and pictl workers counts the solo steps.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup solo_steps

solo_count() { sed -n 's/^pid run: \([0-9]*\) solo steps .*/\1/p' "$1"; }

# 1. pid run: the reference greedy text's first 100 bytes as the prompt (its greedy continuation is the rest of that
# text, as pid run --reference shows on both models) in solo steps of 16 while 8 tokens or more are left, the last
# few in an ordinary step; CPU workers hold cold neurons. The text is EXPECTED's.
/usr/bin/python3 -c "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read()[:100])" "$EXPECTED" >"$D/p1.txt"
# EXPECTED is 200 tokens after BOS: the prompt's tokens (BOS included) and the rest make 201
p1=$("$B/pictl" tokenize -m "$MODEL" "$(cat "$D/p1.txt")" | wc -w)
[ "$p1" -gt 16 ] || fail "pictl tokenize: the prompt has $p1 tokens"
timeout 120 "$B/pid" run -m "$MODEL" -n $(( 201 - p1 )) --temp 0 --ffn dense --gpu-backend "$GPU_BACKEND" \
    --cpu-workers 2 --vram-budget "$RUN_COLD_GIB" --solo-batch 16 --solo-min 8 -p "$(cat "$D/p1.txt")" >"$D/run1.out" 2>"$D/run1.err" ||
    fail "pid run --solo-batch 16: $(tail -3 "$D/run1.err")"
n=$(solo_count "$D/run1.err")
[ "${n:-0}" -ge 2 ] || fail "the prompt took ${n:-no} solo steps of 16, want 2 or more: $(tail -3 "$D/run1.err")"
/usr/bin/python3 - "$D/run1.out" "$EXPECTED" <<'PY' || fail "the greedy text with the prompt in solo steps differs from $EXPECTED"
import sys
got = open(sys.argv[1], 'rb').read(); want = open(sys.argv[2], 'rb').read().rstrip(b'\n')
if got[:len(want)] != want:
    print("got:  %r\nwant: %r" % (got[:len(want)], want)); sys.exit(1)
PY
echo "ok: pid run, a prompt in $n solo steps: the reference greedy text"

# 2. pid run: a prompt of half the trained context in solo steps of 100 entries, as the reference forward (a context
# of the prompt and a bit: RUN_COLD_GIB leaves neurons cold at 201 positions).
want=$(( MODEL_CTX / 2 ))
per=$("$B/pictl" tokenize -m "$MODEL" --no-bos "once upon a time" | wc -w)
[ "$per" -gt 0 ] || fail "pictl tokenize"
prompt=$(/usr/bin/python3 -c "print(' '.join(['once upon a time'] * ($want // $per)))")
timeout 120 "$B/pid" run -m "$MODEL" -n 32 -c $(( want + 40 )) --temp 0 --ffn dense \
    --gpu-backend "$GPU_BACKEND" --cpu-workers 2 --vram-budget "$RUN_COLD_GIB" --solo-batch 100 --solo-min 16 -p "$prompt" >"$D/run2.out" 2>"$D/run2.err" ||
    fail "pid run --solo-batch 100: $(tail -3 "$D/run2.err")"
timeout 120 "$B/pid" run --reference -m "$MODEL" -n 32 --temp 0 -p "$prompt" >"$D/ref2.out" 2>"$D/ref2.err" ||
    fail "pid run --reference: $(tail -3 "$D/ref2.err")"
n=$(solo_count "$D/run2.err")
[ "${n:-0}" -ge 2 ] || fail "a $want-token prompt took ${n:-no} solo steps of 100, want 2 or more: $(tail -3 "$D/run2.err")"
cmp -s "$D/run2.out" "$D/ref2.out" || { diff "$D/ref2.out" "$D/run2.out"; fail "the long prompt's text in solo steps differs from the reference forward's"; }
echo "ok: pid run, a $want-token prompt in $n solo steps: the reference forward's text"

# 3. The daemon: B's long prompt in solo steps of 64 while A decodes in steps of 8.
PI_TEST_STEP_DELAY_MS=10 timeout 120 "$B/pid" start -m "$MODEL" --ffn dense --cpu-workers 2 --gpu-backend "$GPU_BACKEND" \
    --vram-budget "$SOME_COLD_GIB" --max-seqs 4 --max-batch 8 --solo-batch 64 --solo-min 16 --listen "$EP" \
    >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids
grep -q "solo steps on (solo_batch 64, the GPU worker takes 64)" "$D/pid.log" || fail "pid did not turn solo steps on"
want=$(( MODEL_CTX - 64 ))
# (no newline at its end: pid run -p "$(cat ...)" gets the same prompt)
/usr/bin/python3 -c "print(' '.join(['once upon a time'] * ($want // $per)), end='')" >"$D/long.txt"

/usr/bin/python3 - "$B/pictl" "$EP" "$D" "$(dirname "$0")" <<'PY' || fail "see above"
import sys
pictl, ep, d = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, sys.argv[4])
from beside_lib import during, stream_beside
chunks, t_b, st = stream_beside(pictl, ep, 200, d + "/long.txt", 16)
prompt, ttft = st["prompt_tokens"], st["time_to_first_token_ms"]
window = during(chunks, t_b, ttft)
print("B: %d prompt tokens, first token after %.0f ms; A received %d chunks meanwhile" % (prompt, ttft, len(window)))
# every solo step of B's (prompt // 63 of them at least, less the last one's) carried A's token
if len(window) < 2:
    print("FAIL: A got %d tokens while B's prompt went in: the solo steps left it out" % len(window)); sys.exit(1)
open(d + "/a.txt", "wb").write(b"".join(c[1] for c in chunks))
open(d + "/b.txt", "w").write(st["text"])
PY

same_as_expected "$D/a.txt" || fail "A's text beside B's solo steps differs from $EXPECTED"
timeout 120 "$B/pid" run --reference -m "$MODEL" -n 16 --temp 0 -p "$(cat "$D/long.txt")" >"$D/ref3.out" 2>"$D/ref3.err" ||
    fail "pid run --reference: $(tail -3 "$D/ref3.err")"
/usr/bin/python3 - "$D/b.txt" "$D/ref3.out" <<'PY' || fail "B's text differs from the reference forward's"
import sys
b = open(sys.argv[1], 'rb').read(); ref = open(sys.argv[2], 'rb').read().rstrip(b'\n')
if not b or not ref.endswith(b):
    print("B:   %r\nref: ...%r" % (b, ref[-len(b) - 20:])); sys.exit(1)
PY
line=$(timeout 10 "$B/pictl" workers --endpoint "$EP" | awk '$1=="gpu"')
n=$(echo "$line" | sed -n 's/.*solo steps of up to 64 entries, \([0-9]*\) run.*/\1/p')
[ "${n:-0}" -ge 2 ] || fail "pictl workers counts ${n:-no} solo steps, want 2 or more: $line"
echo "ok: the daemon, B's prompt in $n solo steps of up to 64 beside A's decoding: both texts are the reference's"
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null 2>&1 || fail "pid stop"
grep -q "ERROR: LeakSanitizer\|runtime error" "$D/pid.log" "$D"/run*.err && fail "a sanitizer report (pid.log, run*.err)"
echo "PASS"

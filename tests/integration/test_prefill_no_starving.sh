#!/bin/bash
# A long prompt sent while another request decodes does not stall it (issue 12: "no stream starves while a long
# prompt is prefilled"), through the daemon and its workers: pid start --max-batch 8, a greedy generation A
# streaming, then a request B with a prompt of a few hundred tokens. B's prompt goes in chunks of 7 beside A's one
# token a step (daemon/scheduler.c), so A keeps receiving tokens between B's submission and B's first token: at
# least half as many as B's prefill steps (a count, not a speed: the steps are 10 ms longer here,
# PI_TEST_STEP_DELAY_MS, so A's tokens arrive one by one). A's text is the reference text all the same. Solo steps are
# off (--solo-batch 0): this is the chunked prefill; test_solo_steps.sh has B's prompt in solo steps beside A.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup prefill_no_starving

PI_TEST_STEP_DELAY_MS=10 timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend "$GPU_BACKEND" \
    --max-seqs 2 --max-batch 8 --solo-batch 0 --listen "$EP" >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids

# B's prompt: about the trained context less 64 tokens (counted with the model's own tokenizer)
want=$(( MODEL_CTX - 64 ))
per=$("$B/pictl" tokenize -m "$MODEL" --no-bos "once upon a time" | wc -w)
[ "$per" -gt 0 ] || fail "pictl tokenize"
/usr/bin/python3 -c "print(' '.join(['once upon a time'] * ($want // $per)))" >"$D/long.txt"
# A: 200 tokens for stories260K (context 512), 150 for the default model (256); B comes after A's 5th token
n_a=$(( MODEL_CTX == 512 ? 200 : 150 ))

/usr/bin/python3 - "$B/pictl" "$EP" "$D" "$n_a" "$(dirname "$0")" <<'PY' || fail "see above"
import sys
pictl, ep, d, n_a = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, sys.argv[5])
from beside_lib import during, stream_beside
chunks, t_b, out = stream_beside(pictl, ep, n_a, d + "/long.txt", 2)
stats = out.get("stats", out)
prompt, ttft = stats["prompt_tokens"], stats["time_to_first_token_ms"]
steps = (prompt + 6) // 7
window = during(chunks, t_b, ttft)
print("B: %d prompt tokens in %d steps of 7, first token after %.0f ms; A received %d chunks meanwhile"
      % (prompt, steps, ttft, len(window)))
if len(window) < steps // 2:
    print("FAIL: A starved while B's prompt went in: %d chunks during %d prefill steps" % (len(window), steps))
    sys.exit(1)
open(d + "/a.txt", "wb").write(b"".join(c[1] for c in chunks))
PY

# A's text: the reference's first n_a tokens' worth (the reference is 200 tokens of the same greedy run)
timeout 120 "$B/pictl" generate --endpoint "$EP" --temp 0 -n "$n_a" "" >"$D/a-alone.txt" 2>"$D/a-alone.err" ||
    fail "A alone: $(tail -2 "$D/a-alone.err")"
cmp -s "$D/a.txt" "$D/a-alone.txt" || fail "A's text beside B's prefill differs from A alone"
echo "ok: A got tokens all through B's prefill, and its text is the one it has alone"
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null 2>&1 || fail "pid stop"
echo "PASS"

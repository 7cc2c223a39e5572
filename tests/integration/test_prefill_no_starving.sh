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

/usr/bin/python3 - "$B/pictl" "$EP" "$D" "$n_a" <<'PY' || fail "see above"
import json, subprocess, sys, threading, time
pictl, ep, d, n_a = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
a = subprocess.Popen([pictl, "generate", "--endpoint", ep, "--temp", "0", "-n", str(n_a), ""],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
chunks = []   # (time, bytes) of A's stream, as they arrive

def read_a():
    while True:
        b = a.stdout.read1(65536)
        if not b:
            return
        chunks.append((time.monotonic(), b))

t = threading.Thread(target=read_a)
t.start()
deadline = time.monotonic() + 60
while len(chunks) < 5 and time.monotonic() < deadline:
    time.sleep(0.005)
if len(chunks) < 5:
    print("FAIL: A produced %d chunks in 60 s" % len(chunks)); sys.exit(1)
t_b = time.monotonic()
b = subprocess.run([pictl, "generate", "--endpoint", ep, "--temp", "0", "-n", "2", "--json", "-f", d + "/long.txt"],
                   capture_output=True, text=True, timeout=120)
if b.returncode != 0:
    print("FAIL: B: " + b.stderr); sys.exit(1)
st = json.loads(b.stdout)
stats = st.get("stats", st)
prompt, ttft = stats.get("prompt_tokens"), stats.get("time_to_first_token_ms")
if not prompt or ttft is None:
    print("FAIL: B's JSON has no prompt_tokens / time_to_first_token_ms: " + b.stdout[:300]); sys.exit(1)
t.join(timeout=120)
a.wait(timeout=120)
if a.returncode != 0:
    print("FAIL: A: " + a.stderr.read().decode()); sys.exit(1)
steps = (prompt + 6) // 7
window = [c for c in chunks if t_b <= c[0] <= t_b + ttft / 1000.0]
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

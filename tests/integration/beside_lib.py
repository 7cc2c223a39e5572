"""Request A streams from pid while request B, a long prompt read from a file, is fed beside it
(test_prefill_no_starving.sh, test_solo_steps.sh): what A received and when, and B's answer."""
import json
import subprocess
import sys
import threading
import time


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def stream_beside(pictl, ep, n_a, b_file, n_b):
    """A: greedy, n_a tokens, empty prompt, streamed; once it has sent 5 chunks, B: greedy, n_b tokens, --json,
    the prompt b_file, run to its end; then A's end. Returns (chunks, t_b, b): A's (monotonic time, bytes) as
    they arrived, when B started, and B's JSON (its stats have prompt_tokens and time_to_first_token_ms)."""
    a = subprocess.Popen([pictl, "generate", "--endpoint", ep, "--temp", "0", "-n", str(n_a), ""],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = []

    def read_a():
        while True:
            got = a.stdout.read1(65536)
            if not got:
                return
            chunks.append((time.monotonic(), got))

    t = threading.Thread(target=read_a)
    t.start()
    deadline = time.monotonic() + 60
    while len(chunks) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    if len(chunks) < 5:
        fail("A produced %d chunks in 60 s" % len(chunks))
    t_b = time.monotonic()
    b = subprocess.run([pictl, "generate", "--endpoint", ep, "--temp", "0", "-n", str(n_b), "--json", "-f", b_file],
                       capture_output=True, text=True, timeout=120)
    if b.returncode != 0:
        fail("B: " + b.stderr)
    out = json.loads(b.stdout)
    stats = out.get("stats", out)
    if not stats.get("prompt_tokens") or stats.get("time_to_first_token_ms") is None:
        fail("B's JSON has no prompt_tokens / time_to_first_token_ms: " + b.stdout[:300])
    t.join(timeout=120)
    a.wait(timeout=120)
    if a.returncode != 0:
        fail("A: " + a.stderr.read().decode())
    return chunks, t_b, out


def during(chunks, t_b, ttft_ms):
    """A's chunks that arrived while B's prompt went in (B's start to its first token)."""
    return [c for c in chunks if t_b <= c[0] <= t_b + ttft_ms / 1000.0]

#!/usr/bin/env python3
"""The committed default model (models/pi-tiny-gutenberg.gguf, models/MODEL_CARD.md), through a real pid:
- the perplexity of the committed held-in slice (models/heldin.txt) with --ffn dense and exact equals the
  card's dense figure within 1%, and --ffn predicted costs less than 3%;
- `pid start` with no -m serves it, and at temperature 0.7 it writes English: at least 85% of the words
  it generates for 10 prompts drawn from the system dictionary are dictionary words. The prompts and the
  sampling seeds are fixed (PI_ENGLISH_SEED picks other prompts): with 5 prompts drawn afresh each run the
  share ranged 0.85-0.99 and CI once saw 84.6%, a test that failed by chance."""
import os
import random
import re
import subprocess
import sys

SRC = os.environ.get("PI_SRC", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = os.environ["PI_BIN"]
TMP = os.path.join(os.environ.get("PI_TMP", "/tmp"), "default_model")
MODEL = os.path.join(SRC, "models", "pi-tiny-gutenberg.gguf")
CARD = os.path.join(SRC, "models", "MODEL_CARD.md")
HELDIN = os.path.join(SRC, "models", "heldin.txt")
DICT = "/usr/share/dict/words"

if not os.path.isfile(MODEL):
    print("SKIP: %s is not in the tree yet: it is trained by scripts/train/all.sh on the GPU machine "
          "(models/MODEL_CARD.md)" % MODEL)
    sys.exit(77)
os.makedirs(TMP, exist_ok=True)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def perplexity(ffn):
    p = subprocess.run([os.path.join(BIN, "pictl"), "perplexity", "--file", HELDIN, "--ffn", ffn,
                        "--gpu-backend", "host", "--cpu-workers", "1"], capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        fail("pictl perplexity --ffn %s: %s" % (ffn, p.stderr))
    return float(p.stdout.strip().splitlines()[-1].split()[1])


m = re.search(r"models/heldin.txt \(training text.*?\| dense \| ([0-9.]+) \|", open(CARD, encoding="utf-8").read())
if not m:
    fail("%s has no dense perplexity for models/heldin.txt" % CARD)
card = float(m.group(1))
dense, exact, pred = perplexity("dense"), perplexity("exact"), perplexity("predicted")
for name, v in (("dense", dense), ("exact", exact)):
    if abs(v / card - 1) > 0.01:
        fail("--ffn %s perplexity %.4f, the card says %.4f (more than 1%% apart)" % (name, v, card))
if pred / dense - 1 >= 0.03:
    fail("--ffn predicted perplexity %.4f is %.2f%% above dense %.4f (limit 3%%)" % (pred, 100 * (pred / dense - 1), dense))
print("ok: held-in perplexity dense %.4f, exact %.4f (card %.4f), predicted %.4f (%+.2f%%)" %
      (dense, exact, card, pred, 100 * (pred / dense - 1)))

if not os.path.isfile(DICT):
    print("SKIP (English check): %s is absent (Debian package wamerican; scripts/setup.sh installs it)" % DICT)
    sys.exit(0)
words = [w.strip() for w in open(DICT, encoding="utf-8", errors="replace")]
lower = {w.lower() for w in words}
common = [w for w in words if w.isalpha() and w.islower() and 4 <= len(w) <= 8]
seed = int(os.environ.get("PI_ENGLISH_SEED", "1"))
rng = random.Random(seed)
prompts = ["The " + rng.choice(common) for _ in range(10)]
endpoint = "ipc://%s/pid.sock" % TMP
env = dict(os.environ, PI_MODEL="")  # the default model as a fresh clone has it
start = subprocess.run([os.path.join(BIN, "pid"), "start", "--listen", endpoint, "--gpu-backend", "host",
                        "--cpu-workers", "1"], capture_output=True, text=True, env=env, timeout=120)
if start.returncode != 0:
    fail("pid start with no -m: %s" % start.stderr)
try:
    text = ""
    for i, pr in enumerate(prompts):
        g = subprocess.run([os.path.join(BIN, "pictl"), "generate", "--endpoint", endpoint, "-n", "80", "--temp", "0.7",
                            "--seed", str(i + 1), "--no-stream", pr], capture_output=True, text=True, timeout=300)
        if g.returncode != 0:
            fail("pictl generate %r: %s" % (pr, g.stderr))
        print("prompt %r -> %r" % (pr, g.stdout[:300]))
        text += " " + g.stdout
finally:
    subprocess.run([os.path.join(BIN, "pid"), "stop", "--listen", endpoint], capture_output=True, timeout=60)
toks = re.findall(r"[A-Za-z]+(?:'[a-z]+)?", text)
known = sum(t.lower() in lower or t.lower().split("'")[0] in lower for t in toks)
share = known / max(1, len(toks))
if len(toks) < 100 or share < 0.85:
    fail("%d of %d generated words (%.1f%%) are in %s; want >= 85%% of at least 100" % (known, len(toks), 100 * share, DICT))
print("ok: %d of %d generated words (%.1f%%) are dictionary words (PI_ENGLISH_SEED %d: prompts %s)" %
      (known, len(toks), 100 * share, seed, prompts))

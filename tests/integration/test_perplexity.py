#!/usr/bin/env python3
"""`pictl perplexity` through pid's workers, on stories260K (../shared):
- on llama2.c's own greedy output every scored position's logits put their maximum on the token that
  follows (the text is what the model would write, so an off-by-one or a wrong row fails this), and the
  perplexity is that of a greedy text (low);
- the figure does not depend on placement: one CPU worker holding everything, or two CPU workers
  beside a GPU worker holding the hot neurons of a small budget, agree within 1e-4 relative;
- a missing file and a bad --ctx fail with a clear error."""
import math
import os
import struct
import subprocess
import sys

shared = os.environ.get("PI_SHARED", "../shared")
models = os.path.join(shared, "models")
if not os.path.isfile(os.path.join(models, "stories260K.bin")):
    print("SKIP: %s/stories260K.bin not found (the shared test data is absent)" % models)
    sys.exit(77)
BIN = os.environ["PI_BIN"]
TMP = os.path.join(os.environ.get("PI_TMP", "/tmp"), "perplexity")
os.makedirs(TMP, exist_ok=True)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def run(args, want_rc=0):
    p = subprocess.run([os.path.join(BIN, "pictl")] + args, capture_output=True, text=True, timeout=600)
    if p.returncode != want_rc:
        fail("pictl %s: exit %d, want %d\n%s%s" % (" ".join(args), p.returncode, want_rc, p.stdout, p.stderr))
    return p


gguf = os.path.join(TMP, "stories260K.gguf")
run(["model", "import-llama2c", "--checkpoint", os.path.join(models, "stories260K.bin"),
     "--tokenizer", os.path.join(models, "tok512.bin"), "-o", gguf])
text = os.path.join(TMP, "greedy.txt")
with open(os.path.join(models, "stories260K.expected.txt"), encoding="utf-8") as f:
    greedy = f.read().strip()
with open(text, "w", encoding="utf-8") as f:
    f.write(greedy)


def perplexity(extra):
    p = run(["perplexity", "-m", gguf, "--file", text, "--gpu-backend", "host"] + extra)
    last = p.stdout.strip().splitlines()[-1]
    if not last.startswith("perplexity: "):
        fail("the last line is %r, want 'perplexity: X'" % last)
    v = float(last.split()[1])
    if not math.isfinite(v) or v < 1:
        fail("perplexity %r is not a number >= 1" % last)
    return v, p


dump = os.path.join(TMP, "logits.bin")
ppl1, p = perplexity(["--cpu-workers", "1", "--ctx", "256", "--dump-logits", dump])
ids = [int(t) for t in run(["tokenize", "-m", gguf, "--no-bos", greedy]).stdout.split()]
n_vocab = 512
raw = open(dump, "rb").read()
rec = 8 + 4 * n_vocab
rows = {}
for off in range(0, len(raw), rec):
    cid, pos = struct.unpack_from("<II", raw, off)
    rows[(cid, pos)] = struct.unpack_from("<%df" % n_vocab, raw, off + 8)
if len(rows) != len(ids):
    fail("%d logits rows for %d text tokens" % (len(rows), len(ids)))
seq = [1] + ids
hits = sum(max(range(n_vocab), key=rows[(0, p)].__getitem__) == seq[p + 1] for p in range(len(ids)))
# Re-tokenizing generated text may pick other pieces than the generation did at a few places; each
# such place costs at most a couple of positions.
if hits < 0.95 * len(ids):
    fail("the argmax of the logits is the next token at %d of %d positions" % (hits, len(ids)))
print("ok: %d of %d positions' logits have their maximum on the next token of the greedy text" % (hits, len(ids)))
if ppl1 > 3.0:
    fail("the greedy text's perplexity is %.3f; a greedy text should be well under 3" % ppl1)
print("ok: perplexity of the greedy text %.4f (1 CPU worker)" % ppl1)

ppl2, _ = perplexity(["--cpu-workers", "2", "--ctx", "256", "--vram-budget", "0.0018"])
if abs(ppl2 - ppl1) > 1e-4 * ppl1:
    fail("perplexity %.6f with 2 CPU workers and hot neurons on the GPU worker, %.6f with one" % (ppl2, ppl1))
print("ok: %.4f with 2 CPU workers and a GPU worker holding the hot neurons" % ppl2)

p = run(["perplexity", "-m", gguf, "--file", os.path.join(TMP, "absent.txt")], want_rc=1)
if "absent.txt" not in p.stderr:
    fail("a missing file's error does not name it: %r" % p.stderr)
p = run(["perplexity", "-m", gguf, "--file", text, "--ctx", "1"], want_rc=2)
if "--ctx" not in p.stderr:
    fail("a bad --ctx's error does not name it: %r" % p.stderr)
print("ok: a missing file and --ctx 1 fail clearly")

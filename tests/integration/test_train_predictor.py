#!/usr/bin/python3
"""Proves the predictor trainer's numpy side on real tools' output: it reads `pictl model profile --dump-pairs` pairs (shapes, bitmaps whose active rates match the sidecar's frequencies), gguf_py rewrites pi's GGUF files byte for byte and writes sidecars with fc1/fc2 that pictl inspects and plans with (and pictl rejects a mis-shaped one), --evaluate measures the synthetic model's own predictor at its documented recall, bad input fails clearly, and training either reports one row per layer and writes a sidecar pi opens (PyTorch importable) or says PyTorch is needed."""
import os
import re
import shutil
import subprocess
import sys

try:
    import numpy as np
except ImportError:
    print("SKIP: /usr/bin/python3 has no numpy (apt-get install python3-numpy)")
    sys.exit(77)

PI_BIN = os.environ.get("PI_BIN", "build/bin")
PI_SRC = os.environ.get("PI_SRC", ".")
PI_TMP = os.environ.get("PI_TMP", "/tmp")
PICTL = os.path.join(PI_BIN, "pictl")
SCRIPT = os.path.join(PI_SRC, "scripts", "train_predictor.py")
sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(PI_SRC, "scripts"))
import gguf_py  # noqa: E402
import train_predictor as tp  # noqa: E402

T = os.path.join(PI_TMP, "test_train_predictor")
shutil.rmtree(T, ignore_errors=True)
os.makedirs(T)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def run(cmd, want_rc=0):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, errors="replace")
    if want_rc is not None and p.returncode != want_rc:
        fail("%s exited %d (want %d):\n%s%s" % (" ".join(cmd), p.returncode, want_rc, p.stdout, p.stderr))
    return p


def table_rows(text):
    """(layer, R, recall, precision, pred_active, true_active) of each row of the trainer's table."""
    rows = []
    for line in text.splitlines():
        m = re.match(r"^\s*(\d+)\s+(\d+)\s+(?:[0-9.]+\s+)?([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s*$", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2))) + tuple(float(m.group(i)) for i in range(3, 7)))
    return rows


def plan(sidecar):
    return run([PICTL, "model", "plan", "-m", model, "--vram-budget", "0.0004", "--max-seqs", "1",
                "--n-ctx", "16", "--freq", sidecar, "--no-cache"], want_rc=None)


# ---- real pairs from the real tools ----
model = os.path.join(T, "X.gguf")
sidecar = os.path.join(T, "X.pi-sparse.gguf")
pairs_path = os.path.join(T, "pairs.bin")
corpus = os.path.join(T, "corpus.txt")
with open(corpus, "w") as fh:
    for i in range(40):
        fh.write("Once upon a time %d, a quick brown fox jumped over the lazy dog; then: 0123456789 and more!\n" % i)
run([PICTL, "model", "synth", "--shape", "tiny", "--type", "f16", "-o", model])
run([PICTL, "model", "profile", "-m", model, "--corpus", corpus, "--tokens", "300", "--dump-pairs", pairs_path,
     "--pairs-per-layer", "200"])

pairs = tp.read_pairs(pairs_path)
check((pairs.n_layers, pairs.dim, pairs.n_ff, pairs.n_tokens) == (2, 64, 256, 200),
      "pairs header: %d layers, dim %d, n_ff %d, %d tokens" % (pairs.n_layers, pairs.dim, pairs.n_ff,
                                                               pairs.n_tokens))
side, shape = tp.read_sidecar(sidecar)
check(shape == (2, 64, 256), "sidecar shape %s" % (shape,))
for layer in range(2):
    x, act = pairs.x(layer), pairs.active(layer)
    check(x.shape == (200, 64) and x.dtype == np.float32 and np.all(np.isfinite(x)), "x of layer %d" % layer)
    check(act.shape == (200, 256), "active bitmap of layer %d has shape %s" % (layer, act.shape))
    check(float(np.abs(x).max()) > 0.1, "x of layer %d is all near zero" % layer)
    freq = side.tensor("blk.%d.ffn_freq" % layer).array()
    rate, mean = float(act.mean()), float(freq.mean())
    corr = float(np.corrcoef(act.mean(axis=0), freq)[0, 1])
    check(abs(rate - mean) < 0.02, "layer %d: pairs active rate %.4f vs sidecar mean frequency %.4f"
          % (layer, rate, mean))
    check(corr > 0.9, "layer %d: per-neuron rates correlate %.3f with the frequencies" % (layer, corr))
    print("ok: layer %d pairs: active rate %.4f, sidecar %.4f, per-neuron correlation %.3f" % (layer, rate, mean,
                                                                                              corr))
pos = np.asarray(pairs.records["pos"])
check(pos.max() < 256 and np.all(pos[:, 0] == pos[:, 1]), "positions: max %d; layers of a token disagree"
      % pos.max())

# ---- gguf_py round trips ----
for path in (sidecar, model):
    rt = os.path.join(T, "rt.gguf")
    gguf_py.write(rt, gguf_py.read(path))
    with open(path, "rb") as a, open(rt, "rb") as b:
        check(a.read() == b.read(), "gguf_py read+write of %s changed its bytes" % path)
print("ok: gguf_py rewrites the sidecar and the model byte for byte")

rng = np.random.default_rng(1)
fc1 = [rng.standard_normal((8, 64)).astype(np.float32) for _ in range(2)]
fc2 = [rng.standard_normal((256, 8)).astype(np.float32) for _ in range(2)]
new = os.path.join(T, "new.pi-sparse.gguf")
f, _ = tp.read_sidecar(sidecar)
tp.set_predictor(f, fc1, fc2, 0.25, np.float32)
gguf_py.write(new, f)
back = gguf_py.read(new)
check(np.array_equal(back.tensor("blk.1.fc1.weight").array(), fc1[1]) and
      np.array_equal(back.tensor("blk.1.fc2.weight").array(), fc2[1]), "fc1/fc2 do not read back equal")
check(back.get("pi.sparse.model_hash") == side.get("pi.sparse.model_hash") and
      np.array_equal(back.tensor("blk.0.ffn_freq").array(), side.tensor("blk.0.ffn_freq").array()),
      "the model hash or the frequencies changed")
out = run([PICTL, "model", "inspect", new]).stdout
for want in (r"pi.sparse.threshold\s+0.25", r"blk.0.fc1.weight\s+f32\s+\[64,8\]", r"blk.0.fc2.weight\s+f32\s+\[8,256\]",
             r"blk.1.fc1.weight\s+f32\s+\[64,8\]", r"blk.1.fc2.weight\s+f32\s+\[8,256\]",
             r"blk.1.ffn_freq\s+f32\s+\[256\]"):
    check(re.search(want, out), "inspect lacks /%s/:\n%s" % (want, out))
p = plan(new)
check(p.returncode == 0, "plan with the new sidecar failed:\n%s%s" % (p.stdout, p.stderr))
# 2 layers x (8x64 + 256x8) f32 = 20480 bytes, the sidecar's predictors rather than the model's (17 wide)
check("predictors 20.0 KiB" in p.stdout, "plan does not count the sidecar's predictors:\n%s" % p.stdout)
print("ok: a sidecar with numpy fc1/fc2 inspects and plans (predictors 20.0 KiB)")

bad = os.path.join(T, "bad.pi-sparse.gguf")
f, _ = tp.read_sidecar(sidecar)
tp.set_predictor(f, fc1, [w[:255] for w in fc2], 0.0, np.float32)
gguf_py.write(bad, f)
p = plan(bad)
check(p.returncode != 0 and "blk.0.fc2.weight" in p.stderr, "a sidecar with fc2 of 255 rows was not rejected:\n%s%s"
      % (p.stdout, p.stderr))
print("ok: pictl rejects a mis-shaped predictor: %s" % p.stderr.strip().splitlines()[-1])

# ---- the runtime runs a sidecar's predictor when the model file has none ----
PID = os.path.join(PI_BIN, "pid")
bare = os.path.join(T, "bare.gguf")
mb = gguf_py.read(model)
own1 = [mb.tensor("blk.%d.fc1.weight" % l).array().astype(np.float32) for l in range(2)]
own2 = [mb.tensor("blk.%d.fc2.weight" % l).array().astype(np.float32) for l in range(2)]
for l in range(2):
    mb.remove_tensor("blk.%d.fc1.weight" % l)
    mb.remove_tensor("blk.%d.fc2.weight" % l)
gguf_py.write(bare, mb)
bare_side = os.path.join(T, "bare.pi-sparse.gguf")
run([PICTL, "model", "profile", "-m", bare, "--corpus", corpus, "--tokens", "50", "-o", bare_side])
f, _ = tp.read_sidecar(bare_side)
tp.set_predictor(f, own1, own2, float(mb.get("powerinfer.sparse_threshold", 0.0)), np.float32)
gguf_py.write(bare_side, f)
p = run([PID, "run", "-m", bare, "-n", "24", "--temp", "0", "-p", "Once upon a time", "--gpu-backend", "host",
         "--cpu-workers", "1", "--ffn", "predicted", "--measure-recall"])
m_rec = re.search(r"predictor recall ([0-9.]+)", p.stderr)
check(m_rec and float(m_rec.group(1)) > 0.9 and "ffn predicted" in p.stderr,
      "pid run on a model whose predictor is in its sidecar:\n%s" % p.stderr)
print("ok: pid runs the sidecar's predictor for a model file without one (recall %s)" % m_rec.group(1))
os.remove(bare_side)
p = run([PID, "run", "-m", bare, "-n", "4", "--ffn", "predicted", "--gpu-backend", "host", "--cpu-workers", "1"],
        want_rc=1)
check("no activation predictor" in p.stderr, "predicted without any predictor: %s" % p.stderr)
print("ok: without the sidecar, --ffn predicted says the model has no predictor")

# ---- --evaluate: the synthetic model's own predictor, measured through the pairs ----
ev = os.path.join(T, "eval.pi-sparse.gguf")
m = gguf_py.read(model)
f, _ = tp.read_sidecar(sidecar)
tp.set_predictor(f, [m.tensor("blk.%d.fc1.weight" % l).array() for l in range(2)],
                 [m.tensor("blk.%d.fc2.weight" % l).array() for l in range(2)], 0.0, np.float16)
gguf_py.write(ev, f)
p = run([sys.executable, SCRIPT, "--pairs", pairs_path, "--sidecar", ev, "--evaluate"])
print(p.stdout.rstrip())
rows = table_rows(p.stdout)
check([r[:2] for r in rows] == [(0, 17), (1, 17)], "evaluate rows: %s" % rows)
for layer, _, recall, precision, pred, true in rows:
    check(recall > 0.9 and precision > 0.6, "layer %d: recall %.4f precision %.4f (synth documents 0.96 / 0.76)"
          % (layer, recall, precision))
    check(abs(true - float(pairs.active(layer).mean())) < 1e-3 and pred > 0, "layer %d fractions" % layer)
print("ok: --evaluate measures the synthetic predictor at recall > 0.9, precision > 0.6")

# ---- bad input ----
trunc = os.path.join(T, "trunc.bin")
with open(pairs_path, "rb") as a, open(trunc, "wb") as b:
    b.write(a.read()[:-10])
p = run([sys.executable, SCRIPT, "--pairs", trunc, "--sidecar", ev, "--evaluate"], want_rc=1)
check("truncated" in p.stderr, "truncated pairs: %s" % p.stderr)
other = os.path.join(T, "other.pi-sparse.gguf")
f, _ = tp.read_sidecar(ev)
f.set("pi.sparse.n_ff", gguf_py.U32, 128)
gguf_py.write(other, f)
p = run([sys.executable, SCRIPT, "--pairs", pairs_path, "--sidecar", other, "--evaluate"], want_rc=1)
check("profile the same model" in p.stderr, "shape mismatch: %s" % p.stderr)
p = run([sys.executable, SCRIPT, "--pairs", pairs_path, "--sidecar", model, "--evaluate"], want_rc=1)
check("not a pi sparse sidecar" in p.stderr, "a model as sidecar: %s" % p.stderr)
p = run([sys.executable, SCRIPT, "--pairs", pairs_path, "--sidecar", sidecar, "--evaluate"], want_rc=1)
check("has no predictor" in p.stderr, "evaluate without a predictor: %s" % p.stderr)
print("ok: truncated pairs, mismatched shapes, a non-sidecar and a missing predictor fail clearly")

# ---- training ----
trained = os.path.join(T, "trained.pi-sparse.gguf")
train = [sys.executable, SCRIPT, "--pairs", pairs_path, "--sidecar", sidecar, "-o", trained, "--epochs", "1",
         "--hidden", "16", "--device", "cpu"]
try:
    import torch  # noqa: F401
    has_torch = True
except ImportError:
    has_torch = False
if not has_torch:
    p = run(train, want_rc=1)
    check(tp.TORCH_MISSING in p.stderr and not os.path.exists(trained), "without torch: %s" % p.stderr)
    print("ok: without PyTorch, training says: %s (PyTorch absent: the training step itself was not run)"
          % p.stderr.strip())
else:
    p = run(train)
    print(p.stdout.rstrip())
    rows = table_rows(p.stdout)
    check([r[:2] for r in rows] == [(0, 16), (1, 16)], "one row per layer with R 16: %s" % rows)
    check(re.search(r"^threshold -?[0-9.]+ ", p.stdout, re.M), "no threshold line")
    out = run([PICTL, "model", "inspect", trained]).stdout
    check(re.search(r"blk.1.fc2.weight\s+f16\s+\[16,256\]", out), "trained sidecar lacks fc2:\n%s" % out)
    p = plan(trained)
    check(p.returncode == 0, "plan with the trained sidecar:\n%s%s" % (p.stdout, p.stderr))
    print("ok: 1 epoch of training reports 2 layers and writes a sidecar that pictl plans with")
print("PASS")

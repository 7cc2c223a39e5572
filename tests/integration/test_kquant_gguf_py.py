#!/usr/bin/python3
"""Proves pi's Q4_K, Q5_K and Q6_K layouts are llama.cpp's: gguf-py's dequantize (quants.py from the llama.cpp anchor in ../shared) and pi's (test_quant --dequantize) agree within 1e-6 on random super-blocks (every bit pattern of scales, mins and levels) and on blocks pi's quantizer wrote from random data. gguf-py has no K-quant quantizer, so random block bytes stand in for it."""
import os
import subprocess
import sys
import tarfile
import tempfile

try:
    import numpy as np
except ImportError:
    print("SKIP: /usr/bin/python3 has no numpy (apt-get install python3-numpy)")
    sys.exit(77)

PI_BIN = os.environ.get("PI_BIN", "build/bin")
PI_SRC = os.environ.get("PI_SRC", ".")
SHARED = os.environ.get("PI_SHARED") or os.path.join(PI_SRC, "..", "shared")
ANCHOR = os.path.join(SHARED, "anchors", "llama.cpp-c392e509.tar.xz")
TEST_QUANT = os.path.join(PI_BIN, "test_quant")
sys.dont_write_bytecode = True   # no __pycache__ anywhere

if not os.path.isfile(ANCHOR):
    print("SKIP: %s not found (the shared llama.cpp anchor is absent)" % ANCHOR)
    sys.exit(77)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


if not os.access(TEST_QUANT, os.X_OK):
    fail("%s is not built" % TEST_QUANT)

tmp = tempfile.TemporaryDirectory(prefix="kquant_gguf_py.")
# Only the three modules quants.py needs, as a package of their own: the
# package's real __init__ pulls in modules (yaml, sentencepiece) that need not be here.
pkg = os.path.join(tmp.name, "gguf")
os.makedirs(pkg)
with tarfile.open(ANCHOR) as tf:
    for name in ("constants.py", "lazy.py", "quants.py"):
        member = tf.getmember("gguf-py/gguf/" + name)
        src = tf.extractfile(member)
        if src is None:
            fail("%s: gguf-py/gguf/%s is not a file" % (ANCHOR, name))
        with open(os.path.join(pkg, name), "wb") as out:
            out.write(src.read())
with open(os.path.join(pkg, "__init__.py"), "w") as out:
    out.write("")
sys.path.insert(0, tmp.name)
from gguf import quants  # noqa: E402
from gguf.constants import GGMLQuantizationType, GGML_QUANT_SIZES  # noqa: E402

rng = np.random.default_rng(20261201)
TYPES = {"q4_K": GGMLQuantizationType.Q4_K, "q5_K": GGMLQuantizationType.Q5_K,
         "q6_K": GGMLQuantizationType.Q6_K}
WANT = {"q4_K": (12, 144), "q5_K": (13, 176), "q6_K": (14, 210)}
# byte offsets of the fp16 fields (d, and dmin where there is one)
FP16_AT = {"q4_K": (0, 2), "q5_K": (0, 2), "q6_K": (208,)}


def pi_run(*args):
    r = subprocess.run([TEST_QUANT] + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        fail("test_quant %s: rc %d: %s" % (" ".join(args), r.returncode, r.stderr))


def compare(name, blocks, what):
    path_in = os.path.join(tmp.name, name + ".blocks")
    path_out = os.path.join(tmp.name, name + ".f32")
    blocks.tofile(path_in)
    pi_run("--dequantize", name, path_in, path_out)
    got = np.fromfile(path_out, dtype="<f4")
    want = quants.dequantize(blocks.reshape(-1), TYPES[name]).astype(np.float32).reshape(-1)
    if got.shape != want.shape:
        fail("%s %s: pi gave %d values, gguf-py %d" % (name, what, got.size, want.size))
    err = np.abs(got.astype(np.float64) - want)
    tol = 1e-6 * np.maximum(1.0, np.abs(want))
    if not np.all(err <= tol):
        i = int(np.argmax(err - tol))
        fail("%s %s: element %d (block %d, index %d): pi %r, gguf-py %r" %
             (name, what, i, i // 256, i % 256, float(got[i]), float(want[i])))
    print("ok: %s %s: %d values, max |pi - gguf-py| = %g" % (name, what, got.size, float(err.max())))


for name, qtype in TYPES.items():
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    if (int(qtype), block_bytes, block_elems) != WANT[name] + (256,):
        fail("%s: gguf-py says type %d, %d bytes per %d, pi expects %r" %
             (name, int(qtype), block_bytes, block_elems, WANT[name]))
    n_blocks = 400
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    # finite fp16 scales (random bytes would give inf/nan now and then)
    for at in FP16_AT[name]:
        f16 = (rng.standard_normal(n_blocks) * 0.05).astype(np.float16)
        blocks[:, at:at + 2] = f16.view(np.uint8).reshape(n_blocks, 2)
    compare(name, blocks, "random blocks")

    x = (rng.standard_normal(64 * 256) * rng.uniform(0.01, 3.0)).astype("<f4")
    if name != "q6_K":
        x[: 32 * 256] += 0.7   # rows with an offset exercise the mins
    path_x = os.path.join(tmp.name, name + ".x")
    path_q = os.path.join(tmp.name, name + ".q")
    x.tofile(path_x)
    pi_run("--quantize", name, path_x, path_q)
    q = np.fromfile(path_q, dtype=np.uint8)
    if q.size != 64 * block_bytes:
        fail("%s: pi's quantizer wrote %d bytes for 64 super-blocks, want %d" % (name, q.size, 64 * block_bytes))
    compare(name, q.reshape(64, block_bytes), "pi-quantized blocks")

print("ok: pi's q4_K, q5_K and q6_K dequantize as llama.cpp's gguf-py does")

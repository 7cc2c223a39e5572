#!/usr/bin/env python3
"""`pictl model import-hf` on tiny random Hugging Face checkpoints written here (safetensors by hand):
pi's logits of the imported GGUF equal a float64 numpy forward of the HF model (rotate-half RoPE on
the unpermuted weights, GQA) within 1e-4 relative, for silu (F32, untied), relu (BF16 in two shards with
an index, tied, another rope_theta) and dReLU (Bamboo); q8_0 within 5e-2; pictl tokenize equals a
reference BPE for the byte_fallback (llama) and the byte-level (gpt2) tokenizer; a missing config.json,
an unsupported architecture, a truncated safetensors, an F64 tensor and a shape mismatch fail with one
clear line."""
import json
import os
import shutil
import struct
import subprocess
import sys

try:
    import numpy as np
except ImportError:
    print("SKIP: %s has no numpy (the reference forward needs it)" % sys.executable)
    sys.exit(77)

BIN = os.environ.get("PI_BIN", "build/bin")
TMP = os.path.join(os.environ.get("PI_TMP", "/tmp"), "import_hf")
PICTL = os.path.join(BIN, "pictl")
for exe in ("pictl", "pi-gpu-worker", "pi-cpu-worker"):
    if not os.access(os.path.join(BIN, exe), os.X_OK):
        print("SKIP: %s/%s is not built" % (BIN, exe))
        sys.exit(77)
shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def pictl(args, want_rc=0):
    p = subprocess.run([PICTL] + args, capture_output=True, text=True, timeout=600)
    if (want_rc == 0) != (p.returncode == 0):
        fail("pictl %s: exit %d\n%s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


# ---- tokenizer: SentencePiece-style BPE with byte fallback ----
SP = "\u2581"
CHARS = [SP] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [",", "."]
CORPUS = "the cat sat on the mat. the dog ate the hat, then the cat sat on the dog."


def norm(text):
    return SP + text.replace(" ", SP)


def learn_merges(words, n):
    merges = []
    seqs = [list(w) for w in words]
    for _ in range(n):
        counts = {}
        for s in seqs:
            for a, b in zip(s, s[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            break
        best = max(sorted(counts), key=lambda k: counts[k])
        merges.append(best)
        seqs = [bpe_apply(s, [best]) for s in seqs]
    return merges


def bpe_apply(syms, merges):
    rank = {m: i for i, m in enumerate(merges)}
    syms = list(syms)
    while True:
        cands = [(rank[(a, b)], i) for i, (a, b) in enumerate(zip(syms, syms[1:])) if (a, b) in rank]
        if not cands:
            return syms
        _, i = min(cands)
        syms[i:i + 2] = [syms[i] + syms[i + 1]]


def llama_tokenizer():
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for c in CHARS:
        vocab[c] = len(vocab)
    merges = learn_merges([norm(CORPUS)], 30)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    return vocab, merges


def llama_encode(text, vocab, merges):
    syms = []
    for ch in norm(text):
        if ch in vocab:
            syms.append(ch)
        else:
            syms += ["<0x%02X>" % b for b in ch.encode("utf-8")]
    return [vocab[s] for s in bpe_apply(syms, merges)]


def tokenizer_json(vocab, merges, byte_fallback=True):
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for t, i in vocab.items() if t in ("<unk>", "<s>", "</s>",
                                                                                       "<|endoftext|>")]
    model = {"type": "BPE", "dropout": None, "unk_token": "<unk>" if byte_fallback else None,
             "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": byte_fallback,
             "byte_fallback": byte_fallback, "vocab": vocab, "merges": ["%s %s" % m for m in merges]}
    if byte_fallback:
        return {"version": "1.0", "added_tokens": added,
                "normalizer": {"type": "Sequence", "normalizers": [
                    {"type": "Prepend", "prepend": SP}, {"type": "Replace", "pattern": {"String": " "},
                                                         "content": SP}]},
                "pre_tokenizer": None,
                "post_processor": {"type": "TemplateProcessing", "single": [
                    {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
                "decoder": {"type": "Sequence", "decoders": []}, "model": model}
    return {"version": "1.0", "added_tokens": added, "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "post_processor": None, "decoder": {"type": "ByteLevel"}, "model": model}


# ---- byte-level (GPT-2) tokenizer ----
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()


def gpt2_words(text):
    # GPT-2's expression for ASCII text: 's|'t|'re|'ve|'m|'ll|'d| ?letters| ?digits| ?other|\s+(?!\S)|\s+
    import re
    pat = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")
    return ["".join(B2U[b] for b in w.encode("utf-8")) for w in pat.findall(text)]


def gpt2_tokenizer():
    vocab = {B2U[b]: i for i, b in enumerate(range(256))}
    merges = learn_merges(gpt2_words(CORPUS), 30)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def gpt2_encode(text, vocab, merges):
    return [vocab[s] for w in gpt2_words(text) for s in bpe_apply(list(w), merges)]


# ---- checkpoint ----
def bf16_round(a):
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32)
    return u, (u << 16).view(np.float32).astype(np.float64)


def write_safetensors(path, tensors, dtype):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors.items():
        if dtype == "BF16" and name != "__f64__":
            raw = bf16_round(a)[0].astype(np.uint16).tobytes()
            dt = "BF16"
        elif dtype == "F64":
            raw, dt = a.astype("<f8").tobytes(), "F64"
        else:
            raw, dt = a.astype("<f4").tobytes(), "F32"
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make_weights(cfg, rng):
    d, ff, nh, nkv, V = (cfg[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                           "num_key_value_heads", "vocab_size"))
    hd = d // nh
    w = {"model.embed_tokens.weight": rng.normal(0, 1, (V, d))}
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        w[p + "input_layernorm.weight"] = 1 + 0.1 * rng.normal(size=d)
        w[p + "self_attn.q_proj.weight"] = rng.normal(0, 1 / np.sqrt(d), (d, d))
        w[p + "self_attn.k_proj.weight"] = rng.normal(0, 1 / np.sqrt(d), (nkv * hd, d))
        w[p + "self_attn.v_proj.weight"] = rng.normal(0, 1 / np.sqrt(d), (nkv * hd, d))
        w[p + "self_attn.o_proj.weight"] = rng.normal(0, 1 / np.sqrt(d), (d, d))
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=d)
        w[p + "mlp.gate_proj.weight"] = rng.normal(0, 1 / np.sqrt(d), (ff, d))
        w[p + "mlp.up_proj.weight"] = rng.normal(0, 1 / np.sqrt(d), (ff, d))
        w[p + "mlp.down_proj.weight"] = rng.normal(0, 1 / np.sqrt(ff), (d, ff))
    w["model.norm.weight"] = 1 + 0.1 * rng.normal(size=d)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = rng.normal(0, 1 / np.sqrt(d), (V, d))
    return {k: v.astype(np.float32) for k, v in w.items()}


def write_checkpoint(dirname, cfg, weights, tok, dtype="F32", shards=1, tok_config=None):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, "config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(dirname, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    if tok_config is not None:
        with open(os.path.join(dirname, "tokenizer_config.json"), "w") as f:
            json.dump(tok_config, f)
    names = list(weights)
    if shards == 1:
        write_safetensors(os.path.join(dirname, "model.safetensors"), weights, dtype)
        return
    wm = {}
    for s in range(shards):
        fn = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        part = {n: weights[n] for n in names[s::shards]}
        write_safetensors(os.path.join(dirname, fn), part, dtype)
        wm.update({n: fn for n in part})
    with open(os.path.join(dirname, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": wm}, f)


# ---- float64 reference forward of the HF model ----
def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def hf_inv_freq(cfg, hd):
    """The rotary frequencies as transformers defines them, rope_scaling included: linear divides every
    frequency by the factor; llama3 divides the long wavelengths (> original / low_freq_factor) by it,
    keeps the short ones (< original / high_freq_factor) and blends those between."""
    inv = cfg["rope_theta"] ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv
    f = rs["factor"]
    if rs["rope_type"] == "linear":
        return inv / f
    lo, hi, orig = rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
    wave = 2 * np.pi / inv
    scaled = np.where(wave > orig / lo, inv / f, inv)
    t = (orig / wave - lo) / (hi - lo)
    mid = (wave >= orig / hi) & (wave <= orig / lo)
    return np.where(mid, (1 - t) * scaled / f + t * scaled, scaled)


def hf_forward(cfg, W, ids):
    d, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps, T = d // nh, cfg["rms_norm_eps"], len(ids)
    inv = hf_inv_freq(cfg, hd)
    ang = np.outer(np.arange(T), inv)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    x = W["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).reshape(T, nh, hd).transpose(1, 0, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, hd).transpose(1, 0, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, hd).transpose(1, 0, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = np.repeat(k, nh // nkv, 0), np.repeat(v, nh // nkv, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        x = x + a.transpose(1, 0, 2).reshape(T, d) @ W[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g, u = h @ W[p + "mlp.gate_proj.weight"].T, h @ W[p + "mlp.up_proj.weight"].T
        act = cfg.get("_act", "silu")
        if act == "silu":
            m = g / (1 + np.exp(-g)) * u
        elif act == "relu":
            m = np.maximum(g, 0) * u
        else:
            m = np.maximum(g, 0) * np.maximum(u, 0)
        x = x + m @ W[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, W["model.norm.weight"], eps)
    out = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return x @ out.T


TEXT = "the cat sat on the mat, then the dog ate the hat."


def pi_logits(gguf, V):
    txt = os.path.join(TMP, "text.txt")
    with open(txt, "w") as f:
        f.write(TEXT)
    dump = os.path.join(TMP, "logits.bin")
    pictl(["perplexity", "-m", gguf, "--file", txt, "--gpu-backend", "host", "--cpu-workers", "1", "--ctx", "128",
           "--dump-logits", dump])
    ids = [int(t) for t in pictl(["tokenize", "-m", gguf, "--no-bos", TEXT]).stdout.split()]
    raw = open(dump, "rb").read()
    rec = 8 + 4 * V
    rows = {}
    for off in range(0, len(raw), rec):
        cid, pos = struct.unpack_from("<II", raw, off)
        rows[(cid, pos)] = np.frombuffer(raw, "<f4", V, off + 8)
    if sorted(rows) != [(0, p) for p in range(len(ids))]:
        fail("%s: logits rows %s for %d tokens" % (gguf, sorted(rows)[:4], len(ids)))
    return [1] + ids, np.array([rows[(0, p)] for p in range(len(ids))], dtype=np.float64)


def check_logits(what, gguf, cfg, W, tol, unlike=None):
    seq, got = pi_logits(gguf, cfg["vocab_size"])
    ref = hf_forward(cfg, W, seq[:-1])
    err = np.abs(got - ref).max() / np.abs(ref).max()
    print("%s: %d positions x %d logits, max |pi - numpy float64| / max |ref| = %.2e (limit %.0e)"
          % (what, len(seq) - 1, cfg["vocab_size"], err, tol))
    if not err < tol:
        fail("%s: logits differ by %.3e relative" % (what, err))
    if unlike is not None:  # the feature under test must matter: this other config's logits are far off
        other = hf_forward(unlike, W, seq[:-1])
        far = np.abs(got - other).max() / np.abs(other).max()
        print("   without it the reference is %.2e away" % far)
        if not far > 100 * tol:
            fail("%s: the check cannot tell (%.2e from the unscaled reference)" % (what, far))


rng = np.random.default_rng(11)
vocab, merges = llama_tokenizer()
tok = tokenizer_json(vocab, merges)
tok_cfg = {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True,
           "chat_template": "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"}
base = {"architectures": ["LlamaForCausalLM"], "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": len(vocab),
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
print("tokenizer: %d tokens (3 special, 256 bytes, %d chars, %d merges)" % (len(vocab), len(CHARS), len(merges)))

# (1) silu, F32, untied, one file
silu_dir = os.path.join(TMP, "silu")
W = make_weights(base, rng)
write_checkpoint(silu_dir, base, W, tok, "F32", 1, tok_cfg)
silu = os.path.join(TMP, "silu.gguf")
p = pictl(["model", "import-hf", silu_dir, "-o", silu, "--type", "f32"])
print("import: " + p.stdout.strip())
if "tensor 21/21" not in p.stderr:
    fail("no progress line 'tensor 21/21' on stderr: %r" % p.stderr)
W64 = {k: v.astype(np.float64) for k, v in W.items()}
check_logits("silu F32", silu, base, W64, 1e-4)
info = pictl(["model", "inspect", silu]).stdout
for want in ("tokenizer.chat_template", "llama.rope.freq_base", "blk.1.ffn_gate.weight", "output.weight",
             "unknown 1 control 2 byte 256"):
    if want not in info:
        fail("model inspect lacks %r" % want)
print("inspect: chat template, llama.* keys, llama.cpp tensor names, <unk> unknown, 2 control and 256 byte tokens present")

# (2) relu, BF16 in two shards with an index, tied, rope_theta 1000; dReLU (Bamboo), F32
relu_cfg = dict(base, hidden_act="relu", tie_word_embeddings=True, rope_theta=1000.0, _act="relu")
relu_dir = os.path.join(TMP, "relu")
W = make_weights(relu_cfg, rng)
write_checkpoint(relu_dir, relu_cfg, W, tok, "BF16", 2, tok_cfg)
relu = os.path.join(TMP, "relu.gguf")
print("import: " + pictl(["model", "import-hf", relu_dir, "-o", relu, "--type", "bf16"]).stdout.strip())
check_logits("relu BF16 2 shards tied", relu, relu_cfg, {k: bf16_round(v)[1] for k, v in W.items()}, 1e-4)

drelu_cfg = dict(base, architectures=["BambooForCausalLM"], hidden_act="relu", _act="drelu")
drelu_dir = os.path.join(TMP, "drelu")
W = make_weights(drelu_cfg, rng)
write_checkpoint(drelu_dir, drelu_cfg, W, tok, "F32", 1, None)
drelu = os.path.join(TMP, "drelu.gguf")
print("import: " + pictl(["model", "import-hf", drelu_dir, "-o", drelu, "--type", "f32"]).stdout.strip())
check_logits("dReLU (bamboo) F32", drelu, drelu_cfg, {k: v.astype(np.float64) for k, v in W.items()}, 1e-4)

# (4b) rope_scaling: linear, and llama3 (every band of its rule used: head size 16, theta 10000, original 256)
for rs in ({"rope_type": "linear", "factor": 4.0},
           {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 256}):
    cfg = dict(base, rope_scaling=rs)
    d = os.path.join(TMP, "rope_" + rs["rope_type"])
    W = make_weights(cfg, rng)
    write_checkpoint(d, cfg, W, tok, "F32", 1, None)
    out = d + ".gguf"
    print("import: " + pictl(["model", "import-hf", d, "-o", out, "--type", "f32"]).stdout.strip())
    check_logits("rope_scaling %s F32" % rs["rope_type"], out, cfg, {k: v.astype(np.float64) for k, v in W.items()},
                 1e-4, unlike=base)

# (5) q8_0 of the silu checkpoint
q8 = os.path.join(TMP, "silu_q8.gguf")
print("import: " + pictl(["model", "import-hf", silu_dir, "-o", q8, "--type", "q8_0"]).stdout.strip())
check_logits("silu q8_0", q8, base, W64, 5e-2)

# (3) tokenizers against the reference BPE
strings = ["the cat sat on the mat.", "hello world", "Zebra, caf\u00e9 at 9!", "  two  spaces"]
for s in strings:
    got = [int(t) for t in pictl(["tokenize", "-m", silu, "--no-bos", s]).stdout.split()]
    want = llama_encode(s, vocab, merges)
    if got != want:
        fail("llama tokenizer %r: pi %s, reference %s" % (s, got, want))
print("llama tokenizer: %d strings tokenize as the reference BPE (byte fallback for Z, \u00e9, 9, !)" % len(strings))

gvocab, gmerges = gpt2_tokenizer()
gpt2_dir = os.path.join(TMP, "gpt2")
gcfg = dict(base, vocab_size=len(gvocab), bos_token_id=len(gvocab) - 1, eos_token_id=len(gvocab) - 1)
write_checkpoint(gpt2_dir, gcfg, make_weights(gcfg, rng), tokenizer_json(gvocab, gmerges, False), "F32", 1,
                 {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"})
gpt2 = os.path.join(TMP, "gpt2.gguf")
print("import: " + pictl(["model", "import-hf", gpt2_dir, "-o", gpt2]).stdout.strip())
for s in strings:
    got = [int(t) for t in pictl(["tokenize", "-m", gpt2, "--no-bos", s]).stdout.split()]
    want = gpt2_encode(s, gvocab, gmerges)
    if got != want:
        fail("gpt2 tokenizer %r: pi %s, reference %s" % (s, got, want))
print("gpt2 tokenizer (pre gpt-2): %d strings tokenize as the reference byte-level BPE" % len(strings))


# (4) errors: one clear line each
def expect_error(what, d, needles, args=()):
    out = os.path.join(TMP, "bad.gguf")
    p = pictl(["model", "import-hf", d, "-o", out] + list(args), want_rc=1)
    lines = p.stderr.strip().splitlines()
    if len(lines) != 1 or not all(n in lines[0] for n in needles):
        fail("%s: want one line naming %s, got %r" % (what, needles, p.stderr))
    if os.path.exists(out):
        fail("%s: %s was written" % (what, out))
    print("error %s: %s" % (what, lines[0]))


def variant(name, cfg=None, drop=None):
    d = os.path.join(TMP, name)
    shutil.copytree(silu_dir, d)
    if cfg is not None:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
    if drop:
        os.remove(os.path.join(d, drop))
    return d


expect_error("missing config.json", variant("noconfig", drop="config.json"), ["config.json", "missing"])
expect_error("unsupported architecture", variant("gpt2arch", dict(base, architectures=["GPT2LMHeadModel"])),
             ["config.json", "GPT2LMHeadModel"])
d = variant("truncated")
st = os.path.join(d, "model.safetensors")
with open(st, "r+b") as f:
    f.truncate(os.path.getsize(st) - 1000)
expect_error("truncated safetensors", d, ["model.safetensors", "truncated"])
d = variant("f64")
write_safetensors(os.path.join(d, "model.safetensors"), {k: v for k, v in make_weights(base, rng).items()}, "F64")
expect_error("F64 dtype", d, ["model.safetensors", "F64"])
expect_error("shape mismatch", variant("shape", dict(base, intermediate_size=96)),
             ["mlp.gate_proj.weight", "shape", "[96,64]"])
print("ok")

"""Independent float64 reference of the architectures pi reads (qwen2, bamboo, opt, falcon, llama):
reads a GGUF file with scripts/gguf_py.py (not pi's C loader) and computes, in numpy float64, the
logits of a token sequence at positions 0..T-1 with a whole-sequence causal attention.

    python3 arch_ref.py MODEL.gguf OUT.f64 TOKEN [TOKEN ...]

OUT.f64 gets T x n_vocab little-endian doubles. Used by tests/unit/test_arch_models.c.
The math follows each family's published definition (HF transformers' modelling code): qwen2 is
llama with q/k/v biases and rotate-half rope; bamboo is llama with relu(gate) * relu(up); OPT adds
learned positions at offset 2, pre-LayerNorms, biases everywhere and relu(fc1) -> fc2, output tied
to the embedding; falcon (ReLU variant) runs attention and MLP in parallel on the same LayerNorm
output (7B) or on ln_attn and ln_mlp (40B), fused qkv, multi-query, rotate-half rope.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import gguf_py  # noqa: E402


def main():
    path, out, toks = sys.argv[1], sys.argv[2], [int(t) for t in sys.argv[3:]]
    f = gguf_py.read(path)
    tensors = {t.name: t for t in f.tensors}

    def W(name):
        return np.asarray(tensors[name].array(), dtype=np.float64)

    def has(name):
        return name in tensors

    arch = f.get("general.architecture")
    if isinstance(arch, bytes):
        arch = arch.decode()

    def key(k, default=None):
        v = f.get(arch + "." + k)
        return default if v is None else v

    dim, n_layers = key("embedding_length"), key("block_count")
    n_heads = key("attention.head_count")
    n_kv = key("attention.head_count_kv", n_heads)
    hd = dim // n_heads
    layer_norm = arch in ("opt", "falcon")
    eps = float(key("attention.layer_norm_epsilon" if layer_norm else "attention.layer_norm_rms_epsilon", 1e-5))
    theta = float(key("rope.freq_base", 10000.0))
    # rope scaling as llama.cpp applies it: angles / factor (linear), pair i's frequency / rope_freqs[i]
    scale = 1.0 / float(key("rope.scaling.factor", 1.0))
    ffreq = W("rope_freqs.weight") if "rope_freqs.weight" in tensors else np.ones(hd // 2)
    rope = {"llama": "norm", "bamboo": "norm", "qwen2": "neox", "falcon": "neox", "opt": None}[arch]
    act = f.get("pi.ffn_activation")
    act = act.decode() if isinstance(act, bytes) else act
    T = len(toks)

    def norm(x, w, b):
        if layer_norm:
            mu = x.mean(-1, keepdims=True)
            var = ((x - mu) ** 2).mean(-1, keepdims=True)
            return (x - mu) / np.sqrt(var + eps) * w + b
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rotate(v, nh):  # v: T x (nh*hd)
        if rope is None:
            return v
        v = v.reshape(T, nh, hd).copy()
        pos = np.arange(T, dtype=np.float64)[:, None]
        if rope == "norm":  # adjacent pairs
            freq = theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd) * scale / ffreq
            ang = pos * freq[None, :]
            c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
            a, b = v[..., 0::2].copy(), v[..., 1::2].copy()
            v[..., 0::2] = a * c - b * s
            v[..., 1::2] = a * s + b * c
        else:  # rotate half
            half = hd // 2
            freq = theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd) * scale / ffreq
            ang = pos * freq[None, :]
            c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
            a, b = v[..., :half].copy(), v[..., half:].copy()
            v[..., :half] = a * c - b * s
            v[..., half:] = a * s + b * c
        return v.reshape(T, nh * hd)

    def bias(name, n):
        return W(name) if has(name) else np.zeros(n)

    def attention(l, xn):
        p = "blk.%d." % l
        if has(p + "attn_qkv.weight"):
            qkv = xn @ W(p + "attn_qkv.weight").T
            q, k, v = qkv[:, :dim], qkv[:, dim:dim + n_kv * hd], qkv[:, dim + n_kv * hd:]
        else:
            q = xn @ W(p + "attn_q.weight").T + bias(p + "attn_q.bias", dim)
            k = xn @ W(p + "attn_k.weight").T + bias(p + "attn_k.bias", n_kv * hd)
            v = xn @ W(p + "attn_v.weight").T + bias(p + "attn_v.bias", n_kv * hd)
        q, k = rotate(q, n_heads), rotate(k, n_kv)
        out = np.zeros((T, dim))
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for h in range(n_heads):
            kh = h // (n_heads // n_kv)
            qs, ks, vs = q[:, h * hd:(h + 1) * hd], k[:, kh * hd:(kh + 1) * hd], v[:, kh * hd:(kh + 1) * hd]
            s = qs @ ks.T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            out[:, h * hd:(h + 1) * hd] = s @ vs
        return out @ W(p + "attn_output.weight").T + bias(p + "attn_output.bias", dim)

    def relu(z):
        return np.maximum(z, 0.0)

    def mlp(l, xn):
        p = "blk.%d." % l
        if has(p + "ffn_down.weight"):
            down = W(p + "ffn_down.weight")          # dim x n_ff
        else:
            down = W(p + "ffn_down_t.weight").T      # stored n_ff x dim
        down_b = bias(p + "ffn_down.bias", dim) if has(p + "ffn_down.bias") else bias(p + "ffn_down_t.bias", dim)
        up = xn @ W(p + "ffn_up.weight").T + bias(p + "ffn_up.bias", down.shape[1])
        if not has(p + "ffn_gate.weight"):           # opt, falcon: fc1 -> relu -> fc2
            h = relu(up)
        else:
            g = xn @ W(p + "ffn_gate.weight").T
            if arch == "bamboo" or act == "relu_both":
                h = relu(g) * relu(up)
            elif act == "relu":
                h = relu(g) * up
            else:
                h = g / (1.0 + np.exp(-g)) * up
        return h @ down.T + down_b

    x = W("token_embd.weight")[toks]
    if arch == "opt":
        x = x + W("position_embd.weight")[np.arange(T) + 2]
    for l in range(n_layers):
        p = "blk.%d." % l
        an = norm(x, W(p + "attn_norm.weight"), bias(p + "attn_norm.bias", dim))
        if arch == "falcon":
            # the converter names 40B's ln_mlp attn_norm and its ln_attn attn_norm_2; 7B has one norm
            mn = an
            if has(p + "attn_norm_2.weight"):
                an = norm(x, W(p + "attn_norm_2.weight"), bias(p + "attn_norm_2.bias", dim))
            x = x + attention(l, an) + mlp(l, mn)
            continue
        x = x + attention(l, an)
        x = x + mlp(l, norm(x, W(p + "ffn_norm.weight"), bias(p + "ffn_norm.bias", dim)))
    x = norm(x, W("output_norm.weight"), bias("output_norm.bias", dim))
    out_w = W("output.weight") if has("output.weight") else W("token_embd.weight")
    logits = x @ out_w.T
    logits.astype("<f8").tofile(out)


if __name__ == "__main__":
    main()

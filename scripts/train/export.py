#!/usr/bin/env python3
"""Step 3 of the default model: a train.py checkpoint + prepare.py's tokenizer -> a GGUF pi runs.

    python3 scripts/train/export.py --ckpt work/relu.pt --tokenizer work/tok.model --type f16 \
        -o models/pi-tiny-gutenberg.gguf

Written with the project's writer (scripts/gguf_py.py) under llama.cpp's llama names and keys
(docs/formats.md), plus pi.ffn_activation (relu or relu_both for dReLU). The tokenizer is the
SentencePiece model as a llama SPM vocabulary: pieces, scores and token types (normal 1, unknown 2,
control 3, user-defined 4, byte 6). Norm weights stay F32; matrices are --type (f16 or f32).
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import gguf_py as g  # noqa: E402


def tokenizer_arrays(path):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=path)
    pieces, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        pieces.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(sp.get_score(i))
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i)
                     else 5 if sp.is_unused(i) else 1)
    return sp, pieces, np.array(scores, np.float32), np.array(types, np.int32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--type", choices=("f16", "f32"), default="f16")
    ap.add_argument("--name", default="pi-tiny-gutenberg")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    import torch
    ck = torch.load(a.ckpt, map_location="cpu")
    c, sd = ck["config"], ck["model"]
    sp, pieces, scores, types = tokenizer_arrays(a.tokenizer)
    if len(pieces) != c["vocab"]:
        sys.exit("export: the tokenizer has %d pieces but the model %d" % (len(pieces), c["vocab"]))
    f = g.GGUFFile()
    kv = [("general.architecture", g.STRING, "llama"), ("general.name", g.STRING, a.name),
          ("llama.context_length", g.U32, c["ctx"]), ("llama.embedding_length", g.U32, c["dim"]),
          ("llama.block_count", g.U32, c["n_layers"]), ("llama.feed_forward_length", g.U32, c["ffn"]),
          ("llama.attention.head_count", g.U32, c["n_heads"]),
          ("llama.attention.head_count_kv", g.U32, c["n_heads"]),
          ("llama.attention.layer_norm_rms_epsilon", g.F32, c["eps"]),
          ("llama.rope.freq_base", g.F32, c["rope_base"]),
          ("llama.rope.dimension_count", g.U32, c["dim"] // c["n_heads"]),
          ("llama.vocab_size", g.U32, c["vocab"]),
          ("pi.ffn_activation", g.STRING, "relu_both" if c["act"] == "drelu" else "relu"),
          ("tokenizer.ggml.model", g.STRING, "llama")]
    for k, t, v in kv:
        f.set(k, t, v)
    f.set("tokenizer.ggml.tokens", g.ARRAY, pieces, g.STRING)
    f.set("tokenizer.ggml.scores", g.ARRAY, scores, g.F32)
    f.set("tokenizer.ggml.token_type", g.ARRAY, types, g.I32)
    for k, v in (("bos_token_id", sp.bos_id()), ("eos_token_id", sp.eos_id()), ("unknown_token_id", sp.unk_id())):
        f.set("tokenizer.ggml." + k, g.U32, v)
    f.set("tokenizer.ggml.add_space_prefix", g.BOOL, True)
    f.set("tokenizer.ggml.add_bos_token", g.BOOL, True)

    mat = np.float16 if a.type == "f16" else np.float32

    def put(name, key, dtype):
        f.add_tensor(name, sd[key].float().numpy().astype(dtype))

    put("token_embd.weight", "embed.weight", mat)
    for i in range(c["n_layers"]):
        p = "blocks.%d." % i
        put("blk.%d.attn_norm.weight" % i, p + "attn_norm.weight", np.float32)
        for ours, theirs in (("attn_q", "wq"), ("attn_k", "wk"), ("attn_v", "wv"), ("attn_output", "wo"),
                             ("ffn_gate", "gate"), ("ffn_up", "up"), ("ffn_down", "down")):
            put("blk.%d.%s.weight" % (i, ours), p + theirs + ".weight", mat)
        put("blk.%d.ffn_norm.weight" % i, p + "ffn_norm.weight", np.float32)
    put("output_norm.weight", "norm.weight", np.float32)
    put("output.weight", "output.weight", mat)
    g.write(a.out, f)
    print("export: wrote %s (%.1f MB, %s)" % (a.out, os.path.getsize(a.out) / 1e6, a.type))


if __name__ == "__main__":
    sys.exit(main())

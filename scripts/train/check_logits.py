#!/usr/bin/env python3
"""Acceptance check of the default model: pi's logits (through pid's workers) against PyTorch's.

    python3 scripts/train/check_logits.py --ckpt work/relu.pt --tokenizer work/tok.model \
        -m models/pi-tiny-gutenberg.gguf --text work/val.txt [--pictl build/bin/pictl] [--ffn dense]

Takes 8 paragraphs of --text (held-out text: prompts the model never saw), one per line, and runs
`pictl perplexity --lines --dump-logits` on them with the host backend: every position's logits. The
reference is model.py in float64 on the checkpoint's weights rounded as the GGUF stores them (f16
matrices, f32 norms), on the token ids pi's tokenizer produced (`pictl tokenize`). Per prompt it prints
the largest |pi - torch| / max|torch| over its positions, whether SentencePiece tokenizes the prompt to the
same ids, and exits 1 when an error exceeds --tol (1e-3) or the ids differ.
"""
import argparse
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--pictl", default=os.path.join(HERE, "..", "..", "build", "bin", "pictl"))
    ap.add_argument("--ffn", default="dense")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--chars", type=int, default=400)
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()
    import sentencepiece as spm
    import torch
    from model import Config, Model

    ck = torch.load(a.ckpt, map_location="cpu")
    cfg = Config(**ck["config"])
    model = Model(cfg).double()
    sd = {}
    for k, v in ck["model"].items():
        v = v.float()
        sd[k] = (v.half().float() if v.dim() == 2 else v).double()  # as the GGUF stores them
    model.load_state_dict(sd)
    model.eval()

    paras = [p.strip() for p in open(a.text, encoding="utf-8").read().split("\n\n") if len(p.strip()) > 80]
    prompts = [p[:a.chars].rsplit(" ", 1)[0] for p in paras[:a.prompts]]
    sp = spm.SentencePieceProcessor(model_file=a.tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        ptxt = os.path.join(tmp, "prompts.txt")
        with open(ptxt, "w", encoding="utf-8") as f:
            f.write("\n".join(prompts) + "\n")
        dump = os.path.join(tmp, "logits.bin")
        cmd = [a.pictl, "perplexity", "-m", a.model, "--file", ptxt, "--lines", "--ctx", str(cfg.ctx),
               "--ffn", a.ffn, "--gpu-backend", "host", "--cpu-workers", "1", "--dump-logits", dump]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit("check_logits: %s failed:\n%s" % (" ".join(cmd), out.stderr))
        rows = {}
        raw = open(dump, "rb").read()
        rec = 8 + 4 * cfg.vocab
        for off in range(0, len(raw), rec):
            cid, pos = struct.unpack_from("<II", raw, off)
            rows[(cid, pos)] = np.frombuffer(raw, np.float32, cfg.vocab, off + 8)
    worst, bad = 0.0, 0
    for i, p in enumerate(prompts):
        tok = subprocess.run([a.pictl, "tokenize", "-m", a.model, "--no-bos", p], capture_output=True, text=True)
        if tok.returncode != 0:
            sys.exit("check_logits: pictl tokenize failed: %s" % tok.stderr)
        ids = [int(t) for t in tok.stdout.split()]
        same = ids == sp.encode(p)
        ids = [sp.bos_id()] + ids[: cfg.ctx - 1]
        with torch.no_grad():
            ref = model(torch.tensor([ids]))[0].numpy()
        errs = []
        for pos in range(len(ids) - 1):  # pi dumps the positions it scores: all but the last
            got = rows.get((i, pos))
            if got is None:
                sys.exit("check_logits: pi wrote no logits for prompt %d position %d" % (i, pos))
            errs.append(np.abs(got - ref[pos]).max() / np.abs(ref[pos]).max())
        e = max(errs)
        worst = max(worst, e)
        ok = e <= a.tol and same
        bad += not ok
        print("prompt %d: %3d tokens, max relative error %.2e, SentencePiece ids %s  %s" %
              (i, len(ids), e, "equal" if same else "DIFFER", "ok" if ok else "FAIL"))
    print("check_logits: %d prompts, worst relative error %.2e (tolerance %.0e, --ffn %s): %s" %
          (len(prompts), worst, a.tol, a.ffn, "FAIL" if bad else "ok"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""relu or dReLU for the default model, from the two checkpoints trained side by side:
    python3 scripts/train/choose.py relu.pt drelu.pt
dReLU is kept when its final validation loss is within 2% of ReluLLaMA's and its activation sparsity
is higher (PowerInfer's case for it: fewer active neurons at equal quality); else relu. Prints the
comparison, then the choice ("relu" or "drelu") on the last line."""
import sys

import torch


def final(path):
    h = torch.load(path, map_location="cpu")["history"][-1]
    return h["val_loss"], sum(h["sparsity"]) / len(h["sparsity"]), sum(h["top20"]) / len(h["top20"])


r, d = final(sys.argv[1]), final(sys.argv[2])
keep = "drelu" if d[0] <= r[0] * 1.02 and d[1] > r[1] else "relu"
print("relu: val loss %.4f, sparsity %.4f, top-20%% share %.4f; drelu: val loss %.4f, sparsity %.4f, "
      "top-20%% share %.4f" % (r + d))
print("rule: dReLU if its val loss is within 2%% of relu's (%.4f <= %.4f) and it is sparser (%.4f > %.4f)"
      % (d[0], r[0] * 1.02, d[1], r[1]))
print(keep)

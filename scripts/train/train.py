#!/usr/bin/env python3
"""Step 2 of the default model: train the ReLU-family LLaMA (model.py) on prepare.py's token streams.

    python3 scripts/train/train.py --data work/ --out work/relu.pt --act relu --steps 3000 --seed 1

Random windows of --ctx + 1 tokens from train.bin (numpy's generator seeded by --seed, as is torch), AdamW,
linear warm-up then cosine decay to a tenth of --lr; the schedule is in steps, so a run is reproduced by
its arguments (threads aside: CPU float sums may differ in the last bits). --l1 adds that coefficient
times the mean FFN activation to the loss (pushes activation sparsity). Every --eval-every steps and at
the end: validation loss on fixed windows of val.bin (held-out authors), and per layer the FFN activation
sparsity (share of zero activations) and the share of activation mass carried by the top 20% of neurons.
The checkpoint holds the config, the weights, the arguments and these figures.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Config, Model  # noqa: E402


def windows(data, rng, batch, ctx):
    starts = rng.integers(0, len(data) - ctx - 1, size=batch)
    w = np.stack([data[s:s + ctx + 1] for s in starts]).astype(np.int64)
    return torch.from_numpy(w[:, :-1]), torch.from_numpy(w[:, 1:])


@torch.no_grad()
def evaluate(model, val, ctx, dev="cpu", n_windows=64, batch=16):
    model.eval()
    rng = np.random.default_rng(12345)
    loss, n = 0.0, 0
    zero = mass_top = mass = None
    counts = None
    for i in range(0, n_windows, batch):
        x, y = windows(val, rng, batch, ctx)
        x, y = x.to(dev), y.to(dev)
        acts = []
        logits = model(x, acts).float()
        loss += F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        n += y.numel()
        a = torch.stack([t.reshape(-1, t.shape[-1]) for t in acts])  # layers, tokens, ffn
        z = (a == 0).float().mean(dim=(1, 2))  # per layer
        c = (a != 0).float().sum(dim=1)   # per layer, neuron: activations
        zero = z if zero is None else zero + z
        counts = c if counts is None else counts + c
    model.train()
    zero = zero / math.ceil(n_windows / batch)
    k = max(1, int(0.2 * counts.shape[1]))
    top = counts.sort(dim=1, descending=True).values[:, :k].sum(dim=1) / counts.sum(dim=1).clamp(min=1)
    return loss / n, zero.tolist(), top.tolist()


def calibrate_steps(model, train, a, dev, amp):
    """Steps that fill a.minutes, timed on 20 throw-away steps (after 5 of warm-up) of a copy."""
    import copy
    m = copy.deepcopy(model)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    for i in range(25):
        if i == 5:
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = time.time()
        x, y = windows(train, rng, a.batch, a.ctx)
        with amp:
            logits = m(x.to(dev))
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.to(dev).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if dev == "cuda":
        torch.cuda.synchronize()
    per = (time.time() - t0) / 20
    steps = max(a.warmup + 1, int(a.minutes * 60 / per * 0.92))  # evaluation and saving take the rest
    print("train: %.1f ms per step: --steps %d fills %.1f minutes" % (per * 1e3, steps, a.minutes), flush=True)
    return steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--act", choices=("relu", "drelu"), default="relu")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=0.0,
                    help="choose --steps from the speed of 20 warm-up steps so that training takes about "
                         "this long (the chosen count is printed and saved: pass it as --steps to reproduce)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--l1", type=float, default=0.0)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    train = np.memmap(os.path.join(a.data, "train.bin"), dtype=np.uint16, mode="r")
    val = np.memmap(os.path.join(a.data, "val.bin"), dtype=np.uint16, mode="r")
    import sentencepiece as spm
    vocab = spm.SentencePieceProcessor(model_file=os.path.join(a.data, "tok.model")).get_piece_size()
    cfg = Config(vocab=vocab, dim=a.dim, n_layers=a.layers, n_heads=a.heads, ffn=a.ffn, ctx=a.ctx, act=a.act)
    model = Model(cfg).to(dev)
    print("train: %s, %.2fM parameters, %d steps x %d x %d tokens on %s" %
          (json.dumps(cfg.to_dict()), model.n_params() / 1e6, a.steps, a.batch, a.ctx, dev), flush=True)
    decay = [p for p in model.parameters() if p.dim() == 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev == "cuda" else torch.autocast("cpu", enabled=False)
    if a.minutes > 0:
        a.steps = calibrate_steps(model, train, a, dev, amp)
        torch.manual_seed(a.seed)  # the run itself starts from the same state as with --steps
        model = Model(cfg).to(dev)
        decay = [p for p in model.parameters() if p.dim() == 2]
        other = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                                lr=a.lr, betas=(0.9, 0.95))
    rng = np.random.default_rng(a.seed)
    history = []
    t0 = time.time()
    ema = None
    for step in range(1, a.steps + 1):
        lr = a.lr * (step / a.warmup if step <= a.warmup else
                     0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - a.warmup) / max(1, a.steps - a.warmup))))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = windows(train, rng, a.batch, a.ctx)
        x, y = x.to(dev), y.to(dev)
        acts = [] if a.l1 > 0 else None
        with amp:
            logits = model(x, acts)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1))
        total = loss + (a.l1 * sum(t.abs().mean() for t in acts) / len(acts) if acts else 0.0)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % a.log_every == 0:
            el = time.time() - t0
            print("step %d/%d loss %.4f lr %.2e %.0f tok/s %.0f s" %
                  (step, a.steps, ema, lr, step * a.batch * a.ctx / el, el), flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            vl, zero, top = evaluate(model, val, a.ctx, dev, 256 if step == a.steps else 64)
            history.append({"step": step, "train_loss": ema, "val_loss": vl, "sparsity": zero, "top20": top})
            print("eval step %d: val loss %.4f (ppl %.2f), sparsity %s mean %.3f, top-20%% share %s mean %.3f" %
                  (step, vl, math.exp(vl), " ".join("%.3f" % z for z in zero), sum(zero) / len(zero),
                   " ".join("%.3f" % t for t in top), sum(top) / len(top)), flush=True)
            torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "args": vars(a),
                        "history": history, "seconds": time.time() - t0,
                        "tokens": step * a.batch * a.ctx}, a.out)
    print("train: wrote %s after %.0f s" % (a.out, time.time() - t0))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Trains PowerInfer-style activation predictors for pi's sparse FFN and writes them into the sidecar.

    pictl model profile -m M.gguf --corpus text.txt --tokens 200000 --dump-pairs pairs.bin --pairs-per-layer 50000
    python3 scripts/train_predictor.py --pairs pairs.bin --sidecar M.pi-sparse.gguf

Per layer, a 2-layer MLP  x (dim) -> relu(fc1 x) (R) -> fc2 (n_ff logits)  without biases (the runtime has
none: sparse/predictor.h) is trained with BCE-with-logits on the profiler's (x_norm, active bitmap) pairs,
Adam, the positives weighted by (1 - a) / a with a the layer's active rate. The last 10% of the sampled
tokens (the end of the corpus) are held out. The runtime has one threshold per model, so one threshold is
chosen for all layers: the largest (on a grid of 1/32 steps) whose mean held-out recall over the layers is
>= --recall-target (or the one given with --threshold). Per layer recall, precision, predicted and true
active fraction on the held-out tokens are printed as a table, and the sidecar is rewritten with
blk.N.fc1.weight (ne [dim, R]), blk.N.fc2.weight (ne [R, n_ff]) and pi.sparse.threshold; every other key
and tensor is kept.

--evaluate skips training: it measures the predictor already in the sidecar on every pair (numpy only).
Training needs PyTorch (a GPU is used when there is one); reading pairs and GGUF needs numpy alone.
Formats: docs/formats.md ("pi sparse sidecar", "Predictor training pairs"); guide: docs/predictors.md.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_py  # noqa: E402

PAIRS_MAGIC = b"PIPAIRS1"
PAIRS_HEADER = 32
HOLDOUT = 0.10
# Candidate thresholds: -64..64 in steps of 1/32, all exact in float32 (the key's type).
GRID = np.arange(-2048, 2049, dtype=np.float64) / 32.0
TORCH_MISSING = "PyTorch is needed to train; run this on the GPU machine (python3 there has torch)"


class Fail(Exception):
    """A user-facing error: printed as 'train_predictor: MESSAGE', exit 1."""


# ---- pairs file ----

class Pairs:
    """The profiler's pairs file, memory-mapped: records[t, l] has fields layer, pos, x (dim f32) and
    bits ((n_ff + 7) // 8 bytes, bit j of byte j >> 3, LSB first = neuron j active)."""

    def __init__(self, path, n_layers, dim, n_ff, n_tokens, records):
        self.path, self.n_layers, self.dim, self.n_ff = path, n_layers, dim, n_ff
        self.n_tokens, self.records = n_tokens, records

    def x(self, layer, idx=None):
        """float32 [n, dim]: the FFN inputs of the given tokens (all when idx is None)."""
        r = self.records[:, layer] if idx is None else self.records[idx, layer]
        return np.ascontiguousarray(r["x"], dtype=np.float32)

    def bits(self, layer, idx=None):
        """uint8 [n, (n_ff + 7) // 8]: the packed active bitmaps."""
        r = self.records[:, layer] if idx is None else self.records[idx, layer]
        return np.ascontiguousarray(r["bits"])

    def active(self, layer, idx=None):
        """bool [n, n_ff]: neuron j of token i was active."""
        return unpack_bits(self.bits(layer, idx), self.n_ff)


def unpack_bits(bits, n_ff):
    return np.unpackbits(bits, axis=1, bitorder="little")[:, :n_ff].astype(bool)


def read_pairs(path):
    """Opens and checks a pairs file (header, size, every record's layer field). Raises Fail."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(PAIRS_HEADER)
    except OSError as e:
        raise Fail("pairs %s: %s" % (path, e.strerror))
    if len(head) < PAIRS_HEADER or head[:8] != PAIRS_MAGIC:
        raise Fail("pairs %s: no %s header: not a pairs file from `pictl model profile --dump-pairs`"
                   % (path, PAIRS_MAGIC.decode()))
    version, n_layers, dim, n_ff = np.frombuffer(head, "<u4", 4, 8)
    n_tokens = int(np.frombuffer(head, "<u8", 1, 24)[0])
    if version != 1:
        raise Fail("pairs %s: version %d; this trainer reads version 1" % (path, version))
    if not (n_layers and dim and n_ff):
        raise Fail("pairs %s: header has %d layers, dim %d, n_ff %d" % (path, n_layers, dim, n_ff))
    n_layers, dim, n_ff = int(n_layers), int(dim), int(n_ff)
    nb = (n_ff + 7) // 8
    rec = 8 + 4 * dim + nb
    want = PAIRS_HEADER + n_tokens * n_layers * rec
    if size != want:
        raise Fail("pairs %s: %d bytes, but %d tokens x %d layers of %d-byte records need %d (truncated? "
                   "re-run the profile)" % (path, size, n_tokens, n_layers, rec, want))
    if n_tokens == 0:
        raise Fail("pairs %s: holds no tokens" % path)
    dt = np.dtype({"names": ["layer", "pos", "x", "bits"],
                   "formats": ["<u4", "<u4", ("<f4", (dim,)), ("u1", (nb,))],
                   "offsets": [0, 4, 8, 8 + 4 * dim], "itemsize": rec})
    records = np.memmap(path, dtype=dt, mode="r", offset=PAIRS_HEADER, shape=(n_tokens, n_layers))
    layers = np.asarray(records["layer"])
    bad = np.argwhere(layers != np.arange(n_layers, dtype=np.uint32)[None, :])
    if len(bad):
        t, l = bad[0]
        raise Fail("pairs %s: the record of token %d, layer %d says layer %d: the file is corrupt"
                   % (path, t, l, layers[t, l]))
    return Pairs(path, n_layers, dim, n_ff, n_tokens, records)


# ---- sidecar ----

def read_sidecar(path):
    """The sidecar GGUF and its (n_layers, dim, n_ff). Raises Fail."""
    try:
        f = gguf_py.read(path)
    except (OSError, gguf_py.GGUFError) as e:
        raise Fail("sidecar %s: %s" % (path, e))
    if f.get("general.architecture") != "pi-sparse":
        raise Fail("sidecar %s: general.architecture is %r, not 'pi-sparse': not a pi sparse sidecar "
                   "(pass MODEL.pi-sparse.gguf, which `pictl model profile` writes)"
                   % (path, f.get("general.architecture")))
    if f.get("pi.sparse.version") != 1:
        raise Fail("sidecar %s: pi.sparse.version is %r; this trainer writes version 1"
                   % (path, f.get("pi.sparse.version")))
    shape = tuple(f.get(k) for k in ("pi.sparse.n_layers", "pi.sparse.dim", "pi.sparse.n_ff"))
    if not all(isinstance(v, int) and v > 0 for v in shape):
        raise Fail("sidecar %s: pi.sparse.n_layers/dim/n_ff missing or 0" % path)
    return f, shape


def check_shapes(pairs, sidecar_path, shape):
    if (pairs.n_layers, pairs.dim, pairs.n_ff) != shape:
        raise Fail("pairs %s are for %d layers, dim %d, n_ff %d, but sidecar %s is for %d layers, dim %d, "
                   "n_ff %d: profile the same model" % ((pairs.path, pairs.n_layers, pairs.dim, pairs.n_ff,
                                                         sidecar_path) + shape))


def set_predictor(f, fc1, fc2, threshold, dtype, stats=None):
    """Puts fc1[l] (R x dim) and fc2[l] (n_ff x R) of every layer into sidecar f as dtype (np.float16 or
    np.float32), replacing any old predictor, after each layer's ffn_freq; sets pi.sparse.threshold."""
    for layer, (a, b) in enumerate(zip(fc1, fc2)):
        pre = "blk.%d." % layer
        f.add_tensor(pre + "fc1.weight", to_dtype(a, dtype, pre + "fc1.weight"), after=pre + "ffn_freq")
        f.add_tensor(pre + "fc2.weight", to_dtype(b, dtype, pre + "fc2.weight"), after=pre + "fc1.weight")
    f.set("pi.sparse.threshold", gguf_py.F32, float(np.float32(threshold)))
    if stats is not None:
        f.set("pi.sparse.predictor.recall", gguf_py.ARRAY, [s["recall"] for s in stats], gguf_py.F32)
        f.set("pi.sparse.predictor.precision", gguf_py.ARRAY, [s["precision"] for s in stats], gguf_py.F32)


def to_dtype(a, dtype, name):
    out = np.asarray(a, dtype=np.float32).astype(dtype)
    if not np.all(np.isfinite(out)):
        raise Fail("tensor %s does not fit %s (overflow or NaN); use --type f32" % (name, np.dtype(dtype).name))
    return out


def sidecar_predictor(f, n_layers):
    """[(fc1, fc2)] as float32 arrays for every layer, or None when the sidecar has none."""
    out = []
    for layer in range(n_layers):
        a, b = f.tensor("blk.%d.fc1.weight" % layer), f.tensor("blk.%d.fc2.weight" % layer)
        if a is None or b is None:
            return None
        try:
            out.append((a.array(), b.array()))
        except gguf_py.GGUFError as e:
            raise Fail("sidecar %s: %s" % (f.path, e))
    return out


# ---- measuring ----

class Counts:
    """For one layer, over the evaluated tokens: for every candidate threshold grid[k], how many
    (token, neuron) logits lie above it (pred[k]) and how many of those were active (tp[k])."""

    def __init__(self, grid):
        self.grid = grid
        self.tp = np.zeros(len(grid), np.int64)
        self.pred = np.zeros(len(grid), np.int64)
        self.pos = 0
        self.total = 0

    def add_hist(self, hist_all, hist_pos, n_pos, n_total):
        # hist[i] = logits with exactly i grid points below them; above grid[k] = sum over i > k
        self.pred += np.cumsum(hist_all[::-1])[::-1][1:]
        self.tp += np.cumsum(hist_pos[::-1])[::-1][1:]
        self.pos += int(n_pos)
        self.total += int(n_total)

    def add(self, logits, active):
        """numpy logits [n, n_ff] float32 and active bool [n, n_ff]."""
        idx = np.searchsorted(self.grid, logits.ravel().astype(np.float64), side="left")
        k1 = len(self.grid) + 1
        self.add_hist(np.bincount(idx, minlength=k1), np.bincount(idx[active.ravel()], minlength=k1),
                      active.sum(), active.size)

    def at(self, k):
        tp, pred = int(self.tp[k]), int(self.pred[k])
        return {"recall": tp / self.pos if self.pos else 1.0,
                "precision": tp / pred if pred else (1.0 if not self.pos else 0.0),
                "pred_active": pred / self.total if self.total else 0.0,
                "true_active": self.pos / self.total if self.total else 0.0}


def make_grid(threshold):
    """The candidate thresholds, with a given threshold added so that it is measured exactly."""
    if threshold is None:
        return GRID
    return np.unique(np.append(GRID, np.float64(np.float32(threshold))))


def choose_threshold(counts, grid, target):
    """The largest grid threshold whose mean recall over the layers is >= target, and that mean; the
    smallest threshold when none reaches it."""
    mean = np.mean([np.where(c.pos > 0, c.tp / max(c.pos, 1), 1.0) for c in counts], axis=0)
    ok = np.nonzero(mean >= target)[0]
    k = int(ok[-1]) if len(ok) else 0
    return k, float(mean[k])


def logits_np(x, fc1, fc2):
    hidden = np.maximum(x @ fc1.T, 0.0, dtype=np.float32)
    return (hidden @ fc2.T).astype(np.float32)


def evaluate_np(pairs, pred, grid, idx=None, chunk=1024):
    """Counts of the predictor pred [(fc1, fc2)] over the tokens idx (all when None), numpy only."""
    counts = []
    toks = np.arange(pairs.n_tokens) if idx is None else np.asarray(idx)
    for layer, (fc1, fc2) in enumerate(pred):
        c = Counts(grid)
        for s in range(0, len(toks), chunk):
            part = toks[s:s + chunk]
            c.add(logits_np(pairs.x(layer, part), fc1, fc2), pairs.active(layer, part))
        counts.append(c)
    return counts


def print_table(rows, out=sys.stdout):
    """rows: dicts with layer, R, recall, precision, pred_active, true_active and optionally loss."""
    has_loss = any("loss" in r for r in rows)
    print("layer     R%s   recall  precision  pred_active  true_active" % ("  train_loss" if has_loss else ""),
          file=out)
    for r in rows:
        loss = "  %10.4f" % r["loss"] if has_loss else ""
        print("%5d  %4d%s  %7.4f  %9.4f  %11.4f  %11.4f" % (r["layer"], r["R"], loss, r["recall"], r["precision"],
                                                            r["pred_active"], r["true_active"]), file=out)
    keys = ("recall", "precision", "pred_active", "true_active")
    m = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    print("mean   %4s%s  %7.4f  %9.4f  %11.4f  %11.4f" % ("", "            " if has_loss else "", m["recall"],
                                                         m["precision"], m["pred_active"], m["true_active"]),
          file=out)


# ---- training (PyTorch) ----

def import_torch():
    try:
        import torch
    except ImportError:
        raise Fail(TORCH_MISSING)
    return torch


def torch_unpack(torch, bits, n_ff):
    shifts = torch.arange(8, device=bits.device, dtype=torch.uint8)
    b = (bits.unsqueeze(-1) >> shifts) & 1
    return b.reshape(bits.shape[0], -1)[:, :n_ff]


def train_layer(torch, x, bits, n_ff, args, device, gen):
    """Trains one layer's predictor on x [n, dim] float32 and bits [n, nb]. Returns fc1 [R, dim],
    fc2 [n_ff, R] as float32 numpy, the last epoch's mean loss and the positive weight used."""
    nn, F = torch.nn, torch.nn.functional
    X = torch.from_numpy(x).to(device)
    B = torch.from_numpy(bits).to(device)
    n, dim = X.shape
    active = sum(int(torch_unpack(torch, B[s:s + args.batch], n_ff).sum()) for s in range(0, n, args.batch))
    rate = active / float(n * n_ff)
    pos_weight = float(np.clip((1.0 - rate) / rate, 1.0, args.max_pos_weight)) if rate > 0 else 1.0
    pw = torch.tensor([pos_weight], device=device)
    model = nn.Sequential(nn.Linear(dim, args.hidden, bias=False), nn.ReLU(),
                          nn.Linear(args.hidden, n_ff, bias=False)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_mean = float("nan")
    for _ in range(args.epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        total, steps = 0.0, 0
        for s in range(0, n, args.batch):
            idx = perm[s:s + args.batch]
            y = torch_unpack(torch, B[idx], n_ff).float()
            loss = F.binary_cross_entropy_with_logits(model(X[idx]), y, pos_weight=pw)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
            steps += 1
        loss_mean = total / max(steps, 1)
    fc1 = model[0].weight.detach().cpu().numpy().astype(np.float32)
    fc2 = model[2].weight.detach().cpu().numpy().astype(np.float32)
    return fc1, fc2, loss_mean, pos_weight


def evaluate_torch(torch, x, bits, n_ff, fc1, fc2, grid, device, chunk=4096):
    """Counts of one layer's predictor on held-out x/bits, computed on the device."""
    c = Counts(grid)
    g = torch.from_numpy(grid.astype(np.float32)).to(device)
    W1 = torch.from_numpy(np.ascontiguousarray(fc1)).to(device)
    W2 = torch.from_numpy(np.ascontiguousarray(fc2)).to(device)
    k1 = len(grid) + 1
    with torch.no_grad():
        for s in range(0, len(x), chunk):
            X = torch.from_numpy(x[s:s + chunk]).to(device)
            y = torch_unpack(torch, torch.from_numpy(bits[s:s + chunk]).to(device), n_ff).bool()
            logits = torch.relu(X @ W1.T) @ W2.T
            idx = torch.bucketize(logits.reshape(-1), g, right=False)
            c.add_hist(torch.bincount(idx, minlength=k1).cpu().numpy(),
                       torch.bincount(idx[y.reshape(-1)], minlength=k1).cpu().numpy(),
                       int(y.sum()), y.numel())
    return c


def run_train(args, pairs, f, out_path):
    torch = import_torch()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise Fail("--device cuda, but PyTorch sees no GPU here (use --device cpu)")
    if pairs.n_tokens < 2:
        raise Fail("pairs %s: %d token; at least 2 are needed (one held out)" % (pairs.path, pairs.n_tokens))
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    # the last 10% of the sampled tokens (the end of the corpus) are held out: text the predictor has not
    # seen, where a random 10% would share sentences with the training tokens
    n_hold = min(pairs.n_tokens - 1, max(1, int(round(HOLDOUT * pairs.n_tokens))))
    hold, train = np.arange(pairs.n_tokens - n_hold, pairs.n_tokens), np.arange(pairs.n_tokens - n_hold)
    if args.hidden <= 0:
        args.hidden = int(min(1024, max(16, pairs.dim // 4)))
    dtype = np.float16 if args.type == "f16" else np.float32
    print("train_predictor: %d layers, dim %d, n_ff %d, R %d; %d training / %d held-out tokens; %d epochs, "
          "lr %g, batch %d, device %s" % (pairs.n_layers, pairs.dim, pairs.n_ff, args.hidden, len(train), n_hold,
                                          args.epochs, args.lr, args.batch, device), flush=True)
    grid = make_grid(args.threshold)
    fc1s, fc2s, counts, rows = [], [], [], []
    for layer in range(pairs.n_layers):
        t0 = time.time()
        fc1, fc2, loss, pw = train_layer(torch, pairs.x(layer, train), pairs.bits(layer, train), pairs.n_ff,
                                         args, device, gen)
        # measure the weights exactly as they will be stored
        fc1 = to_dtype(fc1, dtype, "blk.%d.fc1.weight" % layer).astype(np.float32)
        fc2 = to_dtype(fc2, dtype, "blk.%d.fc2.weight" % layer).astype(np.float32)
        counts.append(evaluate_torch(torch, pairs.x(layer, hold), pairs.bits(layer, hold), pairs.n_ff, fc1, fc2,
                                     grid, device))
        fc1s.append(fc1)
        fc2s.append(fc2)
        rows.append({"layer": layer, "R": args.hidden, "loss": loss})
        print("train_predictor: layer %d trained in %.1f s (loss %.4f, positive weight %.2f)"
              % (layer, time.time() - t0, loss, pw), file=sys.stderr, flush=True)
    k, rule = pick(args, counts, grid)
    stats = [c.at(k) for c in counts]
    for r, s in zip(rows, stats):
        r.update(s)
    print("held-out: %d tokens per layer" % n_hold)
    print_table(rows)
    print("threshold %g (%s)" % (grid[k], rule))
    set_predictor(f, fc1s, fc2s, grid[k], dtype, stats)
    f.set("pi.sparse.predictor.train_tokens", gguf_py.U64, len(train))
    f.set("pi.sparse.predictor.heldout_tokens", gguf_py.U64, n_hold)
    try:
        gguf_py.write(out_path, f)
    except (OSError, gguf_py.GGUFError) as e:
        raise Fail("writing %s: %s" % (out_path, e))
    print("wrote %s: fc1/fc2 %s per layer (R %d), pi.sparse.threshold %g" % (out_path, args.type, args.hidden,
                                                                             grid[k]))


def pick(args, counts, grid):
    """The index of the threshold to use and a phrase saying why."""
    if args.threshold is not None:
        k = int(np.searchsorted(grid, np.float64(np.float32(args.threshold))))
        return k, "given with --threshold"
    k, mean = choose_threshold(counts, grid, args.recall_target)
    if mean < args.recall_target:
        return k, "the lowest candidate; mean held-out recall %.4f stays below --recall-target %g" % (
            mean, args.recall_target)
    return k, "the largest with mean held-out recall >= %g" % args.recall_target


def run_evaluate(args, pairs, f):
    pred = sidecar_predictor(f, pairs.n_layers)
    if pred is None:
        raise Fail("sidecar %s has no predictor (blk.N.fc1.weight / fc2.weight); train one first" % args.sidecar)
    threshold = args.threshold if args.threshold is not None else f.get("pi.sparse.threshold", 0.0)
    grid = make_grid(threshold)
    counts = evaluate_np(pairs, pred, grid)
    k = int(np.searchsorted(grid, np.float64(np.float32(threshold))))
    rows = []
    for layer, c in enumerate(counts):
        r = {"layer": layer, "R": pred[layer][0].shape[0]}
        r.update(c.at(k))
        rows.append(r)
    print("evaluate: the predictor of %s on all %d tokens of %s, threshold %g"
          % (args.sidecar, pairs.n_tokens, args.pairs, threshold))
    print_table(rows)
    kt, mean = choose_threshold(counts, grid, args.recall_target)
    print("threshold for mean recall >= %g: %g (mean recall %.4f)" % (args.recall_target, grid[kt], mean))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See docs/predictors.md for the whole procedure.")
    ap.add_argument("--pairs", required=True, help="pairs file from pictl model profile --dump-pairs")
    ap.add_argument("--sidecar", required=True, help="the model's sidecar (MODEL.pi-sparse.gguf)")
    ap.add_argument("-o", "--output", help="sidecar to write (default: rewrite --sidecar in place)")
    ap.add_argument("--hidden", type=int, default=0, help="hidden width R (default dim/4 within 16..1024)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when PyTorch sees a GPU")
    ap.add_argument("--threshold", type=float, help="use this threshold instead of choosing one")
    ap.add_argument("--recall-target", type=float, default=0.99,
                    help="mean held-out recall the chosen threshold must reach (default 0.99)")
    ap.add_argument("--max-pos-weight", type=float, default=100.0, help="cap on the positive weight")
    ap.add_argument("--type", choices=["f16", "f32"], default="f16", help="tensor type of fc1/fc2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--evaluate", action="store_true",
                    help="measure the sidecar's existing predictor on all pairs; no training, no torch")
    args = ap.parse_args(argv)
    try:
        if args.threshold is not None and not np.isfinite(np.float32(args.threshold)):
            raise Fail("--threshold must be a finite number")
        if not 0.0 < args.recall_target <= 1.0:
            raise Fail("--recall-target must be in (0, 1]")
        if args.epochs < 1 or args.batch < 1 or args.lr <= 0:
            raise Fail("--epochs and --batch must be >= 1 and --lr > 0")
        pairs = read_pairs(args.pairs)
        f, shape = read_sidecar(args.sidecar)
        check_shapes(pairs, args.sidecar, shape)
        if args.evaluate:
            run_evaluate(args, pairs, f)
        else:
            run_train(args, pairs, f, args.output or args.sidecar)
    except Fail as e:
        print("train_predictor: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

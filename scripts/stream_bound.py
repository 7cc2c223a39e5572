#!/usr/bin/env python3
"""What host memory allows N concurrent streams at a VRAM budget (issue 12).

Every neuron outside the GPU's VRAM (cold on the CPU workers, warm over PCIe) is read from host DRAM by
whichever entry of a step needs it, once per step. With neuron i of a layer firing in a token with
probability p_i, independently from token to token, a step of N entries reads it with probability
1 - (1 - p_i)^N. This sums that over the neurons left in host memory (all but each layer's K most frequent),
turns it into bytes and divides by the host's bandwidth: a lower bound on a step's FFN time, and so an upper
bound on the tokens a second N streams can decode, whatever the kernels. Steps also pay their attention and
control (--fixed-ms), which the bound adds.

usage: stream_bound.py FREQ.npy --hot K [--neuron-bytes 30720] [--host-gbs 100] [--fixed-ms 5.0]
                       [--streams 1,4,8,16,32]
  FREQ.npy: the firing frequencies of every layer's neurons (layers x n_ff float32, C order), e.g. the
            activation/freq.npy that the anchors' mk_powerinfer_gguf.py writes beside its model
  --hot K:  neurons per layer in VRAM (the plan's "hot ... (N..M of n_ff per layer)")
The frequencies stand in for the firing probabilities; a model whose neurons fire together across tokens
needs fewer bytes than this says.
"""
import argparse
import ast
import struct
import sys


def read_npy(path):
    """(shape, values) of a float32 C-order .npy file, without numpy."""
    try:
        f = open(path, "rb")
    except OSError as e:
        sys.exit("stream_bound: cannot read %s: %s" % (path, e.strerror))
    with f:
        if f.read(6) != b"\x93NUMPY":
            sys.exit("stream_bound: %s is not a .npy file" % path)
        major = f.read(2)[0]
        hlen = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))[0]
        header = ast.literal_eval(f.read(hlen).decode("latin1"))
        if header["descr"] not in ("<f4", "=f4") or header["fortran_order"]:
            sys.exit("stream_bound: %s holds %s%s, not C-order float32" %
                     (path, header["descr"], ", Fortran order" if header["fortran_order"] else ""))
        shape = header["shape"]
        count = 1
        for s in shape:
            count *= s
        data = f.read(4 * count)
        if len(data) != 4 * count:
            sys.exit("stream_bound: %s is short (%d of %d bytes)" % (path, len(data), 4 * count))
        return shape, struct.unpack("<%df" % count, data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("freq")
    ap.add_argument("--hot", type=int, required=True)
    ap.add_argument("--neuron-bytes", type=int, default=3 * 5120 * 2, help="gate + up + down rows (F16 13B)")
    ap.add_argument("--host-gbs", type=float, default=100.0, help="host DRAM, CPU and PCIe readers together")
    ap.add_argument("--fixed-ms", type=float, default=5.0, help="a step's attention, predictor and control")
    ap.add_argument("--streams", default="1,4,8,16,32")
    a = ap.parse_args()
    shape, v = read_npy(a.freq)
    if len(shape) != 2:
        sys.exit("stream_bound: expected layers x n_ff, got shape %s" % (shape,))
    layers, n_ff = shape
    if not 0 <= a.hot <= n_ff:
        sys.exit("stream_bound: --hot %d is not within 0..%d" % (a.hot, n_ff))
    host = []
    for l in range(layers):
        p = sorted((min(max(x, 0.0), 1.0) for x in v[l * n_ff:(l + 1) * n_ff]), reverse=True)
        host.append(p[a.hot:])
    share = sum(sum(h) for h in host) / max(sum(v), 1e-30)
    print("%d layers x %d neurons, %d per layer in VRAM: %.1f%% of activations from host memory; "
          "%d bytes a neuron, host %.0f GB/s, %.1f ms a step besides" %
          (layers, n_ff, a.hot, 100 * share, a.neuron_bytes, a.host_gbs, a.fixed_ms))
    print("| streams | host neurons a step (all layers) | GB a step | step >= ms | tok/s <= | x one stream |")
    print("|---|---|---|---|---|---|")
    rows = []
    for n in (int(s) for s in a.streams.split(",")):
        need = sum(1.0 - (1.0 - x) ** n for h in host for x in h)
        gb = need * a.neuron_bytes / 1e9
        ms = gb / a.host_gbs * 1e3 + a.fixed_ms
        rows.append((n, need, gb, ms, n / ms * 1e3))
    one = next((r[4] for r in rows if r[0] == 1), None)
    for n, need, gb, ms, tps in rows:
        print("| %d | %.0f | %.2f | %.1f | %.0f | %s |" %
              (n, need, gb, ms, tps, "%.2f" % (tps / one) if one else "n/a (no 1 in --streams)"))

main()

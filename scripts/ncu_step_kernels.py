#!/usr/bin/env python3
"""Where one decode step's GPU time goes, kernel by kernel, from Nsight Compute's raw CSV of a `pid run`
(ncu --target-processes all --metrics gpu__time_duration.sum --csv --page raw --print-units base
--print-kernel-base function).

The kernels are split into steps at each k_embed (every step graph starts with the embedding), and the last
step (a decode step when pid run generated two or more tokens) is summed per kernel name: launches, total us,
us per layer. ncu runs each kernel alone, so the figures are kernel durations without the overlap that
programmatic dependent launch gives in the step graph; their sum is a floor-free upper bound of the GPU phases.

usage: ncu_step_kernels.py NCU_CSV N_LAYERS
"""
import csv
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, n_layers = sys.argv[1], int(sys.argv[2])
    rows = []
    with open(path, newline="") as f:
        lines = [ln for ln in f if ln.startswith('"')]      # ncu's own messages are not CSV rows
    reader = csv.DictReader(lines)
    for r in reader:
        name, dur = r.get("Kernel Name"), r.get("gpu__time_duration.sum")
        if not name or not dur:
            continue
        try:
            ns = float(dur.replace(",", ""))
        except ValueError:
            continue                                        # the units row
        rows.append((name, ns))
    starts = [i for i, (n, _) in enumerate(rows) if n.startswith("k_embed")]
    if not starts:
        sys.exit("ncu_step_kernels: no k_embed in %s (%d kernels): not a pi step graph's profile" % (path, len(rows)))
    step = rows[starts[-1]:]
    print("last step: %d kernels of %d profiled, %d steps" % (len(step), len(rows), len(starts)))
    per = {}
    order = []
    for n, ns in step:
        if n not in per:
            per[n] = [0, 0.0]
            order.append(n)
        per[n][0] += 1
        per[n][1] += ns / 1e3
    total = sum(v[1] for v in per.values())
    print("| kernel | launches | us in the step | us a layer | share |")
    print("|---|---|---|---|---|")
    for n in sorted(order, key=lambda k: -per[k][1]):
        c, us = per[n]
        print("| %s | %d | %.1f | %.2f | %.1f%% |" % (n, c, us, us / n_layers, 100 * us / total))
    print("| sum | %d | %.1f | %.2f | 100%% |" % (len(step), total, total / n_layers))


if __name__ == "__main__":
    main()

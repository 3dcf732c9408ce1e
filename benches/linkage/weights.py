"""Chooses scheme 2's weights: the name's share and what each date
agreement level adds, by the mean best F1 over the training sets (FEBRL 1-3
and the first generated set), then reports them on the held-out sets.

    target/linkage-venv/bin/python benches/linkage/weights.py BINARY

BINARY is `linkage_csv` (see side_by_side.sh for how to build it).
"""

import itertools
import os
import sys

import numpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generator  # noqa: E402
from side_by_side import febrl, run_linkage_csv, true_pairs  # noqa: E402

# DateAgreement: 1 same, 2 misread, 3 two of three, 4 partial, 5 missing, 6 different.
THRESHOLDS = [x / 100 for x in range(50, 100, 2)]


def evidence(rows, binary):
    out = run_linkage_csv(rows, binary, LINKAGE_SCHEME="2", LINKAGE_BLOCKS="wide", LINKAGE_EVIDENCE="1")
    return [(a, b, n, d) for a, b, n, d in out["pairs"]]


def arrays(pairs, truth):
    name = numpy.array([n for _, _, n, _ in pairs])
    date = numpy.array([d for _, _, _, d in pairs], dtype=int)
    label = numpy.array([(a, b) in truth for a, b, _, _ in pairs])
    return name, date, label, len(truth)


def best_f1(data, wn, wd):
    name, date, label, n_true = data
    score = wn * name + (1 - wn) * numpy.array(wd)[date]
    best = (0, 0, 0, 0)
    for t in THRESHOLDS:
        pred = score >= t
        tp = int((pred & label).sum())
        n = int(pred.sum())
        p = tp / n if n else 1.0
        r = tp / n_true
        f = 2 * p * r / (p + r) if p + r else 0
        if f > best[0]:
            best = (f, t, p, r)
    return best


def main():
    binary = sys.argv[1]
    train = [febrl(1), febrl(2), febrl(3), generator.generate()]
    held = [febrl(4), generator.generate(seed=7)]
    data = [arrays(evidence(r, binary), true_pairs(r)) for r in train + held]
    grid = []
    for wn, mis, two, part, miss in itertools.product(
        (0.5, 0.6, 0.7), (0.7, 0.8, 0.9), (0.5, 0.6, 0.7), (0.4, 0.5, 0.6), (0.2, 0.3, 0.4, 0.5)
    ):
        if not (mis >= two >= part >= miss):
            continue
        wd = [0.0, 1.0, mis, two, part, miss, 0.0]
        fs = [best_f1(d, wn, wd) for d in data]
        grid.append((sum(f[0] for f in fs[:4]) / 4, (wn, mis, two, part, miss), fs))
    grid.sort(reverse=True)
    for mean, w, fs in grid[:8]:
        print(f"train mean F1 {mean:.3f}  name {w[0]} misread {w[1]} two-of-three {w[2]} partial {w[3]} missing {w[4]}")
        print("   " + "  ".join(f"F1 {f:.3f} at {t:.2f} (P {p:.3f} R {r:.3f})" for f, t, p, r in fs))


if __name__ == "__main__":
    main()

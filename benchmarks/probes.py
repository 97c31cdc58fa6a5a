"""Batched probes vs scikit-learn one at a time: 75 random-subset probes (15 fractions x 5 seeds).

Features: efficientnet_lite0 penultimate (1280-d) on >= 10k CIFAR-10 training images (cached).
Prints both wall times, the speed-up ratio (target >= 30x) and the largest accuracy gap.
    python benchmarks/probes.py [--n-per-class 1000] [--C 1.0] [--sklearn-probes 75]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import diffred

FRACTIONS = [0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8,
             0.9, 1.0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-per-class", type=int, default=1000)
    ap.add_argument("--resolution", type=int, default=160)
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    tr = diffred.features("efficientnet_lite0", "cifar10", "train", n_per_class=args.n_per_class,
                          resolution=args.resolution)
    te = diffred.features("efficientnet_lite0", "cifar10", "test", n_per_class=100,
                          resolution=args.resolution)
    D = tr.X.shape[1]
    columns = [np.sort(np.random.default_rng(s).permutation(D)[:max(1, int(f * D))])
               for f in FRACTIONS for s in range(args.seeds)]
    print(f"features: train {tr.X.shape}, test {te.X.shape}; {len(columns)} probes, C={args.C}")
    Xtr, Xte = np.asarray(tr.X), np.asarray(te.X)

    diffred.probe_accuracy(Xtr[:500], tr.y[:500], Xte, te.y, columns=columns[:5])  # warm-up
    t0 = time.perf_counter()
    batched = diffred.probe_accuracy(Xtr, tr.y, Xte, te.y, columns=columns, C=args.C)
    t_batched = time.perf_counter() - t0
    print(f"batched diffred probes : {t_batched:8.1f} s", flush=True)

    t0 = time.perf_counter()
    reference = []
    for cols in columns:
        scaler = StandardScaler().fit(Xtr[:, cols])
        clf = LogisticRegression(C=args.C, max_iter=1000).fit(scaler.transform(Xtr[:, cols]), tr.y)
        reference.append(clf.score(scaler.transform(Xte[:, cols]), te.y))
    t_sklearn = time.perf_counter() - t0
    gap = np.abs(batched.accuracy - np.array(reference))
    print(f"scikit-learn, one each : {t_sklearn:8.1f} s")
    print(f"speed-up               : {t_sklearn / t_batched:8.1f} x   (target >= 30x)")
    print(f"accuracy gap vs sklearn: mean {100 * gap.mean():.2f} pts, max {100 * gap.max():.2f} pts")


if __name__ == "__main__":
    main()

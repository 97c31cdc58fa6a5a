"""Batched probes vs scikit-learn one at a time: 75 random-subset probes (15 fractions x 5 seeds).

Features: efficientnet_lite0 penultimate (1280-d) on >= 10k CIFAR-10 training images (cached).
Prints wall times and speed-up ratios (target >= 30x) of diffred at its default tolerance in its
default precision ("auto": mixed bf16/fp32 where the CPU has fast bf16 products) and in fp32, and
each result's test-accuracy distance from scikit-learn and from the converged optimum (diffred
fp32 at tol 1e-6, untimed): at tol 1e-4 scikit-learn itself stops short of the optimum of these
weakly regularised problems by up to ~1 point.
    python benchmarks/probes.py [--n-per-class 1000] [--C 1.0] [--seeds 5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import diffred
from diffred.core.device import default_device

FRACTIONS = [0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8,
             0.9, 1.0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-per-class", type=int, default=1000)
    ap.add_argument("--resolution", type=int, default=160)
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    # fp32 features: the probes are what is measured here (extraction: benchmarks/extract.py)
    tr = diffred.features("efficientnet_lite0", "cifar10", "train", n_per_class=args.n_per_class,
                          resolution=args.resolution, precision="fp32")
    te = diffred.features("efficientnet_lite0", "cifar10", "test", n_per_class=100,
                          resolution=args.resolution, precision="fp32")
    D = tr.X.shape[1]
    columns = [np.sort(np.random.default_rng(s).permutation(D)[:max(1, int(f * D))])
               for f in FRACTIONS for s in range(args.seeds)]
    print(f"features: train {tr.X.shape}, test {te.X.shape}; {len(columns)} probes, C={args.C}, "
          f"tol {diffred.core.probe.TOL:g}")
    Xtr, Xte = np.asarray(tr.X), np.asarray(te.X)

    diffred.probe_accuracy(Xtr[:500], tr.y[:500], Xte, te.y, columns=columns[:5])  # warm-up
    timed = {}
    auto = diffred.core.probe._precision("auto", default_device())
    for label, precision in ((f"diffred, auto ({auto} if >= {diffred.core.probe.BF16_MIN_WIDTH} wide)",
                              "auto"), ("diffred, fp32", "fp32")):
        t0 = time.perf_counter()
        acc = diffred.probe_accuracy(Xtr, tr.y, Xte, te.y, columns=columns, C=args.C,
                                     precision=precision)
        timed[label] = (time.perf_counter() - t0, acc.accuracy)
        print(f"{label:<38}: {timed[label][0]:7.1f} s", flush=True)

    t0 = time.perf_counter()
    reference = []
    for cols in columns:
        scaler = StandardScaler().fit(Xtr[:, cols])
        clf = LogisticRegression(C=args.C, max_iter=1000).fit(scaler.transform(Xtr[:, cols]), tr.y)
        reference.append(clf.score(scaler.transform(Xte[:, cols]), te.y))
    t_sklearn = time.perf_counter() - t0
    reference = np.array(reference)
    timed["scikit-learn, tol 1e-4, one each"] = (t_sklearn, reference)
    print(f"{'scikit-learn, tol 1e-4, one each':<38}: {t_sklearn:7.1f} s")

    optimum = diffred.probe_accuracy(Xtr, tr.y, Xte, te.y, columns=columns, C=args.C,
                                     tol=1e-6, max_iter=5000, precision="fp32").accuracy
    print("\nspeed-up vs scikit-learn (target >= 30x); test-accuracy distance (points) from the "
          "converged optimum (diffred at tol 1e-6, untimed) and from scikit-learn")
    for label, (seconds, acc) in timed.items():
        off, gap = 100 * np.abs(acc - optimum), 100 * np.abs(acc - reference)
        print(f"{label:<38}: {t_sklearn / seconds:5.1f} x   optimum: mean {off.mean():.2f} "
              f"max {off.max():.2f}   sklearn: mean {gap.mean():.2f} max {gap.max():.2f}")


if __name__ == "__main__":
    main()

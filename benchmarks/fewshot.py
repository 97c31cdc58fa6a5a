"""Episodes per second: batched few-shot LR (diffred.studies.fewshot.method) vs scikit-learn per episode.

Same run, same real cached features (efficientnet_lite0 on the CIFAR-10 test pool of
chapter 3), same episodes, L2-normalised features, C = 1, 5-way and the precursor's 2-way,
all 1280 dimensions and the top-1% width.  scikit-learn fits
``LogisticRegression(C=1, max_iter=1000)`` one episode at a time, as the precursor code does;
diffred solves all episodes as one tensor problem, timed with 1 and with 2 torch threads
(chapter 3's ``threads`` parameter; idle here, 2 threads ran 1.5-2.3x faster than 1, while on
2 cores shared with other jobs one thread was much faster).  Also reports how often the two
agree on a query's predicted class.

    nice -n 10 flock /tmp/diffred-heavy.lock .venv/bin/python benchmarks/fewshot.py
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from diffred.studies.fewshot import method as fewshot


def sklearn_predictions(S: np.ndarray, Q: np.ndarray, n_way: int) -> np.ndarray:
    """(E, N*T) predicted labels, one scikit-learn fit per episode."""
    k_shot = S.shape[1] // n_way
    y = np.arange(n_way).repeat(k_shot)
    return np.stack([LogisticRegression(C=1.0, max_iter=1000).fit(s, y).predict(q)
                     for s, q in zip(S, Q)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10, 20])
    ap.add_argument("--episodes", type=int, default=600, help="batched episodes")
    ap.add_argument("--sklearn-episodes", type=int, default=100)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    pool = fewshot.load_pool(args.model, args.dataset, views=0, progress=False)
    print(f"{args.model} / {args.dataset}: pool {pool.X.shape}, torch threads "
          f"{torch.get_num_threads()}, device {args.device or 'default'}")
    for n_way in (5, 2):
        for K in args.shots:
            ep = fewshot.sample_episodes(pool.y, n_way, K, 15, args.episodes, seed=K)
            S, Q = fewshot.gather_episodes(pool.X, ep, args.device)
            fewshot.episode_accuracy(S[:2], Q[:2], n_way)                   # warm-up
            rates = {}
            for threads in (1, 2):
                torch.set_num_threads(threads)
                for width in (S.shape[-1], 13):
                    t = time.perf_counter()
                    a = fewshot.episode_accuracy(S[..., :width], Q[..., :width], n_way)
                    rates[(threads, width)] = args.episodes / (time.perf_counter() - t)
                    if width == S.shape[-1]:
                        acc = a.cpu().numpy()
            n = args.sklearn_episodes
            Sn, Qn = (torch.nn.functional.normalize(Z[:n], dim=-1).cpu().numpy()
                      for Z in (S, Q))
            t = time.perf_counter()
            pred = sklearn_predictions(Sn, Qn, n_way)
            per_episode = n / (time.perf_counter() - t)
            sk_acc = (pred == np.arange(n_way).repeat(15)).mean(1)
            print(f"{n_way}-way {K:2d}-shot: batched episodes/s, all dims 1 thread "
                  f"{rates[(1, S.shape[-1])]:7.0f}, 2 threads {rates[(2, S.shape[-1])]:7.0f}; "
                  f"13 dims 1 thread {rates[(1, 13)]:7.0f}, 2 threads {rates[(2, 13)]:7.0f} | "
                  f"scikit-learn {per_episode:6.1f} | accuracy on first {n}: batched "
                  f"{acc[:n].mean():.4f} sklearn {sk_acc.mean():.4f} (max per-episode diff "
                  f"{np.abs(acc[:n] - sk_acc).max():.3f})", flush=True)

if __name__ == "__main__":
    main()

"""Benchmark: correlation clustering over ALL neurons of a transformer, activations streamed.

Acceptance (issue 3): all 9,984 neurons of ``mpnet_base`` (13 hidden states x 768) on
>= 50k tokens, peak RSS <= 4 GB and <= 10 min on 2 cores.  Features come memory-mapped from the
cache (``diffred.features(..., layer='all')``) and are read layer by layer in token chunks; the
float64 accumulators are (D, D), never tokens x neurons.

    python benchmarks/correlation_clustering.py [--model mpnet_base] [--tokens 50000]

Extraction (a cache miss) is timed separately from the clustering itself.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mpnet_base")
    ap.add_argument("--dataset", default="ud_pos")
    ap.add_argument("--tokens", type=int, default=50000)
    ap.add_argument("--chunk-rows", type=int, default=4096)
    ap.add_argument("--threshold", type=float, default=0.3)
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)

    import torch

    import diffred
    from diffred.core import similarity
    from diffred.studies.neurons import method as neurons

    t0 = time.perf_counter()
    feats = diffred.features(args.model, args.dataset, "train", layer="all", n=args.tokens,
                             device=args.device, progress=True)
    extract_s = time.perf_counter() - t0
    layers = [feats[k].X for k in sorted(feats)]          # memmaps (N, D_l)
    rss_before = peak_rss_mb()

    t0 = time.perf_counter()
    acc = similarity.StreamingCorrelation(args.device)
    for chunk in neurons.layer_chunks(layers, args.chunk_rows):
        acc.update(chunk)
    corr_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    Z = similarity.correlation_linkage(acc.correlation())   # no outer reference: freed in place
    link_s = time.perf_counter() - t1
    curve = neurons.redundancy_curve(Z, [0.1, 0.2, 0.3, 0.5, 0.7])
    total_s = time.perf_counter() - t0
    report = {
        "model": args.model, "dataset": args.dataset, "tokens": int(len(layers[0])),
        "neurons": int(sum(X.shape[1] for X in layers)), "chunk_rows": args.chunk_rows,
        "torch_threads": torch.get_num_threads(), "extract_or_cache_s": round(extract_s, 1),
        "correlation_s": round(corr_s, 1), "linkage_s": round(link_s, 1),
        "clustering_total_s": round(total_s, 1), "peak_rss_mb": round(peak_rss_mb(), 0),
        "rss_after_loading_mb": round(rss_before, 0),
        "pct_redundant": dict(zip(curve.threshold.round(2).astype(str),
                                  curve.pct_redundant.round(1))),
        "acceptance": {"rss_le_4GB": peak_rss_mb() <= 4096, "time_le_600s": total_s <= 600,
                       "tokens_ge_50k": len(layers[0]) >= 50000},
    }
    print(json.dumps(report, indent=1))
    return 0 if all(report["acceptance"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

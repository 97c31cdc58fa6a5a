"""Units of work serial vs on a local Dask cluster (diffred.core.engine), in one run:

1. chapter 1's probe sweeps (efficientnet_lite0, four datasets at 100 images per class, the
   paper's 15 fractions x 5 seeds: 4 units) computed serially and on ``local:2`` (2 worker
   processes, each unit at the driver's torch thread count, cluster start included), each
   from an empty sweep cache over the same cached features — the ratio is the speed-up, and
   the largest difference between the two tables;
2. the engine's own cost in the default serial mode: ``run_units`` vs a plain loop over the
   same 4 sweep units (features opened from the cache by key), as a share of their time;
3. scheduling cost per unit: 200 trivial units on 2 workers (ms per unit, after warm-up).

Name the CPU beside the numbers (the script prints ``lscpu``'s model and torch's capability).

    nice -n 10 .venv/bin/python benchmarks/engine.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time


def _cpu() -> str:
    import torch
    model = next((line.split(":", 1)[1].strip() for line in
                  subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                  if line.startswith("Model name")), "unknown CPU")
    return f"{model}, {os.cpu_count()} cores, torch capability " \
           f"{torch.backends.cpu.get_cpu_capability()}"


def _trivial(spec: dict) -> int:
    return spec["i"]


def main() -> None:
    cache = tempfile.mkdtemp(prefix="diffred-bench-engine-")
    os.environ["DIFFRED_CACHE"] = cache               # workers inherit it when they start
    from diffred.core import engine
    from diffred.studies.diffuse import method as R
    args = dict(models=["efficientnet_lite0"],
                datasets=["cifar10", "fashion_mnist", "sign_digits", "elpv"],
                fractions=R.PAPER_FRACTIONS, seeds=range(5), train_subset={"n_per_class": 100},
                test_subset={"n_per_class": 100}, resolution=160)
    print(_cpu())
    R.prefetch(args["models"], args["datasets"], [], train_subset=args["train_subset"],
               test_subset=args["test_subset"], resolution=160)

    def fresh():
        shutil.rmtree(os.path.join(cache, "sweep"), ignore_errors=True)

    fresh()
    engine.use("serial")
    t = time.perf_counter()
    serial = R.run_sweeps(**args)
    t_serial = time.perf_counter() - t
    fresh()
    engine.use("local:2")
    t = time.perf_counter()
    spread = R.run_sweeps(**args)
    t_local = time.perf_counter() - t
    a, b = (r.runs.drop(columns="probe_seconds") for r in (serial, spread))
    same = a.equals(b)
    if not same:
        num = a.select_dtypes("number").columns
        gap = (a[num] - b[num]).abs().max().max()
        print(f"  max |serial - local:2| over numeric columns: {gap:.3g}")
    print(f"chapter-1 sweeps (4 units): serial {t_serial:.1f} s, local:2 {t_local:.1f} s "
          f"(cluster start included): speed-up {t_serial / t_local:.2f}x; tables identical: {same}")

    # the engine's cost in serial mode: run_units vs a plain loop, same (cached) units
    engine.use("serial")
    units = [{"i": i} for i in range(200)]
    t = time.perf_counter()
    [_trivial(u) for u in units]
    loop = time.perf_counter() - t
    t = time.perf_counter()
    engine.run_units(_trivial, units, progress=False)
    wrapped = time.perf_counter() - t
    print(f"serial overhead: {1e3 * (wrapped - loop) / len(units):.4f} ms per unit; "
          f"{100 * (wrapped - loop) * 4 / len(units) / t_serial:.4f}% of the 4 sweeps' time")

    engine.use("local:2")
    engine.run_units(_trivial, [{"i": -1}, {"i": -2}], progress=False)       # warm-up
    t = time.perf_counter()
    out = engine.run_units(_trivial, units, progress=False)
    per_unit = 1e3 * (time.perf_counter() - t) / len(units)
    assert out == list(range(200))
    print(f"scheduling: 200 trivial units on 2 workers, {per_unit:.2f} ms per unit")
    engine.shutdown()
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Where units of work run: in this process (the default), on a local Dask cluster, on a
running cluster, or on SLURM.

A *unit* is a module-level function of one plain spec (a dict of JSON values) whose result is
one cache entry; it returns only small tables.  Arrays never travel: a worker opens its inputs
from the shared cache by key.  :func:`run_units` runs a list of them:

* **serial** (the default, ``DIFFRED_CLUSTER`` unset or ``serial``): ``fn(spec)`` in order, in
  this process — exactly the book's behaviour and cost without this module;
* ``local:N`` (or a chapter's ``workers = N``): a :class:`distributed.LocalCluster` of N worker
  processes, bound to 127.0.0.1, no dashboard; workers stay alive between units, so loaded
  models and the torch import are paid once per worker (a unit computes with the driver's
  torch thread count, so its numbers equal a serial run's: on a small machine that
  oversubscribes the cores);
* ``tcp://host:port`` or ``file:<scheduler.json>``: a running Dask scheduler;
* ``slurm``: a :class:`dask_jobqueue.SLURMCluster` built from the user's jobqueue
  configuration (``~/.config/dask/jobqueue.yaml``), scaled to ``DIFFRED_SLURM_JOBS`` (default 1).

On a cluster the driver first looks each unit up in the cache (``lookup``) and submits only the
missing ones, each under a task key equal to its content hash, so a unit that several
chapters or clients submit is computed once.  A unit that raises re-raises here with its remote
traceback; a worker killed mid-unit (SIGKILL, preemption) makes the scheduler run the unit
again elsewhere, and the cache's atomic commit keeps exactly one valid entry.  Everything that
decides a result is resolved on the driver and carried in the spec (see
:func:`diffred.core.precision.result_tag`): a worker whose hardware would give a different
result refuses the unit with one line instead of writing under the driver's key.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence

from diffred.core.errors import DiffredError

SERIAL = "serial"
_STATE: dict = {"setting": None, "client": None, "cluster": None, "last": {}}


def setting() -> str:
    """Where units run now: :func:`use`'s value, else ``DIFFRED_CLUSTER``, else serial."""
    return _STATE["setting"] or os.environ.get("DIFFRED_CLUSTER", "").strip() or SERIAL


def use(where: str | int | None) -> None:
    """Choose where units run (``None`` or 0: back to ``DIFFRED_CLUSTER`` / serial; an int N:
    ``local:N``); an existing cluster of another setting is closed first."""
    where = f"local:{where}" if isinstance(where, int) and where > 0 else (where or None)
    if where is not None:
        _check(where)
    if where != _STATE["setting"]:
        shutdown()
        _STATE["setting"] = where


def _check(where: str) -> None:
    ok = where == SERIAL or where == "slurm" or where.startswith(("tcp://", "tls://", "file:")) \
        or (where.startswith("local:") and where[6:].isdigit() and int(where[6:]) >= 1)
    if not ok:
        raise DiffredError(f"unknown cluster {where!r}; valid choices: serial, local:<N>, "
                           "tcp://<host>:<port>, file:<scheduler.json>, slurm")


def client():
    """The Dask client of :func:`setting` (started once, kept for later units), or None when
    serial."""
    where = setting()
    _check(where)
    if where == SERIAL:
        return None
    if _STATE["client"] is not None:
        return _STATE["client"]
    try:
        from distributed import Client
    except ImportError:
        raise DiffredError(f"cluster {where!r} needs Dask distributed (pip install "
                           "'diffred-book[cluster]')") from None
    if where.startswith("local:"):
        from distributed import LocalCluster
        n = int(where[6:])
        threads = max(1, (os.cpu_count() or 1) // n)
        env = {v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, env=env)
        _STATE["cluster"] = cluster
        _STATE["client"] = Client(cluster)
    elif where == "slurm":
        cluster = slurm_cluster()
        cluster.scale(jobs=int(os.environ.get("DIFFRED_SLURM_JOBS", "1")))
        _STATE["cluster"] = cluster
        _STATE["client"] = Client(cluster)
    elif where.startswith("file:"):
        _STATE["client"] = Client(scheduler_file=where[5:])
    else:
        _STATE["client"] = Client(where)
    return _STATE["client"]


def slurm_cluster(**overrides):
    """A :class:`dask_jobqueue.SLURMCluster` from the user's jobqueue configuration (cores,
    memory, walltime, queue, job_extra_directives, ...), ``overrides`` on top; nothing is
    submitted until it is scaled.  Its ``job_script()`` shows what would be submitted."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise DiffredError("cluster 'slurm' needs dask-jobqueue (pip install "
                           "'diffred-book[cluster]')") from None
    return SLURMCluster(**overrides)


def shutdown() -> None:
    """Close the client and the cluster this process started (if any)."""
    for name in ("client", "cluster"):
        if _STATE[name] is not None:
            try:
                _STATE[name].close()
            finally:
                _STATE[name] = None


def last_run() -> dict:
    """What the last :func:`run_units` did: ``units`` asked for, ``submitted`` to a cluster
    (0 when serial or when every unit was cached)."""
    return dict(_STATE["last"])


def unit_key(fn: Callable, spec: dict) -> str:
    """A unit's task key: its function and the content hash of its spec (the same unit
    submitted twice, by two chapters or two clients, is one task)."""
    from diffred.core.cache import hash_key
    return f"{fn.__module__}.{fn.__qualname__}-{hash_key(spec)}"


def run_units(fn: Callable[[dict], object], specs: Sequence[dict], *,
              lookup: Callable[[dict], object] | None = None, desc: str = "",
              resources: dict | None = None, progress: bool = True) -> list:
    """``[fn(spec) for spec in specs]``, computed where :func:`setting` says.

    Parameters
    ----------
    fn : callable
        A module-level function of one spec (importable by a worker) that stores its result
        in the cache and returns it (small: tables, not arrays).
    specs : sequence of dict
        The units' specs (JSON values only: they are hashed into task keys).
    lookup : callable, optional
        ``lookup(spec)``: the cached result, or None (then the unit is submitted); on a
        cluster only — serially ``fn`` looks in the cache itself.
    desc : str
        The stage's name in the progress line (units done / total).
    resources : dict, optional
        Dask worker resources a unit needs, e.g. ``{"GPU": 1}`` (workers that declare them).

    Returns
    -------
    list
        One result per spec, in order.
    """
    pool = client()
    _STATE["last"] = {"units": len(specs), "submitted": 0}
    if pool is None:
        return [fn(spec) for spec in specs]
    from distributed import as_completed
    results = [lookup(spec) if lookup else None for spec in specs]
    missing = [i for i, r in enumerate(results) if r is None]
    _STATE["last"]["submitted"] = len(missing)
    if not missing:
        return results
    futures = {pool.submit(fn, specs[i], key=unit_key(fn, specs[i]), resources=resources): i
               for i in missing}
    start, done = time.perf_counter(), 0
    for future in as_completed(futures):
        results[futures[future]] = future.result()      # a remote error re-raises here
        done += 1
        if progress:
            print(f"{desc or fn.__name__}: {done}/{len(missing)} units "
                  f"({len(specs) - len(missing)} cached) {time.perf_counter() - start:.0f} s",
                  file=sys.stderr, flush=True)
    return results
